/* test_ops.c: every SIMD kernel against its scalar reference on random inputs, with shapes that
 * are not multiples of the vector width, plus chunked-versus-whole checks for the ops that carry
 * state (conv history, scan state). Prints the max difference of every comparison. */
#include "../../src/internal.h"
#include "../../src/simd.h"
#include "testutil.h"
#include "tolerance.h"

static void report(const char *what, float diff, float ref_max, double t) {
  float lim = (float)(t * (ref_max > 1.0f ? ref_max : 1.0f));
  printf("  %-44s maxdiff %.3g (limit %.3g)\n", what, diff, lim);
  CHECK(diff <= lim, "%s: maxdiff %g > %g", what, diff, lim);
}

static void test_exp(void) {
  float worst = 0;
  for (int i = 0; i <= 200000; i++) {
    float x = -87.0f + 175.0f * (float)i / 200000.0f;
    f32x4 v = v_exp(v_splat(x));
    float ref = expf(x);
    float rel = fabsf(v[0] - ref) / ref;
    if (rel > worst) worst = rel;
  }
  printf("  %-44s max rel err %.3g (limit %.3g)\n", "v_exp vs expf on [-87, 88]", worst, tol("exp_rel"));
  CHECK(worst <= tol("exp_rel"), "v_exp rel err %g", worst);
  f32x4 lo = v_exp(v_splat(-1000.0f)), hi = v_exp(v_splat(-INFINITY));
  CHECK(lo[0] >= 0 && lo[0] < tol("exp_underflow_abs") && hi[0] >= 0 && hi[0] < tol("exp_underflow_abs"), "v_exp(-big) = %g", lo[0]);
}

static void test_matmul(void) {
  const int shapes[][3] = {{1, 32, 128}, {17, 32, 128}, {2, 64, 18}, {5, 7, 3}, {3, 33, 9},
                           {130, 100, 37}, {1, 768, 50}, {64, 13, 1}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int T = shapes[s][0], C = shapes[s][1], OC = shapes[s][2];
    float *x = malloc(sizeof(float) * T * C), *w = malloc(sizeof(float) * OC * C);
    float *b = malloc(sizeof(float) * OC), *o1 = malloc(sizeof(float) * T * OC),
          *o2 = malloc(sizeof(float) * T * OC);
    fill_rand(x, (size_t)T * C, -1, 1);
    fill_rand(w, (size_t)OC * C, -1, 1);
    fill_rand(b, OC, -1, 1);
    for (int withb = 0; withb < 2; withb++) {
      matmul_forward_scalar(o1, x, w, withb ? b : NULL, T, C, OC);
      matmul_forward_simd(o2, x, w, withb ? b : NULL, T, C, OC);
      char name[96];
      snprintf(name, sizeof name, "matmul T=%d C=%d OC=%d bias=%d", T, C, OC, withb);
      report(name, max_abs_diff(o1, o2, (size_t)T * OC), max_abs(o1, (size_t)T * OC),
             tol("simd_vs_scalar_rel") * sqrt((double)C));
    }
    /* backward (input gradient): dout = o1 as a gradient */
    float *d1 = calloc((size_t)T * C, sizeof(float)), *d2 = calloc((size_t)T * C, sizeof(float));
    mb_set_simd(1);
    matmul_backward_input_scalar(d1, o1, w, T, C, OC);
    matmul_backward_input(d2, o1, w, T, C, OC);
    char bname[96];
    snprintf(bname, sizeof bname, "matmul backward T=%d C=%d OC=%d", T, C, OC);
    report(bname, max_abs_diff(d1, d2, (size_t)T * C), max_abs(d1, (size_t)T * C), tol("simd_vs_scalar_rel") * sqrt((double)OC));
    free(d1); free(d2);
    free(x); free(w); free(b); free(o1); free(o2);
  }
}

