/* internal.h: structures and op prototypes shared inside the C core (never seen by bindings).
 * Each op has a scalar reference (`_scalar`, the oracle) and a dispatching entry point that uses
 * the SIMD variant when enabled and the shape allows it. Argument order: outputs, inputs,
 * weights, dims. Not here: anything a user calls (memba.h). */
#ifndef MEMBA_INTERNAL_H
#define MEMBA_INTERNAL_H

#include "memba.h"

/* ---- errors and allocation (error.c) ---- */
mb_status mb_fail(mb_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mb_clear_error(void);
extern int mb_simd_enabled;

/* ---- scalar helpers ---- */
float silu_f(float x);
float softplus_f(float x); /* softplus(v) = v for v > 20 (PyTorch threshold) */

/* ---- ops (src/ops/) ---- */
/* out[t, o] = sum_c inp[t, c] * weight[o, c] (+ bias[o]); bias may be NULL. */
void matmul_forward_scalar(float *out, const float *inp, const float *weight, const float *bias,
                           int T, int C, int OC);
void matmul_forward_simd(float *out, const float *inp, const float *weight, const float *bias,
                         int T, int C, int OC);
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int T,
                    int C, int OC);

/* out[t] = inp[t] / sqrt(mean(inp[t]^2) + eps) * weight */
void rmsnorm_forward_scalar(float *out, const float *inp, const float *weight, int T, int C,
                            float eps);
void rmsnorm_forward(float *out, const float *inp, const float *weight, int T, int C, float eps);

/* Causal depthwise conv + SiLU over one sequence: u[t, c] = silu(bias[c] + sum_k w[c, k] *
 * x[t-(K-1)+k, c]); x rows have stride x_stride. hist [K-1, E] holds the K-1 positions before t=0
 * (row K-2 the most recent); NULL means zeros. When hist is given it is updated to the last K-1
 * positions of (hist, x). bias may be NULL. */
void conv1d_silu_forward_scalar(float *u, float *hist, const float *x, int x_stride,
                                const float *w, const float *bias, int L, int E, int K);
void conv1d_silu_forward(float *u, float *hist, const float *x, int x_stride, const float *w,
                         const float *bias, int L, int E, int K);

/* delta[t, e] = softplus(dt[t, :] @ dt_proj_w[e, :] + dt_proj_b[e]) with dt = dbc[t, 0:R] */
void dt_forward(float *delta, const float *dbc, int dbc_stride, const float *dt_proj_w,
                const float *dt_proj_b, int T, int E, int R);

/* Selective scan over one sequence (spec section 1):
 *   s_t = exp(delta_t * A) * s_{t-1} + delta_t * B_t * u_t ;  y_t = s_t @ C_t + D * u_t
 * u, delta, y: [L, E]; B_t = bc[t, 0:N], C_t = bc[t, N:2N] (rows of stride bc_stride);
 * A: [E, N] (already -exp(A_log)); D: [E]; s: [E, N] initial state in, final state out. */
void selective_scan_forward_scalar(float *y, float *s, const float *u, const float *delta,
                                   const float *bc, int bc_stride, const float *A, const float *D,
                                   int L, int E, int N);
void selective_scan_forward_simd(float *y, float *s, const float *u, const float *delta,
                                 const float *bc, int bc_stride, const float *A, const float *D,
                                 int L, int E, int N);
void selective_scan_forward(float *y, float *s, const float *u, const float *delta,
                            const float *bc, int bc_stride, const float *A, const float *D, int L,
                            int E, int N);

/* Gate: y[t, e] *= silu(g[t, e]) with g rows of stride g_stride. */
void gate_forward_scalar(float *y, const float *g, int g_stride, int T, int E);
void gate_forward(float *y, const float *g, int g_stride, int T, int E);

/* ---- model ---- */
typedef struct {
  float *norm;       /* [d] */
  float *in_proj_w;  /* [2E, d] */
  float *in_proj_b;  /* [2E] or NULL */
  float *conv_w;     /* [E, K] */
  float *conv_b;     /* [E] or NULL */
  float *x_proj_w;   /* [R + 2N, E] */
  float *dt_proj_w;  /* [E, R] */
  float *dt_proj_b;  /* [E] */
  float *A_log;      /* [E, N] */
  float *D;          /* [E] */
  float *out_proj_w; /* [d, E] */
  float *out_proj_b; /* [d] or NULL */
  float *A;          /* [E, N] derived: -exp(A_log) */
} mb_layer;

typedef struct {
  size_t cap_bt;   /* capacity in tokens (B*L) the buffers are sized for */
  float *h;        /* [BT, d] residual stream */
  float *a;        /* [BT, d] normed input */
  float *xz;       /* [BT, 2E] in_proj output: x = cols 0..E-1, z = cols E..2E-1 */
  float *u;        /* [BT, E] conv + silu */
  float *dbc;      /* [BT, R + 2N] x_proj output */
  float *delta;    /* [BT, E] */
  float *y;        /* [BT, E] scan output, gated in place */
  float *tmp;      /* [BT, d] out_proj output */
  float *ssm_tmp;  /* [E, N] scan state when no decode state is kept */
  size_t bytes;
} mb_acts;

struct mb_model {
  mb_config cfg;
  float *block;     /* all weights, one allocation */
  size_t block_numel;
  float *embedding; /* [V, d] */
  float *norm_f;    /* [d] */
  float *lm_head;   /* [V, d]: embedding when tied */
  mb_layer *layers; /* [n_layer] */
  int finalized;
  mb_acts acts;
};

struct mb_state {
  int batch, n_layer, E, K, N;
  int64_t pos;
  size_t numel;
  float *data; /* per layer, per sequence: conv hist [K-1, E], then ssm [E, N] */
};

float *mb_state_conv(mb_state *s, int layer, int b);
float *mb_state_ssm(mb_state *s, int layer, int b);

#endif
