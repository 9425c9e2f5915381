/* test_threads.c: the thread pool (src/core/pool.c) and the ops that split work over it. Every
 * result with 2, 3 and 4 threads must equal the 1-thread result bit for bit (the pool splits only
 * independent rows, channels and tokens): forward logits for each weight dtype, decode steps,
 * scores, and a training step's loss and LoRA gradients (LoRA + LIM adapter). Shapes have odd
 * sizes so every kernel's tails are split too. Also: mb_parallel_for covers each index once, and
 * mb_set_threads refuses counts out of range. */
#include "../../src/internal.h"
#include "testutil.h"

static const int THREADS[] = {2, 3, 4};

static int seen[5000];
static void mark(void *ctx, int i0, int i1) {
  (void)ctx;
  for (int i = i0; i < i1; i++) __atomic_fetch_add(&seen[i], 1, __ATOMIC_RELAXED);
}

static void test_pool(void) {
  CHECK(mb_set_threads(0) == MB_ERR_INVALID_ARG, "0 threads accepted");
  CHECK(mb_set_threads(MB_MAX_THREADS + 1) == MB_ERR_INVALID_ARG, "too many threads accepted");
  static const int ns[] = {1, 3, 4, 5, 17, 64, 1001, 4999};
  for (int t = 1; t <= 4; t++) {
    CHECK(mb_set_threads(t) == MB_OK && mb_get_threads() == t, "set %d threads: %s", t, mb_last_error());
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
      for (int align = 1; align <= 8; align *= 2) {
        memset(seen, 0, sizeof seen);
        mb_parallel_for(ns[k], align, (uint64_t)1 << 30, mark, NULL);
        int bad = 0;
        for (int i = 0; i < ns[k]; i++) bad += seen[i] != 1;
        CHECK(bad == 0, "threads %d n %d align %d: %d indices not run exactly once", t, ns[k], align, bad);
      }
  }
  CHECK(mb_set_threads(1) == MB_OK, "back to 1 thread");
}

static mb_model *random_model(mb_dtype dt) {
  mb_config c = {.d_model = 150, .n_layer = 2, .vocab_size = 301, .d_state = 8, .d_conv = 4, /* E = 300: 3 scan-backward groups */
                 .d_inner = 300, .dt_rank = 5, .eps = 1e-5f, .use_bias = 0, .use_conv_bias = 1, .tied_head = 1};
  mb_model *m = NULL;
  CHECK(mb_model_new_typed(&c, dt, &m) == MB_OK && m, "model: %s", mb_last_error());
  if (m) CHECK(mb_model_init_random(m, 7) == MB_OK, "init: %s", mb_last_error());
  return m;
}

/* what one configuration computes: logits of a batch, decode steps, scores */
enum { B = 2, L = 37, STEPS = 5, V = 301 };
typedef struct {
  float logits[B * L * V], steps[STEPS * B * V], scores[B * L];
} outputs;

static void run_inference(mb_model *m, outputs *o) {
  int32_t ids[B * L];
  for (int i = 0; i < B * L; i++) ids[i] = (i * 37 + 11) % V;
  CHECK(mb_forward(m, ids, B, L, MB_LOGITS_ALL, o->logits, NULL, NULL) == MB_OK, "forward: %s", mb_last_error());
  mb_state *s = NULL;
  CHECK(mb_state_new(m, B, &s) == MB_OK, "state: %s", mb_last_error());
  for (int t = 0; s && t < STEPS; t++)
    CHECK(mb_step(m, s, ids + t * B, o->steps + (size_t)t * B * V) == MB_OK, "step: %s", mb_last_error());
  mb_state_free(s);
  CHECK(mb_score(m, ids, B, L, 1, o->scores) == MB_OK, "score: %s", mb_last_error());
}

static void same(const char *what, const float *a, const float *b, size_t n) {
  printf("  %-60s maxdiff %.3g\n", what, max_abs_diff(a, b, n));
  CHECK(memcmp(a, b, n * sizeof(float)) == 0, "%s: not bitwise equal", what);
}