static void test_conv(void) {
  const int shapes[][3] = {{9, 64, 4}, {1, 64, 4}, {5, 12, 3}, {6, 7, 4}, {2, 16, 5}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int L = shapes[s][0], E = shapes[s][1], K = shapes[s][2], stride = 2 * E;
    float *x = malloc(sizeof(float) * L * stride), *w = malloc(sizeof(float) * E * K);
    float *b = malloc(sizeof(float) * E), *u1 = malloc(sizeof(float) * L * E),
          *u2 = malloc(sizeof(float) * L * E), *u3 = malloc(sizeof(float) * L * E);
    float *h1 = calloc((size_t)(K - 1) * E, sizeof(float)), *h2 = calloc((size_t)(K - 1) * E, sizeof(float));
    fill_rand(x, (size_t)L * stride, -2, 2);
    fill_rand(w, (size_t)E * K, -1, 1);
    fill_rand(b, E, -1, 1);
    float *xc1 = malloc(sizeof(float) * L * E), *xc2 = malloc(sizeof(float) * L * E);
    conv1d_silu_forward_scalar(u1, xc1, NULL, x, stride, w, b, L, E, K);
    mb_set_simd(1);
    conv1d_silu_forward(u2, xc2, h1, x, stride, w, b, L, E, K);
    CHECK(memcmp(xc1, xc2, sizeof(float) * L * E) == 0, "conv pre-activation simd vs scalar differs");
    free(xc1); free(xc2);
    char name[96];
    snprintf(name, sizeof name, "conv1d+silu L=%d E=%d K=%d simd vs scalar", L, E, K);
    report(name, max_abs_diff(u1, u2, (size_t)L * E), max_abs(u1, (size_t)L * E), tol("simd_vs_scalar_rel"));
    /* token by token with history == whole sequence; history ends equal */
    for (int t = 0; t < L; t++)
      conv1d_silu_forward_scalar(u3 + (size_t)t * E, NULL, h2, x + (size_t)t * stride, stride, w, b, 1, E, K);
    snprintf(name, sizeof name, "conv1d L=%d E=%d K=%d stepwise vs whole", L, E, K);
    report(name, max_abs_diff(u1, u3, (size_t)L * E), max_abs(u1, (size_t)L * E), tol("decode_vs_forward_rel"));
    CHECK(max_abs_diff(h1, h2, (size_t)(K - 1) * E) == 0.0f, "conv history differs");
    free(x); free(w); free(b); free(u1); free(u2); free(u3); free(h1); free(h2);
  }
}

static void test_scan(void) {
  const int shapes[][3] = {{13, 64, 8}, {1, 32, 16}, {7, 5, 4}, {4, 6, 3}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int L = shapes[s][0], E = shapes[s][1], N = shapes[s][2], stride = 2 * N + 3;
    size_t LE = (size_t)L * E, EN = (size_t)E * N;
    float *u = malloc(sizeof(float) * LE), *delta = malloc(sizeof(float) * LE);
    float *bc = malloc(sizeof(float) * L * stride), *A = malloc(sizeof(float) * EN);
    float *D = malloc(sizeof(float) * E), *y1 = malloc(sizeof(float) * LE),
          *y2 = malloc(sizeof(float) * LE), *y3 = malloc(sizeof(float) * LE);
    float *s1 = malloc(sizeof(float) * EN), *s2 = malloc(sizeof(float) * EN), *s3 = malloc(sizeof(float) * EN);
    fill_rand(u, LE, -2, 2);
    fill_rand(delta, LE, 0.001f, 2.0f);
    fill_rand(bc, (size_t)L * stride, -1, 1);
    for (size_t i = 0; i < EN; i++) A[i] = -expf(frand(-1, 2));
    fill_rand(D, E, 0, 2);
    fill_rand(s1, EN, -1, 1);
    memcpy(s2, s1, sizeof(float) * EN);
    memcpy(s3, s1, sizeof(float) * EN);
    selective_scan_forward_scalar(y1, s1, NULL, u, delta, bc, stride, A, D, L, E, N);
    mb_set_simd(1);
    selective_scan_forward(y2, s2, NULL, u, delta, bc, stride, A, D, L, E, N);
    char name[96];
    snprintf(name, sizeof name, "scan L=%d E=%d N=%d simd vs scalar", L, E, N);
    report(name, max_abs_diff(y1, y2, LE), max_abs(y1, LE), tol("scan_simd_vs_scalar_rel"));
    report("  final state", max_abs_diff(s1, s2, EN), max_abs(s1, EN), tol("scan_simd_vs_scalar_rel"));
    for (int t = 0; t < L; t++)
      selective_scan_forward_scalar(y3 + (size_t)t * E, s3, NULL, u + (size_t)t * E, delta + (size_t)t * E,
                                    bc + (size_t)t * stride, stride, A, D, 1, E, N);
    snprintf(name, sizeof name, "scan L=%d E=%d N=%d stepwise vs whole", L, E, N);
    CHECK(max_abs_diff(y1, y3, LE) == 0.0f && max_abs_diff(s1, s3, EN) == 0.0f, "%s differs", name);
    free(u); free(delta); free(bc); free(A); free(D); free(y1); free(y2); free(y3);
    free(s1); free(s2); free(s3);
  }
}

