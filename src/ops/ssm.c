/* ssm.c: the selective-state-space part of a Mamba-1 mixer (spec section 1):
 *   delta_t = softplus(dt_proj.weight @ dl_t + dt_proj.bias)   (dt_forward, then softplus_forward,
 *   so a LoRA on dt_proj can add in between)
 *   s_t = exp(delta_t*A) * s_{t-1} + delta_t*B_t*u_t ;  y_t = s_t @ C_t + D*u_t
 *   o_t = y_t * silu(g_t)
 * The scan runs over one sequence from a given state (zeros, or the decode state), so prefill and
 * the decode step share it. SIMD variant vectorises over the state dim N (needs N % 4 == 0).
 * Training keeps every state (selective_scan_forward_save) for the reverse-time backward.
 * Not here: LIM (lim.c). */
#include <math.h>
#include <string.h>

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

/* The scan of selective_scan_forward_scalar that also keeps s_t for every t: states [L, E, N]. */
void selective_scan_forward_save_scalar(float *y, float *states, const float *s0, const float *u,
                                 const float *delta, const float *bc, int bc_stride,
                                 const float *A, const float *D, int L, int E, int N) {
  size_t EN = (size_t)E * N;
  for (int t = 0; t < L; t++) {
    const float *Bt = bc + (size_t)t * bc_stride, *Ct = Bt + N;
    const float *prev = t ? states + (t - 1) * EN : s0;
    float *cur = states + t * EN;
    for (int e = 0; e < E; e++) {
      float dt = delta[(size_t)t * E + e], ut = u[(size_t)t * E + e], acc = 0.0f;
      for (int n = 0; n < N; n++) {
        size_t i = (size_t)e * N + n;
        cur[i] = expf(dt * A[i]) * prev[i] + dt * Bt[n] * ut;
        acc += cur[i] * Ct[n];
      }
      y[(size_t)t * E + e] = acc + D[e] * ut;
    }
  }
}

/* Reverse-time backward of the scan (A and D are frozen):
 *   y_t = s_t . C_t + D u_t ;  s_t = exp(delta_t A) * s_{t-1} + delta_t B_t u_t
 * du (+=), ddelta (+=), and dbc (+=, at the B and C columns of rows of stride bc_stride) from dy,
 * the kept states [L, E, N] and the initial state s0. ds: [E, N] scratch. */
void selective_scan_backward_scalar(float *du, float *ddelta, float *dbc, float *ds, const float *dy,
                                    const float *states, const float *s0, const float *u,
                                    const float *delta, const float *bc, int bc_stride,
                                    const float *A, const float *D, int L, int E, int N) {
  size_t EN = (size_t)E * N;
  memset(ds, 0, EN * sizeof(float));
  for (int t = L - 1; t >= 0; t--) {
    const float *Bt = bc + (size_t)t * bc_stride, *Ct = Bt + N;
    float *dBt = dbc + (size_t)t * bc_stride, *dCt = dBt + N;
    const float *cur = states + t * EN, *prev = t ? states + (t - 1) * EN : s0;
    for (int e = 0; e < E; e++) {
      size_t te = (size_t)t * E + e;
      float g = dy[te], dt = delta[te], ut = u[te], dd = 0.0f, dut = g * D[e];
      for (int n = 0; n < N; n++) {
        size_t i = (size_t)e * N + n;
        float dsi = ds[i] + g * Ct[n];
        dCt[n] += g * cur[i];
        float dA = expf(dt * A[i]);
        dd += dsi * (A[i] * dA * prev[i] + Bt[n] * ut);
        dBt[n] += dsi * dt * ut;
        dut += dsi * dt * Bt[n];
        ds[i] = dsi * dA;
      }
      ddelta[te] += dd;
      du[te] += dut;
    }
  }
}

