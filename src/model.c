/* model.c: a Mamba-1 language model: one weight block carved into named slots, lazily sized
 * activations, and the forward pass (spec section 1) over B equal-length sequences, optionally
 * continuing from / writing into a decode state. The one-token decode step is this same forward
 * with L = 1, so decoding token by token reproduces the full-sequence forward by construction.
 * Not here: parsing files (bindings), adapters and backward (later issues), threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static size_t param_numel(const mb_config *c, mb_param p) {
  size_t d = c->d_model, E = c->d_inner, N = c->d_state, K = c->d_conv, R = c->dt_rank;
  switch (p) {
    case MB_P_EMBEDDING: return (size_t)c->vocab_size * d;
    case MB_P_NORM_F: return d;
    case MB_P_LM_HEAD: return c->tied_head ? 0 : (size_t)c->vocab_size * d;
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

mb_status mb_model_new(const mb_config *cfg, mb_model **out) {
  mb_clear_error();
  if (!out) return mb_fail(MB_ERR_INVALID_ARG, "out is NULL");
  *out = NULL;
  if (!config_valid(cfg)) return MB_ERR_INVALID_ARG;
  mb_model *m = calloc(1, sizeof *m);
  if (!m) return mb_fail(MB_ERR_OOM, "out of memory allocating the model");
  m->cfg = *cfg;
  size_t total = 0;
  for (int p = MB_P_EMBEDDING; p <= MB_P_LM_HEAD; p++) total += param_numel(cfg, p);
  size_t per_layer = 0;
  for (int p = MB_P_NORM; p < MB_P_COUNT; p++) per_layer += param_numel(cfg, p);
  per_layer += (size_t)cfg->d_inner * cfg->d_state; /* derived A */
  if (per_layer > (SIZE_MAX / sizeof(float) - total) / (size_t)cfg->n_layer) {
    free(m);
    return mb_fail(MB_ERR_OOM, "model too large for this address space");
  }
  total += per_layer * cfg->n_layer;
  m->block = malloc(total * sizeof(float));
  m->layers = calloc((size_t)cfg->n_layer, sizeof(mb_layer));
  if (!m->block || !m->layers) {
    mb_fail(MB_ERR_OOM, "out of memory allocating %zu MB of weights",
            total * sizeof(float) >> 20);
    free(m->block); free(m->layers); free(m);
    return MB_ERR_OOM;
  }
  m->block_numel = total;
  float *p = m->block;
#define CARVE(slot) (param_numel(cfg, slot) ? (p += param_numel(cfg, slot)) - param_numel(cfg, slot) : NULL)
  m->embedding = CARVE(MB_P_EMBEDDING);
  m->norm_f = CARVE(MB_P_NORM_F);
  m->lm_head = cfg->tied_head ? m->embedding : CARVE(MB_P_LM_HEAD);
  for (int l = 0; l < cfg->n_layer; l++) {
    mb_layer *L = &m->layers[l];
    L->norm = CARVE(MB_P_NORM);
    L->in_proj_w = CARVE(MB_P_IN_PROJ_W);
    L->in_proj_b = CARVE(MB_P_IN_PROJ_B);
    L->conv_w = CARVE(MB_P_CONV_W);
    L->conv_b = CARVE(MB_P_CONV_B);
    L->x_proj_w = CARVE(MB_P_X_PROJ_W);
    L->dt_proj_w = CARVE(MB_P_DT_PROJ_W);
    L->dt_proj_b = CARVE(MB_P_DT_PROJ_B);
    L->A_log = CARVE(MB_P_A_LOG);
    L->D = CARVE(MB_P_D);
    L->out_proj_w = CARVE(MB_P_OUT_PROJ_W);
    L->out_proj_b = CARVE(MB_P_OUT_PROJ_B);
    L->A = p;
    p += (size_t)cfg->d_inner * cfg->d_state;
  }
#undef CARVE
  *out = m;
  return MB_OK;
}

