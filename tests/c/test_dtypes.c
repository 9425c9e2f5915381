/* test_dtypes.c: f16 and q8 weights in memory (issue "16-bit and 8-bit weights"). The formats
 * (every half round-trips; f32 -> f16 rounds to the nearest half, ties to even; q8 within half a
 * step of its block scale), the SIMD decoders against the scalar ones bit for bit, typed matmuls
 * against the float32 kernels on the decoded weights (bit for bit) and their scalar references,
 * the input-gradient through typed weights, and whole typed models against a float32 twin holding
 * the decoded weights: the forward of many tokens (decoded rows, float32 kernel) and its loss
 * bit for bit for both dtypes; decode within the table (q8 decode is q8_0 x q8_0: it also
 * quantises each input); training gradients within the table. */
#include "../../src/internal.h"
#include "testmodel.h"
#include "testutil.h"
#include "tolerance.h"

static float bits_f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void test_f16_format(void) {
  printf(" f16 format\n");
  int bad_rt = 0, bad_simd = 0;
  static uint16_t all[65536];
  static float dec_s[65536], dec_v[65536];
  for (uint32_t h = 0; h < 65536; h++) all[h] = (uint16_t)h;
  f16_row_to_f32_scalar(dec_s, all, 65536);
  mb_set_simd(1);
  dtype_rows_to_f32(dec_v, all, MB_DT_F16, 1, 65536);
  for (uint32_t h = 0; h < 65536; h++) {
    int nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
    if (!nan && f32_to_f16(dec_s[h]) != h) bad_rt++;
    if (memcmp(&dec_s[h], &dec_v[h], 4) && !nan) bad_simd++;
  }
  printf("  65536 halves: %d do not round-trip, %d differ between SIMD and scalar decoding\n", bad_rt, bad_simd);
  CHECK(bad_rt == 0 && bad_simd == 0, "f16 round trip / SIMD decode");
  CHECK(f16_to_f32(0x3c00) == 1.0f && f16_to_f32(0xc000) == -2.0f && f16_to_f32(0x0001) == bits_f(0x33800000u), "known halves");
  /* rounding: the nearest half, ties to even, over random floats of every magnitude */
  int bad_round = 0;
  for (int i = 0; i < 200000; i++) {
    float x = frand(-1, 1) * powf(2.0f, (float)(i % 40) - 26);
    uint16_t h = f32_to_f16(x);
    double v = f16_to_f32(h), lo = f16_to_f32((uint16_t)(h - 1)), hi = f16_to_f32((uint16_t)(h + 1));
    double e = fabs(v - x);
    if ((h & 0x7fff) && (h & 0x7fff) < 0x7bff && (fabs(lo - x) < e || fabs(hi - x) < e)) bad_round++;
    if ((fabs(lo - x) == e || fabs(hi - x) == e) && (h & 1) && e > 0) bad_round++; /* a tie not to even */
  }
  printf("  200000 random floats: %d not rounded to the nearest half (ties to even)\n", bad_round);
  CHECK(bad_round == 0, "f32 -> f16 rounding");
  CHECK(f32_to_f16(65504.0f) == 0x7bff && f32_to_f16(65520.0f) == 0x7c00 && f32_to_f16(-1e-9f) == 0x8000, "range ends");
}

