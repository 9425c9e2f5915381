/* test_adapter.c: Memba adapters in the C core against the golden vectors of memba-tiny-paper,
 * -stream and -short: logits, LIM gate inputs lim_v.{l}, log-likelihoods; the causal streaming
 * decode (stream case) against the full forward at every position; merge vs unmerged; a fresh
 * adapter without LIM equals the base model bit for bit; adapter switching; bad configs. */
#include "../../src/memba.h"
#include "../../src/memba_backend.h"
#include "testmodel.h"
#include "testutil.h"
#include "tolerance.h"
#include "cases.h"


static void test_case(const gcase *gc) {
  printf(" %s\n", gc->dir);
  mb_adapter *a;
  mb_model *m = load_case(gc, &a);
  char path[256];
  int B = gc->B, L = gc->L, V = 64, E = 64;
  size_t BLV = (size_t)B * L * V, BLE = (size_t)B * L * E;
  float *logits = malloc(sizeof(float) * BLV), *v = malloc(sizeof(float) * gc->n_layer * BLE);
  float *u0 = malloc(sizeof(float) * gc->n_layer * BLE);
  snprintf(path, sizeof path, "%sexpected.safetensors", gc->dir);
  st_file e;
  CHECK(st_open(&e, path), "open %s", path);
  size_t n;
  float *want = st_get(&e, "logits", &n);
  for (int simd = 0; simd < 2; simd++) {
    mb_set_simd(simd);
    CHECK(mb_forward(m, gc->ids, B, L, MB_LOGITS_ALL, logits, NULL, NULL) == MB_OK, "forward: %s", mb_last_error());
    compare(simd ? "logits (simd)" : "logits (scalar)", logits, want, n, tol("logits_rel"));
  }
  int32_t clen = 0;
  CHECK(mb_inspect(m, gc->ids, B, L, v, u0, &clen) == MB_OK, "inspect: %s", mb_last_error());
  for (int l = 0; l < gc->n_layer; l++) {
    char name[32];
    snprintf(name, sizeof name, "lim_v.%d", l);
    float *wv = st_get(&e, name, &n);
    compare(name, v + l * BLE, wv, n, tol("hidden_rel"));
    free(wv);
  }
  /* log-likelihood after the prompt */
  float *ll = st_get(&e, "loglik_after_prompt", &n), *lp = malloc(sizeof(float) * B * L);
  CHECK(mb_score(m, gc->ids, B, L, gc->P, lp) == MB_OK, "score");
  for (int b = 0; b < B; b++) {
    float sum = 0;
    for (int t = gc->P; t < L; t++) sum += lp[b * L + t];
    char what[64];
    snprintf(what, sizeof what, "loglik_after_prompt[%d] = %.5f", b, sum);
    compare(what, &sum, &ll[b], 1, tol("loglik_rel"));
  }
  /* merged == unmerged */
  CHECK(mb_adapter_merge(m, a) == MB_OK && mb_adapter_merged(a), "merge");
  float *merged = malloc(sizeof(float) * BLV);
  CHECK(mb_forward(m, gc->ids, B, L, MB_LOGITS_ALL, merged, NULL, NULL) == MB_OK, "merged forward");
  compare("merged vs unmerged logits", merged, logits, BLV, tol("merge_rel"));
  CHECK(mb_adapter_unmerge(m, a) == MB_OK && !mb_adapter_merged(a), "unmerge");
  /* causal LIM: token by token with the state equals the full forward */
  if (mb_adapter_causal(a)) {
    mb_state *s = new_state(m, B);
    float step[64 * 2], worst = 0;
    for (int t = 0; t < L; t++) {
      int32_t col[2];
      for (int b = 0; b < B; b++) col[b] = gc->ids[b * L + t];
      CHECK(mb_step(m, s, col, step) == MB_OK, "step: %s", mb_last_error());
      for (int b = 0; b < B; b++) {
        float dd = max_abs_diff(step + b * V, logits + ((size_t)b * L + t) * V, V);
        worst = dd > worst ? dd : worst;
      }
    }
    printf("  %-48s maxdiff %.3g\n", "streaming decode vs full forward (every position)", worst);
    CHECK(worst <= tol("decode_vs_forward_rel") * max_abs(logits, BLV), "streaming decode differs: %g", worst);
    /* the state belongs to this adapter: without it the shapes differ */
    mb_model_set_adapter(m, NULL);
    CHECK(mb_step(m, s, gc->ids, step) == MB_ERR_SHAPE, "state of another adapter accepted");
    mb_model_set_adapter(m, a);
    mb_state_free(s);
  } else {
    mb_state *s = new_state(m, B);
    float step[64 * 2];
    CHECK(mb_step(m, s, gc->ids, step) == MB_ERR_STATE, "non-causal LIM decoded with a state");
    mb_state_free(s);
  }
  free(want); free(ll); free(lp); free(merged);
  st_close(&e);
  free(logits); free(v); free(u0);
  mb_adapter_free(a); /* while active: the model drops it */
  CHECK(mb_forward(m, gc->ids, B, L, MB_LOGITS_ALL, NULL, NULL, NULL) == MB_ERR_INVALID_ARG, "NULL logits");
  mb_model_free(m);
}

