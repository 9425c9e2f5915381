/* internal.h: structures and prototypes shared inside the C core (never seen by the bindings).
 * Sections: errors; typed weight slots (core/weights.c); ops (src/ops/, each with a scalar
 * reference `_scalar`, the oracle, and a dispatching entry point that uses the SIMD variant when
 * enabled and the shape allows it); adapters (core/adapter.c); the one Mamba block
 * (core/block.c); the language model (models/lm.c); the decode state (core/state.c); training.
 * Argument order: outputs, inputs, weights, dims; backward: gradients out, then dout, saved
 * activations, weights, dims. Every backward accumulates (+=) into its gradients; the caller
 * zeroes. Not here: anything a user calls (memba.h) or another backend calls (memba_backend.h). */
#ifndef MEMBA_INTERNAL_H
#define MEMBA_INTERNAL_H

#include "memba.h"
#include "memba_backend.h"

/* ---- errors and allocation (error.c) ---- */
mb_status mb_fail(mb_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mb_clear_error(void);
extern int mb_simd_enabled;

/* ---- sizes and allocation. Every size made from dims or user settings (a batch, a LIM
 * chunk_size, a sequence length) is computed in 64 bits with these and checked before anything
 * is allocated: a product or sum that wraps sets *ovf, and mb_alloc_floats / mb_calloc_floats
 * (error.c) refuse counts whose bytes do not fit size_t (wasm32: 4 GB) or MB_ALLOC_LIMIT. ---- */
static inline uint64_t sz_mul(uint64_t a, uint64_t b, int *ovf) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) *ovf = 1;
  return r;
}
static inline uint64_t sz_add(uint64_t a, uint64_t b, int *ovf) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) *ovf = 1;
  return r;
}
/* a*b*c floats as a size_t, or 0 with *ovf set when the bytes do not fit size_t */
static inline size_t floats3(size_t a, size_t b, size_t c, int *ovf) {
  int o = 0;
  uint64_t n = sz_mul(sz_mul(a, b, &o), c, &o);
  if (o || n > SIZE_MAX / sizeof(float)) {
    *ovf = 1;
    return 0;
  }
  return (size_t)n;
}
/* The largest allocation the core makes, in bytes (a build may lower it: the fuzz harnesses do,
 * so that a huge but well-formed size is an MB_ERR_OOM rather than a real 100 GB request). */
#ifndef MB_ALLOC_LIMIT
#define MB_ALLOC_LIMIT SIZE_MAX
#endif
float *mb_alloc_floats(uint64_t n);  /* malloc of n floats (n = 0: one); NULL when too large */
float *mb_calloc_floats(uint64_t n); /* zeroed */
void *mb_calloc_n(uint64_t n, size_t size);

/* ---- the thread pool (core/pool.c): fn(ctx, i0, i1) over chunks of [0, n) whose boundaries
 * are multiples of align, at most one chunk per mb_par_min_work of `work` (multiply-adds or the
 * like), so small ops stay on the caller. Only for loops whose iterations are independent. ---- */
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
#define MB_HAVE_THREADS 0
#else
#define MB_HAVE_THREADS 1
#endif
extern uint64_t mb_par_min_work; /* 32768; tests set 1 so that every op splits */
typedef void (*mb_range_fn)(void *ctx, int i0, int i1);
void mb_parallel_for(int n, int align, uint64_t work, mb_range_fn fn, void *ctx);

/* ---- scalar helpers (error.c) ---- */
float silu_f(float x);
float softplus_f(float x); /* softplus(v) = v for v > 20 (PyTorch threshold) */

/* ---- typed weight slots (core/weights.c) ----
 * Every weight is read through its slot: the dtype says how `data` holds the values. The large
 * matrices (embedding, lm_head, in_proj, x_proj, out_proj) take the model's weight dtype;
 * small tensors (norms, conv, biases, A_log, D) stay f32 and are read with slot_f32. The ops that
 * take an mb_slot (linear_forward, linear_backward_input, slot_rows) handle every dtype. */
typedef struct {
  mb_dtype dtype;
  void *data;   /* rows x cols values in `dtype`, row-major; NULL for a slot the config does not have */
  size_t numel; /* rows * cols */
  size_t cols;  /* values per row (q8 blocks never cross rows) */
  size_t bytes; /* rows * dtype_row_bytes(dtype, cols) */
} mb_slot;

