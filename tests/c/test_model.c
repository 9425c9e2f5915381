/* test_model.c: the whole forward against the golden vectors (logits and hidden states of
 * mamba-tiny, both kernel paths), decode steps against the full forward at every position,
 * batch of 2 against single runs, state copy/reset, and the error paths of the C API.
 * Run from the repo root (reads tests/fixtures/ and tests/tolerances.json). */
#include "../../src/memba.h"
#include "../../src/memba_backend.h"
#include "testutil.h"
#include "tolerance.h"
#include "testmodel.h"

#define FIX "tests/fixtures/mamba-tiny/"
/* mamba-tiny: d 32, 2 layers, V 64, N 8, K 4, E 64, R 2 */
static const mb_config TINY = {32, 2, 64, 8, 4, 64, 2, 1e-5f, 0, 1, 1};
static const int IDS[2][17] = {{23, 32, 61, 28, 57, 3, 37, 26, 51, 40, 39, 47, 9, 29, 25, 22, 57},
                               {33, 13, 36, 38, 7, 10, 47, 35, 34, 53, 60, 60, 29, 25, 58, 34, 37}};


static void test_golden(mb_model *m) {
  st_file e;
  CHECK(st_open(&e, FIX "expected.safetensors"), "expected.safetensors");
  size_t nl, nh0, nh1;
  float *want = st_get(&e, "logits", &nl), *h0 = st_get(&e, "hidden.0", &nh0),
        *h1 = st_get(&e, "hidden.1", &nh1);
  int32_t ids[34];
  for (int i = 0; i < 34; i++) ids[i] = IDS[i / 17][i % 17];
  float *logits = malloc(sizeof(float) * 2 * 17 * 64), *hidden = malloc(sizeof(float) * 2 * 34 * 32);
  for (int simd = 0; simd < 2; simd++) {
    mb_set_simd(simd);
    CHECK(mb_forward(m, ids, 2, 17, MB_LOGITS_ALL, logits, hidden, NULL) == MB_OK, "forward: %s", mb_last_error());
    char name[64];
    snprintf(name, sizeof name, "golden logits (%s)", simd ? "simd" : "scalar");
    compare(name, logits, want, nl, tol("logits_rel"));
    compare("golden hidden.0", hidden, h0, nh0, tol("hidden_rel"));
    compare("golden hidden.1", hidden + nh0, h1, nh1, tol("hidden_rel"));
  }
  free(want); free(h0); free(h1); free(logits); free(hidden);
  st_close(&e);
}

static void test_decode_and_batch(mb_model *m) {
  int32_t ids[34];
  for (int i = 0; i < 34; i++) ids[i] = IDS[i / 17][i % 17];
  float full[2 * 17 * 64], one[17 * 64], step[64], step2[2 * 64];
  CHECK(mb_forward(m, ids, 2, 17, MB_LOGITS_ALL, full, NULL, NULL) == MB_OK, "forward");
  /* batch of 2 == two single runs */
  for (int b = 0; b < 2; b++) {
    CHECK(mb_forward(m, ids + 17 * b, 1, 17, MB_LOGITS_ALL, one, NULL, NULL) == MB_OK, "single");
    compare("batch row vs single run", full + b * 17 * 64, one, 17 * 64, tol("batch_vs_single_rel"));
  }
  /* decode step by step == full forward, at every position */
  mb_state *s = new_state(m, 1), *s2 = new_state(m, 2), *saved = new_state(m, 1);
  float worst = 0;
  for (int t = 0; t < 17; t++) {
    CHECK(mb_step(m, s, ids + t, step) == MB_OK, "step: %s", mb_last_error());
    float dd = max_abs_diff(step, full + t * 64, 64);
    worst = dd > worst ? dd : worst;
    if (t == 7) mb_state_copy(saved, s);
  }
  printf("  %-44s maxdiff %.3g\n", "decode steps vs full forward (17 positions)", worst);
  CHECK(worst <= tol("decode_vs_forward_rel") * (max_abs(full, 17 * 64) > 1 ? max_abs(full, 17 * 64) : 1),
        "decode differs: %g", worst);
  CHECK(mb_state_pos(s) == 17.0, "pos %g", mb_state_pos(s));
  /* prefill 8 positions into a state, then step: equals the full forward */
  mb_state *p = new_state(m, 1);
  CHECK(mb_forward(m, ids, 1, 8, MB_LOGITS_LAST, step, NULL, p) == MB_OK, "prefill");
  compare("prefill last logits vs full forward", step, full + 7 * 64, 64, tol("decode_vs_forward_rel"));
  size_t n1, n2;
  float *d1 = mb_state_data(p, &n1), *d2 = mb_state_data(saved, &n2);
  CHECK(n1 == n2 && max_abs_diff(d1, d2, n1) <= tol("state_prefill_vs_steps_abs"), "prefill state vs stepped state");
  CHECK(mb_step(m, p, ids + 8, step) == MB_OK, "step after prefill");
  compare("step after prefill vs full forward", step, full + 8 * 64, 64, tol("decode_vs_forward_rel"));
  /* batched decode: both rows at once */
  for (int t = 0; t < 17; t++) {
    int32_t pair[2] = {ids[t], ids[17 + t]};
    CHECK(mb_step(m, s2, pair, step2) == MB_OK, "batched step");
    if (t == 16) {
      compare("batched decode row 0 at t=16", step2, full + 16 * 64, 64, tol("decode_vs_forward_rel"));
      compare("batched decode row 1 at t=16", step2 + 64, full + (17 + 16) * 64, 64, tol("decode_vs_forward_rel"));
    }
  }
  /* reset == fresh */
  mb_state_reset(s);
  CHECK(mb_step(m, s, ids, step) == MB_OK, "step after reset");
  compare("step after reset vs position 0", step, full, 64, tol("decode_vs_forward_rel"));
  CHECK(mb_state_copy(s, s2) == MB_ERR_SHAPE, "copy between batch sizes must fail");
  mb_state_free(s); mb_state_free(s2); mb_state_free(saved); mb_state_free(p);
}

