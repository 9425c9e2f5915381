/* internal.h: structures and op prototypes shared inside the C core (never seen by bindings).
 * Each op has a scalar reference (`_scalar`, the oracle) and a dispatching entry point that uses
 * the SIMD variant when enabled and the shape allows it. Argument order: outputs, inputs,
 * weights, dims. Not here: anything a user calls (memba.h). */
#ifndef MEMBA_INTERNAL_H
#define MEMBA_INTERNAL_H

#include "memba.h"
#include "memba_backend.h"

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

/* delta[t, e] = dt[t, :] @ dt_proj_w[e, :] + dt_proj_b[e] with dt = dbc[t, 0:R] (before softplus) */
void dt_forward(float *delta, const float *dbc, int dbc_stride, const float *dt_proj_w,
                const float *dt_proj_b, int T, int E, int R);
/* x[i] = softplus(x[i]) */
void softplus_forward(float *x, size_t n);

/* LoRA (PEFT): out[t, o] (rows of stride out_stride) += scale * sum_k B[o, k] * h[t, k] with
 * h = inp @ A^T written to tmp [T, r]. A [r, C], B [OC, r]. */
void lora_forward(float *out, int out_stride, float *tmp, const float *inp, const float *A,
                  const float *B, float scale, int T, int C, int OC, int r);
/* W[o, c] += sign * scale * (B @ A)[o, c] for W [OC, C] */
void lora_merge(float *W, const float *A, const float *B, float scale, int OC, int C, int r);

/* LIM gate (spec section 3) for one sequence: tokens t at absolute positions pos0+t, slot
 * j = (pos0+t) % c, membrane U [c, E] in/out, gate input z rows of stride z_stride.
 *   A = tau*U[j] + z_t ; S = A > v_th ; U[j] = A*(1-S) ; v_t = U[j] (post) or A (pre)
 * prev_post [L, E] (or NULL): the previous layer's post-update values, used instead of U[j] while
 * pos0+t < c (the `first` transfer, causal). Writes v [L, E], post [L, E] (U[j] after update)
 * and, when apre is not NULL, the pre-reset A [L, E] (kept by training). */
void lim_forward(float *v, float *post, float *apre, float *U, const float *z, int z_stride,
                 const float *prev_post, int L, int E, int c, int64_t pos0, float tau,
                 float v_th, int pre_reset);
/* The `mean` transfer: U0[j] = mean over the full chunks i of post[i*c + j]; zeros if none. */
void lim_transfer_mean(float *U0, const float *post, int L, int E, int c);

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

/* ---- backward ops (training): input gradients through frozen weights, LoRA gradients ---- */
void matmul_backward_input_scalar(float *dinp, const float *dout, const float *weight, int T,
                                  int C, int OC);
void matmul_backward_input(float *dinp, const float *dout, const float *weight, int T, int C,
                           int OC);
void rmsnorm_backward(float *dinp, const float *dout, const float *inp, const float *weight, int T,
                      int C, float eps);
void conv1d_forward(float *xc, const float *x, int x_stride, const float *w, const float *bias,
                    int L, int E, int K);
void conv1d_silu_backward(float *dx, int x_stride, const float *du, const float *xc,
                          const float *w, int L, int E, int K);
void selective_scan_forward_save_scalar(float *y, float *states, const float *s0, const float *u,
                                        const float *delta, const float *bc, int bc_stride,
                                        const float *A, const float *D, int L, int E, int N);
void selective_scan_backward_scalar(float *du, float *ddelta, float *dbc, float *ds, const float *dy,
                                    const float *states, const float *s0, const float *u,
                                    const float *delta, const float *bc, int bc_stride,
                                    const float *A, const float *D, int L, int E, int N);
void selective_scan_forward_save(float *y, float *states, const float *s0, const float *u,
                                 const float *delta, const float *bc, int bc_stride,
                                 const float *A, const float *D, int L, int E, int N);
void selective_scan_backward(float *du, float *ddelta, float *dbc, float *ds, const float *dy,
                             const float *states, const float *s0, const float *u,
                             const float *delta, const float *bc, int bc_stride, const float *A,
                             const float *D, int L, int E, int N);
void softplus_backward(float *ddlin, const float *ddelta, const float *dlin, size_t n);
void dt_backward(float *dbc, int dbc_stride, const float *ddlin, const float *dt_proj_w, int T,
                 int E, int R);
void gate_backward(float *dy, float *dg, const float *dout, const float *y, const float *g,
                   int g_stride, int T, int E);