/* the f32 values of a slot (NULL when absent or not f32) */
static inline const float *slot_f32(const mb_slot *s) {
  return s && s->data && s->dtype == MB_DT_F32 ? (const float *)s->data : NULL;
}
static inline float *slot_f32_mut(mb_slot *s) {
  return s && s->data && s->dtype == MB_DT_F32 ? (float *)s->data : NULL;
}
/* out[i, :] = row ids[i] of a [rows, C] slot, as float32 (embedding lookup) */
void slot_rows(float *out, const mb_slot *w, const int32_t *ids, size_t n, int C);

/* convert.c: the f16 and q8 formats. A q8 row of C values is nb = ceil(C / Q8_BLOCK) blocks:
 * first the nb * 32 int8 values, then the nb fp16 scales (q8_0's bytes, not interleaved) */
#define Q8_BLOCK 32
#define Q8_BLOCK_BYTES 34 /* per block: 32 int8 + an fp16 scale */
static inline size_t q8_blocks(size_t C) { return (C + Q8_BLOCK - 1) / Q8_BLOCK; }
static inline const int8_t *q8_values(const uint8_t *row) { return (const int8_t *)row; }
/* the row's scales as fp16 bits (2-byte aligned: nb * 32 bytes come first) */
static inline const uint16_t *q8_scales(const uint8_t *row, size_t C) {
  return (const uint16_t *)(const void *)(row + q8_blocks(C) * Q8_BLOCK);
}
size_t dtype_row_bytes(mb_dtype dt, size_t C);
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f); /* round to nearest even; past 65504: inf */
void f16_row_to_f32_scalar(float *dst, const uint16_t *src, size_t n);
void q8_row_to_f32_scalar(float *dst, const uint8_t *src, size_t C);
/* rows x C values of dtype dt (rows of dtype_row_bytes each) to float32, SIMD when enabled */
void dtype_rows_to_f32(float *dst, const void *src, mb_dtype dt, size_t rows, size_t C);
/* columns [c0, c0 + n) of one row of C columns (c0 a multiple of Q8_BLOCK) into dst */
void dtype_cols_to_f32(float *dst, const void *row, mb_dtype dt, size_t C, size_t c0, size_t n);
/* float32 rows into dtype dt; MB_ERR_INVALID_ARG for a value the format cannot hold */
mb_status dtype_rows_from_f32(void *dst, const float *src, mb_dtype dt, size_t rows, size_t C);

/* ---- ops (src/ops/) ---- */
/* matmul.c: out[t, o] = sum_c inp[t, c] * weight[o, c] (+ bias[o]); bias may be NULL. */
void matmul_forward_scalar(float *out, const float *inp, const float *weight, const float *bias,
                           int T, int C, int OC);
void matmul_forward_simd(float *out, const float *inp, const float *weight, const float *bias,
                         int T, int C, int OC);
/* mm with out rows of stride ld; few: run the kernel a call of fewer than 4 tokens runs */
void matmul_forward_simd_ld(float *out, size_t ld, const float *inp, const float *weight, const float *bias,
                            int T, int C, int OC, int few);
void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int T,
                    int C, int OC);
/* dinp[t, c] += sum_o dout[t, o] * weight[o, c] (frozen weight: no weight gradient) */
void matmul_backward_input_scalar(float *dinp, const float *dout, const float *weight, int T,
                                  int C, int OC);
void matmul_backward_input(float *dinp, const float *dout, const float *weight, int T, int C,
                           int OC);
/* The same through a weight slot [OC, C] (any dtype), with an optional f32 bias slot. */
void linear_forward(float *out, const float *inp, const mb_slot *w, const mb_slot *bias, int T,
                    int C, int OC);
void linear_backward_input(float *dinp, const float *dout, const mb_slot *w, int T, int C, int OC);
void linear_forward_f32b(float *out, const float *inp, const mb_slot *w, const float *bias, int T, int C, int OC);
/* qmatmul.c: f16 rows converted in registers (few tokens; equals the float32 kernel on the
 * decoded weights); q8 x q8 with each token quantised per block of 32 (scalar reference and SIMD
 * give the same bits) */
