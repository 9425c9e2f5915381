/* ref_ops.c: the scalar reference kernels exported as they are, so faster paths outside C (the
 * WGSL kernels in web/kernels/) are tested against the same oracle as the SIMD ones. Thin
 * wrappers only, declared in memba_backend.h; not part of the model API. */
#include "internal.h"

void mb_ref_selective_scan(float *y, float *s, const float *u, const float *delta, const float *bc,
                           int bc_stride, const float *A, const float *D, int L, int E, int N) {
  selective_scan_forward_scalar(y, s, NULL, u, delta, bc, bc_stride, A, D, L, E, N);
}

void mb_ref_conv1d_silu(float *u, float *hist, const float *x, int x_stride, const float *w,
                        const float *bias, int L, int E, int K) {
  conv1d_silu_forward_scalar(u, NULL, hist, x, x_stride, w, bias, L, E, K);
}

void mb_ref_softplus(float *x, int n) { softplus_forward(x, x, (size_t)n); }

void mb_ref_matmul(float *out, const float *inp, const float *weight, const float *bias, int T, int C, int OC) {
  matmul_forward_scalar(out, inp, weight, bias, T, C, OC);
}

void mb_ref_rmsnorm(float *out, const float *inp, const float *weight, int T, int C, float eps) {
  rmsnorm_forward_scalar(out, inp, weight, T, C, eps);
}

void mb_ref_gate(float *y, const float *g, int g_stride, int T, int E) {
  gate_forward_scalar(y, y, g, g_stride, T, E);
}

void mb_ref_lim(float *v, float *post, float *U, const float *z, int z_stride,
                const float *prev_post, int L, int E, int c, double pos0, float tau, float v_th,
                int pre_reset) {
  lim_forward(v, post, NULL, U, z, z_stride, prev_post, L, E, c, (int64_t)pos0, tau, v_th, pre_reset);
}

/* The dispatching scan (SIMD when enabled): what the WASM engine runs, for benchmarks. */
void mb_op_selective_scan(float *y, float *s, const float *u, const float *delta, const float *bc,
                          int bc_stride, const float *A, const float *D, int L, int E, int N) {
  selective_scan_forward(y, s, NULL, u, delta, bc, bc_stride, A, D, L, E, N);
}
