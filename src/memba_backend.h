/* memba_backend.h: the stage ABI for other backends (web/backend.js runs each layer's middle
 * stage on WebGPU) and the scalar reference kernels their tests compare against. Not for users
 * of the library (memba.h is theirs): these calls expose the model's activation buffers.
 * Every call returns a status, checks its layer index and the order of the stages. */
#ifndef MEMBA_BACKEND_H
#define MEMBA_BACKEND_H

#include "memba.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The split forward: the same forward pass as mb_forward, in stages: begin, then for each
 * layer l = 0 .. n_layer-1 in order pre(l) / mid(l) (here, or another backend reading and writing
 * mb_split_buffer) / post(l), then end (logits) or end_score. The mid stage is softplus of delta,
 * the selective scan from and into the state, and the gate. Any other forward, score or step on
 * the model in between closes the split (the next stage fails with MB_ERR_STATE). ---- */
typedef enum {
  MB_BUF_XZ = 0,    /* [B*L, 2E] in_proj output: z = cols E..2E-1 */
  MB_BUF_U = 1,     /* [B*L, E] conv + SiLU output */
  MB_BUF_DBC = 2,   /* [B*L, R + 2N] x_proj output: B at col R, C at col R + N */
  MB_BUF_DELTA = 3, /* [B*L, E] delta before softplus (after pre), after softplus (after mid) */
  MB_BUF_Y = 4,     /* [B*L, E] the gated scan output (mid writes it, post reads it) */
  MB_BUF_LIM_V = 5, /* [B*L, E] the gate input when the active adapter has a LIM gate */
} mb_split_buf;
/* Validates the inputs, embeds ids [B, L] and opens the split (state: as in mb_forward). */
mb_status mb_split_begin(mb_model *m, const int32_t *ids, int B, int L, mb_state *state);
mb_status mb_split_pre(mb_model *m, int layer);
mb_status mb_split_mid(mb_model *m, int layer);
mb_status mb_split_post(mb_model *m, int layer);
/* After the last layer: logits as mb_forward's (advances the state), or log-probabilities as
 * mb_score's (ids: the ones given to begin). Both close the split. */
mb_status mb_split_end(mb_model *m, mb_logits_mode mode, float *logits);
mb_status mb_split_end_score(mb_model *m, const int32_t *ids, int from, float *logprobs);
/* An activation buffer of the open split (NULL when no split is open or `which` is unknown). */
float *mb_split_buffer(mb_model *m, mb_split_buf which);
/* A = -exp(A_log) of a layer [E, N] (derived at finalize); NULL for a layer out of range. */
float *mb_layer_A(mb_model *m, int layer);
/* A state's SSM state [E, N] of one layer and sequence; NULL out of range. */
float *mb_state_ssm_ptr(mb_state *s, int layer, int b);

/* ---- For tests and benchmarks ---- */
/* Kernel selection: 1 = SIMD kernels (default), 0 = scalar reference. Process-wide. */
void mb_set_simd(int on);
int mb_get_simd(void);
/* Test hook of the thread pool: runs one chunk per thread; mode 1 makes every chunk but the
 * caller's trap (in wasm: a worker thread crashes, which must surface as an error, not a hang).
 * Returns the threads used (0 with one thread: nothing runs), -1 for another mode. */
int mb_pool_selftest(int mode);
/* The scalar reference kernels (src/ops/), exported as they are so that faster paths outside C
 * (the WGSL kernels in web/kernels/) are tested against the same oracle as the SIMD ones. */
void mb_ref_selective_scan(float *y, float *s, const float *u, const float *delta, const float *bc,
                           int bc_stride, const float *A, const float *D, int L, int E, int N);
void mb_ref_conv1d_silu(float *u, float *hist, const float *x, int x_stride, const float *w,
                        const float *bias, int L, int E, int K);
void mb_ref_softplus(float *x, int n);
void mb_ref_matmul(float *out, const float *inp, const float *weight, const float *bias, int T, int C, int OC);
void mb_ref_rmsnorm(float *out, const float *inp, const float *weight, int T, int C, float eps);
void mb_ref_gate(float *y, const float *g, int g_stride, int T, int E);
void mb_ref_lim(float *v, float *post, float *U, const float *z, int z_stride,
                const float *prev_post, int L, int E, int c, double pos0, float tau, float v_th,
                int pre_reset);
/* The dispatching scan (SIMD when enabled): what the WASM engine runs, for benchmarks. */
void mb_op_selective_scan(float *y, float *s, const float *u, const float *delta, const float *bc,
                          int bc_stride, const float *A, const float *D, int L, int E, int N);

#ifdef __cplusplus
}
#endif
#endif