void f16_matvec(float *out, const float *inp, const mb_slot *w, const float *bias, int T, int C, int OC);
void q8_matmul(float *out, const float *inp, const mb_slot *w, const float *bias, int T, int C, int OC);
void q8_matmul_scalar(float *out, const float *inp, const mb_slot *w, const float *bias, int T, int C, int OC);
/* the same over OC rows starting at W (a slot's rows from some row on), out rows of stride ld */
void f16_matvec_rows(float *out, size_t ld, const float *inp, const uint16_t *W, const float *bias, int T, int C, int OC);
void q8_matmul_rows(float *out, size_t ld, const float *inp, const uint8_t *W, const float *bias, int T, int C, int OC);
void q8_matmul_scalar_rows(float *out, size_t ld, const float *inp, const uint8_t *W, const float *bias, int T, int C, int OC);

/* rmsnorm.c: out[t] = inp[t] / sqrt(mean(inp[t]^2) + eps) * weight */
void rmsnorm_forward_scalar(float *out, const float *inp, const float *weight, int T, int C,
                            float eps);
void rmsnorm_forward(float *out, const float *inp, const float *weight, int T, int C, float eps);
void rmsnorm_backward(float *dinp, const float *dout, const float *inp, const float *weight, int T,
                      int C, float eps);

/* conv1d.c: causal depthwise conv + SiLU over one sequence: xc[t, c] = bias[c] + sum_k w[c, k] *
 * x[t-(K-1)+k, c], u = silu(xc); x rows have stride x_stride. xc (or NULL) keeps the
 * pre-activation for the backward. hist [K-1, E] holds the K-1 positions before t=0 (row K-2 the
 * most recent); NULL means zeros. When hist is given it is updated to the last K-1 positions of
 * (hist, x). bias may be NULL. */
void conv1d_silu_forward_scalar(float *u, float *xc, float *hist, const float *x, int x_stride,
                                const float *w, const float *bias, int L, int E, int K);
void conv1d_silu_forward(float *u, float *xc, float *hist, const float *x, int x_stride,
                         const float *w, const float *bias, int L, int E, int K);
void conv1d_silu_backward(float *dx, int x_stride, const float *du, const float *xc,
                          const float *w, int L, int E, int K);

/* delta.c: dlin[t, e] = dt[t, :] @ dt_proj_w[e, :] + dt_proj_b[e] with dt = dbc[t, 0:R];
 * delta = softplus(dlin) (out may be inp). */
void dt_forward(float *dlin, const float *dbc, int dbc_stride, const float *dt_proj_w,
                const float *dt_proj_b, int T, int E, int R);
void softplus_forward(float *out, const float *inp, size_t n);
void softplus_backward(float *ddlin, const float *ddelta, const float *dlin, size_t n);
void dt_backward(float *dbc, int dbc_stride, const float *ddlin, const float *dt_proj_w, int T,
                 int E, int R);

/* scan.c: selective scan over one sequence (spec section 1):
 *   s_t = exp(delta_t * A) * s_{t-1} + delta_t * B_t * u_t ;  y_t = s_t @ C_t + D * u_t
 * u, delta, y: [L, E]; B_t = bc[t, 0:N], C_t = bc[t, N:2N] (rows of stride bc_stride);
 * A: [E, N] (already -exp(A_log)); D: [E]; s: [E, N] initial state in, final state out;
 * states: NULL, or [L, E, N] every s_t (kept by training for the backward). */
void selective_scan_forward_scalar(float *y, float *s, float *states, const float *u,
                                   const float *delta, const float *bc, int bc_stride,
                                   const float *A, const float *D, int L, int E, int N);
void selective_scan_forward(float *y, float *s, float *states, const float *u, const float *delta,
                            const float *bc, int bc_stride, const float *A, const float *D, int L,
                            int E, int N);
void selective_scan_backward_scalar(float *du, float *ddelta, float *dbc, float *ds, const float *dy,
                                    const float *states, const float *s0, const float *u,
                                    const float *delta, const float *bc, int bc_stride,
                                    const float *A, const float *D, int L, int E, int N);
/* part: NULL (one pass over the channels, in order), or scratch of scan_backward_part_floats
 * floats: the channels then run in groups of SCAN_BWD_GROUP over the thread pool, each group
 * summing its dB / dC apart, and the groups' sums are added in order (the same bits for any
 * thread count) */
