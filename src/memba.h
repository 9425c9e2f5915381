/* memba.h: the user ABI of the memba C core: Mamba-1 models, Memba adapters, training.
 * Opaque handles, status codes and mb_last_error(); constructors return a status and hand the
 * handle back through an out-parameter. The library never prints, exits or aborts on user input.
 * Not here: the stage ABI for other backends and the reference kernels for their tests
 * (memba_backend.h), file parsing (the bindings parse safetensors and write weights into the
 * slots this API hands out), tokenisation and sampling (JS). */
#ifndef MEMBA_H
#define MEMBA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  MB_OK = 0,
  MB_ERR_INVALID_ARG = 1, /* bad dims, out-of-range ids, NULL where a value is needed */
  MB_ERR_OOM = 2,         /* an allocation failed; nothing was changed */
  MB_ERR_SHAPE = 3,       /* sizes that do not fit together (state vs model, batch) */
  MB_ERR_STATE = 4,       /* a call out of order (model not finalised, ...) */
  MB_ERR_NON_FINITE = 5,  /* a training update would leave NaN/Inf (or a NaN/Inf gradient): nothing changed */
} mb_status;

/* Last error message of the calling thread ("" when none): thread-local storage, so each thread
 * sees its own. Every API call that returns a status clears it first. Valid until the next call. */
const char *mb_last_error(void);

typedef struct {
  int d_model;    /* d */
  int n_layer;
  int vocab_size; /* V: rows of the embedding */
  int d_state;    /* N */
  int d_conv;     /* K */
  int d_inner;    /* E = expand * d */
  int dt_rank;    /* R */
  float eps;      /* rmsnorm epsilon */
  int use_bias;      /* in_proj / out_proj biases */
  int use_conv_bias; /* conv1d bias */
  int tied_head;     /* 1: logits use the embedding; 0: a separate lm_head */
} mb_config;

/* Parameter slots: global ones (layer = -1) and per-layer ones. */
typedef enum {
  MB_P_EMBEDDING = 0, /* [V, d] */
  MB_P_NORM_F,        /* [d] */
  MB_P_LM_HEAD,       /* [V, d], only when !tied_head */
  MB_P_NORM,          /* [d]           (per layer from here on) */
  MB_P_IN_PROJ_W,     /* [2E, d] */
  MB_P_IN_PROJ_B,     /* [2E], only when use_bias */
  MB_P_CONV_W,        /* [E, K] (file shape [E, 1, K]) */
  MB_P_CONV_B,        /* [E], only when use_conv_bias */
  MB_P_X_PROJ_W,      /* [R + 2N, E] */
  MB_P_DT_PROJ_W,     /* [E, R] */
  MB_P_DT_PROJ_B,     /* [E] */
  MB_P_A_LOG,         /* [E, N] */
  MB_P_D,             /* [E] */
  MB_P_OUT_PROJ_W,    /* [d, E] */
  MB_P_OUT_PROJ_B,    /* [d], only when use_bias */
  MB_P_COUNT
} mb_param;

/* How the large weight matrices (embedding, lm_head, in_proj, x_proj, out_proj) are held
 * in memory; every other tensor is float32. F16: IEEE half. Q8: blocks of 32 values of a row, each
 * an fp16 scale d = max|x| / 127 and 32 int8 q = round(x / d) (q8_0's numbers, 34 bytes a block);
 * a row holds its int8 values, then its scales. */
typedef enum { MB_DT_F32 = 0, MB_DT_F16 = 1, MB_DT_Q8 = 2 } mb_dtype;
typedef struct mb_model mb_model;
typedef struct mb_state mb_state;

/* Allocates a model with uninitialised weights (one block) into *out (NULL on failure):
 * MB_ERR_INVALID_ARG for a config out of range, MB_ERR_OOM when the weights do not fit. */
