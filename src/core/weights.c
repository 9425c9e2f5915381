/* weights.c: a model's weights: one block carved into typed slots (mb_slot: dtype, data, numel),
 * the public slot access for the loaders (mb_model_param), finalize (A = -exp(A_log)) and the
 * embedding lookup. Every read of a weight goes through a slot, so a new dtype (f16, 8-bit) is
 * added here and in the ops that take a slot. Only f32 exists today.
 * Not here: activations and the forward (models/lm.c), file parsing (bindings). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

/* floats of a parameter, in 64 bits (every dim is < 2^25, so no product of two wraps) */
static uint64_t param_numel(const mb_config *c, mb_param p) {
  uint64_t d = c->d_model, E = c->d_inner, N = c->d_state, K = c->d_conv, R = c->dt_rank;
  uint64_t V = c->vocab_size;
  switch (p) {
    case MB_P_EMBEDDING: return V * d;
    case MB_P_NORM_F: return d;
    case MB_P_LM_HEAD: return c->tied_head ? 0 : V * d;
    case MB_P_NORM: return d;
    case MB_P_IN_PROJ_W: return 2 * E * d;
    case MB_P_IN_PROJ_B: return c->use_bias ? 2 * E : 0;
    case MB_P_CONV_W: return E * K;
    case MB_P_CONV_B: return c->use_conv_bias ? E : 0;
    case MB_P_X_PROJ_W: return (R + 2 * N) * E;
    case MB_P_DT_PROJ_W: return E * R;
    case MB_P_DT_PROJ_B: return E;
    case MB_P_A_LOG: return E * N;
    case MB_P_D: return E;
    case MB_P_OUT_PROJ_W: return d * E;
    case MB_P_OUT_PROJ_B: return c->use_bias ? d : 0;
    default: return 0;
  }
}

static int config_valid(const mb_config *c) {
  if (!c) return mb_fail(MB_ERR_INVALID_ARG, "config is NULL"), 0;
  const int dims[] = {c->d_model, c->n_layer, c->vocab_size, c->d_state, c->d_conv, c->d_inner,
                      c->dt_rank};
  for (int i = 0; i < 7; i++)
    if (dims[i] < 1 || dims[i] > (1 << 24))
      return mb_fail(MB_ERR_INVALID_ARG, "config dimension %d out of range", dims[i]), 0;
  if (c->d_conv > 64) return mb_fail(MB_ERR_INVALID_ARG, "d_conv %d too large", c->d_conv), 0;
  if (!(c->eps > 0.0f) || !isfinite(c->eps))
    return mb_fail(MB_ERR_INVALID_ARG, "eps must be positive"), 0;
  return 1;
}

/* the next numel floats of the block as an f32 slot (an empty slot for numel 0) */
static mb_slot carve(float **p, uint64_t n) {
  size_t numel = (size_t)n; /* fits: the whole block does */
  mb_slot s = {MB_DT_F32, numel ? *p : NULL, numel};
  *p += numel;
  return s;
}