static void test_fresh_and_errors(void) {
  printf(" fresh adapter / switching / errors\n");
  mb_config cfg = {32, 2, 64, 8, 4, 64, 2, 1e-5f, 0, 1, 1};
  mb_model *m = load_model("tests/fixtures/mamba-tiny/model.safetensors", &cfg);
  const int32_t *ids = PAPER_IDS;
  float base[18 * 64], with[18 * 64];
  mb_set_simd(1);
  CHECK(mb_forward(m, ids, 1, 18, MB_LOGITS_ALL, base, NULL, NULL) == MB_OK, "base");
  mb_adapter_config ac = {8, 16.0f, 0, BIT(MB_T_IN_PROJ) | BIT(MB_T_OUT_PROJ) | BIT(MB_T_X_PROJ) | BIT(MB_T_DT_PROJ), 0, 0, 0, 0, 0, 0, 0, 0, 1, 0};
  mb_adapter *a = new_adapter(m, &ac);
  CHECK(mb_adapter_init(a, 7) == MB_OK, "init");
  size_t n;
  float *A = mb_adapter_param(a, MB_T_IN_PROJ, 0, 0, &n);
  CHECK(A && n == 8 * 32 && max_abs(A, n) > 0 && max_abs(A, n) <= 1.0f / sqrtf(32.0f), "lora_A init bound");
  mb_model_set_adapter(m, a);
  CHECK(mb_forward(m, ids, 1, 18, MB_LOGITS_ALL, with, NULL, NULL) == MB_OK, "fresh");
  CHECK(memcmp(base, with, sizeof base) == 0, "a fresh adapter (lora_B = 0) must equal the base bit for bit");
  /* half targets: a LoRA on in_proj.z changes only the gate path */
  mb_adapter_config hz = {2, 2.0f, 1, BIT(MB_T_IN_PROJ_X) | BIT(MB_T_IN_PROJ_Z), 0, 0, 0, 0, 0, 0, 0, 0, 1, 0};
  mb_adapter *h = new_adapter(m, &hz);
  CHECK(h != NULL, "half targets: %s", mb_last_error());
  mb_adapter_init(h, 3);
  float *Bz = mb_adapter_param(h, MB_T_IN_PROJ_Z, 1, 1, &n);
  CHECK(Bz && n == 64 * 2, "in_proj.z lora_B is [E, r]");
  for (size_t i = 0; i < n; i++) Bz[i] = 0.01f * (float)(i % 7);
  mb_model_set_adapter(m, h);
  float hz1[18 * 64], hz2[18 * 64];
  mb_forward(m, ids, 1, 18, MB_LOGITS_ALL, hz1, NULL, NULL);
  CHECK(max_abs_diff(hz1, base, 18 * 64) > 0, "in_proj.z LoRA had no effect");
  mb_adapter_merge(m, h);
  mb_forward(m, ids, 1, 18, MB_LOGITS_ALL, hz2, NULL, NULL);
  compare("in_proj.z merged vs unmerged (rsLoRA)", hz2, hz1, 18 * 64, tol("merge_rel"));
  /* switching away from a merged adapter unmerges it; the base comes back within rounding */
  mb_model_set_adapter(m, NULL);
  CHECK(!mb_adapter_merged(h), "switching did not unmerge");
  mb_forward(m, ids, 1, 18, MB_LOGITS_ALL, with, NULL, NULL);
  compare("base after merge + switch", with, base, 18 * 64, tol("merge_rel"));
  CHECK(mb_adapter_merge(m, h) == MB_ERR_STATE, "merging an inactive adapter");
  /* bad configs */
  mb_adapter_config bad = hz;
  mb_adapter *bad_a = NULL;
  bad.targets |= BIT(MB_T_IN_PROJ);
  CHECK(mb_adapter_new(m, &bad, &bad_a) == MB_ERR_INVALID_ARG && !bad_a, "in_proj + in_proj.x accepted");
  bad = hz; bad.lim = 1; bad.chunks = 4; bad.chunk_size = 2; bad.tau = 0.5f; bad.surrogate_width = 1;
  CHECK(mb_adapter_new(m, &bad, &bad_a) == MB_ERR_INVALID_ARG && !bad_a, "both chunks and chunk_size accepted");
  bad.chunk_size = 0; bad.tau = 1.5f;
  CHECK(mb_adapter_new(m, &bad, &bad_a) == MB_ERR_INVALID_ARG && !bad_a, "tau 1.5 accepted");
  bad.tau = 0.5f; bad.cross_layer = 7;
  CHECK(mb_adapter_new(m, &bad, &bad_a) == MB_ERR_INVALID_ARG && !bad_a, "cross_layer 7 accepted");
  bad.cross_layer = 0; bad.chunks = 0;
  CHECK(mb_adapter_new(m, &bad, &bad_a) == MB_ERR_INVALID_ARG && !bad_a, "neither chunks nor chunk_size accepted");
  CHECK(mb_inspect(m, ids, 1, 18, with, NULL, NULL) == MB_ERR_STATE, "inspect without LIM");
  mb_adapter_free(a);
  mb_adapter_free(h);
  mb_model_free(m);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("# test_adapter\n");
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) test_case(&CASES[i]);
  test_fresh_and_errors();
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