mb_status mb_model_new(const mb_config *cfg, mb_model **out);
/* The same with the large matrices in `dtype` (mb_model_new: MB_DT_F32). */
mb_status mb_model_new_typed(const mb_config *cfg, mb_dtype dtype, mb_model **out);
void mb_model_free(mb_model *m);
const mb_config *mb_model_config(const mb_model *m);
/* Where to write a float32 parameter (row-major) and how many floats it holds. NULL + *numel = 0
 * for a slot the config does not have, an out-of-range layer, or a slot of another dtype. */
float *mb_model_param(mb_model *m, mb_param p, int layer, size_t *numel);
/* A parameter's dtype and its number of values (0 for a slot the config does not have). */
int mb_model_param_dtype(const mb_model *m, mb_param p, int layer, size_t *numel); /* an mb_dtype */
/* The slot's bytes in its dtype, for copying data that already is in that format. */
void *mb_model_param_raw(mb_model *m, mb_param p, int layer, size_t *bytes);
/* Writes rows [row0, row0 + rows) of a parameter (row-major [rows, cols] as the slot comments
 * give; 1-D tensors are one row) from float32 values, converted to the slot's dtype: a loader
 * converts a file tensor by tensor or row block by row block, never the whole model.
 * MB_ERR_INVALID_ARG for rows out of range and for values the dtype cannot hold (NaN, Inf,
 * |x| > 65504 in f16). */
mb_status mb_model_param_write(mb_model *m, mb_param p, int layer, size_t row0, size_t rows, const float *src);
/* Call once all parameters are written (derives A = -exp(A_log)); again after changing weights. */
mb_status mb_model_finalize(mb_model *m);
/* Fills every parameter with deterministic pseudo-random values of Mamba-like statistics and
 * finalizes: for benchmarks and stress tests only. */
mb_status mb_model_init_random(mb_model *m, uint32_t seed);
/* Bytes held by weights and by cached activations. */
size_t mb_model_weight_bytes(const mb_model *m);
size_t mb_model_activation_bytes(const mb_model *m);
/* Frees cached activation buffers (they are re-made at the next forward). */
void mb_model_trim(mb_model *m);

/* Which positions get logits. */
typedef enum {
  MB_LOGITS_NONE = 0,
  MB_LOGITS_LAST = 1, /* logits [B, V] for position L-1 of each sequence */
  MB_LOGITS_ALL = 2,  /* logits [B, L, V] */
} mb_logits_mode;

/* Full-sequence forward of B sequences of equal length L (ids [B, L]).
 * logits: [B, L, V] or [B, V] per mode (may be NULL with MB_LOGITS_NONE).
 * hidden: optional [n_layer, B, L, d] residual stream after every layer (NULL to skip).
 * state: optional; when given (batch == B) it receives the recurrent state after the last
 * position, so decoding can continue from it (prefill). */
mb_status mb_forward(mb_model *m, const int32_t *ids, int B, int L, mb_logits_mode mode,
                     float *logits, float *hidden, mb_state *state);

/* Per-token log-likelihoods of B sequences (ids [B, L]): logprobs[b, t] = log p(ids[b, t] |
 * ids[b, <t]) for t in [from, L), 0 before; from >= 1. Logits are made in small blocks, never
 * all at once. Summing a range gives a continuation's log-likelihood (spec section 4). */
mb_status mb_score(mb_model *m, const int32_t *ids, int B, int L, int from, float *logprobs);

/* Recurrent decode state for `batch` sequences: per layer conv_state [B, E, K-1] and
 * ssm_state [B, E, N] (plus, when the active adapter has a causal LIM gate, the membrane
 * [B, c, E]; such a state only works with that adapter shape), and the positions consumed. One
 * flat float block, so it can be copied out, saved and restored byte for byte. Into *out (NULL
 * on failure). */
mb_status mb_state_new(const mb_model *m, int batch, mb_state **out);
void mb_state_free(mb_state *s);
void mb_state_reset(mb_state *s);
mb_status mb_state_copy(mb_state *dst, const mb_state *src);
int mb_state_batch(const mb_state *s);
/* Positions consumed; a double so the WASM ABI needs no 64-bit integers (exact below 2^53). */
double mb_state_pos(const mb_state *s);
/* The flat block (floats) and its size; its layout is private but stable for a given config. */
float *mb_state_data(mb_state *s, size_t *numel);
void mb_state_set_pos(mb_state *s, double pos);

