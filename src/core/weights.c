/* weights.c: a model's weights: one block carved into typed slots (mb_slot: dtype, data, numel),
 * the public slot access for the loaders (mb_model_param), finalize (A = -exp(A_log)) and the
 * embedding lookup. Every read of a weight goes through a slot, so a new dtype (f16, 8-bit) is
 * added here and in the ops that take a slot. Only f32 exists today.
 * Not here: activations and the forward (models/lm.c), file parsing (bindings). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

/* The shape of a parameter as [rows, cols] (1-D tensors: [1, n]; absent: [0, 0]), in 64 bits
 * (every dim is < 2^25, so no product of two wraps). */
static void param_shape(const mb_config *c, mb_param p, uint64_t *rows, uint64_t *cols) {
  uint64_t d = c->d_model, E = c->d_inner, N = c->d_state, K = c->d_conv, R = c->dt_rank;
  uint64_t V = c->vocab_size, r = 1, k = 0;
  switch (p) {
    case MB_P_EMBEDDING: r = V, k = d; break;
    case MB_P_NORM_F: k = d; break;
    case MB_P_LM_HEAD: r = c->tied_head ? 0 : V, k = d; break;
    case MB_P_NORM: k = d; break;
    case MB_P_IN_PROJ_W: r = 2 * E, k = d; break;
    case MB_P_IN_PROJ_B: k = c->use_bias ? 2 * E : 0; break;
    case MB_P_CONV_W: r = E, k = K; break;
    case MB_P_CONV_B: k = c->use_conv_bias ? E : 0; break;
    case MB_P_X_PROJ_W: r = R + 2 * N, k = E; break;
    case MB_P_DT_PROJ_W: r = E, k = R; break;
    case MB_P_DT_PROJ_B: k = E; break;
    case MB_P_A_LOG: r = E, k = N; break;
    case MB_P_D: k = E; break;
    case MB_P_OUT_PROJ_W: r = d, k = E; break;
    case MB_P_OUT_PROJ_B: k = c->use_bias ? d : 0; break;
    default: break;
  }
  *rows = k ? r : 0;
  *cols = r ? k : 0;
}

/* the matrices that take the model's weight dtype; every other tensor stays f32 (dt_proj too:
 * [E, dt_rank] is about 3% of a layer, and its narrow rows would waste most of a q8 block) */
static int param_typed(mb_param p) {
  return p == MB_P_EMBEDDING || p == MB_P_LM_HEAD || p == MB_P_IN_PROJ_W || p == MB_P_X_PROJ_W ||
         p == MB_P_OUT_PROJ_W;
}

