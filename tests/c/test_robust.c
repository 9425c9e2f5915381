/* test_robust.c: regressions for what fuzzing and hostile input found in the C core (issue
 * "Memory safety"), under ASan + UBSan: a LIM chunk_size longer than the sequence; sizes that
 * overflow 64 bits or the address space; dt_rank > d_model with a dt_proj LoRA; AdamW settings
 * and updates that would leave NaN/Inf (refused, nothing changed); merge/unmerge that restores
 * the base weights bit for bit after 1000 cycles; the allocation limit. Random models only. */
#include "../../src/memba.h"
#include "../../src/memba_backend.h"
#include "testmodel.h"
#include "testutil.h"
#include "tolerance.h"

static const mb_config SMALL = {.d_model = 16, .n_layer = 2, .vocab_size = 32, .d_state = 4, .d_conv = 4,
                                .d_inner = 32, .dt_rank = 2, .eps = 1e-5f, .tied_head = 1};

static mb_model *random_model(const mb_config *c, uint32_t seed) {
  mb_model *m = NULL;
  CHECK(mb_model_new(c, &m) == MB_OK && m, "mb_model_new: %s", mb_last_error());
  if (m) CHECK(mb_model_init_random(m, seed) == MB_OK, "init_random");
  return m;
}

/* A causal LIM chunk longer than the sequence: the full forward equals prefill + steps, and a
 * chunk of 100000 (far past L) is sized by the chunk, not by B*L (the old overflow). */
static void test_long_chunk(void) {
  printf(" LIM chunk_size past the sequence\n");
  mb_model *m = random_model(&SMALL, 3);
  int32_t ids[6] = {1, 5, 9, 2, 7, 3};
  float full[6 * 32], step[32];
  for (int k = 0; k < 2; k++) {
    int cs = k ? 100000 : 64;
    mb_adapter_config ac = {.lim = 1, .chunk_size = cs, .tau = 0.5f, .v_th = 1.0f, .surrogate_width = 1.0f,
                            .cross_layer = MB_LIM_FIRST};
    mb_adapter *a = new_adapter(m, &ac);
    mb_model_set_adapter(m, a);
    CHECK(mb_forward(m, ids, 1, 6, MB_LOGITS_ALL, full, NULL, NULL) == MB_OK, "forward: %s", mb_last_error());
    mb_state *s = new_state(m, 1);
    float worst = 0;
    for (int t = 0; t < 6 && s; t++) {
      CHECK(mb_step(m, s, &ids[t], step) == MB_OK, "step: %s", mb_last_error());
      float d = max_abs_diff(step, full + t * 32, 32);
      if (!(d <= worst)) worst = d;
    }
    printf("  chunk_size %-6d decode vs forward maxdiff %.3g (limit %.3g)\n", cs, worst, tol("decode_vs_forward_rel"));
    CHECK(worst <= tol("decode_vs_forward_rel") * fmaxf(1.0f, max_abs(full, 6 * 32)), "decode differs from forward");
    mb_state_free(s);
    /* score: log-softmax of the forward's logits at each next id */
    float lp[6], sworst = 0;
    CHECK(mb_score(m, ids, 1, 6, 1, lp) == MB_OK, "score: %s", mb_last_error());
    for (int t = 1; t < 6; t++) {
      const float *row = full + (t - 1) * 32;
      double mx = row[0], z = 0;
      for (int v = 1; v < 32; v++) mx = row[v] > mx ? row[v] : mx;
      for (int v = 0; v < 32; v++) z += exp(row[v] - mx);
      float want = (float)(row[ids[t]] - mx - log(z)), d = fabsf(lp[t] - want);
      if (!(d <= sworst)) sworst = d;
    }
    printf("  chunk_size %-6d score vs log-softmax(forward) maxdiff %.3g (limit %.3g)\n", cs, sworst, tol("loglik_rel"));
    CHECK(sworst <= tol("loglik_rel") * fmaxf(1.0f, max_abs(lp + 1, 5)), "score differs from the forward's log-softmax");
    /* inspect: the gate inputs of every layer, finite, and the chunk length it used */
    float v[2 * 6 * 32];
    int32_t clen = 0;
    CHECK(mb_inspect(m, ids, 1, 6, v, NULL, &clen) == MB_OK, "inspect: %s", mb_last_error());
    int finite = 1;
    for (int i = 0; i < 2 * 6 * 32; i++) finite &= isfinite(v[i]) != 0;
    CHECK(finite && clen >= 6, "inspect: finite gate inputs (chunk length %d)", clen);
    mb_model_set_adapter(m, NULL);
    mb_adapter_free(a);
  }
  mb_model_free(m);
}

