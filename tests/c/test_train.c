/* test_train.c: training in the C core against the golden vectors: the loss and the gradient of
 * every LoRA tensor (memba-tiny-paper: mask reset gradient, mean transfer; -stream: triangle
 * surrogate, first transfer, all four targets; -short: L < chunks), and the AdamW trajectories
 * (losses before each step and the final tensors). */
#include "../../src/memba.h"
#include "../../src/memba_backend.h"
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
  /* the loss equals the forward's own cross-entropy (the two code paths agree) */
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
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