/* bytes of a slot in the block, rounded up to 16 so every slot starts aligned */
static uint64_t slot_bytes(const mb_config *c, mb_param p, mb_dtype dt, int *ovf) {
  uint64_t rows, cols;
  param_shape(c, p, &rows, &cols);
  uint64_t b = sz_mul(rows, dtype_row_bytes(param_typed(p) ? dt : MB_DT_F32, cols), ovf);
  return sz_add(b, 15, ovf) & ~(uint64_t)15;
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

/* the next slot of the block (an empty slot for an absent parameter) */
static mb_slot carve(uint8_t **p, const mb_config *c, mb_param q, mb_dtype dt) {
  uint64_t rows, cols;
  param_shape(c, q, &rows, &cols);
  mb_dtype t = param_typed(q) ? dt : MB_DT_F32;
  int ovf = 0;
  size_t bytes = (size_t)slot_bytes(c, q, dt, &ovf); /* fits: the whole block does */
  mb_slot s = {t, rows ? *p : NULL, (size_t)(rows * cols), (size_t)cols, (size_t)(rows * dtype_row_bytes(t, cols))};
  *p += bytes;
  return s;
}

mb_status mb_model_new(const mb_config *cfg, mb_model **out) { return mb_model_new_typed(cfg, MB_DT_F32, out); }

mb_status mb_model_new_typed(const mb_config *cfg, mb_dtype dtype, mb_model **out) {
  mb_clear_error();
  if (!out) return mb_fail(MB_ERR_INVALID_ARG, "out is NULL");
  *out = NULL;
  if (!config_valid(cfg)) return MB_ERR_INVALID_ARG;
  if (dtype != MB_DT_F32 && dtype != MB_DT_F16 && dtype != MB_DT_Q8)
    return mb_fail(MB_ERR_INVALID_ARG, "unknown weight dtype %d", (int)dtype);
  /* the whole block in 64 bits, checked before anything is allocated */
  int ovf = 0;
  uint64_t A_bytes = sz_mul((uint64_t)cfg->d_inner * cfg->d_state, sizeof(float), &ovf); /* derived A */
  uint64_t total = 0, per_layer = sz_add(A_bytes, 15, &ovf) & ~(uint64_t)15;
  for (int p = MB_P_EMBEDDING; p <= MB_P_LM_HEAD; p++) total = sz_add(total, slot_bytes(cfg, p, dtype, &ovf), &ovf);
  for (int p = MB_P_LAYER0; p < MB_P_COUNT; p++) per_layer = sz_add(per_layer, slot_bytes(cfg, p, dtype, &ovf), &ovf);
  total = sz_add(total, sz_mul(per_layer, (uint64_t)cfg->n_layer, &ovf), &ovf);
  if (ovf) return mb_fail(MB_ERR_OOM, "a model of more than 2^64 bytes of weights");
  if (total > SIZE_MAX - 16)
    return mb_fail(MB_ERR_OOM, "a model of %.0f MB of weights does not fit this address space",
                   (double)total / 1048576.0);
  mb_model *m = mb_calloc_n(1, sizeof *m);
  if (!m) return mb_fail(MB_ERR_OOM, "out of memory allocating the model");
  m->cfg = *cfg;
  m->dtype = dtype;
  m->block = mb_alloc_floats((total + 3) / 4); /* 16-byte aligned like any malloc */
  m->layers = mb_calloc_n((uint64_t)cfg->n_layer, sizeof(mb_layer));
  if (!m->block || !m->layers) {
    mb_fail(MB_ERR_OOM, "out of memory allocating %.0f MB of weights", (double)total / 1048576.0);
    free(m->block); free(m->layers); free(m);
    return MB_ERR_OOM;
  }
  m->block_bytes = (size_t)total;
  uint8_t *p = (uint8_t *)m->block;
  m->embedding = carve(&p, cfg, MB_P_EMBEDDING, dtype);
  m->norm_f = carve(&p, cfg, MB_P_NORM_F, dtype);
  m->lm_head = cfg->tied_head ? m->embedding : carve(&p, cfg, MB_P_LM_HEAD, dtype);
  for (int l = 0; l < cfg->n_layer; l++) {
    mb_layer *L = &m->layers[l];
    for (int q = MB_P_LAYER0; q < MB_P_COUNT; q++) L->w[q - MB_P_LAYER0] = carve(&p, cfg, q, dtype);
    L->A = (float *)(void *)p;
    p += (size_t)(sz_add(A_bytes, 15, &ovf) & ~(uint64_t)15);
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

int mb_model_param_dtype(const mb_model *m, mb_param p, int layer, size_t *numel) {
  const mb_slot *s = model_slot(m, p, layer);
  if (numel) *numel = s && s->data ? s->numel : 0;
  return s ? s->dtype : MB_DT_F32;
}

void *mb_model_param_raw(mb_model *m, mb_param p, int layer, size_t *bytes) {
  mb_slot *s = (mb_slot *)model_slot(m, p, layer);
  if (bytes) *bytes = s && s->data ? s->bytes : 0;
  return s ? s->data : NULL;
}

mb_status mb_model_param_write(mb_model *m, mb_param p, int layer, size_t row0, size_t rows, const float *src) {
  mb_clear_error();
  mb_slot *s = (mb_slot *)model_slot(m, p, layer);
  if (!s || !s->data || !src) return mb_fail(MB_ERR_INVALID_ARG, "parameter %d of layer %d does not exist (or src is NULL)", (int)p, layer);
  size_t n_rows = s->cols ? s->numel / s->cols : 0;
  if (row0 > n_rows || rows > n_rows - row0)
    return mb_fail(MB_ERR_INVALID_ARG, "rows [%zu, %zu) past the parameter's %zu rows", row0, row0 + rows, n_rows);
  uint8_t *dst = (uint8_t *)s->data + row0 * dtype_row_bytes(s->dtype, s->cols);
  return dtype_rows_from_f32(dst, src, s->dtype, rows, s->cols);
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

size_t mb_model_weight_bytes(const mb_model *m) { return m ? m->block_bytes : 0; }

void slot_rows(float *out, const mb_slot *w, const int32_t *ids, size_t n, int C) {
  size_t rb = dtype_row_bytes(w->dtype, (size_t)C);
  for (size_t i = 0; i < n; i++)
    dtype_rows_to_f32(out + i * C, (const uint8_t *)w->data + (size_t)ids[i] * rb, w->dtype, 1, (size_t)C);
}