#define SCAN_BWD_GROUP 128
size_t scan_backward_part_floats(int L, int E, int N);
void selective_scan_backward(float *du, float *ddelta, float *dbc, float *ds, float *part, const float *dy,
                             const float *states, const float *s0, const float *u,
                             const float *delta, const float *bc, int bc_stride, const float *A,
                             const float *D, int L, int E, int N);

/* gate.c: out[t, e] = y[t, e] * silu(g[t, e]) with g rows of stride g_stride (out may be y). */
void gate_forward_scalar(float *out, const float *y, const float *g, int g_stride, int T, int E);
void gate_forward(float *out, const float *y, const float *g, int g_stride, int T, int E);
void gate_backward(float *dy, float *dg, const float *dout, const float *y, const float *g,
                   int g_stride, int T, int E);

/* lora.c: LoRA (PEFT): out[t, o] (rows of stride out_stride) += scale * sum_k B[o, k] * h[t, k]
 * with h = inp @ A^T written to tmp [T, r]. A [r, C], B [OC, r]. */
void lora_forward(float *out, int out_stride, float *tmp, const float *inp, const float *A,
                  const float *B, float scale, int T, int C, int OC, int r);
void lora_backward(float *dA, float *dB, float *dinp, float *tmp_h, float *tmp_g,
                   const float *dout, int dout_stride, const float *inp, const float *A,
                   const float *B, float scale, int T, int C, int OC, int r);
/* W[o, c] += scale * (B @ A)[o, c] for W [OC, C] */
void lora_merge(float *W, const float *A, const float *B, float scale, int OC, int C, int r);
/* Inverted dropout with a mask drawn from `seed`: out[i] = x[i] / (1 - p) or 0 (out may be x).
 * The same seed on a gradient gives the input gradient through the same mask. */
void lora_dropout(float *out, const float *x, size_t n, float p, uint64_t seed);
/* seed of the dropout mask of (training step, layer, target) */
static inline uint64_t lora_drop_seed(uint64_t step_seed, int l, int t) {
  return step_seed * 1000003u + (uint64_t)l * 64u + (uint64_t)t;
}

/* lim.c: LIM gate (spec section 3) for one sequence: tokens t at absolute positions pos0+t, slot
 * j = (pos0+t) % c, membrane U [c, E] in/out, gate input z rows of stride z_stride.
 *   A = tau*U[j] + z_t ; S = A > v_th ; U[j] = A*(1-S) ; v_t = U[j] (post) or A (pre)
 * prev_post (or NULL): rows t < c - pos0 are the previous layer's post-update values of the
 * same tokens, used instead of U[j] while pos0+t < c (the `first` transfer, causal). Writes v
 * [L, E], post [L, E] (U[j] after update) and, when apre is not NULL, the pre-reset A [L, E]. */
void lim_forward(float *v, float *post, float *apre, float *U, const float *z, int z_stride,
                 const float *prev_post, int L, int E, int c, int64_t pos0, float tau,
                 float v_th, int pre_reset);
/* The `mean` transfer: U0[j] = mean over the full chunks i of post[i*c + j]; zeros if none. */
void lim_transfer_mean(float *U0, const float *post, int L, int E, int c);
/* Backward of lim_forward from position 0: dz (+=, rows of stride dz_stride) and dU0 [c, E]
 * (+=) from dv [L, E] and dpost [L, E] (or NULL); dU: [c, E] scratch. */
void lim_backward(float *dz, int dz_stride, float *dU0, float *dU, const float *dv,
                  const float *dpost, const float *Apre, int L, int E, int c, float tau,
                  float v_th, int pre_reset, int triangle, float width);

/* xent.c: the one log-softmax / cross-entropy. xent_lse: log(sum_v exp(row[v])) of a row of V
 * logits, in double (max-shifted); log p(target) = row[target] - lse. xent_backward:
 * dlogits[v] = scale * (softmax(row)[v] - (v == target)), from the row and its lse (dlogits may
 * be the row itself). */
double xent_lse(const float *row, int V);
void xent_backward(float *dlogits, const float *row, double lse, int target, double scale, int V);

