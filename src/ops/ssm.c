/* ssm.c: the selective-state-space part of a Mamba-1 mixer (spec section 1):
 *   delta_t = softplus(dt_proj.weight @ dl_t + dt_proj.bias)   (dt_forward, then softplus_forward,
 *   so a LoRA on dt_proj can add in between)
 *   s_t = exp(delta_t*A) * s_{t-1} + delta_t*B_t*u_t ;  y_t = s_t @ C_t + D*u_t
 *   o_t = y_t * silu(g_t)
 * The scan runs over one sequence from a given state (zeros, or the decode state), so prefill and
 * the decode step share it. SIMD variant vectorises over the state dim N (needs N % 4 == 0).
 * Not here: the reverse-time backward (training, later) and LIM (adapters, later). */
#include <math.h>

#include "../internal.h"
#include "../simd.h"

void dt_forward(float *delta, const float *dbc, int dbc_stride, const float *dt_proj_w,
                const float *dt_proj_b, int T, int E, int R) {
  for (int t = 0; t < T; t++) {
    const float *dl = dbc + (size_t)t * dbc_stride;
    float *out = delta + (size_t)t * E;
    for (int e = 0; e < E; e++) {
      const float *w = dt_proj_w + (size_t)e * R;
      float acc = dt_proj_b[e];
      for (int r = 0; r < R; r++) acc += w[r] * dl[r];
      out[e] = acc;
    }
  }
}

void softplus_forward(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = softplus_f(x[i]);
}

void selective_scan_forward_scalar(float *y, float *s, const float *u, const float *delta,
                                   const float *bc, int bc_stride, const float *A, const float *D,
                                   int L, int E, int N) {
  for (int t = 0; t < L; t++) {
    const float *Bt = bc + (size_t)t * bc_stride, *Ct = Bt + N;
    for (int e = 0; e < E; e++) {
      float dt = delta[(size_t)t * E + e], ut = u[(size_t)t * E + e];
      float *se = s + (size_t)e * N;
      const float *Ae = A + (size_t)e * N;
      float acc = 0.0f;
      for (int n = 0; n < N; n++) {
        se[n] = expf(dt * Ae[n]) * se[n] + dt * Bt[n] * ut;
        acc += se[n] * Ct[n];
      }
      y[(size_t)t * E + e] = acc + D[e] * ut;
    }
  }
}

void selective_scan_forward_simd(float *y, float *s, const float *u, const float *delta,
                                 const float *bc, int bc_stride, const float *A, const float *D,
                                 int L, int E, int N) {
  for (int t = 0; t < L; t++) {
    const float *Bt = bc + (size_t)t * bc_stride, *Ct = Bt + N;
    for (int e = 0; e < E; e++) {
      float dt = delta[(size_t)t * E + e], ut = u[(size_t)t * E + e];
      f32x4 vdt = v_splat(dt), vdtu = v_splat(dt * ut), acc = v_splat(0.0f);
      float *se = s + (size_t)e * N;
      const float *Ae = A + (size_t)e * N;
      for (int n = 0; n < N; n += 4) {
        f32x4 sv = v_exp(vdt * v_load(Ae + n)) * v_load(se + n) + vdtu * v_load(Bt + n);
        v_store(se + n, sv);
        acc += sv * v_load(Ct + n);
      }
      y[(size_t)t * E + e] = v_hsum(acc) + D[e] * ut;
    }
  }
}

void selective_scan_forward(float *y, float *s, const float *u, const float *delta,
                            const float *bc, int bc_stride, const float *A, const float *D, int L,
                            int E, int N) {
  if (mb_simd_enabled && N % 4 == 0)
    selective_scan_forward_simd(y, s, u, delta, bc, bc_stride, A, D, L, E, N);
  else
    selective_scan_forward_scalar(y, s, u, delta, bc, bc_stride, A, D, L, E, N);
}

void gate_forward_scalar(float *y, const float *g, int g_stride, int T, int E) {
  for (int t = 0; t < T; t++)
    for (int e = 0; e < E; e++) y[(size_t)t * E + e] *= silu_f(g[(size_t)t * g_stride + e]);
}

void gate_forward(float *y, const float *g, int g_stride, int T, int E) {
  if (!mb_simd_enabled || E % 4 != 0) {
    gate_forward_scalar(y, g, g_stride, T, E);
    return;
  }
  for (int t = 0; t < T; t++) {
    float *yt = y + (size_t)t * E;
    const float *gt = g + (size_t)t * g_stride;
    for (int e = 0; e < E; e += 4) v_store(yt + e, v_load(yt + e) * v_silu(v_load(gt + e)));
  }
}
