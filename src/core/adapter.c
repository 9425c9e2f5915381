/* adapter.c: a Memba adapter bound to one model: its settings (LoRA rank, scale, targets; LIM
 * options), its LoRA tensors in one block, PEFT initialisation, and merging into the base
 * weights. The forward that uses it is the block (core/block.c); file formats live in the bindings.
 * Not here: optimizer state and gradients (train/optim.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

void lora_shape(const mb_config *c, mb_target t, int *in, int *out) {
  int d = c->d_model, E = c->d_inner, R = c->dt_rank, N = c->d_state;
  switch (t) {
    case MB_T_IN_PROJ: *in = d; *out = 2 * E; break;
    case MB_T_IN_PROJ_X:
    case MB_T_IN_PROJ_Z: *in = d; *out = E; break;
    case MB_T_OUT_PROJ: *in = E; *out = d; break;
    case MB_T_X_PROJ: *in = E; *out = R + 2 * N; break;
    case MB_T_DT_PROJ: *in = R; *out = E; break;
    default: *in = *out = 0;
  }
}

int lim_chunk_len(const mb_adapter_config *c, int L) {
  if (c->chunk_size > 0) return c->chunk_size;
  int len = L / c->chunks; /* paper mode: c = max(1, floor(L / T)) */
  return len < 1 ? 1 : len;
}

static int config_valid(const mb_adapter_config *c) {
  if (c->r < 0 || c->r > 4096) return mb_fail(MB_ERR_INVALID_ARG, "LoRA rank %d out of range", c->r), 0;
  if (c->targets < 0 || c->targets >= (1 << MB_T_COUNT))
    return mb_fail(MB_ERR_INVALID_ARG, "unknown LoRA target bits 0x%x", c->targets), 0;
  if ((c->targets & (1 << MB_T_IN_PROJ)) && (c->targets & ((1 << MB_T_IN_PROJ_X) | (1 << MB_T_IN_PROJ_Z))))
    return mb_fail(MB_ERR_INVALID_ARG, "in_proj overlaps in_proj.x / in_proj.z"), 0;
  if (c->r > 0 && c->targets == 0) return mb_fail(MB_ERR_INVALID_ARG, "LoRA rank > 0 but no target"), 0;
  if (c->r == 0 && c->targets != 0) return mb_fail(MB_ERR_INVALID_ARG, "LoRA targets but rank 0"), 0;
  if (c->r > 0 && !isfinite(c->alpha)) return mb_fail(MB_ERR_INVALID_ARG, "lora_alpha not finite"), 0;
  if (!(c->dropout >= 0.0f && c->dropout < 1.0f)) return mb_fail(MB_ERR_INVALID_ARG, "dropout must be in [0, 1)"), 0;
  if (!c->lim) return 1;
  if ((c->chunks > 0) == (c->chunk_size > 0) || c->chunks < 0 || c->chunk_size < 0)
    return mb_fail(MB_ERR_INVALID_ARG, "LIM needs exactly one of chunks >= 1 and chunk_size >= 1"), 0;
  if (!(c->tau > 0.0f && c->tau <= 1.0f)) return mb_fail(MB_ERR_INVALID_ARG, "LIM tau must be in (0, 1]"), 0;
  if (!isfinite(c->v_th)) return mb_fail(MB_ERR_INVALID_ARG, "LIM v_th not finite"), 0;
  if (c->output < 0 || c->output > 1 || c->reset_grad < 0 || c->reset_grad > 1 ||
      c->cross_layer < 0 || c->cross_layer > 2)
    return mb_fail(MB_ERR_INVALID_ARG, "unknown LIM option value"), 0;
  if (!(c->surrogate_width > 0.0f) || !isfinite(c->surrogate_width))
    return mb_fail(MB_ERR_INVALID_ARG, "LIM surrogate_width must be > 0"), 0;
  return 1;
}