static void test_inference(mb_dtype dt, const char *name) {
  mb_model *m = random_model(dt);
  if (!m) return;
  static outputs one, many;
  mb_set_threads(1);
  run_inference(m, &one);
  for (size_t k = 0; k < sizeof THREADS / sizeof THREADS[0]; k++) {
    CHECK(mb_set_threads(THREADS[k]) == MB_OK, "threads: %s", mb_last_error());
    run_inference(m, &many);
    char what[96];
    snprintf(what, sizeof what, "%s forward, %d threads vs 1", name, THREADS[k]);
    same(what, many.logits, one.logits, sizeof one.logits / sizeof(float));
    snprintf(what, sizeof what, "%s decode steps, %d threads vs 1", name, THREADS[k]);
    same(what, many.steps, one.steps, sizeof one.steps / sizeof(float));
    snprintf(what, sizeof what, "%s score, %d threads vs 1", name, THREADS[k]);
    same(what, many.scores, one.scores, sizeof one.scores / sizeof(float));
  }
  mb_set_threads(1);
  mb_model_free(m);
}

/* one training step's loss and gradients (LoRA on in_proj and out_proj + LIM, mean transfer) */
static void train_step(mb_model *m, mb_adapter *a, float *loss, float *grads, size_t n) {
  int32_t ids[B * L], labels[B * L];
  for (int i = 0; i < B * L; i++) ids[i] = (i * 53 + 5) % V;
  for (int i = 0; i < B * L; i++) labels[i] = (i + 1) % L == 0 ? -100 : ids[i + 1];
  CHECK(mb_adapter_zero_grad(a) == MB_OK, "zero_grad");
  CHECK(mb_train_backward(m, ids, labels, B, L, 3, loss) == MB_OK, "train: %s", mb_last_error());
  size_t got = 0;
  float *g = mb_adapter_block(a, 1, &got);
  CHECK(g && got == n, "gradient block");
  if (g && got == n) memcpy(grads, g, n * sizeof(float));
}

static void test_training(mb_dtype dt, const char *name) {
  mb_model *m = random_model(dt);
  if (!m) return;
  mb_adapter_config c = {.r = 4, .alpha = 8, .targets = (1 << MB_T_IN_PROJ) | (1 << MB_T_OUT_PROJ), .lim = 1,
                         .chunk_size = 8, .tau = 0.5f, .v_th = 1.0f, .surrogate_width = 1.0f, .cross_layer = MB_LIM_MEAN};
  mb_adapter *a = NULL;
  CHECK(mb_adapter_new(m, &c, &a) == MB_OK && a, "adapter: %s", mb_last_error());
  if (!a) { mb_model_free(m); return; }
  mb_adapter_init(a, 5);
  size_t n = 0;
  float *blk = mb_adapter_block(a, 0, &n);
  for (size_t i = 0; i < n; i++) blk[i] += 0.02f * ((float)((i * 7) % 13) / 6.0f - 1.0f); /* lora_B != 0 */
  mb_model_set_adapter(m, a);
  float *g1 = malloc(n * sizeof(float)), *gk = malloc(n * sizeof(float)), l1 = 0, lk = 0;
  mb_set_threads(1);
  train_step(m, a, &l1, g1, n);
  for (size_t k = 0; k < sizeof THREADS / sizeof THREADS[0]; k++) {
    mb_set_threads(THREADS[k]);
    train_step(m, a, &lk, gk, n);
    char what[96];
    snprintf(what, sizeof what, "%s training loss, %d threads vs 1", name, THREADS[k]);
    same(what, &lk, &l1, 1);
    snprintf(what, sizeof what, "%s LoRA gradients, %d threads vs 1", name, THREADS[k]);
    same(what, gk, g1, n);
  }
  mb_set_threads(1);
  free(g1), free(gk);
  mb_model_set_adapter(m, NULL);
  mb_adapter_free(a);
  mb_model_free(m);
}

int main(void) {
  printf("# test_threads\n");
  test_pool();
  static const struct { mb_dtype dt; const char *name; } dts[] = {{MB_DT_F32, "f32"}, {MB_DT_F16, "f16"}, {MB_DT_Q8, "q8"}};
  for (int pass = 0; pass < 2; pass++) {
    /* pass 0: the library's threshold (small ops stay on one thread); pass 1: every op splits */
    mb_par_min_work = pass ? 1 : 32768;
    printf(pass ? " every op split:\n" : " default split threshold:\n");
    for (size_t i = 0; i < 3; i++) {
      test_inference(dts[i].dt, dts[i].name);
      test_training(dts[i].dt, dts[i].name);
    }
  }
  mb_set_threads(2);
  mb_set_threads(1); /* the pool stops its threads: LeakSanitizer sees nothing left */
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
