/* lm.c: a Mamba-1 language model around the one block (core/block.c): lazily sized activations,
 * the embedding, the layer loop with the cross-layer LIM transfer, the head (norm_f + lm_head,
 * HEAD_ROWS rows at a time, the same for forward, score and training), scoring with the one
 * log-softmax (ops/xent.c), the decode step (the same forward with L = 1, so decoding token by
 * token reproduces the full forward by construction), LIM inspection and the split forward of
 * memba_backend.h. Not here: weights and their slots (core/weights.c), the block's math, the
 * backward (train/), parsing files (bindings), threads. */
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

/* The activation buffers, in one table so sizing and freeing treat them alike. */
enum { A_H, A_A, A_XZ, A_U, A_DBC, A_DL, A_DELTA, A_Y, A_OUT, A_SSM, A_LORA_H, A_V, A_POST, A_LIM_IN, A_U0, A_HEAD, N_ACTS };

static float **act_slot(mb_acts *a, int i) {
  float **list[N_ACTS] = {&a->h, &a->blk.a, &a->blk.xz, &a->blk.u, &a->blk.dbc, &a->blk.dl,
                          &a->blk.delta, &a->blk.y, &a->blk.out, &a->scr.ssm, &a->scr.lora_h,
                          &a->blk.v, &a->blk.post, &a->lim_in, &a->scr.U, &a->head};
  return list[i];
}

/* inference shares buffers: softplus and the gate run in place */
static void acts_alias(mb_acts *a) {
  a->blk.dlin = a->blk.delta;
  a->blk.o = a->blk.y;
}

static void acts_free(mb_acts *a) {
  for (int i = 0; i < N_ACTS; i++) {
    free(*act_slot(a, i));
    *act_slot(a, i) = NULL;
    a->caps[i] = 0;
  }
  acts_alias(a);
  a->bytes = 0;
}

void mb_model_free(mb_model *m) {
  if (!m) return;
  acts_free(&m->acts);
  mb_train_ws_free(m);
  free(m->block);
  free(m->layers);
  free(m);
}

void mb_model_trim(mb_model *m) {
  if (!m) return;
  m->split.open = 0;
  acts_free(&m->acts);
  mb_train_ws_free(m);
}

size_t mb_model_activation_bytes(const mb_model *m) {
  return m ? m->acts.bytes + mb_train_ws_bytes(m) : 0;
}

/* Sizes the activation buffers for B sequences of L tokens (and the active adapter's LoRA rank
 * and LIM chunk); grows only what is too small; on failure the old buffers stay. */
static mb_status acts_ensure(mb_model *m, int B, int L) {
  mb_acts *a = &m->acts;
  const mb_config *c = &m->cfg;
  const mb_adapter *ad = m->adapter;
  size_t bt = (size_t)B * L, d = c->d_model, E = c->d_inner, R = c->dt_rank, DBC = R + 2 * c->d_state;
  size_t r = ad ? (size_t)ad->cfg.r : 0, lim = ad && ad->cfg.lim;
  size_t cl = lim ? (size_t)lim_chunk_len(&ad->cfg, L) : 0;
  int ovf = 0;
  size_t need[N_ACTS] = {floats3(bt, d, 1, &ovf), floats3(bt, d, 1, &ovf), floats3(bt, 2, E, &ovf),
                         floats3(bt, E, 1, &ovf), floats3(bt, DBC, 1, &ovf), floats3(bt, R, 1, &ovf),
                         floats3(bt, E, 1, &ovf), floats3(bt, E, 1, &ovf), floats3(bt, d, 1, &ovf),
                         floats3(E, c->d_state, 1, &ovf), floats3(bt, r, 1, &ovf),
                         floats3(lim, bt, E, &ovf), floats3(lim, bt, E, &ovf),
                         floats3((size_t)B, cl, E, &ovf), floats3(cl, E, 1, &ovf), floats3(HEAD_ROWS, d, 1, &ovf)};
  if (ovf) return mb_fail(MB_ERR_OOM, "activations for %d x %d tokens (LIM chunk %zu) do not fit this address space", B, L, cl);
  float *fresh[N_ACTS] = {0};
  for (int i = 0; i < N_ACTS; i++) {
    if (need[i] <= a->caps[i]) continue;
    fresh[i] = mb_alloc_floats(need[i]);
    if (!fresh[i]) {
      for (int j = 0; j < i; j++) free(fresh[j]);
      return mb_fail(MB_ERR_OOM, "out of memory for activations of %zu tokens", bt);
    }
  }
  for (int i = 0; i < N_ACTS; i++) {
    if (!fresh[i]) continue;
    free(*act_slot(a, i));
    *act_slot(a, i) = fresh[i];
    a->bytes += (need[i] - a->caps[i]) * sizeof(float);
    a->caps[i] = need[i];
  }
  acts_alias(a);
  return MB_OK;
}

