/* state.c: the recurrent decode state of B sequences: per layer and sequence the conv history
 * [K-1, E] (the K-1 pre-conv x before the next token) and the SSM state [E, N], in one flat
 * float block so callers can copy, save and restore it byte for byte, plus the position count.
 * A causal LIM adapter (chunk_size with first/none) adds its membrane [c, E] per layer and sequence. */
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

static size_t per_seq(const mb_state *s) {
  return (size_t)(s->K - 1) * s->E + (size_t)s->E * s->N + (size_t)s->lim_c * s->E;
}

mb_status mb_state_new(const mb_model *m, int batch, mb_state **out) {
  mb_clear_error();
  if (!out) return mb_fail(MB_ERR_INVALID_ARG, "out is NULL");
  *out = NULL;
  if (!m) return mb_fail(MB_ERR_INVALID_ARG, "model is NULL");
  if (batch < 1 || batch > 65536) return mb_fail(MB_ERR_INVALID_ARG, "batch %d out of range", batch);
  mb_state *s = mb_calloc_n(1, sizeof *s);
  if (!s) return mb_fail(MB_ERR_OOM, "out of memory for decode state");
  s->batch = batch;
  s->n_layer = m->cfg.n_layer;
  s->E = m->cfg.d_inner;
  s->K = m->cfg.d_conv;
  s->N = m->cfg.d_state;
  /* a causal LIM adapter keeps its membrane [c, E] per layer and sequence */
  const mb_adapter *ad = m->adapter;
  if (ad && ad->cfg.lim && mb_adapter_causal(ad)) s->lim_c = ad->cfg.chunk_size;
  /* per sequence and layer, in 64 bits (each term < 2^55): the membrane term grows with chunk_size */
  uint64_t seq = (uint64_t)(s->K - 1) * s->E + (uint64_t)s->E * s->N + (uint64_t)s->lim_c * s->E;
  int ovf = seq > SIZE_MAX / sizeof(float);
  s->numel = ovf ? 0 : floats3((size_t)seq, (size_t)batch, (size_t)s->n_layer, &ovf);
  if (ovf) {
    free(s);
    return mb_fail(MB_ERR_OOM, "a decode state for batch %d does not fit this address space", batch);
  }
  s->data = mb_calloc_floats(s->numel);
  if (!s->data) {
    free(s);
    return mb_fail(MB_ERR_OOM, "out of memory for decode state");
  }
  *out = s;
  return MB_OK;
}

void mb_state_free(mb_state *s) {
  if (!s) return;
  free(s->data);
  free(s);
}

void mb_state_reset(mb_state *s) {
  if (!s) return;
  memset(s->data, 0, s->numel * sizeof(float));
  s->pos = 0;
}

mb_status mb_state_copy(mb_state *dst, const mb_state *src) {
  mb_clear_error();
  if (!dst || !src) return mb_fail(MB_ERR_INVALID_ARG, "state is NULL");
  if (dst->numel != src->numel || dst->batch != src->batch || dst->E != src->E ||
      dst->N != src->N || dst->K != src->K || dst->n_layer != src->n_layer ||
      dst->lim_c != src->lim_c)
    return mb_fail(MB_ERR_SHAPE, "states have different shapes");
  memcpy(dst->data, src->data, src->numel * sizeof(float));
  dst->pos = src->pos;
  return MB_OK;
}

int mb_state_batch(const mb_state *s) { return s ? s->batch : 0; }
double mb_state_pos(const mb_state *s) { return s ? (double)s->pos : 0.0; }
void mb_state_set_pos(mb_state *s, double pos) {
  if (s && pos >= 0 && pos < 9007199254740992.0) s->pos = (int64_t)pos;
}

float *mb_state_data(mb_state *s, size_t *numel) {
  if (numel) *numel = s ? s->numel : 0;
  return s ? s->data : NULL;
}

float *mb_state_conv(mb_state *s, int layer, int b) {
  return s->data + ((size_t)layer * s->batch + b) * per_seq(s);
}

float *mb_state_ssm(mb_state *s, int layer, int b) {
  return mb_state_conv(s, layer, b) + (size_t)(s->K - 1) * s->E;
}

float *mb_state_lim(mb_state *s, int layer, int b) {
  return mb_state_ssm(s, layer, b) + (size_t)s->E * s->N;
}

float *mb_state_ssm_ptr(mb_state *s, int layer, int b) {
  if (!s || layer < 0 || layer >= s->n_layer || b < 0 || b >= s->batch) return NULL;
  return mb_state_ssm(s, layer, b);
}