/* The activation buffers, in one table so sizing and freeing treat them alike. */
#define N_ACTS 14
static void act_slots(mb_acts *a, float **slots[N_ACTS]) {
  float **list[N_ACTS] = {&a->h, &a->a, &a->xz, &a->u, &a->dbc, &a->delta, &a->y, &a->tmp,
                          &a->ssm_tmp, &a->lora_h, &a->lim_v, &a->lim_post[0], &a->lim_post[1],
                          &a->lim_u};
  memcpy(slots, list, sizeof list);
}

static void acts_free(mb_acts *a) {
  float **slots[N_ACTS];
  act_slots(a, slots);
  for (int i = 0; i < N_ACTS; i++) {
    free(*slots[i]);
    *slots[i] = NULL;
    a->caps[i] = 0;
  }
  free(a->lim_u0);
  a->lim_u0 = NULL;
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
  acts_free(&m->acts);
  mb_train_ws_free(m);
}

/* a LoRA the forward must add: on this target and not folded into the weights */
static inline int lora_on(const mb_adapter *ad, mb_target t) { return ad && !ad->merged && adapter_has(ad, t); }

const mb_config *mb_model_config(const mb_model *m) { return m ? &m->cfg : NULL; }

float *mb_model_param(mb_model *m, mb_param p, int layer, size_t *numel) {
  if (numel) *numel = 0;
  if (!m || p < 0 || p >= MB_P_COUNT) return NULL;
  float *ptr = NULL;
  if (p <= MB_P_LM_HEAD) {
    if (layer != -1) return NULL;
    ptr = p == MB_P_EMBEDDING ? m->embedding
          : p == MB_P_NORM_F  ? m->norm_f
          : (m->cfg.tied_head ? NULL : m->lm_head);
  } else {
    if (layer < 0 || layer >= m->cfg.n_layer) return NULL;
    mb_layer *L = &m->layers[layer];
    float *slots[] = {L->norm,     L->in_proj_w, L->in_proj_b,  L->conv_w, L->conv_b,
                      L->x_proj_w, L->dt_proj_w, L->dt_proj_b,  L->A_log,  L->D,
                      L->out_proj_w, L->out_proj_b};
    ptr = slots[p - MB_P_NORM];
  }
  if (ptr && numel) *numel = param_numel(&m->cfg, p);
  return ptr;
}

mb_status mb_model_finalize(mb_model *m) {
  mb_clear_error();
  if (!m) return mb_fail(MB_ERR_INVALID_ARG, "model is NULL");
  size_t EN = (size_t)m->cfg.d_inner * m->cfg.d_state;
  for (int l = 0; l < m->cfg.n_layer; l++) {
    mb_layer *L = &m->layers[l];
    /* A = -exp(A_log) */
    for (size_t i = 0; i < EN; i++) L->A[i] = -expf(L->A_log[i]);
  }
  m->finalized = 1;
  return MB_OK;
}

size_t mb_model_weight_bytes(const mb_model *m) { return m ? m->block_numel * sizeof(float) : 0; }
size_t mb_model_activation_bytes(const mb_model *m) {
  return m ? m->acts.bytes + mb_train_ws_bytes(m) : 0;
}

/* Sizes the activation buffers for bt tokens (and the active adapter's LoRA rank and LIM);
 * grows only what is too small; on failure the old buffers stay and nothing changes. */