mb_status lm_check_ids(const mb_model *m, const int32_t *ids, size_t BT, const char *what) {
  for (size_t i = 0; i < BT; i++)
    if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
      return mb_fail(MB_ERR_INVALID_ARG, "%s %d at position %zu out of range [0, %d)", what, ids[i], i,
                     m->cfg.vocab_size);
  return MB_OK;
}

void lm_embed(const mb_model *m, float *h, const int32_t *ids, size_t BT) {
  slot_rows(h, &m->embedding, ids, BT, m->cfg.d_model);
}

/* logits_t = lm_head @ (rmsnorm(h_t) * norm_f.weight), HEAD_ROWS rows at a time */
void lm_logits(const mb_model *m, float *logits, const float *h, size_t h_stride, int n, float *tmp) {
  int d = m->cfg.d_model, V = m->cfg.vocab_size;
  const float *w = slot_f32(&m->norm_f);
  for (int t0 = 0; t0 < n; t0 += HEAD_ROWS) {
    int nb = n - t0 < HEAD_ROWS ? n - t0 : HEAD_ROWS;
    for (int i = 0; i < nb; i++)
      rmsnorm_forward(tmp + (size_t)i * d, h + (size_t)(t0 + i) * h_stride, w, 1, d, m->cfg.eps);
    linear_forward(logits + (size_t)t0 * V, tmp, &m->lm_head, NULL, nb, d, V);
  }
}

/* Validates inputs, sizes activations and embeds ids into m->acts.h. */
static mb_status forward_begin(mb_model *m, const int32_t *ids, int B, int L, mb_state *state) {
  if (!m || !ids) return mb_fail(MB_ERR_INVALID_ARG, "model or ids is NULL");
  m->split.open = 0; /* any forward reuses the activations: an open split is over */
  if (!m->finalized) return mb_fail(MB_ERR_STATE, "model weights not finalized");
  if (B < 1 || L < 1) return mb_fail(MB_ERR_INVALID_ARG, "empty input (B=%d, L=%d)", B, L);
  if ((size_t)B * L > (1u << 28)) return mb_fail(MB_ERR_INVALID_ARG, "input too long");
  const mb_config *c = &m->cfg;
  if (state && (state->batch != B || state->n_layer != c->n_layer || state->E != c->d_inner ||
                state->K != c->d_conv || state->N != c->d_state))
    return mb_fail(MB_ERR_SHAPE, "state (batch %d) does not fit this model/batch %d",
                   state->batch, B);
  const mb_adapter *ad = m->adapter;
  if (state && !mb_adapter_causal(ad))
    return mb_fail(MB_ERR_STATE, "the active adapter's LIM gate is not causal (chunks or mean "
                                 "transfer): decode by recomputing the full forward");
  int want_c = ad && ad->cfg.lim ? ad->cfg.chunk_size : 0;
  if (state && state->lim_c != want_c)
    return mb_fail(MB_ERR_SHAPE, "the state was made for another adapter (membrane slots %d, "
                                 "active adapter needs %d)", state->lim_c, want_c);
  size_t BT = (size_t)B * L;
  mb_status st = lm_check_ids(m, ids, BT, "token id");
  if (st) return st;
  st = acts_ensure(m, B, L);
  if (st) return st;
  lm_embed(m, m->acts.h, ids, BT);
  if (ad && ad->cfg.lim) /* layer 0's LIM input: zeros */
    memset(m->acts.lim_in, 0, sizeof(float) * B * (size_t)lim_chunk_len(&ad->cfg, L) * c->d_inner);
  return MB_OK;
}

