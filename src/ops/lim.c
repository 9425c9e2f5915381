/* lim.c: Memba's Leaky Integrate Membrane gate (spec section 3) for one layer of one sequence,
 * and the `mean` cross-layer transfer. One neuron per (slot, channel); the chunk index is the
 * neuron's time. Works from any absolute position, so the full forward and the causal streaming
 * decode (chunk_size with first/none) are the same code.
 * Not here: the surrogate-gradient backward (training). */
#include <string.h>

#include "../internal.h"

void lim_forward(float *v, float *post, float *U, const float *z, int z_stride,
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
    for (int e = 0; e < E; e++) {
      float a = tau * base[e] + zt[e];   /* A = tau * U + z */
      float s = a > v_th ? 1.0f : 0.0f;  /* S = (A > v_th), strict */
      float un = a * (1.0f - s);          /* U = A * (1 - S): hard reset to 0 */
      u[e] = un;
      pt[e] = un;
      vt[e] = pre_reset ? a : un;
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