static mb_status acts_ensure(mb_model *m, size_t bt) {
  mb_acts *a = &m->acts;
  const mb_config *c = &m->cfg;
  const mb_adapter *ad = m->adapter;
  size_t d = c->d_model, E = c->d_inner, DBC = c->dt_rank + 2 * c->d_state;
  size_t r = ad ? (size_t)ad->cfg.r : 0, lim = ad && ad->cfg.lim ? bt * E : 0;
  size_t need[N_ACTS] = {bt * d, bt * d, bt * 2 * E, bt * E, bt * DBC, bt * E, bt * E, bt * d,
                         E * c->d_state, bt * r, lim, lim, lim, lim};
  float **slots[N_ACTS];
  act_slots(a, slots);
  float *fresh[N_ACTS] = {0};
  for (int i = 0; i < N_ACTS; i++) {
    if (need[i] <= a->caps[i]) continue;
    fresh[i] = malloc(need[i] * sizeof(float));
    if (!fresh[i]) {
      for (int j = 0; j < i; j++) free(fresh[j]);
      return mb_fail(MB_ERR_OOM, "out of memory for activations of %zu tokens", bt);
    }
  }
  if (lim && lim > a->cap_u0) {
    float *u0 = malloc(lim * sizeof(float));
    if (!u0) {
      for (int j = 0; j < N_ACTS; j++) free(fresh[j]);
      return mb_fail(MB_ERR_OOM, "out of memory for LIM membranes of %zu tokens", bt);
    }
    free(a->lim_u0);
    a->lim_u0 = u0;
    a->bytes += (lim - a->cap_u0) * sizeof(float);
    a->cap_u0 = lim;
  }
  for (int i = 0; i < N_ACTS; i++) {
    if (!fresh[i]) continue;
    free(*slots[i]);
    *slots[i] = fresh[i];
    a->bytes += (need[i] - a->caps[i]) * sizeof(float);
    a->caps[i] = need[i];
  }
  return MB_OK;
}

/* Optional per-layer outputs of a forward pass. */
typedef struct {
  float *hidden; /* [n_layer, B, L, d] */
  float *lim_v;  /* [n_layer, B, L, E] */
  float *lim_u0; /* [n_layer, B, c, E] */
} fwd_out;

/* LIM over one layer (spec section 3): the gate input z becomes the membrane output v in
 * a->lim_v; the transfer to the next layer is prepared (mean: a->lim_u0; first: the post values
 * stay in a->lim_post[l % 2]). */
static void layer_lim(mb_model *m, int l, int B, int L, mb_state *st, float *u0_out) {
  const mb_adapter_config *lc = &m->adapter->cfg;
  mb_acts *a = &m->acts;
  int E = m->cfg.d_inner, c = lim_chunk_len(lc, L);
  size_t cE = (size_t)c * E;
  float *post = a->lim_post[l % 2];
  const float *prev = (lc->cross_layer == MB_LIM_FIRST && l > 0) ? a->lim_post[(l + 1) % 2] : NULL;
  int64_t pos0 = st ? st->pos : 0;
  for (int b = 0; b < B; b++) {
    size_t off = (size_t)b * L;
    float *U = st ? mb_state_lim(st, l, b) : a->lim_u + b * cE;
    if (!st) {
      /* U0: zeros in layer 0 and for none/first; the mean transfer of the layer below */
      if (lc->cross_layer == MB_LIM_MEAN && l > 0) memcpy(U, a->lim_u0 + b * cE, cE * sizeof(float));
      else memset(U, 0, cE * sizeof(float));
    }
    if (u0_out) { /* what this layer starts from, for inspection */
      float *dst = u0_out + b * cE;
      if (prev) {
        memset(dst, 0, cE * sizeof(float));
        memcpy(dst, prev + off * E, (size_t)(L < c ? L : c) * E * sizeof(float));
      } else {
        memcpy(dst, U, cE * sizeof(float));
      }
    }
    lim_forward(a->lim_v + off * E, post + off * E, NULL, U, a->xz + off * 2 * E + E, 2 * E,
                prev ? prev + off * E : NULL, L, E, c, pos0, lc->tau, lc->v_th,
                lc->output == MB_LIM_PRE_RESET);
  }
  if (lc->cross_layer == MB_LIM_MEAN)
    for (int b = 0; b < B; b++) lim_transfer_mean(a->lim_u0 + b * cE, post + (size_t)b * L * E, L, E, c);
}

/* A Mamba block over B sequences of length L, h += mixer(rmsnorm(h)), with the active adapter's
 * LoRA (unless merged) and LIM gate, in three stages so another backend can run the middle one
 * (softplus, scan, gate): layer_pre leaves u, dbc, the pre-softplus delta and the gate input
 * (z in xz, or the LIM values in lim_v); layer_mid leaves the gated y; layer_post adds out_proj. */