/* how layer blocks of this forward run */
static mb_block_run run_of(const mb_model *m, int B, int L, mb_state *state) {
  const mb_adapter *ad = m->adapter;
  mb_block_run x = {B, L, state, m->acts.lim_in, ad && ad->cfg.lim ? lim_chunk_len(&ad->cfg, L) : 0, 0, 0, 0};
  return x;
}

/* Layer l's pre stage, then the next layer's LIM input from its post values. */
static void layer_pre(mb_model *m, int l, const mb_block_run *x) {
  mb_acts *a = &m->acts;
  block_pre(m, l, x, &a->blk, &a->scr, a->h);
  const mb_adapter *ad = m->adapter;
  if (ad && ad->cfg.lim && l + 1 < m->cfg.n_layer)
    lim_layer_input(a->lim_in, a->blk.post, &ad->cfg, x->B, x->L, m->cfg.d_inner, x->c);
}

/* Optional per-layer outputs of a forward pass. */
typedef struct {
  float *hidden; /* [n_layer, B, L, d] */
  float *lim_v;  /* [n_layer, B, L, E] */
  float *lim_u0; /* [n_layer, B, c, E] */
} fwd_out;

/* Validates, embeds and runs every layer; the final residual stream is left in m->acts.h. On
 * failure nothing (state included) has changed. */
static mb_status forward_layers(mb_model *m, const int32_t *ids, int B, int L,
                                const fwd_out *out, mb_state *state) {
  mb_status st = forward_begin(m, ids, B, L, state);
  if (st) return st;
  mb_acts *a = &m->acts;
  mb_block_run x = run_of(m, B, L, state);
  size_t BT = (size_t)B * L, d = m->cfg.d_model, E = m->cfg.d_inner, cE = (size_t)B * x.c * E;
  for (int l = 0; l < m->cfg.n_layer; l++) {
    /* what this layer's LIM starts from, for inspection */
    if (out && out->lim_u0) memcpy(out->lim_u0 + l * cE, a->lim_in, cE * sizeof(float));
    layer_pre(m, l, &x);
    block_mid(m, l, &x, &a->blk, &a->scr);
    block_post(m, l, &x, &a->blk, &a->scr, a->h);
    if (out && out->hidden) memcpy(out->hidden + l * BT * d, a->h, BT * d * sizeof(float));
    if (out && out->lim_v) memcpy(out->lim_v + l * BT * E, a->blk.v, BT * E * sizeof(float));
  }
  if (state) state->pos += L;
  return MB_OK;
}

/* logits from the final residual stream in m->acts.h, only where asked */
static void forward_head(mb_model *m, int B, int L, mb_logits_mode mode, float *logits) {
  mb_acts *a = &m->acts;
  size_t d = m->cfg.d_model;
  if (mode == MB_LOGITS_ALL) lm_logits(m, logits, a->h, d, B * L, a->head);
  else if (mode == MB_LOGITS_LAST) lm_logits(m, logits, a->h + (size_t)(L - 1) * d, (size_t)L * d, B, a->head);
}

static mb_status check_mode(mb_logits_mode mode, const float *logits) {
  if (mode < MB_LOGITS_NONE || mode > MB_LOGITS_ALL) return mb_fail(MB_ERR_INVALID_ARG, "bad logits mode");
  if (mode != MB_LOGITS_NONE && !logits) return mb_fail(MB_ERR_INVALID_ARG, "logits is NULL");
  return MB_OK;
}

