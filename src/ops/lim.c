/* lim.c: Memba's Leaky Integrate Membrane gate (spec section 3) for one layer of one sequence,
 * and the `mean` cross-layer transfer. One neuron per (slot, channel); the chunk index is the
 * neuron's time. Works from any absolute position, so the full forward and the causal streaming
 * decode (chunk_size with first/none) are the same code.
 * lim_backward runs the chunks in reverse with the reset's gradient (`mask` or `triangle`). */
#include <math.h>
#include <string.h>

#include "../internal.h"

void lim_forward(float *v, float *post, float *apre, float *U, const float *z, int z_stride,
                 const float *prev_post, int L, int E, int c, int64_t pos0, float tau,
                 float v_th, int pre_reset) {
  for (int t = 0; t < L; t++) {
    int64_t p = pos0 + t;
    int j = (int)(p % c);
    float *u = U + (size_t)j * E;
    /* `first` transfer: in chunk 0 the slot starts from the previous layer's U after chunk 0,
     * which at this token is the previous layer's post-update value of the same token */
    const float *base = (prev_post && p < c) ? prev_post + (size_t)t * E : u;
    const float *zt = z + (size_t)t * z_stride;
    float *vt = v + (size_t)t * E, *pt = post + (size_t)t * E;
    float *at = apre ? apre + (size_t)t * E : NULL;
    for (int e = 0; e < E; e++) {
      float a = tau * base[e] + zt[e];   /* A = tau * U + z */
      float s = a > v_th ? 1.0f : 0.0f;  /* S = (A > v_th), strict */
      float un = a * (1.0f - s);          /* U = A * (1 - S): hard reset to 0 */
      u[e] = un;
      pt[e] = un;
      vt[e] = pre_reset ? a : un;
      if (at) at[e] = a;
    }
  }
}

void lim_transfer_mean(float *U0, const float *post, int L, int E, int c) {
  int nfull = L / c;
  memset(U0, 0, sizeof(float) * (size_t)c * E);
  if (nfull == 0) return;
  for (int i = 0; i < nfull; i++)
    for (int j = 0; j < c; j++) {
      const float *p = post + ((size_t)i * c + j) * E;
      float *u = U0 + (size_t)j * E;
      for (int e = 0; e < E; e++) u[e] += p[e];
    }
  float inv = 1.0f / (float)nfull;
  for (size_t i = 0; i < (size_t)c * E; i++) U0[i] *= inv;
}

/* Backward of lim_forward from position 0 (training), given the kept pre-reset values Apre [L, E]:
 *   dv [L, E] the gate gradient; dpost [L, E] (or NULL) the gradient reaching this layer's
 *   post-update values through the transfer to the next layer.
 * Accumulates dz (+=, rows of stride dz_stride) and dU0 [c, E] (+=): the gradient of the membrane this
 * layer started from (its transferred U0, or for `first` the previous layer's post values of the
 * first c tokens). dU: [c, E] scratch.
 *   dU/dA = (1 - S)                                   (mask)
 *   dU/dA = (1 - S) - A * max(0, w - |A - v_th|) / w^2 (triangle) */
void lim_backward(float *dz, int dz_stride, float *dU0, float *dU, const float *dv,
                  const float *dpost, const float *Apre, int L, int E, int c, float tau,
                  float v_th, int pre_reset, int triangle, float width) {
  memset(dU, 0, sizeof(float) * (size_t)c * E);
  float inv_w2 = 1.0f / (width * width);
  for (int t = L - 1; t >= 0; t--) {
    int j = t % c;
    float *du = dU + (size_t)j * E;
    const float *a = Apre + (size_t)t * E, *g = dv + (size_t)t * E;
    const float *gp = dpost ? dpost + (size_t)t * E : NULL;
    float *dzt = dz + (size_t)t * dz_stride;
    int to_u0 = t < c; /* chunk 0 started from U0: d(base) goes there (+=), else to the slot (=) */
    float *dst = to_u0 ? dU0 + (size_t)j * E : du;
    for (int e = 0; e < E; e++) {
      float s = a[e] > v_th ? 1.0f : 0.0f;
      float dudA = 1.0f - s;
      if (triangle) {
        float m = width - fabsf(a[e] - v_th);
        if (m > 0.0f) dudA -= a[e] * m * inv_w2;
      }
      float dpt = du[e] + (gp ? gp[e] : 0.0f) + (pre_reset ? 0.0f : g[e]); /* d post_t */
      float dA = dpt * dudA + (pre_reset ? g[e] : 0.0f);
      dzt[e] += dA;
      if (to_u0) dst[e] += tau * dA; /* A = tau * base + z */
      else dst[e] = tau * dA;
    }
  }
}