static void layer_pre(mb_model *m, int l, int B, int L, mb_state *st, float *u0_out) {
  const mb_config *c = &m->cfg;
  const mb_layer *W = &m->layers[l];
  const mb_adapter *ad = m->adapter;
  mb_acts *a = &m->acts;
  int d = c->d_model, E = c->d_inner, N = c->d_state, K = c->d_conv, R = c->dt_rank;
  int DBC = R + 2 * N, BT = B * L, r = ad ? ad->cfg.r : 0;
  float sc = ad ? ad->scale : 0.0f;
  /* a_t = rmsnorm(h_t) * norm.weight ; [x_t; z_t] = in_proj.weight @ a_t (+ bias) (+ LoRA) */
  rmsnorm_forward(a->a, a->h, W->norm, BT, d, c->eps);
  matmul_forward(a->xz, a->a, W->in_proj_w, W->in_proj_b, BT, d, 2 * E);
  if (lora_on(ad, MB_T_IN_PROJ))
    lora_forward(a->xz, 2 * E, a->lora_h, a->a, adapter_A(ad, l, MB_T_IN_PROJ), adapter_B(ad, l, MB_T_IN_PROJ), sc, BT, d, 2 * E, r);
  if (lora_on(ad, MB_T_IN_PROJ_X))
    lora_forward(a->xz, 2 * E, a->lora_h, a->a, adapter_A(ad, l, MB_T_IN_PROJ_X), adapter_B(ad, l, MB_T_IN_PROJ_X), sc, BT, d, E, r);
  if (lora_on(ad, MB_T_IN_PROJ_Z))
    lora_forward(a->xz + E, 2 * E, a->lora_h, a->a, adapter_A(ad, l, MB_T_IN_PROJ_Z), adapter_B(ad, l, MB_T_IN_PROJ_Z), sc, BT, d, E, r);
  for (int b = 0; b < B; b++) {
    size_t off = (size_t)b * L;
    /* u_t = silu(conv1d(x)_t), causal, continuing from the state's history when kept */
    conv1d_silu_forward(a->u + off * E, st ? mb_state_conv(st, l, b) : NULL, a->xz + off * 2 * E,
                        2 * E, W->conv_w, W->conv_b, L, E, K);
  }
  /* [dl; B; C] = x_proj.weight @ u_t ; delta_t = softplus(dt_proj(dl)) */
  matmul_forward(a->dbc, a->u, W->x_proj_w, NULL, BT, E, DBC);
  if (lora_on(ad, MB_T_X_PROJ))
    lora_forward(a->dbc, DBC, a->lora_h, a->u, adapter_A(ad, l, MB_T_X_PROJ), adapter_B(ad, l, MB_T_X_PROJ), sc, BT, E, DBC, r);
  dt_forward(a->delta, a->dbc, DBC, W->dt_proj_w, W->dt_proj_b, BT, E, R);
  if (lora_on(ad, MB_T_DT_PROJ)) {
    for (int t = 0; t < BT; t++) memcpy(a->tmp + (size_t)t * R, a->dbc + (size_t)t * DBC, R * sizeof(float));
    lora_forward(a->delta, E, a->lora_h, a->tmp, adapter_A(ad, l, MB_T_DT_PROJ), adapter_B(ad, l, MB_T_DT_PROJ), sc, BT, R, E, r);
  }
  /* the gate input: z, or the LIM membrane v with Memba (it depends on z alone) */
  if (ad && ad->cfg.lim) layer_lim(m, l, B, L, st, u0_out);
}