static void test_q8_format(void) {
  printf(" q8 format\n");
  int C = 100; /* three full blocks and a partial one */
  float x[2 * 100], back[2 * 100], back_s[2 * 100];
  fill_rand(x, 2 * C, -3, 3);
  x[7] = 0; /* a zero and a constant block */
  for (int c = 64; c < 96; c++) x[c] = 0.0f;
  size_t rb = dtype_row_bytes(MB_DT_Q8, C);
  CHECK(rb == 4 * Q8_BLOCK_BYTES, "row bytes %zu", rb);
  uint8_t *q = malloc(2 * rb);
  CHECK(dtype_rows_from_f32(q, x, MB_DT_Q8, 2, C) == MB_OK, "quantize");
  mb_set_simd(1);
  dtype_rows_to_f32(back, q, MB_DT_Q8, 2, C);
  q8_row_to_f32_scalar(back_s, q, C);
  q8_row_to_f32_scalar(back_s + C, q + rb, C);
  CHECK(memcmp(back, back_s, sizeof back) == 0, "SIMD and scalar q8 decoding differ");
  float worst = 0;
  for (int r = 0; r < 2; r++)
    for (int b = 0; b * 32 < C; b++) {
      float amax = 0;
      for (int j = b * 32; j < (b + 1) * 32 && j < C; j++) amax = fmaxf(amax, fabsf(x[r * C + j]));
      float d = f16_to_f32(f32_to_f16(amax / 127.0f));
      for (int j = b * 32; j < (b + 1) * 32 && j < C; j++) {
        float e = fabsf(back[r * C + j] - x[r * C + j]) / (d > 0 ? d : 1);
        worst = fmaxf(worst, e);
      }
    }
  printf("  worst |decoded - x| = %.4f of the block's step (limit 0.5 + rounding of the f16 scale)\n", worst);
  CHECK(worst <= 0.5f + 127.0f * 0.000489f, "q8 error past half a step");
  CHECK(back[64] == 0.0f && back[95] == 0.0f, "a zero block decodes to zeros");
  float bad[1] = {NAN};
  CHECK(dtype_rows_from_f32(q, bad, MB_DT_Q8, 1, 1) == MB_ERR_INVALID_ARG, "NaN quantised");
  float big[1] = {70000.0f};
  CHECK(dtype_rows_from_f32(q, big, MB_DT_F16, 1, 1) == MB_ERR_INVALID_ARG, "70000 accepted as f16");
  free(q);
}

/* typed linear_forward / backward against the float32 kernels on the decoded weights */
static void test_typed_matmul(mb_dtype dt, const char *name) {
  printf(" %s matmul\n", name);
  const int shapes[][3] = {{1, 768, 64}, {1, 100, 37}, {1, 100, 3}, {1, 101, 37}, {1, 20000, 5}, {3, 48, 130}, {9, 768, 43}, {70, 100, 37}, {2, 20000, 5}};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    int T = shapes[k][0], C = shapes[k][1], OC = shapes[k][2];
    size_t rb = dtype_row_bytes(dt, C);
    float *w = malloc(sizeof(float) * OC * C), *dec = malloc(sizeof(float) * OC * C);
    float *x = malloc(sizeof(float) * T * C), *bias = malloc(sizeof(float) * OC);
    float *typed = malloc(sizeof(float) * T * OC), *ref = malloc(sizeof(float) * T * OC), *scal = malloc(sizeof(float) * T * OC);
    uint8_t *data = malloc(rb * OC);
    fill_rand(w, (size_t)OC * C, -0.2f, 0.2f);
    fill_rand(x, (size_t)T * C, -1, 1);
    if (C == 101) x[3] = 70000.0f; /* past 2^16: the f16 decode kernel's other path (weights rebiased) */
    fill_rand(bias, OC, -0.1f, 0.1f);
    CHECK(dtype_rows_from_f32(data, w, dt, OC, C) == MB_OK, "encode");
    dtype_rows_to_f32(dec, data, dt, OC, C);
    mb_slot s = {dt, data, (size_t)OC * C, (size_t)C, rb * OC}, bs = {MB_DT_F32, bias, (size_t)OC, (size_t)OC, 4 * (size_t)OC};
    mb_set_simd(1);
    linear_forward(typed, x, &s, &bs, T, C, OC);
    matmul_forward(ref, x, dec, bias, T, C, OC);
    mb_set_simd(0);
    linear_forward(scal, x, &s, &bs, T, C, OC);
    float *scal_ref = malloc(sizeof(float) * T * OC);
    matmul_forward_scalar(scal_ref, x, dec, bias, T, C, OC);
    mb_set_simd(1);
    char what[96];
    int wide = C > 16384;
    if (dt == MB_DT_Q8) { /* q8 x q8 (any T): the SIMD kernel equals its scalar reference bit for bit */
      snprintf(what, sizeof what, "T=%d C=%d OC=%d: SIMD vs scalar q8 x q8 (bitwise)", T, C, OC);
      float *qs = malloc(sizeof(float) * T * OC), *qv = malloc(sizeof(float) * T * OC);
      q8_matmul_scalar(qs, x, &s, bias, T, C, OC);
      q8_matmul(qv, x, &s, bias, T, C, OC);
      printf("  %-64s maxdiff %.3g\n", what, max_abs_diff(qv, qs, (size_t)T * OC));
      CHECK(memcmp(qv, qs, sizeof(float) * T * OC) == 0, "%s", what);
      snprintf(what, sizeof what, "T=%d C=%d OC=%d: q8 x q8 vs float32 on decoded (input quantised)", T, C, OC);
      compare(what, qv, ref, (size_t)T * OC, tol("q8_act_rel") * fmax(1.0, sqrt((double)C / 768))); /* the error grows as sqrt(C) */
      if (T < 4) /* decode: linear_forward is q8 x q8 */
        CHECK(memcmp(typed, qs, sizeof(float) * T * OC) == 0 && memcmp(scal, qs, sizeof(float) * T * OC) == 0, "linear_forward T<4 is not q8 x q8");
      free(qs), free(qv);
    }
    if (!wide && !(dt == MB_DT_Q8 && T < 4)) { /* many tokens (both dtypes), or f16 decode */
      snprintf(what, sizeof what, "T=%d C=%d OC=%d: SIMD vs f32 kernel on decoded (bitwise)", T, C, OC);
      float d = max_abs_diff(typed, ref, (size_t)T * OC);
      printf("  %-64s maxdiff %.3g\n", what, d);
      CHECK(memcmp(typed, ref, sizeof(float) * T * OC) == 0, "%s", what);
      CHECK(memcmp(scal, scal_ref, sizeof(float) * T * OC) == 0, "scalar typed vs scalar f32 on decoded");
    }
    if (!(dt == MB_DT_Q8 && T < 4)) {
      snprintf(what, sizeof what, "T=%d C=%d OC=%d: SIMD vs scalar reference", T, C, OC);
      compare(what, typed, scal_ref, (size_t)T * OC, tol("simd_vs_scalar_rel"));
    }
    /* input gradient */
    float *dout = malloc(sizeof(float) * T * OC), *g1 = calloc((size_t)T * C, 4), *g2 = calloc((size_t)T * C, 4);
    fill_rand(dout, (size_t)T * OC, -1, 1);
    linear_backward_input(g1, dout, &s, T, C, OC);
    matmul_backward_input_scalar(g2, dout, dec, T, C, OC);
    snprintf(what, sizeof what, "T=%d C=%d OC=%d: backward vs scalar f32 on decoded", T, C, OC);
    compare(what, g1, g2, (size_t)T * C, tol("simd_vs_scalar_rel"));
    free(w), free(dec), free(x), free(bias), free(typed), free(ref), free(scal), free(scal_ref), free(data);
    free(dout), free(g1), free(g2);
  }
}

