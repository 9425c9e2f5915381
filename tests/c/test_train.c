/* test_train.c: training in the C core against the golden vectors: the loss and the gradient of
 * every LoRA tensor (memba-tiny-paper: mask reset gradient, mean transfer; -stream: triangle
 * surrogate, first transfer, all four targets; -short: L < chunks), and the AdamW trajectories
 * (losses before each step and the final tensors). */
#include "../../src/memba.h"
#include "../../src/memba_backend.h"
#include "../../src/internal.h" /* xent_lse: the one cross-entropy */
#include "cases.h"
#include "testmodel.h"
#include "testutil.h"
#include "tolerance.h"

static const char *TN[MB_T_COUNT] = {"in_proj", "in_proj.x", "in_proj.z", "out_proj", "x_proj", "dt_proj"};

/* compares every LoRA tensor (grads: which block 1; final tensors: block 0) with `prefix`+name */
static void compare_tensors(st_file *e, mb_adapter *a, const gcase *gc, const char *prefix, int grads) {
  double t = tol(grads ? "grad_rel_to_max" : "adamw_final_rel");
  float worst = 0;
  for (int l = 0; l < gc->n_layer; l++)
    for (int tg = 0; tg < MB_T_COUNT; tg++) {
      if (!(gc->ac.targets & (1 << tg))) continue;
      for (int w = 0; w < 2; w++) {
        char name[200];
        snprintf(name, sizeof name, "%sbase_model.model.backbone.layers.%d.mixer.%s.lora_%c.weight", prefix, l, TN[tg], w ? 'B' : 'A');
        size_t n, m;
        float *want = st_get(e, name, &n);
        float *got = grads ? mb_adapter_grad(a, (mb_target)tg, l, w, &m) : mb_adapter_param(a, (mb_target)tg, l, w, &m);
        CHECK(want && got && n == m, "%s missing or wrong size", name);
        if (!want || !got || n != m) { free(want); continue; }
        float ref = max_abs(want, n), diff = max_abs_diff(got, want, n);
        float lim = (float)(t * (grads ? ref : (ref > 1 ? ref : 1)));
        if (diff / (lim > 0 ? lim : 1) > worst) worst = diff / (lim > 0 ? lim : 1);
        CHECK(diff <= lim, "%s: maxdiff %g > %g (max|want| %g)", name, diff, lim, ref);
        free(want);
      }
    }
  printf("  %-48s worst maxdiff/limit %.3g\n", grads ? "gradients of every LoRA tensor" : "AdamW final tensors", worst);
}

/* The mean cross-entropy of mb_forward's logits, with the library's one log-sum-exp. */
static float forward_loss(mb_model *m, const int32_t *ids, const int32_t *labels, int B, int L) {
  const mb_config *c = mb_model_config(m);
  float *logits = malloc(sizeof(float) * (size_t)B * L * c->vocab_size);
  CHECK(mb_forward(m, ids, B, L, MB_LOGITS_ALL, logits, NULL, NULL) == MB_OK, "forward: %s", mb_last_error());
  double sum = 0;
  long n = 0;
  for (int t = 0; t < B * L; t++) {
    if (labels[t] == -100) continue;
    const float *row = logits + (size_t)t * c->vocab_size;
    sum += xent_lse(row, c->vocab_size) - row[labels[t]];
    n++;
  }
  free(logits);
  return (float)(sum / (double)n);
}

/* the training forward is the inference forward: its loss equals the loss of mb_forward's logits */
static void check_loss_equals_forward(mb_model *m, const int32_t *ids, const int32_t *labels, int B, int L,
                                      float train_loss) {
  float want = forward_loss(m, ids, labels, B, L);
  printf("  %-48s %.9g vs %.9g (B=%d, L=%d)\n", "training loss vs mb_forward's cross-entropy", train_loss, want, B, L);
  CHECK(memcmp(&train_loss, &want, sizeof want) == 0, "training loss %.9g != forward loss %.9g (not bit for bit)", train_loss, want);
}

/* the same on random weights with B*L past one block of head rows, for each LIM transfer */
static void test_loss_equals_forward(void) {
  mb_config cfg = {48, 3, 96, 8, 4, 96, 3, 1e-5f, 0, 1, 1};
  mb_model *m = NULL;
  CHECK(mb_model_new(&cfg, &m) == MB_OK && mb_model_init_random(m, 7) == MB_OK, "random model");
  enum { B = 2, L = 71 };
  int32_t ids[B * L], labels[B * L];
  for (int i = 0; i < B * L; i++) ids[i] = (i * 37 + 11) % cfg.vocab_size;
  for (int i = 0; i < B * L; i++) labels[i] = i % L == L - 1 || i % 5 == 2 ? -100 : ids[i + 1];
  const int cross[] = {MB_LIM_MEAN, MB_LIM_FIRST, MB_LIM_NONE};
  for (int k = 0; k < 4; k++) {
    mb_adapter_config ac = {4, 8.0f, 0, BIT(MB_T_IN_PROJ) | BIT(MB_T_OUT_PROJ) | BIT(MB_T_DT_PROJ), 0, k < 3, 0, 16,
                            0.5f, 1.0f, MB_LIM_POST_RESET, MB_LIM_MASK, 1.0f, k < 3 ? cross[k] : MB_LIM_MEAN};
    if (k == 0) { ac.chunks = 4; ac.chunk_size = 0; }
    mb_adapter *a = new_adapter(m, &ac);
    mb_adapter_init(a, 3);
    adapter_nudge(a, 0.5f); /* large enough that the LoRA branch moves the loss */
    mb_model_set_adapter(m, a);
    float loss = 0;
    mb_adapter_zero_grad(a);
    CHECK(mb_train_backward(m, ids, labels, B, L, 0, &loss) == MB_OK, "backward: %s", mb_last_error());
    check_loss_equals_forward(m, ids, labels, B, L, loss);
    mb_adapter_free(a);
  }
  mb_model_free(m);
}

