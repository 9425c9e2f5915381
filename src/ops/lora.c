/* lora.c: LoRA with HF PEFT semantics (spec section 2): y = W x + scale * B @ (A @ x), scale =
 * alpha/r (or alpha/sqrt(r) with rsLoRA), added into an existing output (possibly a strided half
 * of in_proj's output); merging it into W; the seeded dropout masks training draws on its input.
 * lora_backward gives the LoRA tensors' gradients and the input gradient through the branch. */
#include "../internal.h"
#include "../simd.h"

void lora_forward(float *out, int out_stride, float *tmp, const float *inp, const float *A,
                  const float *B, float scale, int T, int C, int OC, int r) {
  /* h = x @ A^T : [T, r] */
  matmul_forward(tmp, inp, A, NULL, T, C, r);
  for (int t = 0; t < T; t++) {
    const float *h = tmp + (size_t)t * r;
    float *o = out + (size_t)t * out_stride;
    for (int j = 0; j < OC; j++) {
      const float *b = B + (size_t)j * r;
      float acc = 0.0f;
      for (int k = 0; k < r; k++) acc += b[k] * h[k];
      o[j] += scale * acc;
    }
  }
}

void lora_merge(float *W, const float *A, const float *B, float scale, int OC, int C, int r) {
  for (int o = 0; o < OC; o++) {
    float *w = W + (size_t)o * C;
    const float *b = B + (size_t)o * r;
    for (int k = 0; k < r; k++) {
      float s = scale * b[k];
      if (s == 0.0f) continue;
      const float *a = A + (size_t)k * C;
      for (int c = 0; c < C; c++) w[c] += s * a[c];
    }
  }
}

/* Backward of lora_forward: with h = inp @ A^T (recomputed into tmp_h) and
 * g[t, k] = scale * sum_o B[o, k] dout[t, o] (tmp_g):
 *   dB[o, k] += scale * sum_t dout[t, o] h[t, k] ; dA[k, c] += sum_t g[t, k] inp[t, c]
 *   dinp[t, c] += sum_k g[t, k] A[k, c]   (dinp may be NULL)
 * dout rows have stride dout_stride. */
void lora_backward(float *dA, float *dB, float *dinp, float *tmp_h, float *tmp_g,
                   const float *dout, int dout_stride, const float *inp, const float *A,
                   const float *B, float scale, int T, int C, int OC, int r) {
  matmul_forward(tmp_h, inp, A, NULL, T, C, r);
  for (int t = 0; t < T; t++) {
    const float *dy = dout + (size_t)t * dout_stride, *h = tmp_h + (size_t)t * r;
    float *g = tmp_g + (size_t)t * r;
    for (int k = 0; k < r; k++) g[k] = 0.0f;
    for (int o = 0; o < OC; o++) {
      float d = dy[o];
      if (d == 0.0f) continue;
      const float *b = B + (size_t)o * r;
      float *db = dB + (size_t)o * r;
      for (int k = 0; k < r; k++) {
        db[k] += scale * d * h[k];
        g[k] += scale * d * b[k];
      }
    }
    const float *x = inp + (size_t)t * C;
    for (int k = 0; k < r; k++) {
      float gk = g[k];
      if (gk == 0.0f) continue;
      float *da = dA + (size_t)k * C;
      for (int c = 0; c < C; c++) da[c] += gk * x[c];
    }
  }
  if (dinp) matmul_backward_input(dinp, tmp_g, A, T, C, r);
}

void lora_dropout(float *out, const float *x, size_t n, float p, uint64_t seed) {
  float keep = 1.0f / (1.0f - p);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  for (size_t i = 0; i < n; i++) {
    s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
    float u = (float)((s * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
    out[i] = u < p ? 0.0f : x[i] * keep;
  }
}