/* Sizes that wrap 64 bits fail as OOM before any allocation; out-of-range dims are invalid. */
static void test_sizes(void) {
  printf(" sizes\n");
  mb_config c = SMALL;
  c.n_layer = 1 << 24;
  c.d_model = 1 << 24;
  c.d_inner = 1 << 24;
  c.d_state = 1 << 24;
  mb_model *m = NULL;
  mb_status st = mb_model_new(&c, &m);
  printf("  2^24 layers of 2^24 dims: status %d (%s)\n", st, mb_last_error());
  CHECK(st == MB_ERR_OOM && m == NULL, "a model past 2^64 bytes was not refused as OOM");
  c = SMALL;
  c.d_model = (1 << 24) + 1;
  CHECK(mb_model_new(&c, &m) == MB_ERR_INVALID_ARG && m == NULL, "d_model past 2^24 accepted");
  c = SMALL;
  c.dt_rank = -1;
  CHECK(mb_model_new(&c, &m) == MB_ERR_INVALID_ARG, "negative dt_rank accepted");
  mb_model *ok = random_model(&SMALL, 1);
  /* an adapter of the largest rank on a model whose LoRA would pass any address space */
  mb_adapter_config ac = {.r = 4097, .alpha = 1, .targets = 1 << MB_T_IN_PROJ};
  mb_adapter *a = NULL;
  CHECK(mb_adapter_new(ok, &ac, &a) == MB_ERR_INVALID_ARG && !a, "rank 4097 accepted");
  mb_state *s = NULL;
  CHECK(mb_state_new(ok, 65537, &s) == MB_ERR_INVALID_ARG && !s, "batch 65537 accepted");
  CHECK(mb_state_new(ok, 0, &s) == MB_ERR_INVALID_ARG && !s, "batch 0 accepted");
  int32_t ids[2] = {0, 1};
  float lg[64];
  CHECK(mb_forward(ok, ids, 1 << 15, 1 << 14, MB_LOGITS_LAST, lg, NULL, NULL) == MB_ERR_INVALID_ARG,
        "B*L = 2^29 accepted");
  CHECK(mb_forward(ok, ids, 1, 2, MB_LOGITS_ALL, lg, NULL, NULL) == MB_OK, "usable after errors: %s", mb_last_error());
  void *p = mb_malloc(SIZE_MAX);
  CHECK(p == NULL, "mb_malloc(SIZE_MAX) returned memory");
  mb_model_free(ok);
}