static void test_case(const gcase *gc) {
  printf(" %s\n", gc->dir);
  mb_adapter *a;
  mb_model *m = load_case(gc, &a);
  char path[256];
  snprintf(path, sizeof path, "%sexpected.safetensors", gc->dir);
  st_file e;
  CHECK(st_open(&e, path), "open %s", path);
  size_t n;
  float *want_loss = st_get(&e, "loss", &n), loss = 0;
  CHECK(mb_adapter_zero_grad(a) == MB_OK, "zero_grad");
  CHECK(mb_train_backward(m, gc->ids, gc->labels, gc->B, gc->L, 0, &loss) == MB_OK, "backward: %s", mb_last_error());
  printf("  %-48s %.6f vs %.6f\n", "loss", loss, want_loss[0]);
  CHECK(fabsf(loss - want_loss[0]) <= tol("adamw_loss_abs"), "loss %g vs %g", loss, want_loss[0]);
  compare_tensors(&e, a, gc, "grad.", 1);
  check_loss_equals_forward(m, gc->ids, gc->labels, gc->B, gc->L, loss);
  if (gc->adam_steps) {
    float *losses = st_get(&e, "adamw.losses", &n), worst = 0;
    for (int k = 1; k <= gc->adam_steps; k++) {
      float gn;
      mb_adapter_zero_grad(a);
      CHECK(mb_train_backward(m, gc->ids, gc->labels, gc->B, gc->L, 0, &loss) == MB_OK, "backward");
      float d = fabsf(loss - losses[k - 1]);
      worst = d > worst ? d : worst;
      CHECK(mb_adamw_step(a, &gc->adam, k, &gn) == MB_OK, "adamw: %s", mb_last_error());
    }
    printf("  %-48s maxdiff %.3g (limit %.3g)\n", "AdamW losses before each step", worst, tol("adamw_loss_abs"));
    CHECK(worst <= tol("adamw_loss_abs"), "AdamW losses differ by %g", worst);
    compare_tensors(&e, a, gc, "adamw.final.", 0);
    free(losses);
  }
  free(want_loss);
  st_close(&e);
  mb_adapter_free(a);
  mb_model_free(m);
}

/* keeping every layer, one layer, or none gives the same gradients bit for bit */
static void test_budget(void) {
  const gcase *gc = &CASES[1]; /* stream: 3 layers, all four targets, LIM */
  mb_config cfg = {32, gc->n_layer, 64, 8, 4, 64, 2, 1e-5f, 0, 1, 1};
  mb_model *m = load_model("tests/fixtures/memba-tiny-stream/model.safetensors", &cfg);
  mb_adapter *a = load_adapter(m, gc);
  mb_model_set_adapter(m, a);
  size_t n;
  float *ref = NULL, loss;
  const double budgets[] = {0, 1e9, 100000}; /* one stream layer keeps ~78 KB */
  const int want[] = {0, 3, 1};
  for (int i = 0; i < 3; i++) {
    mb_train_set_budget(m, budgets[i]);
    mb_adapter_zero_grad(a);
    CHECK(mb_train_backward(m, gc->ids, gc->labels, gc->B, gc->L, 0, &loss) == MB_OK, "backward");
    CHECK(mb_train_stored_layers(m) == want[i], "budget %g kept %d layers, want %d", budgets[i], mb_train_stored_layers(m), want[i]);
    float *g = mb_adapter_block(a, 1, &n);
    if (!ref) {
      ref = malloc(n * sizeof(float));
      memcpy(ref, g, n * sizeof(float));
    } else {
      CHECK(memcmp(ref, g, n * sizeof(float)) == 0, "budget %g changed the gradients", budgets[i]);
    }
  }
  printf("  %-48s identical (0, 1 and all 3 layers kept)\n", "gradients under memory budgets");
  free(ref);
  mb_adapter_free(a);
  mb_model_free(m);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("# test_train\n");
  mb_set_simd(1);
  for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) test_case(&CASES[i]);
  test_budget();
  test_loss_equals_forward();
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