mb_status mb_forward(mb_model *m, const int32_t *ids, int B, int L, mb_logits_mode mode,
                     float *logits, float *hidden, mb_state *state) {
  mb_clear_error();
  mb_status st = check_mode(mode, logits);
  if (st) return st;
  fwd_out out = {hidden, NULL, NULL};
  st = forward_layers(m, ids, B, L, &out, state);
  if (st) return st;
  forward_head(m, B, L, mode, logits);
  return MB_OK;
}

/* log-probabilities of ids from the final residual stream in m->acts.h:
 * log p(ids[t] | ids[<t]) = logits(t-1)[ids[t]] - lse(logits(t-1)) for t in [from, L) */
static mb_status score_head(mb_model *m, const int32_t *ids, int B, int L, int from, float *logprobs) {
  int d = m->cfg.d_model, V = m->cfg.vocab_size;
  float *logits = mb_alloc_floats(HEAD_ROWS * (size_t)V);
  if (!logits) return mb_fail(MB_ERR_OOM, "out of memory for scoring logits");
  memset(logprobs, 0, sizeof(float) * (size_t)B * L);
  for (int b = 0; b < B; b++)
    for (int t0 = from; t0 < L; t0 += HEAD_ROWS) {
      int n = L - t0 < HEAD_ROWS ? L - t0 : HEAD_ROWS;
      lm_logits(m, logits, m->acts.h + ((size_t)b * L + t0 - 1) * d, d, n, m->acts.head);
      for (int i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * V;
        size_t at = (size_t)b * L + t0 + i;
        logprobs[at] = (float)((double)row[ids[at]] - xent_lse(row, V));
      }
    }
  free(logits);
  return MB_OK;
}

mb_status mb_score(mb_model *m, const int32_t *ids, int B, int L, int from, float *logprobs) {
  mb_clear_error();
  if (!logprobs) return mb_fail(MB_ERR_INVALID_ARG, "logprobs is NULL");
  if (from < 1 || from > L) return mb_fail(MB_ERR_INVALID_ARG, "from=%d must be in [1, L=%d]", from, L);
  mb_status st = forward_layers(m, ids, B, L, NULL, NULL);
  if (st) return st;
  return score_head(m, ids, B, L, from, logprobs);
}

mb_status mb_step(mb_model *m, mb_state *s, const int32_t *ids, float *logits) {
  if (!s) return mb_fail(MB_ERR_INVALID_ARG, "state is NULL");
  return mb_forward(m, ids, s->batch, 1, logits ? MB_LOGITS_LAST : MB_LOGITS_NONE, logits, NULL, s);
}

mb_status mb_inspect(mb_model *m, const int32_t *ids, int B, int L, float *lim_v, float *lim_u0,
                     int32_t *chunk_len) {
  mb_clear_error();
  if (!m) return mb_fail(MB_ERR_INVALID_ARG, "model is NULL");
  if (!m->adapter || !m->adapter->cfg.lim)
    return mb_fail(MB_ERR_STATE, "inspect needs an active adapter with a LIM gate");
  if (L < 1) return mb_fail(MB_ERR_INVALID_ARG, "empty input (L=%d)", L);
  fwd_out out = {NULL, lim_v, lim_u0};
  if (chunk_len) *chunk_len = lim_chunk_len(&m->adapter->cfg, L);
  return forward_layers(m, ids, B, L, &out, NULL);
}

/* ---- the split forward (memba_backend.h): the same stages, one call each ---- */

mb_status mb_split_begin(mb_model *m, const int32_t *ids, int B, int L, mb_state *state) {
  mb_clear_error();
  mb_status st = forward_begin(m, ids, B, L, state);
  if (st) return st;
  m->split.open = 1;
  m->split.B = B;
  m->split.L = L;
  m->split.state = state;
  m->split.layer = 0;
  m->split.stage = 0;
  return MB_OK;
}

