/* lora.c: LoRA with HF PEFT semantics (spec section 2): y = W x + scale * B @ (A @ x), scale =
 * alpha/r (or alpha/sqrt(r) with rsLoRA), added into an existing output (possibly a strided half
 * of in_proj's output); and merging it into W. Dropout is a training concern (not here).
 * Not here: the backward (training). */
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
