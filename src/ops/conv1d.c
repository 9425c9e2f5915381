/* conv1d.c: Mamba's causal depthwise conv1d followed by SiLU, over one sequence, with an optional
 * history of the K-1 positions before it (the decode state), so prefill, chunked prefill and the
 * one-token decode step are the same code (spec section 1: x_s = 0 for s < 0 without history).
 *   x~_t = conv1d.bias + sum_k conv1d.weight[c,0,k] * x_{t-(K-1)+k} ;  u_t = silu(x~_t)
 * Training keeps the pre-activation x~ (the xc output) for conv1d_silu_backward (input gradient;
 * the conv weights are frozen; training always starts from an empty history). */
#include <math.h>

#include "../internal.h"
#include "../simd.h"

/* x value at time s (may be negative: read from history, or 0). */
static inline float x_at(const float *x, int x_stride, const float *hist, int s, int c, int E,
                         int K) {
  if (s >= 0) return x[(size_t)s * x_stride + c];
  return hist ? hist[(size_t)(K - 1 + s) * E + c] : 0.0f;
}

/* hist <- last K-1 positions of (hist, x[0..L-1]) */
static void hist_update(float *hist, const float *x, int x_stride, int L, int E, int K) {
  for (int j = 0; j < K - 1; j++) {
    /* new row j holds time s = L - (K-1) + j */
    int s = L - (K - 1) + j;
    if (s >= 0) {
      memcpy(hist + (size_t)j * E, x + (size_t)s * x_stride, sizeof(float) * (size_t)E);
    } else {
      /* still inside the old history: old row K-1+s; rows move towards 0, so j < K-1+s, safe */
      memmove(hist + (size_t)j * E, hist + (size_t)(K - 1 + s) * E, sizeof(float) * (size_t)E);
    }
  }
}

/* channels c0 .. c1-1 (independent: threads split them); the history is updated after all */
static void conv_scalar_range(float *u, float *xc, const float *hist, const float *x, int x_stride,
                              const float *w, const float *bias, int L, int E, int K, int c0, int c1) {
  for (int t = 0; t < L; t++) {
    for (int c = c0; c < c1; c++) {
      float acc = bias ? bias[c] : 0.0f;
      for (int k = 0; k < K; k++) acc += w[c * K + k] * x_at(x, x_stride, hist, t - (K - 1) + k, c, E, K);
      if (xc) xc[(size_t)t * E + c] = acc;
      u[(size_t)t * E + c] = silu_f(acc);
    }
  }
}

void conv1d_silu_forward_scalar(float *u, float *xc, float *hist, const float *x, int x_stride,
                                const float *w, const float *bias, int L, int E, int K) {
  conv_scalar_range(u, xc, hist, x, x_stride, w, bias, L, E, K, 0, E);
  if (hist) hist_update(hist, x, x_stride, L, E, K);
}

/* SIMD over channels: needs E % 4 == 0 and K <= 8 (c0, c1: multiples of 4). Weights are
 * transposed per call into [K, 4] per group of 4 channels so each tap is a vector. */
static void conv_simd_range(float *u, float *xc, const float *hist, const float *x, int x_stride,
                            const float *w, const float *bias, int L, int E, int K, int c_begin, int c_end) {
  for (int c0 = c_begin; c0 < c_end; c0 += 4) {
    f32x4 wk[8];
    for (int k = 0; k < K; k++)
      wk[k] = (f32x4){w[(c0 + 0) * K + k], w[(c0 + 1) * K + k], w[(c0 + 2) * K + k],
                      w[(c0 + 3) * K + k]};
    f32x4 b = bias ? v_load(bias + c0) : v_splat(0.0f);
    for (int t = 0; t < L; t++) {
      f32x4 acc = b;
      for (int k = 0; k < K; k++) {
        int s = t - (K - 1) + k;
        f32x4 xv;
        if (s >= 0) xv = v_load(x + (size_t)s * x_stride + c0);
        else if (hist) xv = v_load(hist + (size_t)(K - 1 + s) * E + c0);
        else xv = v_splat(0.0f);
        acc += wk[k] * xv;
      }
      if (xc) v_store(xc + (size_t)t * E + c0, acc);
      v_store(u + (size_t)t * E + c0, v_silu(acc));
    }
  }
}

typedef struct {
  float *u, *xc;
  const float *hist, *x, *w, *bias;
  int x_stride, L, E, K, simd;
} conv_job;

static void conv_range(void *p, int c0, int c1) {
  const conv_job *j = p;
  (j->simd ? conv_simd_range : conv_scalar_range)(j->u, j->xc, j->hist, j->x, j->x_stride, j->w, j->bias, j->L, j->E, j->K, c0, c1);
}

void conv1d_silu_forward(float *u, float *xc, float *hist, const float *x, int x_stride,
                         const float *w, const float *bias, int L, int E, int K) {
  conv_job j = {u, xc, hist, x, w, bias, x_stride, L, E, K, mb_simd_enabled && E % 4 == 0 && K <= 8};
  mb_parallel_for(E, 4, (uint64_t)L * E * (K + 8), conv_range, &j);
  if (hist) hist_update(hist, x, x_stride, L, E, K);
}

/* dx (rows of stride x_stride) += d/dx of u = silu(conv(x)), given du and the pre-activation xc:
 *   dxc = du * silu'(xc) ; dx[t-(K-1)+k, c] += w[c, k] * dxc[t, c] */
typedef struct {
  float *dx;
  const float *du, *xc, *w;
  int x_stride, L, E, K;
} conv_bwd_job;

/* channels c0 .. c1-1 (independent: threads split them) */
static void conv_backward_range(void *p, int c0, int c1) {
  const conv_bwd_job *j = p;
  float *dx = j->dx;
  const float *du = j->du, *xc = j->xc, *w = j->w;
  int x_stride = j->x_stride, L = j->L, E = j->E, K = j->K;
  for (int t = 0; t < L; t++)
    for (int c = c0; c < c1; c++) {
      float v = xc[(size_t)t * E + c], sg = 1.0f / (1.0f + expf(-v));
      float g = du[(size_t)t * E + c] * sg * (1.0f + v * (1.0f - sg));
      for (int k = 0; k < K; k++) {
        int s = t - (K - 1) + k;
        if (s >= 0) dx[(size_t)s * x_stride + c] += w[c * K + k] * g;
      }
    }
}

void conv1d_silu_backward(float *dx, int x_stride, const float *du, const float *xc,
                          const float *w, int L, int E, int K) {
  conv_bwd_job j = {dx, du, xc, w, x_stride, L, E, K};
  mb_parallel_for(E, 4, (uint64_t)L * E * (K + 16), conv_backward_range, &j);
}