static void layer_mid(mb_model *m, int l, int B, int L, mb_state *st) {
  const mb_config *c = &m->cfg;
  const mb_layer *W = &m->layers[l];
  const mb_adapter *ad = m->adapter;
  mb_acts *a = &m->acts;
  int E = c->d_inner, N = c->d_state, R = c->dt_rank, DBC = R + 2 * N, BT = B * L;
  softplus_forward(a->delta, (size_t)BT * E);
  for (int b = 0; b < B; b++) {
    size_t off = (size_t)b * L;
    float *s = st ? mb_state_ssm(st, l, b) : a->ssm_tmp;
    if (!st) memset(s, 0, sizeof(float) * (size_t)E * N);
    selective_scan_forward(a->y + off * E, s, a->u + off * E, a->delta + off * E,
                           a->dbc + off * DBC + R, DBC, W->A, W->D, L, E, N);
  }
  /* o_t = y_t * silu(g_t), g = z, or the LIM membrane v with Memba */
  if (ad && ad->cfg.lim) gate_forward(a->y, a->lim_v, E, BT, E);
  else gate_forward(a->y, a->xz + E, 2 * E, BT, E);
}

static void layer_post(mb_model *m, int l, int B, int L) {
  const mb_config *c = &m->cfg;
  const mb_layer *W = &m->layers[l];
  const mb_adapter *ad = m->adapter;
  mb_acts *a = &m->acts;
  int d = c->d_model, E = c->d_inner, BT = B * L, r = ad ? ad->cfg.r : 0;
  float sc = ad ? ad->scale : 0.0f;
  /* h_t += out_proj.weight @ o_t (+ LoRA) */
  matmul_forward(a->tmp, a->y, W->out_proj_w, W->out_proj_b, BT, E, d);
  if (lora_on(ad, MB_T_OUT_PROJ))
    lora_forward(a->tmp, d, a->lora_h, a->y, adapter_A(ad, l, MB_T_OUT_PROJ), adapter_B(ad, l, MB_T_OUT_PROJ), sc, BT, E, d, r);
  for (size_t i = 0; i < (size_t)BT * d; i++) a->h[i] += a->tmp[i];
}

static void layer_forward(mb_model *m, int l, int B, int L, mb_state *st, float *u0_out) {
  layer_pre(m, l, B, L, st, u0_out);
  layer_mid(m, l, B, L, st);
  layer_post(m, l, B, L);
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
  size_t BT = (size_t)B * L, d = c->d_model;
  for (size_t i = 0; i < BT; i++)
    if (ids[i] < 0 || ids[i] >= c->vocab_size)
      return mb_fail(MB_ERR_INVALID_ARG, "token id %d at position %zu out of range [0, %d)",
                     ids[i], i, c->vocab_size);
  mb_status st = acts_ensure(m, BT);
  if (st) return st;
  mb_acts *a = &m->acts;
  for (size_t i = 0; i < BT; i++)
    memcpy(a->h + i * d, m->embedding + (size_t)ids[i] * d, d * sizeof(float));
  return MB_OK;
}

/* Validates, embeds and runs every layer; the final residual stream is left in m->acts.h. On
 * failure nothing (state included) has changed. */
static mb_status forward_layers(mb_model *m, const int32_t *ids, int B, int L,
                                const fwd_out *out, mb_state *state) {
  mb_status st = forward_begin(m, ids, B, L, state);
  if (st) return st;
  const mb_config *c = &m->cfg;
  const mb_adapter *ad = m->adapter;
  mb_acts *a = &m->acts;
  size_t BT = (size_t)B * L, d = c->d_model;
  int clen = ad && ad->cfg.lim ? lim_chunk_len(&ad->cfg, L) : 0;
  size_t E = c->d_inner;
  for (int l = 0; l < c->n_layer; l++) {
    float *u0 = out && out->lim_u0 ? out->lim_u0 + (size_t)l * B * clen * E : NULL;
    layer_forward(m, l, B, L, state, u0);
    if (out && out->hidden) memcpy(out->hidden + (size_t)l * BT * d, a->h, BT * d * sizeof(float));
    if (out && out->lim_v) memcpy(out->lim_v + (size_t)l * BT * E, a->lim_v, BT * E * sizeof(float));
  }
  if (state) state->pos += L;
  return MB_OK;
}