/* ---- adapters (core/adapter.c) ---- */
struct mb_adapter {
  mb_adapter_config cfg;
  const mb_model *model;
  float scale;        /* alpha / r, or alpha / sqrt(r) with rslora */
  int merged;
  float *saved;       /* while merged: the base weights the merge changed, so unmerge is exact */
  float *block;       /* all LoRA tensors, one allocation */
  size_t block_numel;
  float **A, **B;     /* [n_layer * MB_T_COUNT]: lora_A [r, in], lora_B [out, r] or NULL */
  float *grad;        /* [block_numel] gradients (training), same layout as block, or NULL */
  float *m1, *m2;     /* [block_numel] AdamW moments, or NULL */
};

mb_status mb_adapter_grad_ensure(mb_adapter *a);
/* an adapter's LoRA on target t: present?, lora_A [r, in] and lora_B [out, r] of layer l */
static inline int adapter_has(const mb_adapter *ad, mb_target t) { return (ad->cfg.targets & (1 << t)) != 0; }
static inline float *adapter_A(const mb_adapter *ad, int l, mb_target t) { return ad->A[l * MB_T_COUNT + t]; }
static inline float *adapter_B(const mb_adapter *ad, int l, mb_target t) { return ad->B[l * MB_T_COUNT + t]; }
/* chunk length of an adapter's LIM for a sequence of length L */
int lim_chunk_len(const mb_adapter_config *c, int L);
void lora_shape(const mb_config *c, mb_target t, int *in, int *out);

/* ---- the model's weights (core/weights.c) ---- */
#define MB_P_LAYER0 MB_P_NORM                 /* first per-layer slot */
#define MB_P_PER_LAYER (MB_P_COUNT - MB_P_NORM) /* slots per layer */
typedef struct {
  mb_slot w[MB_P_PER_LAYER]; /* indexed by p - MB_P_LAYER0 */
  float *A;                  /* [E, N] derived: -exp(A_log) */
} mb_layer;
/* slot p of a layer */
static inline const mb_slot *layer_slot(const mb_layer *W, mb_param p) { return &W->w[p - MB_P_LAYER0]; }
static inline const float *layer_f32(const mb_layer *W, mb_param p) { return slot_f32(&W->w[p - MB_P_LAYER0]); }

/* ---- the Mamba block (core/block.c) ---- */
/* One layer's activations for BT = B*L tokens (rows b*L + t). Fields marked (T) are kept by
 * training only and are NULL in inference, where dlin is delta (softplus in place) and o is y
 * (gate in place). */
typedef struct {
  float *a;      /* [BT, d] rmsnorm(h) * norm.weight */
  float *xz;     /* [BT, 2E] in_proj output: x = cols 0..E-1, z = cols E..2E-1 */
  float *xc;     /* [BT, E] conv pre-activation (T) */
  float *u;      /* [BT, E] silu(conv1d(x)) */
  float *dbc;    /* [BT, R + 2N] x_proj output: dl | B | C */
  float *dl;     /* [BT, R] dl copied out of dbc (the input of a dt_proj LoRA) */
  float *dlin;   /* [BT, E] delta before softplus */
  float *delta;  /* [BT, E] */
  float *y;      /* [BT, E] scan output */
  float *o;      /* [BT, E] y * silu(gate input) */
  float *states; /* [BT, E, N] every scan state (T) */
  float *v;      /* [BT, E] LIM gate input (with LIM) */
  float *apre;   /* [BT, E] LIM pre-reset values (T, with LIM) */
  float *post;   /* [BT, E] LIM post-update membranes (with LIM) */
  float *out;    /* [BT, d] out_proj output */
} mb_block_acts;

/* Scratch every layer reuses. */
typedef struct {
  float *lora_h; /* [BT, r] */
  float *drop;   /* [BT, max(d, E, dt_rank)] a LoRA input after dropout (training with dropout) */
  float *ssm;    /* [E, N] scan state without a decode state */
  float *U;      /* [c, E] LIM membrane without a decode state */
} mb_block_scratch;

/* How a block runs. */
typedef struct {
  int B, L;
  mb_state *state;      /* decode state (conv history, SSM state, membrane in and out) or NULL */
  const float *lim_in;  /* [B, c, E] this layer's LIM input (lim_layer_input), with LIM */
  int c;                /* LIM chunk length (0 without LIM) */
  int reverse;          /* the mixer runs each sequence reversed in time (no decode state) */
  int train;            /* 1: LoRA dropout with masks from `seed` */
  uint64_t seed;
} mb_block_run;