/* A random typed model and its float32 twin holding the decoded weights: the same logits bit for
 * bit, the same decode steps, and training gradients within the table. */
static void test_typed_model(mb_dtype dt, const char *name) {
  printf(" %s model vs its decoded float32 twin\n", name);
  mb_config c = {.d_model = 64, .n_layer = 2, .vocab_size = 96, .d_state = 8, .d_conv = 4, .d_inner = 128,
                 .dt_rank = 4, .eps = 1e-5f, .tied_head = 0, .use_bias = 1};
  mb_model *m = NULL, *twin = NULL, *f32 = NULL;
  CHECK(mb_model_new_typed(&c, dt, &m) == MB_OK, "new typed: %s", mb_last_error());
  CHECK(mb_model_new(&c, &twin) == MB_OK && mb_model_new(&c, &f32) == MB_OK, "new f32");
  CHECK(mb_model_init_random(m, 9) == MB_OK && mb_model_init_random(f32, 9) == MB_OK, "init");
  size_t tb = mb_model_weight_bytes(m), fb = mb_model_weight_bytes(f32);
  printf("  weight bytes: %s %zu, f32 %zu (%.2fx)\n", name, tb, fb, (double)fb / tb);
  CHECK(tb < fb * (dt == MB_DT_F16 ? 0.6 : 0.36), "typed weights not smaller"); /* the f32 small tensors weigh much in so small a model */
  /* the twin: every parameter decoded to float32 */
  for (int l = -1; l < c.n_layer; l++)
    for (int p = l < 0 ? 0 : MB_P_LAYER0; p < (l < 0 ? MB_P_LAYER0 : MB_P_COUNT); p++) {
      size_t n, n2;
      mb_dtype pd = (mb_dtype)mb_model_param_dtype(m, (mb_param)p, l, &n);
      float *dst = mb_model_param(twin, (mb_param)p, l, &n2);
      if (!n) continue;
      CHECK(dst && n2 == n, "twin param %d layer %d", p, l);
      const mb_slot *s = model_slot(m, (mb_param)p, l);
      dtype_rows_to_f32(dst, mb_model_param_raw(m, (mb_param)p, l, NULL), pd, n / s->cols, s->cols);
    }
  CHECK(mb_model_finalize(twin) == MB_OK, "twin finalize");
  int32_t ids[2 * 12];
  for (int i = 0; i < 24; i++) ids[i] = (i * 37 + 5) % 96;
  float lt[2 * 12 * 96], lw[2 * 12 * 96], lf[2 * 12 * 96];
  CHECK(mb_forward(m, ids, 2, 12, MB_LOGITS_ALL, lt, NULL, NULL) == MB_OK, "typed forward: %s", mb_last_error());
  CHECK(mb_forward(twin, ids, 2, 12, MB_LOGITS_ALL, lw, NULL, NULL) == MB_OK, "twin forward");
  CHECK(mb_forward(f32, ids, 2, 12, MB_LOGITS_ALL, lf, NULL, NULL) == MB_OK, "f32 forward");
  /* many tokens: f16 and q8 rows are decoded to float32 and run through the float32 kernel */
  float d = max_abs_diff(lt, lw, sizeof lt / 4);
  printf("  logits vs the twin: maxdiff %.3g (bit for bit expected)\n", d);
  CHECK(memcmp(lt, lw, sizeof lt) == 0, "typed logits differ from the decoded twin's");
  compare(dt == MB_DT_F16 ? "logits vs float32 weights (f16 rounding)" : "logits vs float32 weights (q8 rounding)", lt, lf,
          sizeof lt / 4, tol(dt == MB_DT_F16 ? "f16_weights_logits_rel" : "q8_weights_logits_rel"));
  /* decode steps equal the full forward */
  mb_state *s = new_state(m, 2);
  float step[2 * 96], worst = 0;
  for (int t = 0; t < 12 && s; t++) {
    int32_t pair[2] = {ids[t], ids[12 + t]};
    CHECK(mb_step(m, s, pair, step) == MB_OK, "step");
    for (int b = 0; b < 2; b++) worst = fmaxf(worst, max_abs_diff(step + b * 96, lt + ((size_t)b * 12 + t) * 96, 96));
  }
  /* q8 decode (a batch of 2: q8 x q8) also quantises each input, the forward does not */
  double lim = tol(dt == MB_DT_F16 ? "decode_vs_forward_rel" : "q8_act_rel");
  printf("  decode vs forward: maxdiff %.3g (limit %.3g)\n", worst, lim);
  CHECK(worst <= lim * fmaxf(1, max_abs(lt, sizeof lt / 4)), "decode differs");
  mb_state_free(s);
  /* training through the frozen typed base: the same gradients as through the twin */
  mb_adapter_config ac = {.r = 4, .alpha = 8, .targets = (1 << MB_T_IN_PROJ) | (1 << MB_T_OUT_PROJ) | (1 << MB_T_X_PROJ) | (1 << MB_T_DT_PROJ)};
  mb_adapter *a = new_adapter(m, &ac), *aw = new_adapter(twin, &ac);
  mb_adapter_init(a, 4), mb_adapter_init(aw, 4);
  adapter_nudge(a, 0.05f), adapter_nudge(aw, 0.05f);
  mb_model_set_adapter(m, a), mb_model_set_adapter(twin, aw);
  int32_t labels[24];
  for (int i = 0; i < 24; i++) labels[i] = i % 12 == 11 ? -100 : ids[i + 1];
  float loss_t, loss_w;
  mb_adapter_zero_grad(a), mb_adapter_zero_grad(aw);
  CHECK(mb_train_backward(m, ids, labels, 2, 12, 1, &loss_t) == MB_OK, "typed backward: %s", mb_last_error());
  CHECK(mb_train_backward(twin, ids, labels, 2, 12, 1, &loss_w) == MB_OK, "twin backward");
  printf("  loss typed %.7f, twin %.7f\n", loss_t, loss_w);
  CHECK(loss_t == loss_w, "losses differ");
  size_t n;
  float *gt = mb_adapter_block(a, 1, &n), *gw = mb_adapter_block(aw, 1, NULL);
  compare("LoRA gradients vs the twin", gt, gw, n, tol(dt == MB_DT_F16 ? "grad_rel_to_max" : "q8_grad_rel_to_max") * (double)max_abs(gw, n));
  CHECK(mb_adapter_merge(m, a) == MB_ERR_STATE, "merge into typed weights accepted");
  mb_model_set_adapter(m, NULL), mb_model_set_adapter(twin, NULL);
  mb_adapter_free(a), mb_adapter_free(aw);
  mb_model_free(m), mb_model_free(twin), mb_model_free(f32);
}

