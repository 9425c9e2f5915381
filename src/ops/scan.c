/* scan.c: the selective scan of a Mamba-1 mixer (spec section 1), over one sequence from a given
 * state (zeros, or the decode state), so prefill and the decode step share it:
 *   s_t = exp(delta_t*A) * s_{t-1} + delta_t*B_t*u_t ;  y_t = s_t @ C_t + D*u_t
 * The forward optionally keeps every s_t (training) for the reverse-time backward. The SIMD
 * variants vectorise over the state dim N (N % 4 == 0) with the same arithmetic per element.
 * Not here: softplus and dt_proj (delta.c), the gate (gate.c), LIM (lim.c). */
#include <math.h>
#include <string.h>

#include "../internal.h"
#include "../simd.h"

/* channels e0 .. e1-1 of the scan (each channel's recurrence is independent: threads split them) */
static void scan_forward_scalar_range(float *y, float *s, float *states, const float *u,
                                      const float *delta, const float *bc, int bc_stride,
                                      const float *A, const float *D, int L, int E, int N, int e0, int e1) {
  size_t EN = (size_t)E * N;
  for (int t = 0; t < L; t++) {
    const float *Bt = bc + (size_t)t * bc_stride, *Ct = Bt + N;
    for (int e = e0; e < e1; e++) {
      float delta_t = delta[(size_t)t * E + e], ut = u[(size_t)t * E + e];
      float *se = s + (size_t)e * N;
      const float *Ae = A + (size_t)e * N;
      float acc = 0.0f;
      for (int n = 0; n < N; n++) {
        se[n] = expf(delta_t * Ae[n]) * se[n] + delta_t * Bt[n] * ut; /* deltaA * s + deltaB_u */
        acc += se[n] * Ct[n];
      }
      y[(size_t)t * E + e] = acc + D[e] * ut;
    }
    if (states) memcpy(states + t * EN + (size_t)e0 * N, s + (size_t)e0 * N, (size_t)(e1 - e0) * N * sizeof(float));
  }
}

void selective_scan_forward_scalar(float *y, float *s, float *states, const float *u,
                                   const float *delta, const float *bc, int bc_stride,
                                   const float *A, const float *D, int L, int E, int N) {
  scan_forward_scalar_range(y, s, states, u, delta, bc, bc_stride, A, D, L, E, N, 0, E);
}

static void scan_forward_simd_range(float *y, float *s, float *states, const float *u,
                                    const float *delta, const float *bc, int bc_stride,
                                    const float *A, const float *D, int L, int E, int N, int e0, int e1) {
  size_t EN = (size_t)E * N;
  for (int t = 0; t < L; t++) {
    const float *Bt = bc + (size_t)t * bc_stride, *Ct = Bt + N;
    for (int e = e0; e < e1; e++) {
      float delta_t = delta[(size_t)t * E + e], ut = u[(size_t)t * E + e];
      f32x4 vdelta = v_splat(delta_t), vdelta_u = v_splat(delta_t * ut), acc = v_splat(0.0f);
      float *se = s + (size_t)e * N;
      const float *Ae = A + (size_t)e * N;
      for (int n = 0; n < N; n += 4) {
        f32x4 sv = v_exp(vdelta * v_load(Ae + n)) * v_load(se + n) + vdelta_u * v_load(Bt + n);
        v_store(se + n, sv);
        acc += sv * v_load(Ct + n);
      }
      y[(size_t)t * E + e] = v_hsum(acc) + D[e] * ut;
    }
    if (states) memcpy(states + t * EN + (size_t)e0 * N, s + (size_t)e0 * N, (size_t)(e1 - e0) * N * sizeof(float));
  }
}

typedef struct {
  float *y, *s, *states;
  const float *u, *delta, *bc, *A, *D;
  int bc_stride, L, E, N, simd;
} scan_job;

static void scan_range(void *p, int e0, int e1) {
  const scan_job *j = p;
  (j->simd ? scan_forward_simd_range : scan_forward_scalar_range)(j->y, j->s, j->states, j->u, j->delta, j->bc, j->bc_stride,
                                                                  j->A, j->D, j->L, j->E, j->N, e0, e1);
}

