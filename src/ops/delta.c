/* delta.c: the step size of a Mamba-1 mixer (spec section 1):
 *   delta_t = softplus(dt_proj.weight @ dl_t + dt_proj.bias),  softplus(v) = v for v > 20
 * as two ops (dt_forward, then softplus_forward) so a LoRA on dt_proj can add in between; and
 * their backwards (input gradients only: dt_proj is frozen). Not here: the scan (scan.c). */
#include <math.h>
#include <string.h>

#include "../internal.h"

/* The scalar reference: one dot product per (token, channel). */
static void dt_forward_scalar(float *dlin, const float *dbc, int dbc_stride, const float *dt_proj_w,
                              const float *dt_proj_b, int T, int E, int R) {
  for (int t = 0; t < T; t++) {
    const float *dl = dbc + (size_t)t * dbc_stride;
    float *out = dlin + (size_t)t * E;
    for (int e = 0; e < E; e++) {
      const float *w = dt_proj_w + (size_t)e * R;
      float acc = dt_proj_b[e];
      for (int r = 0; r < R; r++) acc += w[r] * dl[r];
      out[e] = acc;
    }
  }
}

/* SIMD: the R-wide rows of dbc copied together a block of tokens at a time, then the tiled
 * matmul (matmul.c); about 12% of prefill was this loop in scalar code. */
#define DT_GATHER 8192
static _Thread_local float g_dl[DT_GATHER];

typedef struct {
  float *dlin;
  const float *dbc, *w, *b;
  int dbc_stride, T, E, R;
} dt_job;

/* tokens i0 .. i1-1 (threads split tokens; the kernel is the one the whole call's T picks) */
static void dt_range(void *p, int i0, int i1) {
  const dt_job *j = p;
  int R = j->R, tb = DT_GATHER / R;
  for (int t0 = i0; t0 < i1; t0 += tb) {
    int n = i1 - t0 < tb ? i1 - t0 : tb;
    for (int i = 0; i < n; i++) memcpy(g_dl + (size_t)i * R, j->dbc + (size_t)(t0 + i) * j->dbc_stride, sizeof(float) * R);
    matmul_forward_simd_ld(j->dlin + (size_t)t0 * j->E, (size_t)j->E, g_dl, j->w, j->b, n, R, j->E, j->T < 4);
  }
}

void dt_forward(float *dlin, const float *dbc, int dbc_stride, const float *dt_proj_w,
                const float *dt_proj_b, int T, int E, int R) {
  if (!mb_simd_enabled || R > DT_GATHER) {
    dt_forward_scalar(dlin, dbc, dbc_stride, dt_proj_w, dt_proj_b, T, E, R);
    return;
  }
  dt_job j = {dlin, dbc, dt_proj_w, dt_proj_b, dbc_stride, T, E, R};
  mb_parallel_for(T, 4, (uint64_t)T * E * R, dt_range, &j);
}

typedef struct {
  float *out;
  const float *inp;
} sp_job;

static void softplus_range(void *p, int i0, int i1) {
  const sp_job *j = p;
  for (int i = i0; i < i1; i++) j->out[i] = softplus_f(j->inp[i]);
}

void softplus_forward(float *out, const float *inp, size_t n) {
  sp_job j = {out, inp};
  if (n <= (size_t)INT32_MAX) {
    mb_parallel_for((int)n, 64, (uint64_t)n * 16, softplus_range, &j); /* ~16 flops each */
    return;
  }
  for (size_t i = 0; i < n; i++) out[i] = softplus_f(inp[i]);
}

/* ddlin += ddelta * softplus'(dlin), softplus'(v) = sigmoid(v) (1 above the threshold 20) */
void softplus_backward(float *ddlin, const float *ddelta, const float *dlin, size_t n) {
  for (size_t i = 0; i < n; i++)
    ddlin[i] += dlin[i] > 20.0f ? ddelta[i] : ddelta[i] / (1.0f + expf(-dlin[i]));
}

/* dbc[t, 0:R] (+=, rows of stride dbc_stride) from ddlin through the frozen dt_proj.weight */
void dt_backward(float *dbc, int dbc_stride, const float *ddlin, const float *dt_proj_w, int T,
                 int E, int R) {
  for (int t = 0; t < T; t++) {
    float *dl = dbc + (size_t)t * dbc_stride;
    const float *g = ddlin + (size_t)t * E;
    for (int e = 0; e < E; e++)
      for (int r = 0; r < R; r++) dl[r] += g[e] * dt_proj_w[(size_t)e * R + r];
  }
}