static void test_param_write(void) {
  printf(" mb_model_param_write\n");
  mb_config c = {.d_model = 8, .n_layer = 1, .vocab_size = 10, .d_state = 2, .d_conv = 2, .d_inner = 16,
                 .dt_rank = 1, .eps = 1e-5f, .tied_head = 1};
  mb_model *m = NULL;
  CHECK(mb_model_new_typed(&c, MB_DT_F16, &m) == MB_OK, "new");
  float rows[2 * 8] = {0};
  CHECK(mb_model_param_write(m, MB_P_EMBEDDING, -1, 8, 2, rows) == MB_OK, "last two rows");
  CHECK(mb_model_param_write(m, MB_P_EMBEDDING, -1, 9, 2, rows) == MB_ERR_INVALID_ARG, "rows past the end accepted");
  CHECK(mb_model_param_write(m, MB_P_EMBEDDING, -1, (size_t)-1, 2, rows) == MB_ERR_INVALID_ARG, "wrapping row0 accepted");
  CHECK(mb_model_param_write(m, MB_P_LM_HEAD, -1, 0, 1, rows) == MB_ERR_INVALID_ARG, "tied head written");
  CHECK(mb_model_param(m, MB_P_EMBEDDING, -1, NULL) == NULL, "f32 pointer to an f16 slot");
  CHECK(mb_model_param(m, MB_P_NORM, 0, NULL) != NULL, "small tensors stay f32");
  mb_model *bad = NULL;
  CHECK(mb_model_new_typed(&c, (mb_dtype)7, &bad) == MB_ERR_INVALID_ARG && !bad, "unknown dtype accepted");
  mb_model_free(m);
}