mb_status mb_adapter_new(const mb_model *m, const mb_adapter_config *cfg, mb_adapter **ret) {
  mb_clear_error();
  if (!ret) return mb_fail(MB_ERR_INVALID_ARG, "out is NULL");
  *ret = NULL;
  if (!m || !cfg) return mb_fail(MB_ERR_INVALID_ARG, "model or config is NULL");
  if (!config_valid(cfg)) return MB_ERR_INVALID_ARG;
  int nl = m->cfg.n_layer;
  mb_adapter *a = mb_calloc_n(1, sizeof *a);
  if (!a) return mb_fail(MB_ERR_OOM, "out of memory for adapter");
  a->cfg = *cfg;
  a->model = m;
  a->scale = cfg->r ? (cfg->rslora ? cfg->alpha / sqrtf((float)cfg->r) : cfg->alpha / (float)cfg->r) : 0.0f;
  int ovf = 0;
  uint64_t total = 0;
  for (int t = 0; t < MB_T_COUNT; t++) {
    if (!(cfg->targets & (1 << t))) continue;
    int in, out;
    lora_shape(&m->cfg, (mb_target)t, &in, &out);
    total = sz_add(total, sz_mul((uint64_t)nl * cfg->r, (uint64_t)in + out, &ovf), &ovf);
  }
  if (ovf || total > SIZE_MAX / sizeof(float)) {
    free(a);
    return mb_fail(MB_ERR_OOM, "LoRA tensors of rank %d do not fit this address space", cfg->r);
  }
  a->A = mb_calloc_n((size_t)nl * MB_T_COUNT, sizeof(float *));
  a->B = mb_calloc_n((size_t)nl * MB_T_COUNT, sizeof(float *));
  a->block = mb_calloc_floats(total ? total : 1);
  if (!a->A || !a->B || !a->block) {
    mb_adapter_free(a);
    return mb_fail(MB_ERR_OOM, "out of memory for adapter tensors");
  }
  a->block_numel = (size_t)total;
  float *p = a->block;
  for (int l = 0; l < nl; l++)
    for (int t = 0; t < MB_T_COUNT; t++) {
      if (!(cfg->targets & (1 << t))) continue;
      int in, out;
      lora_shape(&m->cfg, (mb_target)t, &in, &out);
      a->A[l * MB_T_COUNT + t] = p;
      p += (size_t)cfg->r * in;
      a->B[l * MB_T_COUNT + t] = p;
      p += (size_t)out * cfg->r;
    }
  *ret = a;
  return MB_OK;
}

void mb_adapter_free(mb_adapter *a) {
  if (!a) return;
  mb_model *m = (mb_model *)a->model; /* the model outlives its adapters */
  if (m && m->adapter == a) mb_model_set_adapter(m, NULL);
  free(a->saved);
  free(a->block);
  free(a->grad);
  free(a->m1);
  free(a->m2);
  free(a->A);
  free(a->B);
  free(a);
}

float *mb_adapter_param(mb_adapter *a, mb_target t, int layer, int which, size_t *numel) {
  if (numel) *numel = 0;
  if (!a || t < 0 || t >= MB_T_COUNT || layer < 0 || layer >= a->model->cfg.n_layer) return NULL;
  float *p = (which ? a->B : a->A)[layer * MB_T_COUNT + t];
  if (p && numel) {
    int in, out;
    lora_shape(&a->model->cfg, t, &in, &out);
    *numel = (size_t)a->cfg.r * (which ? out : in);
  }
  return p;
}

