/* rmsnorm.c: out = inp / sqrt(mean(inp^2) + eps) * weight, per row (spec section 1).
 * The mean of squares is accumulated in double: it is O(d) per token and removes one source of
 * float32 drift against the float64 reference. Forward and backward (input gradient only: the
 * norm weights are frozen). Not here: LayerNorm (unsupported checkpoints). */
#include <math.h>

#include "../internal.h"

void rmsnorm_forward_scalar(float *out, const float *inp, const float *weight, int T, int C,
                            float eps) {
  for (int t = 0; t < T; t++) {
    const float *x = inp + (size_t)t * C;
    float *o = out + (size_t)t * C;
    double ss = 0.0;
    for (int c = 0; c < C; c++) ss += (double)x[c] * x[c];
    float rstd = (float)(1.0 / sqrt(ss / C + (double)eps));
    for (int c = 0; c < C; c++) o[c] = x[c] * rstd * weight[c];
  }
}

void rmsnorm_forward(float *out, const float *inp, const float *weight, int T, int C, float eps) {
  rmsnorm_forward_scalar(out, inp, weight, T, C, eps);
}

/* dinp += d/dx of rmsnorm: with r = 1/sqrt(mean(x^2) + eps) and g = dout * weight,
 *   dx = r * g - x * r^3 * sum(g * x) / C */
void rmsnorm_backward(float *dinp, const float *dout, const float *inp, const float *weight, int T,
                      int C, float eps) {
  for (int t = 0; t < T; t++) {
    const float *x = inp + (size_t)t * C, *dy = dout + (size_t)t * C;
    float *dx = dinp + (size_t)t * C;
    double ss = 0.0, dot = 0.0;
    for (int c = 0; c < C; c++) {
      ss += (double)x[c] * x[c];
      dot += (double)dy[c] * weight[c] * x[c];
    }
    double r = 1.0 / sqrt(ss / C + (double)eps);
    float k = (float)(r * r * r * dot / C), rf = (float)r;
    for (int c = 0; c < C; c++) dx[c] += rf * dy[c] * weight[c] - x[c] * k;
  }
}