/* SIMD variants over the state dim (N % 4 == 0), same arithmetic per element. */
static void selective_scan_forward_save_simd(float *y, float *states, const float *s0, const float *u,
                                             const float *delta, const float *bc, int bc_stride,
                                             const float *A, const float *D, int L, int E, int N) {
  size_t EN = (size_t)E * N;
  for (int t = 0; t < L; t++) {
    const float *Bt = bc + (size_t)t * bc_stride, *Ct = Bt + N;
    const float *prev = t ? states + (t - 1) * EN : s0;
    float *cur = states + t * EN;
    for (int e = 0; e < E; e++) {
      float dt = delta[(size_t)t * E + e], ut = u[(size_t)t * E + e];
      f32x4 vdt = v_splat(dt), vdtu = v_splat(dt * ut), acc = v_splat(0.0f);
      size_t o = (size_t)e * N;
      for (int n = 0; n < N; n += 4) {
        f32x4 sv = v_exp(vdt * v_load(A + o + n)) * v_load(prev + o + n) + vdtu * v_load(Bt + n);
        v_store(cur + o + n, sv);
        acc += sv * v_load(Ct + n);
      }
      y[(size_t)t * E + e] = v_hsum(acc) + D[e] * ut;
    }
  }
}

static void selective_scan_backward_simd(float *du, float *ddelta, float *dbc, float *ds, const float *dy,
                                         const float *states, const float *s0, const float *u,
                                         const float *delta, const float *bc, int bc_stride,
                                         const float *A, const float *D, int L, int E, int N) {
  size_t EN = (size_t)E * N;
  memset(ds, 0, EN * sizeof(float));
  for (int t = L - 1; t >= 0; t--) {
    const float *Bt = bc + (size_t)t * bc_stride, *Ct = Bt + N;
    float *dBt = dbc + (size_t)t * bc_stride, *dCt = dBt + N;
    const float *cur = states + t * EN, *prev = t ? states + (t - 1) * EN : s0;
    for (int e = 0; e < E; e++) {
      size_t te = (size_t)t * E + e, o = (size_t)e * N;
      float g = dy[te], dt = delta[te], ut = u[te];
      f32x4 vg = v_splat(g), vdt = v_splat(dt), vut = v_splat(ut), vdtu = v_splat(dt * ut);
      f32x4 dd = v_splat(0.0f), dus = v_splat(0.0f);
      for (int n = 0; n < N; n += 4) {
        f32x4 a = v_load(A + o + n), bt = v_load(Bt + n);
        f32x4 dsi = v_load(ds + o + n) + vg * v_load(Ct + n);
        v_store(dCt + n, v_load(dCt + n) + vg * v_load(cur + o + n));
        f32x4 dA = v_exp(vdt * a);
        dd += dsi * (a * dA * v_load(prev + o + n) + bt * vut);
        v_store(dBt + n, v_load(dBt + n) + dsi * vdtu);
        dus += dsi * vdt * bt;
        v_store(ds + o + n, dsi * dA);
      }
      ddelta[te] += v_hsum(dd);
      du[te] += g * D[e] + v_hsum(dus);
    }
  }
}

void selective_scan_forward_save(float *y, float *states, const float *s0, const float *u,
                                 const float *delta, const float *bc, int bc_stride,
                                 const float *A, const float *D, int L, int E, int N) {
  if (mb_simd_enabled && N % 4 == 0)
    selective_scan_forward_save_simd(y, states, s0, u, delta, bc, bc_stride, A, D, L, E, N);
  else
    selective_scan_forward_save_scalar(y, states, s0, u, delta, bc, bc_stride, A, D, L, E, N);
}

void selective_scan_backward(float *du, float *ddelta, float *dbc, float *ds, const float *dy,
                             const float *states, const float *s0, const float *u,
                             const float *delta, const float *bc, int bc_stride, const float *A,
                             const float *D, int L, int E, int N) {
  if (mb_simd_enabled && N % 4 == 0)
    selective_scan_backward_simd(du, ddelta, dbc, ds, dy, states, s0, u, delta, bc, bc_stride, A, D, L, E, N);
  else
    selective_scan_backward_scalar(du, ddelta, dbc, ds, dy, states, s0, u, delta, bc, bc_stride, A, D, L, E, N);
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

/* o = y * silu(g): dy = do * silu(g) ; dg = do * y * silu'(g), silu'(g) = sig(g)(1 + g(1 - sig(g))) */
void gate_backward(float *dy, float *dg, const float *dout, const float *y, const float *g,
                   int g_stride, int T, int E) {
  for (int t = 0; t < T; t++)
    for (int e = 0; e < E; e++) {
      size_t i = (size_t)t * E + e;
      float gv = g[(size_t)t * g_stride + e], sg = 1.0f / (1.0f + expf(-gv));
      dy[i] = dout[i] * gv * sg;
      dg[i] = dout[i] * y[i] * sg * (1.0f + gv * (1.0f - sg));
    }
}