void selective_scan_forward(float *y, float *s, float *states, const float *u, const float *delta,
                            const float *bc, int bc_stride, const float *A, const float *D, int L,
                            int E, int N) {
  scan_job j = {y, s, states, u, delta, bc, A, D, bc_stride, L, E, N, mb_simd_enabled && N % 4 == 0};
  mb_parallel_for(E, 4, (uint64_t)L * E * N * 8, scan_range, &j); /* ~8 flops per state element */
}

/* Reverse-time backward of the scan (A and D are frozen):
 *   y_t = s_t . C_t + D u_t ;  s_t = deltaA_t * s_{t-1} + delta_t B_t u_t,  deltaA_t = exp(delta_t A)
 * du (+=), ddelta (+=), and dbc (+=, at the B and C columns of rows of stride bc_stride) from dy,
 * the kept states [L, E, N] and the initial state s0. ds: [E, N] scratch. */
/* channels e0 .. e1-1 of the backward; dB_t, dC_t go to rows of stride g_stride at g (dbc itself,
 * or a group's partial sums) */
static void scan_backward_scalar_range(float *du, float *ddelta, float *g, int g_stride, float *ds, const float *dy,
                                       const float *states, const float *s0, const float *u,
                                       const float *delta, const float *bc, int bc_stride,
                                       const float *A, const float *D, int L, int E, int N, int e0, int e1) {
  size_t EN = (size_t)E * N;
  memset(ds + (size_t)e0 * N, 0, (size_t)(e1 - e0) * N * sizeof(float));
  for (int t = L - 1; t >= 0; t--) {
    const float *Bt = bc + (size_t)t * bc_stride, *Ct = Bt + N;
    float *dBt = g + (size_t)t * g_stride, *dCt = dBt + N;
    const float *cur = states + t * EN, *prev = t ? states + (t - 1) * EN : s0;
    for (int e = e0; e < e1; e++) {
      size_t te = (size_t)t * E + e;
      float gy = dy[te], delta_t = delta[te], ut = u[te], ddelta_t = 0.0f, du_t = gy * D[e];
      for (int n = 0; n < N; n++) {
        size_t i = (size_t)e * N + n;
        float dsi = ds[i] + gy * Ct[n];
        dCt[n] += gy * cur[i];
        float deltaA = expf(delta_t * A[i]);
        ddelta_t += dsi * (A[i] * deltaA * prev[i] + Bt[n] * ut);
        dBt[n] += dsi * delta_t * ut;
        du_t += dsi * delta_t * Bt[n];
        ds[i] = dsi * deltaA;
      }
      ddelta[te] += ddelta_t;
      du[te] += du_t;
    }
  }
}

void selective_scan_backward_scalar(float *du, float *ddelta, float *dbc, float *ds, const float *dy,
                                    const float *states, const float *s0, const float *u,
                                    const float *delta, const float *bc, int bc_stride,
                                    const float *A, const float *D, int L, int E, int N) {
  scan_backward_scalar_range(du, ddelta, dbc, bc_stride, ds, dy, states, s0, u, delta, bc, bc_stride, A, D, L, E, N, 0, E);
}