static void test_score(mb_model *m) {
  st_file e;
  CHECK(st_open(&e, FIX "expected.safetensors"), "expected.safetensors");
  size_t n;
  float *want = st_get(&e, "loglik_after_prompt", &n);
  int32_t ids[34];
  for (int i = 0; i < 34; i++) ids[i] = IDS[i / 17][i % 17];
  float lp[34];
  CHECK(mb_score(m, ids, 2, 17, 5, lp) == MB_OK, "score: %s", mb_last_error());
  for (int b = 0; b < 2; b++) {
    float sum = 0;
    for (int t = 5; t < 17; t++) sum += lp[b * 17 + t];
    compare(b ? "loglik_after_prompt row 1" : "loglik_after_prompt row 0", &sum, &want[b], 1, tol("loglik_rel"));
  }
  CHECK(lp[0] == 0 && lp[4] == 0, "positions before from must be 0");
  CHECK(mb_score(m, ids, 2, 17, 0, lp) == MB_ERR_INVALID_ARG, "from=0 accepted");
  free(want);
  st_close(&e);
}

/* the split forward (begin, per layer pre / mid / post, end) is the same forward, bit for bit */
static void test_split(mb_model *m) {
  int32_t ids[34];
  for (int i = 0; i < 34; i++) ids[i] = IDS[i / 17][i % 17];
  float whole[2 * 17 * 64], split[2 * 17 * 64], lp[34];
  CHECK(mb_forward(m, ids, 2, 17, MB_LOGITS_ALL, whole, NULL, NULL) == MB_OK, "forward");
  CHECK(mb_split_begin(m, ids, 2, 17, NULL) == MB_OK, "split begin");
  for (int l = 0; l < TINY.n_layer; l++) {
    CHECK(mb_split_pre(m, l) == MB_OK, "split pre %d", l);
    CHECK(mb_split_buffer(m, MB_BUF_DELTA) && mb_split_buffer(m, MB_BUF_Y), "split buffers");
    CHECK(mb_split_post(m, l + 1) != MB_OK, "post of another layer accepted");
    CHECK(mb_split_mid(m, l) == MB_OK, "split mid %d", l);
    CHECK(mb_split_mid(m, l) == MB_ERR_STATE, "mid twice accepted");
    CHECK(mb_split_post(m, l) == MB_OK, "split post %d", l);
  }
  CHECK(mb_split_pre(m, TINY.n_layer) == MB_ERR_INVALID_ARG, "layer n_layer accepted");
  CHECK(mb_split_pre(m, -1) == MB_ERR_INVALID_ARG, "layer -1 accepted");
  CHECK(mb_split_end(m, MB_LOGITS_ALL, split) == MB_OK, "split end");
  CHECK(mb_split_end(m, MB_LOGITS_ALL, split) == MB_ERR_STATE, "split end twice accepted");
  CHECK(memcmp(whole, split, sizeof whole) == 0, "split forward differs from mb_forward");
  float want[34];
  CHECK(mb_score(m, ids, 2, 17, 5, want) == MB_OK, "score");
  mb_split_begin(m, ids, 2, 17, NULL);
  CHECK(mb_split_end_score(m, ids, 5, lp) == MB_ERR_STATE, "end before the last layer accepted");
  for (int l = 0; l < TINY.n_layer; l++) {
    mb_split_pre(m, l);
    mb_split_mid(m, l);
    mb_split_post(m, l);
  }
  CHECK(mb_split_end_score(m, ids, 5, lp) == MB_OK && memcmp(lp, want, sizeof lp) == 0, "split score differs");
  /* another forward in between closes the split */
  mb_split_begin(m, ids, 2, 17, NULL);
  mb_split_pre(m, 0);
  CHECK(mb_forward(m, ids, 2, 17, MB_LOGITS_NONE, NULL, NULL, NULL) == MB_OK, "forward");
  CHECK(mb_split_mid(m, 0) == MB_ERR_STATE && !mb_split_buffer(m, MB_BUF_Y), "a closed split went on");
  printf("  %-44s identical\n", "split forward (pre/mid/post) vs mb_forward");
}