/* One decode step: ids [B] -> logits [B, V] (may be NULL), advancing the state by one position. */
mb_status mb_step(mb_model *m, mb_state *s, const int32_t *ids, float *logits);

/* ---- Memba adapters (spec sections 2 and 3): LoRA + LIM gate + cross-layer transfer ---- */

/* LoRA targets. IN_PROJ_X / IN_PROJ_Z put a LoRA on only the x or the z half of in_proj's output
 * (not expressible in PEFT). IN_PROJ excludes the two halves. */
typedef enum {
  MB_T_IN_PROJ = 0,   /* [2E, d] */
  MB_T_IN_PROJ_X = 1, /* rows 0..E-1 of in_proj */
  MB_T_IN_PROJ_Z = 2, /* rows E..2E-1 of in_proj */
  MB_T_OUT_PROJ = 3,  /* [d, E] */
  MB_T_X_PROJ = 4,    /* [R + 2N, E] */
  MB_T_DT_PROJ = 5,   /* [E, R] */
  MB_T_COUNT
} mb_target;

typedef enum { MB_LIM_POST_RESET = 0, MB_LIM_PRE_RESET = 1 } mb_lim_output;
typedef enum { MB_LIM_MASK = 0, MB_LIM_TRIANGLE = 1 } mb_lim_reset_grad;
typedef enum { MB_LIM_MEAN = 0, MB_LIM_FIRST = 1, MB_LIM_NONE = 2 } mb_lim_cross;

/* All fields 4 bytes, so the bindings write it as a flat array. */
typedef struct {
  int32_t r;              /* LoRA rank (0 = no LoRA, LIM only) */
  float alpha;            /* lora_alpha */
  int32_t rslora;         /* scale alpha/sqrt(r) instead of alpha/r */
  int32_t targets;        /* bit mask of (1 << mb_target) */
  float dropout;          /* training only */
  int32_t lim;            /* 1: LIM gate on */
  int32_t chunks;         /* paper mode T (> 0), or 0 when chunk_size is used */
  int32_t chunk_size;     /* fixed chunk length (> 0), or 0 when chunks is used */
  float tau;              /* leak, in (0, 1] */
  float v_th;             /* threshold */
  int32_t output;         /* mb_lim_output */
  int32_t reset_grad;     /* mb_lim_reset_grad */
  float surrogate_width;  /* triangle surrogate width (> 0) */
  int32_t cross_layer;    /* mb_lim_cross */
} mb_adapter_config;

typedef struct mb_adapter mb_adapter;

/* An adapter for model m (shapes come from m's config) into *out; all LoRA tensors zero.
 * MB_ERR_INVALID_ARG for settings out of range, MB_ERR_OOM. */
mb_status mb_adapter_new(const mb_model *m, const mb_adapter_config *cfg, mb_adapter **out);
void mb_adapter_free(mb_adapter *a);
/* lora_A [r, in] (which = 0) or lora_B [out, r] (which = 1) of a target in a layer. */
float *mb_adapter_param(mb_adapter *a, mb_target t, int layer, int which, size_t *numel);
/* PEFT initialisation: lora_A kaiming-uniform (a = sqrt(5), bound 1/sqrt(in)), lora_B = 0. */
mb_status mb_adapter_init(mb_adapter *a, uint32_t seed);
/* 1 when decoding token by token is exact and O(1) (no LIM, or chunk_size with first/none). */
int mb_adapter_causal(const mb_adapter *a);
/* The active adapter of m used by every forward, step and score (NULL = the base model). An
 * adapter must belong to m. Switching away from a merged adapter unmerges it first. */
mb_status mb_model_set_adapter(mb_model *m, mb_adapter *a);
/* Folds the active adapter's LoRA into the base weights (W += scale * B @ A) / takes it out again.
 * Merge keeps a copy of the weight matrices it changes (their float32 bytes; MB_ERR_OOM, nothing
 * changed, when that does not fit), so unmerge restores them bit for bit. LIM stays on. */