/* dt_rank larger than d_model with a LoRA on dt_proj: forward, training and decode at L = 3000. */
static void test_wide_dt_rank(float dropout) {
  printf(" dt_rank > d_model and d_inner with a dt_proj LoRA, dropout %g\n", dropout);
  mb_config c = {.d_model = 8, .n_layer = 2, .vocab_size = 16, .d_state = 4, .d_conv = 4, .d_inner = 16,
                 .dt_rank = 40, .eps = 1e-5f, .tied_head = 1};
  mb_model *m = random_model(&c, 5);
  /* with dropout, training writes the dropped dt_proj input (dt_rank wide) into a scratch buffer */
  mb_adapter_config ac = {.r = 4, .alpha = 8, .dropout = dropout, .targets = (1 << MB_T_DT_PROJ) | (1 << MB_T_X_PROJ)};
  mb_adapter *a = new_adapter(m, &ac);
  mb_adapter_init(a, 1);
  adapter_nudge(a, 0.05f);
  mb_model_set_adapter(m, a);
  int L = 3000;
  int32_t *ids = malloc(sizeof(int32_t) * L), *labels = malloc(sizeof(int32_t) * L);
  for (int t = 0; t < L; t++) ids[t] = (t * 7) % 16, labels[t] = t + 1 < L ? ((t + 1) * 7) % 16 : -100;
  float *lg = malloc(sizeof(float) * L * 16), loss = 0, step[16];
  CHECK(mb_forward(m, ids, 1, L, MB_LOGITS_ALL, lg, NULL, NULL) == MB_OK, "forward: %s", mb_last_error());
  mb_adapter_zero_grad(a);
  CHECK(mb_train_backward(m, ids, labels, 1, L, 1, &loss) == MB_OK && isfinite(loss), "train: %s", mb_last_error());
  mb_state *s = new_state(m, 1);
  CHECK(mb_step(m, s, ids, step) == MB_OK, "step: %s", mb_last_error());
  compare("first decode step vs forward", step, lg, 16, tol("decode_vs_forward_rel"));
  mb_state_free(s);
  free(ids), free(labels), free(lg);
  mb_model_set_adapter(m, NULL);
  mb_adapter_free(a);
  mb_model_free(m);
}

/* AdamW: non-finite settings are refused; an update that would make a value non-finite is refused
 * whole, and the tensors and moments stay as they were, bit for bit. */
static void test_adamw_guard(void) {
  printf(" AdamW refuses what would leave NaN/Inf\n");
  mb_model *m = random_model(&SMALL, 7);
  mb_adapter_config ac = {.r = 2, .alpha = 4, .targets = (1 << MB_T_IN_PROJ) | (1 << MB_T_OUT_PROJ)};
  mb_adapter *a = new_adapter(m, &ac);
  mb_adapter_init(a, 2);
  mb_model_set_adapter(m, a);
  int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8}, labels[8] = {2, 3, 4, 5, 6, 7, 8, -100};
  float loss, gn;
  mb_adapter_zero_grad(a);
  CHECK(mb_train_backward(m, ids, labels, 1, 8, 1, &loss) == MB_OK, "backward");
  mb_adamw ok = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
  CHECK(mb_adamw_step(a, &ok, 1, &gn) == MB_OK, "a normal step: %s", mb_last_error());
  size_t n;
  float *blk = mb_adapter_block(a, 0, &n), *m1 = mb_adapter_block(a, 2, NULL), *m2 = mb_adapter_block(a, 3, NULL);
  float *before = malloc(sizeof(float) * n * 3);
  memcpy(before, blk, sizeof(float) * n), memcpy(before + n, m1, sizeof(float) * n), memcpy(before + 2 * n, m2, sizeof(float) * n);
  mb_adamw bad[] = {ok, ok, ok, ok, ok};
  bad[0].weight_decay = INFINITY;
  bad[1].lr = NAN;
  bad[2].eps = 0;
  bad[3].beta2 = 1;
  bad[4].clip = INFINITY;
  for (int i = 0; i < 5; i++) CHECK(mb_adamw_step(a, &bad[i], 2, &gn) == MB_ERR_INVALID_ARG, "bad setting %d accepted", i);
  /* finite settings whose update overflows: lr * weight_decay * w is Inf */
  mb_adamw huge = ok;
  huge.lr = 3e38f;
  huge.weight_decay = 1e3f;
  mb_status st = mb_adamw_step(a, &huge, 2, &gn);
  printf("  lr 3e38, weight_decay 1e3: status %d (%s)\n", st, mb_last_error());
  CHECK(st == MB_ERR_NON_FINITE, "an overflowing update was not refused");
  /* a negative second moment (a corrupt restored state) gives sqrt(-x) = NaN */
  m2[n / 2] = -1.0f;
  CHECK(mb_adamw_step(a, &ok, 2, &gn) == MB_ERR_NON_FINITE, "a NaN update from a negative moment was made");
  m2[n / 2] = before[2 * n + n / 2];
  CHECK(memcmp(blk, before, sizeof(float) * n) == 0, "tensors changed by refused updates");
  CHECK(memcmp(m1, before + n, sizeof(float) * n) == 0 && memcmp(m2, before + 2 * n, sizeof(float) * n) == 0,
        "moments changed by refused updates");
  CHECK(mb_adamw_step(a, &ok, 2, &gn) == MB_OK, "training goes on: %s", mb_last_error());
  free(before);
  mb_model_set_adapter(m, NULL);
  mb_adapter_free(a);
  mb_model_free(m);
}