static void test_errors(mb_model *m) {
  int32_t bad[2] = {3, 64};
  float logits[2 * 64];
  CHECK(mb_forward(m, bad, 1, 2, MB_LOGITS_ALL, logits, NULL, NULL) == MB_ERR_INVALID_ARG, "id 64 accepted");
  CHECK(strstr(mb_last_error(), "out of range") != NULL, "message: %s", mb_last_error());
  bad[1] = -1;
  CHECK(mb_forward(m, bad, 1, 2, MB_LOGITS_ALL, logits, NULL, NULL) == MB_ERR_INVALID_ARG, "id -1 accepted");
  CHECK(mb_forward(m, bad, 1, 0, MB_LOGITS_ALL, logits, NULL, NULL) == MB_ERR_INVALID_ARG, "L=0 accepted");
  CHECK(mb_forward(m, bad, 0, 1, MB_LOGITS_ALL, logits, NULL, NULL) == MB_ERR_INVALID_ARG, "B=0 accepted");
  CHECK(mb_forward(m, bad, 1, 1, MB_LOGITS_ALL, NULL, NULL, NULL) == MB_ERR_INVALID_ARG, "NULL logits accepted");
  mb_state *s = new_state(m, 2);
  CHECK(mb_forward(m, bad, 1, 1, MB_LOGITS_LAST, logits, NULL, s) == MB_ERR_SHAPE, "state batch mismatch");
  mb_state_free(s);
  mb_config c = TINY;
  c.d_model = 0;
  mb_model *bad_m = NULL;
  CHECK(mb_model_new(&c, &bad_m) == MB_ERR_INVALID_ARG && !bad_m && strlen(mb_last_error()) > 0, "bad config accepted");
  c = TINY;
  c.vocab_size = 1 << 24;
  c.d_model = 1 << 24;
  mb_model *huge = NULL;
  CHECK(mb_model_new(&c, &huge) == MB_ERR_OOM && huge == NULL, "impossible model allocated");
  mb_model_free(huge);
  /* the model still works after errors */
  int32_t ok[1] = {5};
  CHECK(mb_forward(m, ok, 1, 1, MB_LOGITS_LAST, logits, NULL, NULL) == MB_OK, "usable after errors");
  mb_model *fresh = NULL;
  CHECK(mb_model_new(&TINY, &fresh) == MB_OK, "model_new");
  CHECK(mb_forward(fresh, ok, 1, 1, MB_LOGITS_LAST, logits, NULL, NULL) == MB_ERR_STATE, "unfinalized accepted");
  mb_model_free(fresh);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("# test_model\n");
  mb_model *m = load_model(FIX "model.safetensors", &TINY);
  if (!m) return 1;
  test_golden(m);
  mb_set_simd(1);
  test_decode_and_batch(m);
  test_score(m);
  test_split(m);
  test_errors(m);
  mb_model_free(m);
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
