/* testmodel.h: loads an HF-layout F32 golden checkpoint into a model for the native tests.
 * Test-only (the library's loader is bindings/checkpoint.js). */
#ifndef MEMBA_TESTMODEL_H
#define MEMBA_TESTMODEL_H
#include "../../src/memba.h"
#include "testutil.h"

/* constructors that hand back NULL on failure (the check counts it) */
static inline mb_state *new_state(const mb_model *m, int batch) {
  mb_state *s = NULL;
  CHECK(mb_state_new(m, batch, &s) == MB_OK && s, "mb_state_new: %s", mb_last_error());
  return s;
}
static inline mb_adapter *new_adapter(const mb_model *m, const mb_adapter_config *c) {
  mb_adapter *a = NULL;
  CHECK(mb_adapter_new(m, c, &a) == MB_OK && a, "mb_adapter_new: %s", mb_last_error());
  return a;
}

/* adds a fixed pattern of +-amp to every LoRA tensor (lora_B included, so the branch counts) */
static inline void adapter_nudge(mb_adapter *a, float amp) {
  size_t n;
  float *blk = mb_adapter_block(a, 0, &n);
  for (size_t i = 0; i < n; i++) blk[i] += amp * ((float)((i * 7) % 13) / 6.0f - 1.0f);
}

static inline void load_param(mb_model *m, st_file *f, mb_param p, int layer, const char *name) {
  size_t want = 0, got = 0;
  float *dst = mb_model_param(m, p, layer, &want);
  float *src = st_get(f, name, &got);
  CHECK(dst && src && want == got, "param %s: want %zu got %zu", name, want, got);
  if (dst && src && want == got) memcpy(dst, src, want * sizeof(float));
  free(src);
}

static inline mb_model *load_model(const char *path, const mb_config *cfg) {
  st_file f;
  if (!st_open(&f, path)) { CHECK(0, "cannot open %s", path); return NULL; }
  mb_model *m = NULL;
  CHECK(mb_model_new(cfg, &m) == MB_OK && m != NULL, "mb_model_new: %s", mb_last_error());
  if (!m) { st_close(&f); return NULL; }
  load_param(m, &f, MB_P_EMBEDDING, -1, "backbone.embeddings.weight");
  load_param(m, &f, MB_P_NORM_F, -1, "backbone.norm_f.weight");
  static const struct { mb_param p; const char *n; } names[] = {
      {MB_P_NORM, "norm.weight"}, {MB_P_IN_PROJ_W, "mixer.in_proj.weight"},
      {MB_P_CONV_W, "mixer.conv1d.weight"}, {MB_P_CONV_B, "mixer.conv1d.bias"},
      {MB_P_X_PROJ_W, "mixer.x_proj.weight"}, {MB_P_DT_PROJ_W, "mixer.dt_proj.weight"},
      {MB_P_DT_PROJ_B, "mixer.dt_proj.bias"}, {MB_P_A_LOG, "mixer.A_log"}, {MB_P_D, "mixer.D"},
      {MB_P_OUT_PROJ_W, "mixer.out_proj.weight"}};
  for (int l = 0; l < cfg->n_layer; l++)
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
      char full[128];
      snprintf(full, sizeof full, "backbone.layers.%d.%s", l, names[i].n);
      load_param(m, &f, names[i].p, l, full);
    }
  st_close(&f);
  CHECK(mb_model_finalize(m) == MB_OK, "finalize");
  return m;
}

#endif