/* 1000 merge/unmerge cycles leave the base weights bit for bit as they were. */
static void test_merge_exact(void) {
  printf(" merge/unmerge restores the weights exactly\n");
  mb_model *m = random_model(&SMALL, 11);
  mb_adapter_config ac = {.r = 4, .alpha = 8,
                          .targets = (1 << MB_T_IN_PROJ_Z) | (1 << MB_T_OUT_PROJ) | (1 << MB_T_X_PROJ) | (1 << MB_T_DT_PROJ)};
  mb_adapter *a = new_adapter(m, &ac);
  mb_adapter_init(a, 3);
  adapter_nudge(a, 0.3f);
  mb_model_set_adapter(m, a);
  int32_t ids[5] = {3, 1, 4, 1, 5};
  float base[5 * 32], merged[5 * 32], adapted[5 * 32], again[5 * 32];
  mb_model_set_adapter(m, NULL);
  CHECK(mb_forward(m, ids, 1, 5, MB_LOGITS_ALL, base, NULL, NULL) == MB_OK, "base forward");
  mb_model_set_adapter(m, a);
  CHECK(mb_forward(m, ids, 1, 5, MB_LOGITS_ALL, adapted, NULL, NULL) == MB_OK, "adapted forward");
  size_t n;
  float *w = mb_model_param(m, MB_P_OUT_PROJ_W, 1, &n), *w0 = malloc(sizeof(float) * n);
  memcpy(w0, w, sizeof(float) * n);
  int cycles = 0;
  for (; cycles < 1000; cycles++)
    if (mb_adapter_merge(m, a) != MB_OK || mb_adapter_unmerge(m, a) != MB_OK) break;
  CHECK(cycles == 1000, "merge/unmerge failed at cycle %d: %s", cycles, mb_last_error());
  CHECK(memcmp(w, w0, sizeof(float) * n) == 0, "out_proj weights drifted after 1000 cycles");
  CHECK(mb_adapter_merge(m, a) == MB_OK, "merge");
  CHECK(mb_forward(m, ids, 1, 5, MB_LOGITS_ALL, merged, NULL, NULL) == MB_OK, "merged forward");
  compare("merged vs unmerged logits", merged, adapted, 5 * 32, tol("merge_rel"));
  mb_model_set_adapter(m, NULL); /* switching away unmerges */
  CHECK(!mb_adapter_merged(a), "still merged after switching away");
  CHECK(mb_forward(m, ids, 1, 5, MB_LOGITS_ALL, again, NULL, NULL) == MB_OK, "base forward");
  float d = max_abs_diff(again, base, 5 * 32);
  printf("  base logits after 1001 merges: maxdiff %.3g (limit 0: bit for bit)\n", d);
  CHECK(memcmp(again, base, sizeof base) == 0, "base logits changed");
  free(w0);
  mb_adapter_free(a);
  mb_model_free(m);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("# test_robust\n");
  test_long_chunk();
  test_sizes();
  test_wide_dt_rank(0.0f);
  test_wide_dt_rank(0.1f);
  test_adamw_guard();
  test_merge_exact();
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