/* the training scan (states kept) and its backward: SIMD vs scalar */
static void test_scan_train(void) {
  int L = 9, E = 300, N = 8, stride = 2 * N + 5; /* E: 3 channel groups of the grouped backward */
  size_t LE = (size_t)L * E, EN = (size_t)E * N;
  float *u = malloc(sizeof(float) * LE), *delta = malloc(sizeof(float) * LE), *bc = malloc(sizeof(float) * L * stride);
  float *A = malloc(sizeof(float) * EN), *D = malloc(sizeof(float) * E), *s0 = calloc(EN, sizeof(float));
  float *y1 = malloc(sizeof(float) * LE), *y2 = malloc(sizeof(float) * LE);
  float *st1 = malloc(sizeof(float) * LE * N), *st2 = malloc(sizeof(float) * LE * N), *dy = malloc(sizeof(float) * LE);
  fill_rand(u, LE, -2, 2);
  fill_rand(delta, LE, 0.01f, 1.5f);
  fill_rand(bc, (size_t)L * stride, -1, 1);
  for (size_t i = 0; i < EN; i++) A[i] = -expf(frand(-1, 2));
  fill_rand(D, E, 0, 2);
  fill_rand(dy, LE, -1, 1);
  float *sa = calloc(EN, sizeof(float)), *sb = calloc(EN, sizeof(float));
  selective_scan_forward_scalar(y1, sa, st1, u, delta, bc, stride, A, D, L, E, N);
  mb_set_simd(1);
  selective_scan_forward(y2, sb, st2, u, delta, bc, stride, A, D, L, E, N);
  report("training scan (states kept) simd vs scalar", max_abs_diff(y1, y2, LE), max_abs(y1, LE), tol("scan_simd_vs_scalar_rel"));
  report("  kept states", max_abs_diff(st1, st2, LE * N), max_abs(st1, LE * N), tol("scan_simd_vs_scalar_rel"));
  CHECK(memcmp(sa, st1 + (LE - E) * N, EN * sizeof(float)) == 0, "the last kept state is not the final state");
  free(sa); free(sb);
  float *g1[3], *g2[3], *ds = malloc(sizeof(float) * EN);
  size_t sz[3] = {LE, LE, (size_t)L * stride};
  for (int i = 0; i < 3; i++) { g1[i] = calloc(sz[i], sizeof(float)); g2[i] = calloc(sz[i], sizeof(float)); }
  selective_scan_backward_scalar(g1[0], g1[1], g1[2], ds, dy, st1, s0, u, delta, bc, stride, A, D, L, E, N);
  selective_scan_backward(g2[0], g2[1], g2[2], ds, NULL, dy, st1, s0, u, delta, bc, stride, A, D, L, E, N);
  const char *names[3] = {"scan backward du simd vs scalar", "scan backward ddelta simd vs scalar", "scan backward dB, dC simd vs scalar"};
  for (int i = 0; i < 3; i++) {
    report(names[i], max_abs_diff(g1[i], g2[i], sz[i]), max_abs(g1[i], sz[i]), tol("scan_backward_simd_vs_scalar_rel"));
    memset(g2[i], 0, sz[i] * sizeof(float));
  }
  /* in channel groups, each with its own dB / dC sums (what training runs, over the thread pool) */
  float *part = malloc(sizeof(float) * scan_backward_part_floats(L, E, N));
  selective_scan_backward(g2[0], g2[1], g2[2], ds, part, dy, st1, s0, u, delta, bc, stride, A, D, L, E, N);
  const char *gnames[3] = {"scan backward in groups: du vs scalar", "  ddelta", "  dB, dC (summed per group)"};
  for (int i = 0; i < 3; i++) {
    report(gnames[i], max_abs_diff(g1[i], g2[i], sz[i]), max_abs(g1[i], sz[i]), tol("scan_backward_simd_vs_scalar_rel"));
    free(g1[i]); free(g2[i]);
  }
  free(part);
  free(u); free(delta); free(bc); free(A); free(D); free(s0); free(y1); free(y2); free(st1); free(st2); free(dy); free(ds);
}

static void test_gate(void) {
  int T = 7, E = 20, stride = 45;
  float *y1 = malloc(sizeof(float) * T * E), *y2 = malloc(sizeof(float) * T * E);
  float *g = malloc(sizeof(float) * T * stride);
  fill_rand(y1, (size_t)T * E, -3, 3);
  memcpy(y2, y1, sizeof(float) * T * E);
  fill_rand(g, (size_t)T * stride, -30, 30);
  gate_forward_scalar(y1, y1, g, stride, T, E);
  mb_set_simd(1);
  gate_forward(y2, y2, g, stride, T, E);
  report("gate y*silu(z) simd vs scalar", max_abs_diff(y1, y2, (size_t)T * E), max_abs(y1, (size_t)T * E),
         tol("simd_vs_scalar_rel"));
  free(y1); free(y2); free(g);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("# test_ops\n");
  test_exp();
  test_matmul();
  test_conv();
  test_scan();
  test_scan_train();
  test_gate();
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