mb_status mb_adapter_init(mb_adapter *a, uint32_t seed) {
  mb_clear_error();
  if (!a) return mb_fail(MB_ERR_INVALID_ARG, "adapter is NULL");
  if (a->merged) return mb_fail(MB_ERR_STATE, "unmerge the adapter before re-initialising it");
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int l = 0; l < a->model->cfg.n_layer; l++)
    for (int t = 0; t < MB_T_COUNT; t++) {
      float *A = a->A[l * MB_T_COUNT + t], *B = a->B[l * MB_T_COUNT + t];
      if (!A) continue;
      int in, out;
      lora_shape(&a->model->cfg, (mb_target)t, &in, &out);
      /* kaiming_uniform_(a=sqrt(5)): bound = sqrt(6 / ((1 + 5) * fan_in)) = 1/sqrt(fan_in) */
      float bound = 1.0f / sqrtf((float)in);
      for (size_t i = 0; i < (size_t)a->cfg.r * in; i++) {
        s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
        float u = (float)((s * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
        A[i] = bound * (2.0f * u - 1.0f);
      }
      memset(B, 0, sizeof(float) * (size_t)out * a->cfg.r);
    }
  return MB_OK;
}

int mb_adapter_causal(const mb_adapter *a) {
  if (!a || !a->cfg.lim) return 1;
  return a->cfg.chunk_size > 0 && a->cfg.cross_layer != MB_LIM_MEAN;
}

int mb_adapter_merged(const mb_adapter *a) { return a ? a->merged : 0; }

/* merging writes the base weights in float32: every target's slot must be f32 */
static mb_status merge_check(const mb_model *m, const mb_adapter *a) {
  for (int l = 0; l < m->cfg.n_layer; l++)
    for (int t = 0; t < MB_T_COUNT; t++) {
      if (!a->A[l * MB_T_COUNT + t]) continue;
      mb_param p = t == MB_T_OUT_PROJ ? MB_P_OUT_PROJ_W : t == MB_T_X_PROJ ? MB_P_X_PROJ_W
                   : t == MB_T_DT_PROJ ? MB_P_DT_PROJ_W : MB_P_IN_PROJ_W;
      if (!slot_f32(model_slot(m, p, l))) return mb_fail(MB_ERR_STATE, "merge needs float32 base weights");
    }
  return MB_OK;
}

/* Every merged target of every layer: its base weight rows (w, out x in floats). */
typedef void (*merge_fn)(mb_adapter *a, float *w, const float *A, const float *B, int out, int in, float *saved);

static size_t for_each_target(mb_model *m, mb_adapter *a, merge_fn fn) {
  const mb_config *c = &m->cfg;
  size_t off = 0;
  for (int l = 0; l < c->n_layer; l++) {
    for (int t = 0; t < MB_T_COUNT; t++) {
      const float *A = a->A[l * MB_T_COUNT + t], *B = a->B[l * MB_T_COUNT + t];
      if (!A) continue;
      int in, out;
      lora_shape(c, (mb_target)t, &in, &out);
      mb_param p = t == MB_T_OUT_PROJ ? MB_P_OUT_PROJ_W : t == MB_T_X_PROJ ? MB_P_X_PROJ_W
                   : t == MB_T_DT_PROJ ? MB_P_DT_PROJ_W : MB_P_IN_PROJ_W;
      float *w = mb_model_param(m, p, l, NULL); /* f32 slots: merge_check said so */
      if (t == MB_T_IN_PROJ_Z) w += (size_t)c->d_inner * c->d_model;
      if (fn) fn(a, w, A, B, out, in, a->saved ? a->saved + off : NULL);
      off += (size_t)out * in;
    }
  }
  return off;
}

/* merge: keep the rows, then W += scale * B @ A; unmerge: put the kept rows back */
static void merge_one(mb_adapter *a, float *w, const float *A, const float *B, int out, int in, float *saved) {
  memcpy(saved, w, sizeof(float) * (size_t)out * in);
  lora_merge(w, A, B, a->scale, out, in, a->cfg.r);
}
static void unmerge_one(mb_adapter *a, float *w, const float *A, const float *B, int out, int in, float *saved) {
  (void)a, (void)A, (void)B;
  memcpy(w, saved, sizeof(float) * (size_t)out * in);
}

mb_status mb_adapter_merge(mb_model *m, mb_adapter *a) {
  mb_clear_error();
  if (!m || !a || a->model != m) return mb_fail(MB_ERR_INVALID_ARG, "adapter does not belong to this model");
  if (m->adapter != a) return mb_fail(MB_ERR_STATE, "only the active adapter can be merged");
  if (a->merged) return MB_OK;
  mb_status st = merge_check(m, a);
  if (st) return st;
  size_t n = for_each_target(m, a, NULL); /* fits: these weights exist */
  a->saved = mb_alloc_floats(n);
  if (!a->saved)
    return mb_fail(MB_ERR_OOM, "out of memory keeping the %zu MB of base weights a merge changes", n * sizeof(float) >> 20);
  m->split.open = 0; /* the weights change under an open split */
  for_each_target(m, a, merge_one);
  a->merged = 1;
  return MB_OK;
}

mb_status mb_adapter_unmerge(mb_model *m, mb_adapter *a) {
  mb_clear_error();
  if (!m || !a || a->model != m) return mb_fail(MB_ERR_INVALID_ARG, "adapter does not belong to this model");
  if (!a->merged) return MB_OK;
  m->split.open = 0;
  for_each_target(m, a, unmerge_one); /* bit for bit the weights before the merge */
  free(a->saved);
  a->saved = NULL;
  a->merged = 0;
  return MB_OK;
}

mb_status mb_model_set_adapter(mb_model *m, mb_adapter *a) {
  mb_clear_error();
  if (!m) return mb_fail(MB_ERR_INVALID_ARG, "model is NULL");
  if (a && a->model != m) return mb_fail(MB_ERR_INVALID_ARG, "adapter belongs to another model");
  if (m->adapter && m->adapter != a && m->adapter->merged) mb_adapter_unmerge(m, m->adapter);
  if (m->adapter != a) m->split.open = 0; /* activations were sized for the other adapter */
  m->adapter = a;
  return MB_OK;
}