mb_status mb_adapter_merge(mb_model *m, mb_adapter *a);
mb_status mb_adapter_unmerge(mb_model *m, mb_adapter *a);
int mb_adapter_merged(const mb_adapter *a);

/* Forward with the active adapter, returning what its LIM gate saw: lim_v [n_layer, B, L, E] the
 * gate inputs v, lim_u0 [n_layer, B, c, E] the membrane each layer started from (the transferred
 * one), and the chunk length c. Either output may be NULL. Needs an active adapter with LIM. */
mb_status mb_inspect(mb_model *m, const int32_t *ids, int B, int L, float *lim_v, float *lim_u0,
                     int32_t *chunk_len);

/* ---- Training the active adapter (spec section 4) ---- */

/* Mean cross-entropy over labels != -100 (labels [B, L]: the inputs shifted left by one, as the
 * caller prepares them) of the model with its active adapter, and the gradient of every LoRA tensor
 * of that adapter accumulated (+=) into the adapter's gradient block. `seed` draws the LoRA
 * dropout masks of this step (no effect without dropout). The base weights get no gradients. */
mb_status mb_train_backward(mb_model *m, const int32_t *ids, const int32_t *labels, int B, int L,
                            uint32_t seed, float *loss);
/* Memory for keeping layer intermediates between the forward and the backward: layers that fit
 * are kept, the others recomputed (same numbers, more time). 0 (default) recomputes every layer. */
void mb_train_set_budget(mb_model *m, double bytes);
/* Layers kept by the last training step. */
int mb_train_stored_layers(const mb_model *m);
mb_status mb_adapter_zero_grad(mb_adapter *a);
/* Gradient of one LoRA tensor (same shape as mb_adapter_param's). */
float *mb_adapter_grad(mb_adapter *a, mb_target t, int layer, int which, size_t *numel);
/* Whole blocks in mb_adapter_param's layout: which = 0 tensors, 1 gradients, 2 and 3 the AdamW
 * moments (made as zeros when asked for). For saving and restoring training state. NULL on OOM. */
float *mb_adapter_block(mb_adapter *a, int which, size_t *numel);
double mb_adapter_grad_norm(mb_adapter *a);

typedef struct {
  float lr, beta1, beta2, eps, weight_decay;
  float clip; /* global-norm clipping threshold, 0 = none */
} mb_adamw;
/* One AdamW step (PyTorch semantics: decoupled weight decay, bias correction with step >= 1) on the
 * adapter's tensors from its gradient block, after global-norm clipping. grad_norm receives the
 * norm before clipping. Settings must be finite (lr, weight_decay, clip >= 0; eps > 0; betas in
 * [0, 1)): MB_ERR_INVALID_ARG. A non-finite gradient, or an update that would leave any tensor or
 * moment NaN/Inf, changes nothing and is MB_ERR_NON_FINITE. */
mb_status mb_adamw_step(mb_adapter *a, const mb_adamw *opt, int step, float *grad_norm);
/* Drops the AdamW moments (they are re-made as zeros at the next step). */
mb_status mb_adapter_reset_optimizer(mb_adapter *a);

/* malloc/free exported for the bindings (WASM heap buffers). */
void *mb_malloc(size_t n);

void mb_free(void *p);

/* ---- threads (core/pool.c) ----
 * The matmuls, the scan and the conv split their rows / channels / tokens over a persistent pool
 * of n threads (the caller is one of them), so results equal one thread's bit for bit. Set it
 * between calls, from the one thread that calls the core. MB_ERR_INVALID_ARG outside
 * 1..MB_MAX_THREADS and for n > 1 in a build without threads; MB_ERR_OOM when a thread cannot be
 * started (the pool is then back to 1 thread). */
#define MB_MAX_THREADS 16
mb_status mb_set_threads(int n);
int mb_get_threads(void);

#ifdef __cplusplus
}
#endif
#endif
