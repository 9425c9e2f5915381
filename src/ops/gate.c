/* gate.c: the output gate of a Mamba-1 mixer (spec section 1): o_t = y_t * silu(g_t), g = z
 * (in_proj's second half) or, with Memba, the LIM gate input v. Forward in place or not; the
 * backward accumulates the gradients of y and g. Not here: LIM itself (lim.c). */
#include <math.h>

#include "../internal.h"
#include "../simd.h"

void gate_forward_scalar(float *out, const float *y, const float *g, int g_stride, int T, int E) {
  for (int t = 0; t < T; t++)
    for (int e = 0; e < E; e++) out[(size_t)t * E + e] = y[(size_t)t * E + e] * silu_f(g[(size_t)t * g_stride + e]);
}

void gate_forward(float *out, const float *y, const float *g, int g_stride, int T, int E) {
  if (!mb_simd_enabled || E % 4 != 0) {
    gate_forward_scalar(out, y, g, g_stride, T, E);
    return;
  }
  for (int t = 0; t < T; t++) {
    const float *yt = y + (size_t)t * E, *gt = g + (size_t)t * g_stride;
    float *ot = out + (size_t)t * E;
    for (int e = 0; e < E; e += 4) v_store(ot + e, v_load(yt + e) * v_silu(v_load(gt + e)));
  }
}

/* o = y * silu(g): dy += do * silu(g) ; dg += do * y * silu'(g), silu'(g) = sig(g)(1 + g(1 - sig(g))).
 * dg's rows are [T, E] (contiguous), whatever g's stride. */
typedef struct {
  float *dy, *dg;
  const float *dout, *y, *g;
  int g_stride, E;
} gate_bwd_job;

static void gate_backward_range(void *p, int t0, int t1);

void gate_backward(float *dy, float *dg, const float *dout, const float *y, const float *g,
                   int g_stride, int T, int E) {
  gate_bwd_job j = {dy, dg, dout, y, g, g_stride, E};
  mb_parallel_for(T, 1, (uint64_t)T * E * 16, gate_backward_range, &j); /* tokens are independent */
}

static void gate_backward_range(void *p, int t0, int t1) {
  const gate_bwd_job *j = p;
  float *dy = j->dy, *dg = j->dg;
  const float *dout = j->dout, *y = j->y, *g = j->g;
  int g_stride = j->g_stride, E = j->E;
  for (int t = t0; t < t1; t++)
    for (int e = 0; e < E; e++) {
      size_t i = (size_t)t * E + e;
      float gv = g[(size_t)t * g_stride + e], sg = 1.0f / (1.0f + expf(-gv));
      dy[i] += dout[i] * gv * sg;
      dg[i] += dout[i] * y[i] * sg * (1.0f + gv * (1.0f - sg));
    }
}
