/* cases.h: the Memba golden cases (tests/fixtures/memba-tiny-*) as C tables: ids, labels, adapter
 * settings (from adapter_config.json / memba_config.json) and AdamW settings (case.json), and
 * an adapter loader. Test-only. */
#ifndef MEMBA_CASES_H
#define MEMBA_CASES_H
#include "../../src/memba.h"
#include "testmodel.h"
#include "testutil.h"

typedef struct {
  const char *dir;
  int n_layer, B, L, P;
  const int32_t *ids;
  mb_adapter_config ac;
  const int32_t *labels; /* [B, L], -100 = ignored */
  int adam_steps;         /* AdamW trajectory of case.json (0 = none) */
  mb_adamw adam;
} gcase;

static const int32_t PAPER_IDS[] = {14, 8, 20, 38, 58, 14, 30, 40, 2, 33, 44, 35, 1, 21, 27, 54, 48, 18,
                                    17, 22, 2, 15, 19, 24, 34, 36, 45, 13, 8, 22, 42, 45, 25, 21, 43, 32};
static const int32_t STREAM_IDS[] = {18, 11, 58, 38, 55, 63, 38, 49, 31, 58, 11, 45, 3, 54, 57, 63};
static const int32_t SHORT_IDS[] = {55, 43, 19, 38, 37, 63};
#define X -100
static const int32_t PAPER_LABELS[] = {X, X, X, X, X, 30, 40, 2, 33, 44, 35, 1, 21, 27, 54, 48, 18, X,
                                       X, X, X, X, X, 34, 36, 45, 13, 8, 22, 42, 45, 25, 21, 43, 32, X};
static const int32_t STREAM_LABELS[] = {11, 58, 38, 55, 63, 38, 49, 31, 58, 11, 45, 3, 54, 57, 63, X};
static const int32_t SHORT_LABELS[] = {43, 19, X, 37, 63, X};
#undef X
#define BIT(t) (1 << (t))

static const gcase CASES[] = {
    {"tests/fixtures/memba-tiny-paper/", 2, 2, 18, 6, PAPER_IDS,
     {4, 8.0f, 0, BIT(MB_T_IN_PROJ) | BIT(MB_T_OUT_PROJ), 0, 1, 4, 0, 0.5f, 1.0f, MB_LIM_POST_RESET, MB_LIM_MASK, 1.0f, MB_LIM_MEAN},
     PAPER_LABELS, 5, {0.01f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f}},
    {"tests/fixtures/memba-tiny-stream/", 3, 1, 16, 4, STREAM_IDS,
     {4, 4.0f, 0, BIT(MB_T_IN_PROJ) | BIT(MB_T_OUT_PROJ) | BIT(MB_T_X_PROJ) | BIT(MB_T_DT_PROJ), 0, 1, 0, 3, 0.8f, 0.7f,
      MB_LIM_PRE_RESET, MB_LIM_TRIANGLE, 1.0f, MB_LIM_FIRST},
     STREAM_LABELS, 3, {0.005f, 0.9f, 0.95f, 1e-8f, 0.0f, 0.0f}},
    {"tests/fixtures/memba-tiny-short/", 2, 2, 3, 1, SHORT_IDS,
     {2, 2.0f, 0, BIT(MB_T_OUT_PROJ), 0, 1, 4, 0, 0.5f, 0.5f, MB_LIM_POST_RESET, MB_LIM_MASK, 1.0f, MB_LIM_MEAN},
     SHORT_LABELS, 0, {0}},
};
static const char *TNAME[MB_T_COUNT] = {"in_proj", "in_proj.x", "in_proj.z", "out_proj", "x_proj", "dt_proj"};

static mb_adapter *load_adapter(mb_model *m, const gcase *gc) {
  mb_adapter *a = NULL;
  mb_adapter_new(m, &gc->ac, &a);
  CHECK(a != NULL, "adapter_new: %s", mb_last_error());
  char path[256];
  snprintf(path, sizeof path, "%sadapter_model.safetensors", gc->dir);
  st_file f;
  CHECK(st_open(&f, path), "open %s", path);
  for (int l = 0; l < gc->n_layer; l++)
    for (int t = 0; t < MB_T_COUNT; t++) {
      if (!(gc->ac.targets & BIT(t))) continue;
      for (int w = 0; w < 2; w++) {
        char name[160];
        snprintf(name, sizeof name, "base_model.model.backbone.layers.%d.mixer.%s.lora_%c.weight", l, TNAME[t], w ? 'B' : 'A');
        size_t want, got;
        float *dst = mb_adapter_param(a, (mb_target)t, l, w, &want), *src = st_get(&f, name, &got);
        CHECK(dst && src && want == got, "%s: %zu vs %zu", name, want, got);
        if (dst && src && want == got) memcpy(dst, src, want * sizeof(float));
        free(src);
      }
    }
  st_close(&f);
  return a;
}

/* The case's model with its adapter loaded and active. */
static mb_model *load_case(const gcase *gc, mb_adapter **a) {
  mb_config cfg = {32, gc->n_layer, 64, 8, 4, 64, 2, 1e-5f, 0, 1, 1};
  char path[256];
  snprintf(path, sizeof path, "%smodel.safetensors", gc->dir);
  mb_model *m = load_model(path, &cfg);
  *a = load_adapter(m, gc);
  CHECK(mb_model_set_adapter(m, *a) == MB_OK, "set_adapter");
  return m;
}
#endif