mb_status mb_model_new(const mb_config *cfg, mb_model **out) {
  mb_clear_error();
  if (!out) return mb_fail(MB_ERR_INVALID_ARG, "out is NULL");
  *out = NULL;
  if (!config_valid(cfg)) return MB_ERR_INVALID_ARG;
  /* the whole block in 64 bits, checked before anything is allocated */
  int ovf = 0;
  uint64_t total = 0, per_layer = (uint64_t)cfg->d_inner * cfg->d_state; /* derived A */
  for (int p = MB_P_EMBEDDING; p <= MB_P_LM_HEAD; p++) total = sz_add(total, param_numel(cfg, p), &ovf);
  for (int p = MB_P_LAYER0; p < MB_P_COUNT; p++) per_layer = sz_add(per_layer, param_numel(cfg, p), &ovf);
  total = sz_add(total, sz_mul(per_layer, (uint64_t)cfg->n_layer, &ovf), &ovf);
  if (ovf) return mb_fail(MB_ERR_OOM, "a model of more than 2^64 bytes of float32 weights");
  if (total > SIZE_MAX / sizeof(float))
    return mb_fail(MB_ERR_OOM, "a model of %.0f MB of float32 weights does not fit this address space",
                   (double)total * sizeof(float) / 1048576.0);
  mb_model *m = mb_calloc_n(1, sizeof *m);
  if (!m) return mb_fail(MB_ERR_OOM, "out of memory allocating the model");
  m->cfg = *cfg;
  m->block = mb_alloc_floats(total);
  m->layers = mb_calloc_n((uint64_t)cfg->n_layer, sizeof(mb_layer));
  if (!m->block || !m->layers) {
    mb_fail(MB_ERR_OOM, "out of memory allocating %.0f MB of weights", (double)total * sizeof(float) / 1048576.0);
    free(m->block); free(m->layers); free(m);
    return MB_ERR_OOM;
  }
  m->block_numel = (size_t)total;
  float *p = m->block;
  m->embedding = carve(&p, param_numel(cfg, MB_P_EMBEDDING));
  m->norm_f = carve(&p, param_numel(cfg, MB_P_NORM_F));
  m->lm_head = cfg->tied_head ? m->embedding : carve(&p, param_numel(cfg, MB_P_LM_HEAD));
  for (int l = 0; l < cfg->n_layer; l++) {
    mb_layer *L = &m->layers[l];
    for (int q = MB_P_LAYER0; q < MB_P_COUNT; q++) L->w[q - MB_P_LAYER0] = carve(&p, param_numel(cfg, q));
    L->A = p;
    p += (size_t)cfg->d_inner * cfg->d_state;
  }
  *out = m;
  return MB_OK;
}

const mb_config *mb_model_config(const mb_model *m) { return m ? &m->cfg : NULL; }

const mb_slot *model_slot(const mb_model *m, mb_param p, int layer) {
  if (!m || p < 0 || p >= MB_P_COUNT) return NULL;
  if (p < MB_P_LAYER0) {
    if (layer != -1) return NULL;
    if (p == MB_P_LM_HEAD && m->cfg.tied_head) return NULL; /* written through the embedding */
    return p == MB_P_EMBEDDING ? &m->embedding : p == MB_P_NORM_F ? &m->norm_f : &m->lm_head;
  }
  if (layer < 0 || layer >= m->cfg.n_layer) return NULL;
  return layer_slot(&m->layers[layer], p);
}

float *mb_model_param(mb_model *m, mb_param p, int layer, size_t *numel) {
  if (numel) *numel = 0;
  mb_slot *s = (mb_slot *)model_slot(m, p, layer);
  float *ptr = slot_f32_mut(s);
  if (ptr && numel) *numel = s->numel;
  return ptr;
}

mb_status mb_model_finalize(mb_model *m) {
  mb_clear_error();
  if (!m) return mb_fail(MB_ERR_INVALID_ARG, "model is NULL");
  size_t EN = (size_t)m->cfg.d_inner * m->cfg.d_state;
  for (int l = 0; l < m->cfg.n_layer; l++) {
    mb_layer *L = &m->layers[l];
    const float *A_log = layer_f32(L, MB_P_A_LOG);
    /* A = -exp(A_log) */
    for (size_t i = 0; i < EN; i++) L->A[i] = -expf(A_log[i]);
  }
  m->finalized = 1;
  return MB_OK;
}

size_t mb_model_weight_bytes(const mb_model *m) { return m ? m->block_numel * sizeof(float) : 0; }

void slot_rows(float *out, const mb_slot *w, const int32_t *ids, size_t n, int C) {
  switch (w->dtype) {
    case MB_DT_F32: {
      const float *src = slot_f32(w);
      for (size_t i = 0; i < n; i++) memcpy(out + i * C, src + (size_t)ids[i] * C, (size_t)C * sizeof(float));
      break;
    }
  }
}