/* logits_t = lm_head @ (rmsnorm(h_t) * norm_f.weight), only where asked */
static void forward_head(mb_model *m, int B, int L, mb_logits_mode mode, float *logits) {
  const mb_config *c = &m->cfg;
  mb_acts *a = &m->acts;
  int d = c->d_model, V = c->vocab_size, BT = B * L;
  if (mode == MB_LOGITS_ALL) {
    rmsnorm_forward(a->a, a->h, m->norm_f, BT, d, c->eps);
    matmul_forward(logits, a->a, m->lm_head, NULL, BT, d, V);
  } else if (mode == MB_LOGITS_LAST) {
    for (int b = 0; b < B; b++)
      rmsnorm_forward(a->a + (size_t)b * d, a->h + ((size_t)b * L + L - 1) * d, m->norm_f, 1, d,
                      c->eps);
    matmul_forward(logits, a->a, m->lm_head, NULL, B, d, V);
  }
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

/* Rows of logits computed at once by mb_score: bounds its scratch to SCORE_BLOCK * V floats. */
#define SCORE_BLOCK 32

static mb_status score_head(mb_model *m, const int32_t *ids, int B, int L, int from, float *logprobs);

mb_status mb_score(mb_model *m, const int32_t *ids, int B, int L, int from, float *logprobs) {
  mb_clear_error();
  if (!logprobs) return mb_fail(MB_ERR_INVALID_ARG, "logprobs is NULL");
  if (from < 1 || from > L) return mb_fail(MB_ERR_INVALID_ARG, "from=%d must be in [1, L=%d]", from, L);
  mb_status st = forward_layers(m, ids, B, L, NULL, NULL);
  if (st) return st;
  return score_head(m, ids, B, L, from, logprobs);
}

/* log-probabilities of ids from the final residual stream in m->acts.h */
static mb_status score_head(mb_model *m, const int32_t *ids, int B, int L, int from, float *logprobs) {
  const mb_config *c = &m->cfg;
  mb_acts *a = &m->acts;
  int d = c->d_model, V = c->vocab_size;
  float *scratch = malloc(sizeof(float) * SCORE_BLOCK * (size_t)V);
  if (!scratch) return mb_fail(MB_ERR_OOM, "out of memory for scoring logits");
  memset(logprobs, 0, sizeof(float) * (size_t)B * L);
  for (int b = 0; b < B; b++) {
    /* log p(ids[t] | ids[<t]) = log_softmax(logits at t-1)[ids[t]] for t in [from, L) */
    for (int t0 = from; t0 < L; t0 += SCORE_BLOCK) {
      int n = L - t0 < SCORE_BLOCK ? L - t0 : SCORE_BLOCK;
      const float *hrows = a->h + ((size_t)b * L + t0 - 1) * d;
      rmsnorm_forward(a->a, hrows, m->norm_f, n, d, c->eps);
      matmul_forward(scratch, a->a, m->lm_head, NULL, n, d, V);
      for (int i = 0; i < n; i++) {
        const float *row = scratch + (size_t)i * V;
        float mx = row[0];
        for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += exp((double)row[v] - mx);
        int target = ids[(size_t)b * L + t0 + i];
        logprobs[(size_t)b * L + t0 + i] = (float)((double)row[target] - mx - log(sum));
      }
    }
  }
  free(scratch);
  return MB_OK;
}

/* ---- the split forward (for backends that run layer_mid elsewhere) ---- */

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

#define SPLIT_END (-1) /* split_at's layer for the end stages: after the last layer */

/* the split is open and its next stage is `stage` of `layer` (or SPLIT_END) */
static mb_status split_at(mb_model *m, int layer, int stage, const char *what) {
  mb_clear_error();
  if (!m) return mb_fail(MB_ERR_INVALID_ARG, "model is NULL");
  if (!m->split.open) return mb_fail(MB_ERR_STATE, "%s: no split forward is open (mb_split_begin first; another call may have closed it)", what);
  if (layer == SPLIT_END) layer = m->cfg.n_layer;
  else if (layer < 0 || layer >= m->cfg.n_layer) return mb_fail(MB_ERR_INVALID_ARG, "%s: layer %d out of range [0, %d)", what, layer, m->cfg.n_layer);
  /* post follows pre directly when another backend ran the mid stage */
  int ok = m->split.layer == layer && (m->split.stage == stage || (stage == 2 && m->split.stage == 1));
  if (!ok)
    return mb_fail(MB_ERR_STATE, "%s of layer %d out of order (the split is at layer %d, stage %d)", what, layer, m->split.layer, m->split.stage);
  return MB_OK;
}

mb_status mb_split_pre(mb_model *m, int l) {
  mb_status st = l == SPLIT_END ? mb_fail(MB_ERR_INVALID_ARG, "split pre: layer %d out of range", l) : split_at(m, l, 0, "split pre");
  if (st) return st;
  layer_pre(m, l, m->split.B, m->split.L, m->split.state, NULL);
  m->split.stage = 1;
  return MB_OK;
}

mb_status mb_split_mid(mb_model *m, int l) {
  mb_status st = l == SPLIT_END ? mb_fail(MB_ERR_INVALID_ARG, "split mid: layer %d out of range", l) : split_at(m, l, 1, "split mid");
  if (st) return st;
  layer_mid(m, l, m->split.B, m->split.L, m->split.state);
  m->split.stage = 2;
  return MB_OK;
}

mb_status mb_split_post(mb_model *m, int l) {
  mb_status st = l == SPLIT_END ? mb_fail(MB_ERR_INVALID_ARG, "split post: layer %d out of range", l) : split_at(m, l, 2, "split post");
  if (st) return st;
  layer_post(m, l, m->split.B, m->split.L);
  m->split.layer++;
  m->split.stage = 0;
  return MB_OK;
}

mb_status mb_split_end(mb_model *m, mb_logits_mode mode, float *logits) {
  mb_status st = split_at(m, SPLIT_END, 0, "split end");
  if (st) return st;
  st = check_mode(mode, logits);
  if (st) return st;
  m->split.open = 0;
  if (m->split.state) m->split.state->pos += m->split.L;
  forward_head(m, m->split.B, m->split.L, mode, logits);
  return MB_OK;
}

mb_status mb_split_end_score(mb_model *m, const int32_t *ids, int from, float *logprobs) {
  mb_status st = split_at(m, SPLIT_END, 0, "split end_score");
  if (st) return st;
  int L = m->split.L;
  if (!ids || !logprobs || from < 1 || from > L) return mb_fail(MB_ERR_INVALID_ARG, "bad score arguments (from=%d, L=%d)", from, L);
  m->split.open = 0;
  if (m->split.state) m->split.state->pos += L;
  return score_head(m, ids, m->split.B, L, from, logprobs);
}

float *mb_split_buffer(mb_model *m, mb_split_buf which) {
  if (!m || !m->split.open) return NULL;
  mb_acts *a = &m->acts;
  switch (which) {
    case MB_BUF_XZ: return a->xz;
    case MB_BUF_U: return a->u;
    case MB_BUF_DBC: return a->dbc;
    case MB_BUF_DELTA: return a->delta;
    case MB_BUF_Y: return a->y;
    case MB_BUF_LIM_V: return a->lim_v;
    default: return NULL;
  }
}

float *mb_layer_A(mb_model *m, int layer) {
  if (!m || layer < 0 || layer >= m->cfg.n_layer) return NULL;
  return m->layers[layer].A;
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

mb_status mb_step(mb_model *m, mb_state *s, const int32_t *ids, float *logits) {
  if (!s) return mb_fail(MB_ERR_INVALID_ARG, "state is NULL");
  return mb_forward(m, ids, s->batch, 1, logits ? MB_LOGITS_LAST : MB_LOGITS_NONE, logits, NULL, s);
}