/* One Mamba layer, h [BT, d] += mixer(rmsnorm(h)), with the model's active adapter (LoRA unless
 * merged, LIM gate), in three stages so another backend can run the middle one: pre leaves u,
 * dbc, the pre-softplus dlin and the gate input (z in xz, or v); mid leaves o (softplus, scan,
 * gate); post adds out_proj(o) to h. block_forward runs the three. */
void block_pre(const mb_model *m, int l, const mb_block_run *x, mb_block_acts *A,
               const mb_block_scratch *S, const float *h);
void block_mid(const mb_model *m, int l, const mb_block_run *x, mb_block_acts *A,
               const mb_block_scratch *S);
void block_post(const mb_model *m, int l, const mb_block_run *x, mb_block_acts *A,
                const mb_block_scratch *S, float *h);
void block_forward(const mb_model *m, int l, const mb_block_run *x, mb_block_acts *A,
                   const mb_block_scratch *S, float *h);
/* The next layer's LIM input [B, c, E] from this layer's post values [BT, E] (spec section 3):
 * the mean transfer, the first min(L, c) post rows (first), or zeros (none). */
void lim_layer_input(float *next, const float *post, const mb_adapter_config *lc, int B, int L,
                     int E, int c);
/* time-reverses each of B sequences of L rows of `cols` floats (row stride `stride`) in place */
void flip_rows(float *x, int B, int L, int cols, int stride);

/* ---- the language model (models/lm.c) ---- */
#define HEAD_ROWS 64 /* logits are made this many rows at a time (forward, score and training) */

typedef struct {
  mb_block_acts blk;
  mb_block_scratch scr;
  float *h;       /* [BT, d] residual stream */
  float *lim_in;  /* [B, c, E] the next layer's LIM input */
  float *head;    /* [HEAD_ROWS, d] normed rows for the head */
  size_t caps[16]; /* capacity in floats of each buffer (models/lm.c's table order) */
  size_t bytes;
} mb_acts;

typedef struct mb_train_ws mb_train_ws;
void mb_train_ws_free(mb_model *m);
size_t mb_train_ws_bytes(const mb_model *m);

struct mb_model {
  mb_config cfg;
  float *block;      /* all weights, one allocation: typed slots, each 16-byte aligned */
  size_t block_bytes;
  mb_dtype dtype;    /* of the large matrices (the other tensors are f32) */
  mb_slot embedding; /* [V, d] */
  mb_slot norm_f;    /* [d] */
  mb_slot lm_head;   /* [V, d]: the embedding's data when tied */
  mb_layer *layers;  /* [n_layer] */
  int finalized;
  mb_adapter *adapter; /* active adapter or NULL */
  mb_train_ws *train;  /* training workspace (train/), NULL until the first training step */
  size_t train_budget; /* bytes of layer intermediates training may keep (mb_train_set_budget) */
  mb_acts acts;
  struct { /* the open split forward (memba_backend.h), or open = 0 */
    int open, B, L, layer, stage; /* next: stage 0 pre, 1 mid (or post), 2 post of `layer` */
    mb_state *state;
  } split;
};

/* the slot of a parameter (NULL for an out-of-range layer or unknown p) */
const mb_slot *model_slot(const mb_model *m, mb_param p, int layer);
/* a LoRA the forward must add: on this target and not folded into the weights */
static inline int lora_on(const mb_adapter *ad, mb_target t) { return ad && !ad->merged && adapter_has(ad, t); }
/* h [BT, d] = embedding rows of ids (ids already checked) */
void lm_embed(const mb_model *m, float *h, const int32_t *ids, size_t BT);
/* logits [n, V] of n final residual rows (row i at h + i * h_stride): rmsnorm with norm_f, then
 * lm_head, HEAD_ROWS rows at a time. tmp: [HEAD_ROWS, d]. */
void lm_logits(const mb_model *m, float *logits, const float *h, size_t h_stride, int n, float *tmp);
/* checks ids [BT] are in [0, V) */
mb_status lm_check_ids(const mb_model *m, const int32_t *ids, size_t BT, const char *what);

/* ---- the decode state (core/state.c) ---- */
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