/* the split is open and its next stage is `stage` of `layer` (n_layer for the end stages) */
static mb_status split_at(mb_model *m, int layer, int stage, int end, const char *what) {
  mb_clear_error();
  if (!m) return mb_fail(MB_ERR_INVALID_ARG, "model is NULL");
  if (!end && (layer < 0 || layer >= m->cfg.n_layer))
    return mb_fail(MB_ERR_INVALID_ARG, "%s: layer %d out of range [0, %d)", what, layer, m->cfg.n_layer);
  if (!m->split.open)
    return mb_fail(MB_ERR_STATE, "%s: no split forward is open (mb_split_begin first; another call may have closed it)", what);
  if (end) layer = m->cfg.n_layer;
  /* post follows pre directly when another backend ran the mid stage */
  int ok = m->split.layer == layer && (m->split.stage == stage || (stage == 2 && m->split.stage == 1));
  if (!ok)
    return mb_fail(MB_ERR_STATE, "%s of layer %d out of order (the split is at layer %d, stage %d)",
                   what, layer, m->split.layer, m->split.stage);
  return MB_OK;
}

static mb_block_run split_run(const mb_model *m) { return run_of(m, m->split.B, m->split.L, m->split.state); }

mb_status mb_split_pre(mb_model *m, int l) {
  mb_status st = split_at(m, l, 0, 0, "split pre");
  if (st) return st;
  mb_block_run x = split_run(m);
  layer_pre(m, l, &x);
  m->split.stage = 1;
  return MB_OK;
}

mb_status mb_split_mid(mb_model *m, int l) {
  mb_status st = split_at(m, l, 1, 0, "split mid");
  if (st) return st;
  mb_block_run x = split_run(m);
  block_mid(m, l, &x, &m->acts.blk, &m->acts.scr);
  m->split.stage = 2;
  return MB_OK;
}

mb_status mb_split_post(mb_model *m, int l) {
  mb_status st = split_at(m, l, 2, 0, "split post");
  if (st) return st;
  mb_block_run x = split_run(m);
  block_post(m, l, &x, &m->acts.blk, &m->acts.scr, m->acts.h);
  m->split.layer++;
  m->split.stage = 0;
  return MB_OK;
}

mb_status mb_split_end(mb_model *m, mb_logits_mode mode, float *logits) {
  mb_status st = split_at(m, 0, 0, 1, "split end");
  if (st) return st;
  st = check_mode(mode, logits);
  if (st) return st;
  m->split.open = 0;
  if (m->split.state) m->split.state->pos += m->split.L;
  forward_head(m, m->split.B, m->split.L, mode, logits);
  return MB_OK;
}

mb_status mb_split_end_score(mb_model *m, const int32_t *ids, int from, float *logprobs) {
  mb_status st = split_at(m, 0, 0, 1, "split end_score");
  if (st) return st;
  int L = m->split.L;
  if (!ids || !logprobs || from < 1 || from > L)
    return mb_fail(MB_ERR_INVALID_ARG, "bad score arguments (from=%d, L=%d)", from, L);
  m->split.open = 0;
  if (m->split.state) m->split.state->pos += L;
  return score_head(m, ids, m->split.B, L, from, logprobs);
}

float *mb_split_buffer(mb_model *m, mb_split_buf which) {
  if (!m || !m->split.open) return NULL;
  mb_block_acts *a = &m->acts.blk;
  switch (which) {
    case MB_BUF_XZ: return a->xz;
    case MB_BUF_U: return a->u;
    case MB_BUF_DBC: return a->dbc;
    case MB_BUF_DELTA: return a->delta;
    case MB_BUF_Y: return a->y;
    case MB_BUF_LIM_V: return a->v;
    default: return NULL;
  }
}

float *mb_layer_A(mb_model *m, int layer) {
  if (!m || layer < 0 || layer >= m->cfg.n_layer) return NULL;
  return m->layers[layer].A;
}