void lora_backward(float *dA, float *dB, float *dinp, float *tmp_h, float *tmp_g,
                   const float *dout, int dout_stride, const float *inp, const float *A,
                   const float *B, float scale, int T, int C, int OC, int r);
void lim_backward(float *dz, int dz_stride, float *dU0, float *dU, const float *dv,
                  const float *dpost, const float *Apre, int L, int E, int c, float tau,
                  float v_th, int pre_reset, int triangle, float width);

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
  size_t caps[14]; /* capacity in floats of each buffer below (model.c's table order) */
  size_t cap_u0;
  float *h;        /* [BT, d] residual stream */
  float *a;        /* [BT, d] normed input */
  float *xz;       /* [BT, 2E] in_proj output: x = cols 0..E-1, z = cols E..2E-1 */
  float *u;        /* [BT, E] conv + silu */
  float *dbc;      /* [BT, R + 2N] x_proj output */
  float *delta;    /* [BT, E] */
  float *y;        /* [BT, E] scan output, gated in place */
  float *tmp;      /* [BT, d] out_proj output */
  float *ssm_tmp;  /* [E, N] scan state when no decode state is kept */
  float *lora_h;   /* [BT, r] LoRA hidden (r = lora_r) */
  float *lim_v;    /* [BT, E] LIM gate values */
  float *lim_post[2]; /* [BT, E] post-update membranes of this and the previous layer */
  float *lim_u;    /* [BT, E] >= [B, c, E] membranes of the current layer */
  float *lim_u0;   /* [BT, E] >= [B, c, E] transferred membranes (mean) */
  int lora_r;      /* rank lora_h is sized for */
  size_t bytes;
} mb_acts;

struct mb_adapter {
  mb_adapter_config cfg;
  const mb_model *model;
  float scale;        /* alpha / r, or alpha / sqrt(r) with rslora */
  int merged;
  float *block;       /* all LoRA tensors, one allocation */
  size_t block_numel;
  float **A, **B;     /* [n_layer * MB_T_COUNT]: lora_A [r, in], lora_B [out, r] or NULL */
  float *grad;        /* [block_numel] gradients (training), same layout as block, or NULL */
  float *m1, *m2;     /* [block_numel] AdamW moments, or NULL */
};

mb_status mb_adapter_grad_ensure(mb_adapter *a);
typedef struct mb_train_ws mb_train_ws;
void mb_train_ws_free(mb_model *m);
size_t mb_train_ws_bytes(const mb_model *m);

/* an adapter's LoRA on target t: present?, lora_A [r, in] and lora_B [out, r] of layer l */
static inline int adapter_has(const mb_adapter *ad, mb_target t) { return (ad->cfg.targets & (1 << t)) != 0; }
static inline float *adapter_A(const mb_adapter *ad, int l, mb_target t) { return ad->A[l * MB_T_COUNT + t]; }
static inline float *adapter_B(const mb_adapter *ad, int l, mb_target t) { return ad->B[l * MB_T_COUNT + t]; }

/* chunk length of an adapter's LIM for a sequence of length L */
int lim_chunk_len(const mb_adapter_config *c, int L);
void lora_shape(const mb_config *c, mb_target t, int *in, int *out);

struct mb_model {
  mb_config cfg;
  float *block;     /* all weights, one allocation */
  size_t block_numel;
  float *embedding; /* [V, d] */
  float *norm_f;    /* [d] */
  float *lm_head;   /* [V, d]: embedding when tied */
  mb_layer *layers; /* [n_layer] */
  int finalized;
  mb_adapter *adapter; /* active adapter or NULL */
  mb_train_ws *train;  /* training workspace (train.c), NULL until the first training step */
  size_t train_budget; /* bytes of layer intermediates training may keep (mb_train_set_budget) */
  mb_acts acts;
  struct { /* the open split forward (memba_backend.h), or open = 0 */
    int open, B, L, layer, stage; /* next: stage 0 pre, 1 mid (or post), 2 post of `layer` */
    mb_state *state;
  } split;
};

struct mb_state {
  int batch, n_layer, E, K, N;
  int lim_c;   /* membrane slots per sequence (causal LIM adapters), 0 without */
  int64_t pos;
  size_t numel;
  float *data; /* per layer, per sequence: conv hist [K-1, E], ssm [E, N], membrane [lim_c, E] */
};

float *mb_state_conv(mb_state *s, int layer, int b);
float *mb_state_ssm(mb_state *s, int layer, int b);
float *mb_state_lim(mb_state *s, int layer, int b);

#endif