/* Non-finite inputs to the q8 x q8 kernel (found by fuzz_config: an inf activation was converted
 * to int, undefined behaviour): a block holding an inf or nan gives nan outputs, SIMD and scalar,
 * as the float32 kernel would; other tokens are untouched. */
static void test_q8_nonfinite(void) {
  printf(" q8 x q8 with inf / nan inputs\n");
  enum { C = 64, OC = 6 };
  float w[OC * C], x[2 * C], a[2 * OC], b[2 * OC], bias[OC] = {0};
  fill_rand(w, OC * C, -0.2f, 0.2f);
  uint8_t data[OC * 2 * Q8_BLOCK_BYTES]; /* 2 blocks a row */
  size_t rb = dtype_row_bytes(MB_DT_Q8, C);
  CHECK(rb * OC <= sizeof data && dtype_rows_from_f32(data, w, MB_DT_Q8, OC, C) == MB_OK, "encode");
  mb_slot s = {MB_DT_Q8, data, (size_t)OC * C, (size_t)C, rb * OC};
  const float bad[3] = {INFINITY, -INFINITY, NAN};
  for (int k = 0; k < 3; k++) {
    fill_rand(x, 2 * C, -1, 1);
    x[C + 40] = bad[k]; /* token 1, second block */
    q8_matmul(a, x, &s, bias, 2, C, OC);
    q8_matmul_scalar(b, x, &s, bias, 2, C, OC);
    int ok = 1;
    for (int o = 0; o < OC; o++) ok &= isfinite(a[o]) && isfinite(b[o]) && a[o] == b[o] && isnan(a[OC + o]) && isnan(b[OC + o]);
    CHECK(ok, "input %g: token 0 finite and equal, token 1 nan", bad[k]);
  }
  /* a block of subnormal inputs (1/scale overflows float32): finite, SIMD = scalar */
  fill_rand(x, 2 * C, -1, 1);
  for (int j = 32; j < 64; j++) x[j] = (float)(j - 40) * 1e-44f;
  q8_matmul(a, x, &s, bias, 2, C, OC);
  q8_matmul_scalar(b, x, &s, bias, 2, C, OC);
  int ok = 1;
  for (int o = 0; o < 2 * OC; o++) ok &= isfinite(a[o]) && a[o] == b[o];
  CHECK(ok, "subnormal block: finite, SIMD equals scalar");
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("# test_dtypes\n");
  test_f16_format();
  test_q8_format();
  test_typed_matmul(MB_DT_F16, "f16");
  test_typed_matmul(MB_DT_Q8, "q8");
  test_typed_model(MB_DT_F16, "f16");
  test_typed_model(MB_DT_Q8, "q8");
  test_param_write();
  test_q8_nonfinite();
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