static void scan_backward_simd_range(float *du, float *ddelta, float *g, int g_stride, float *ds, const float *dy,
                                     const float *states, const float *s0, const float *u,
                                     const float *delta, const float *bc, int bc_stride,
                                     const float *A, const float *D, int L, int E, int N, int e0, int e1) {
  size_t EN = (size_t)E * N;
  memset(ds + (size_t)e0 * N, 0, (size_t)(e1 - e0) * N * sizeof(float));
  for (int t = L - 1; t >= 0; t--) {
    const float *Bt = bc + (size_t)t * bc_stride, *Ct = Bt + N;
    float *dBt = g + (size_t)t * g_stride, *dCt = dBt + N;
    const float *cur = states + t * EN, *prev = t ? states + (t - 1) * EN : s0;
    for (int e = e0; e < e1; e++) {
      size_t te = (size_t)t * E + e, o = (size_t)e * N;
      float gy = dy[te], delta_t = delta[te], ut = u[te];
      f32x4 vg = v_splat(gy), vdelta = v_splat(delta_t), vut = v_splat(ut), vdelta_u = v_splat(delta_t * ut);
      f32x4 ddelta_t = v_splat(0.0f), du_t = v_splat(0.0f);
      for (int n = 0; n < N; n += 4) {
        f32x4 a = v_load(A + o + n), bt = v_load(Bt + n);
        f32x4 dsi = v_load(ds + o + n) + vg * v_load(Ct + n);
        v_store(dCt + n, v_load(dCt + n) + vg * v_load(cur + o + n));
        f32x4 deltaA = v_exp(vdelta * a);
        ddelta_t += dsi * (a * deltaA * v_load(prev + o + n) + bt * vut);
        v_store(dBt + n, v_load(dBt + n) + dsi * vdelta_u);
        du_t += dsi * vdelta * bt;
        v_store(ds + o + n, dsi * deltaA);
      }
      ddelta[te] += v_hsum(ddelta_t);
      du[te] += gy * D[e] + v_hsum(du_t);
    }
  }
}

size_t scan_backward_part_floats(int L, int E, int N) {
  return (size_t)((E + SCAN_BWD_GROUP - 1) / SCAN_BWD_GROUP) * (size_t)L * 2 * (size_t)N;
}

typedef struct {
  float *du, *ddelta, *part, *ds;
  const float *dy, *states, *s0, *u, *delta, *bc, *A, *D;
  int bc_stride, L, E, N, simd;
} sbw_job;

/* groups g0 .. g1-1 of SCAN_BWD_GROUP channels, each into its own partial dB / dC [L, 2N] */
static void sbw_range(void *p, int g0, int g1) {
  const sbw_job *j = p;
  for (int g = g0; g < g1; g++) {
    int e0 = g * SCAN_BWD_GROUP, e1 = e0 + SCAN_BWD_GROUP < j->E ? e0 + SCAN_BWD_GROUP : j->E;
    float *pg = j->part + (size_t)g * j->L * 2 * j->N;
    memset(pg, 0, (size_t)j->L * 2 * j->N * sizeof(float));
    (j->simd ? scan_backward_simd_range : scan_backward_scalar_range)(j->du, j->ddelta, pg, 2 * j->N, j->ds, j->dy, j->states, j->s0, j->u,
                                                                      j->delta, j->bc, j->bc_stride, j->A, j->D, j->L, j->E, j->N, e0, e1);
  }
}

void selective_scan_backward(float *du, float *ddelta, float *dbc, float *ds, float *part, const float *dy,
                             const float *states, const float *s0, const float *u,
                             const float *delta, const float *bc, int bc_stride, const float *A,
                             const float *D, int L, int E, int N) {
  int simd = mb_simd_enabled && N % 4 == 0;
  if (!part) {
    (simd ? scan_backward_simd_range : scan_backward_scalar_range)(du, ddelta, dbc, bc_stride, ds, dy, states, s0, u, delta, bc, bc_stride, A, D, L, E, N, 0, E);
    return;
  }
  int groups = (E + SCAN_BWD_GROUP - 1) / SCAN_BWD_GROUP;
  sbw_job j = {du, ddelta, part, ds, dy, states, s0, u, delta, bc, A, D, bc_stride, L, E, N, simd};
  mb_parallel_for(groups, 1, (uint64_t)L * E * N * 20, sbw_range, &j);
  /* dB_t, dC_t: the groups' partial sums added in group order, whatever the thread count */
  for (int t = 0; t < L; t++) {
    float *row = dbc + (size_t)t * bc_stride;
    for (int g = 0; g < groups; g++) {
      const float *pg = part + ((size_t)g * L + t) * 2 * N;
      for (int n = 0; n < 2 * N; n++) row[n] += pg[n];
    }
  }
}
