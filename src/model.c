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

mb_model *mb_model_new(const mb_config *cfg) {
  mb_clear_error();
  if (!config_valid(cfg)) return NULL;
  mb_model *m = calloc(1, sizeof *m);
  if (!m) return mb_fail(MB_ERR_OOM, "out of memory allocating the model"), NULL;
  m->cfg = *cfg;
  size_t total = 0;
  for (int p = MB_P_EMBEDDING; p <= MB_P_LM_HEAD; p++) total += param_numel(cfg, p);
  size_t per_layer = 0;
  for (int p = MB_P_NORM; p < MB_P_COUNT; p++) per_layer += param_numel(cfg, p);
  per_layer += (size_t)cfg->d_inner * cfg->d_state; /* derived A */
  if (per_layer > (SIZE_MAX / sizeof(float) - total) / (size_t)cfg->n_layer) {
    free(m);
    return mb_fail(MB_ERR_OOM, "model too large for this address space"), NULL;
  }
  total += per_layer * cfg->n_layer;
  m->block = malloc(total * sizeof(float));
  m->layers = calloc((size_t)cfg->n_layer, sizeof(mb_layer));
  if (!m->block || !m->layers) {
    mb_fail(MB_ERR_OOM, "out of memory allocating %zu MB of weights",
            total * sizeof(float) >> 20);
    free(m->block); free(m->layers); free(m);
    return NULL;
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
  return m;
}

static void acts_free(mb_acts *a) {
  float **bufs[] = {&a->h, &a->a, &a->xz, &a->u, &a->dbc, &a->delta, &a->y, &a->tmp, &a->ssm_tmp};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
    free(*bufs[i]);
    *bufs[i] = NULL;
  }
  a->cap_bt = 0;
  a->bytes = 0;
}

void mb_model_free(mb_model *m) {
  if (!m) return;
  acts_free(&m->acts);
  free(m->block);
  free(m->layers);
  free(m);
}

void mb_model_trim(mb_model *m) {
  if (m) acts_free(&m->acts);
}

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
size_t mb_model_activation_bytes(const mb_model *m) { return m ? m->acts.bytes : 0; }

/* Sizes the activation buffers for bt tokens; keeps old buffers on failure. */
static mb_status acts_ensure(mb_model *m, size_t bt) {
  mb_acts *a = &m->acts;
  if (bt <= a->cap_bt) return MB_OK;
  const mb_config *c = &m->cfg;
  size_t d = c->d_model, E = c->d_inner, DBC = c->dt_rank + 2 * c->d_state;
  size_t sizes[] = {bt * d, bt * d, bt * 2 * E, bt * E, bt * DBC, bt * E, bt * E, bt * d,
                    E * c->d_state};
  float *bufs[9] = {0};
  size_t bytes = 0;
  for (int i = 0; i < 9; i++) {
    bufs[i] = malloc(sizes[i] * sizeof(float));
    bytes += sizes[i] * sizeof(float);
    if (!bufs[i]) {
      for (int j = 0; j <= i; j++) free(bufs[j]);
      return mb_fail(MB_ERR_OOM, "out of memory for activations of %zu tokens (%zu MB)", bt,
                     bytes >> 20);
    }
  }
  acts_free(a);
  a->h = bufs[0]; a->a = bufs[1]; a->xz = bufs[2]; a->u = bufs[3]; a->dbc = bufs[4];
  a->delta = bufs[5]; a->y = bufs[6]; a->tmp = bufs[7]; a->ssm_tmp = bufs[8];
  a->cap_bt = bt;
  a->bytes = bytes;
  return MB_OK;
}

/* One Mamba block over B sequences of length L, h += mixer(rmsnorm(h)). */
static void layer_forward(mb_model *m, int l, int B, int L, mb_state *st) {
  const mb_config *c = &m->cfg;
  const mb_layer *W = &m->layers[l];
  mb_acts *a = &m->acts;
  int d = c->d_model, E = c->d_inner, N = c->d_state, K = c->d_conv, R = c->dt_rank;
  int DBC = R + 2 * N, BT = B * L;
  /* a_t = rmsnorm(h_t) * norm.weight ; [x_t; z_t] = in_proj.weight @ a_t (+ bias) */
  rmsnorm_forward(a->a, a->h, W->norm, BT, d, c->eps);
  matmul_forward(a->xz, a->a, W->in_proj_w, W->in_proj_b, BT, d, 2 * E);
  for (int b = 0; b < B; b++) {
    size_t off = (size_t)b * L;
    /* u_t = silu(conv1d(x)_t), causal, continuing from the state's history when kept */
    conv1d_silu_forward(a->u + off * E, st ? mb_state_conv(st, l, b) : NULL, a->xz + off * 2 * E,
                        2 * E, W->conv_w, W->conv_b, L, E, K);
  }
  /* [dl; B; C] = x_proj.weight @ u_t ; delta_t = softplus(dt_proj(dl)) */
  matmul_forward(a->dbc, a->u, W->x_proj_w, NULL, BT, E, DBC);
  dt_forward(a->delta, a->dbc, DBC, W->dt_proj_w, W->dt_proj_b, BT, E, R);
  for (int b = 0; b < B; b++) {
    size_t off = (size_t)b * L;
    float *s = st ? mb_state_ssm(st, l, b) : a->ssm_tmp;
    if (!st) memset(s, 0, sizeof(float) * (size_t)E * N);
    selective_scan_forward(a->y + off * E, s, a->u + off * E, a->delta + off * E,
                           a->dbc + off * DBC + R, DBC, W->A, W->D, L, E, N);
  }
  /* o_t = y_t * silu(z_t) ; h_t += out_proj.weight @ o_t */
  gate_forward(a->y, a->xz + E, 2 * E, BT, E);
  matmul_forward(a->tmp, a->y, W->out_proj_w, W->out_proj_b, BT, E, d);
  for (size_t i = 0; i < (size_t)BT * d; i++) a->h[i] += a->tmp[i];
}

/* Validates inputs, sizes activations, embeds ids and runs every layer; the final residual
 * stream is left in m->acts.h. On failure nothing (state included) has changed. */
static mb_status forward_layers(mb_model *m, const int32_t *ids, int B, int L, float *hidden,
                                mb_state *state) {
  if (!m || !ids) return mb_fail(MB_ERR_INVALID_ARG, "model or ids is NULL");
  if (!m->finalized) return mb_fail(MB_ERR_STATE, "model weights not finalized");
  if (B < 1 || L < 1) return mb_fail(MB_ERR_INVALID_ARG, "empty input (B=%d, L=%d)", B, L);
  if ((size_t)B * L > (1u << 28)) return mb_fail(MB_ERR_INVALID_ARG, "input too long");
  const mb_config *c = &m->cfg;
  if (state && (state->batch != B || state->n_layer != c->n_layer || state->E != c->d_inner ||
                state->K != c->d_conv || state->N != c->d_state))
    return mb_fail(MB_ERR_SHAPE, "state (batch %d) does not fit this model/batch %d",
                   state->batch, B);
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
  for (int l = 0; l < c->n_layer; l++) {
    layer_forward(m, l, B, L, state);
    if (hidden) memcpy(hidden + (size_t)l * BT * d, a->h, BT * d * sizeof(float));
  }
  if (state) state->pos += L;
  return MB_OK;
}

mb_status mb_forward(mb_model *m, const int32_t *ids, int B, int L, mb_logits_mode mode,
                     float *logits, float *hidden, mb_state *state) {
  mb_clear_error();
  if (mode < MB_LOGITS_NONE || mode > MB_LOGITS_ALL) return mb_fail(MB_ERR_INVALID_ARG, "bad logits mode");
  if (mode != MB_LOGITS_NONE && !logits) return mb_fail(MB_ERR_INVALID_ARG, "logits is NULL");
  mb_status st = forward_layers(m, ids, B, L, hidden, state);
  if (st) return st;
  const mb_config *c = &m->cfg;
  mb_acts *a = &m->acts;
  int d = c->d_model, V = c->vocab_size, BT = B * L;
  /* logits_t = lm_head @ (rmsnorm(h_t) * norm_f.weight), only where asked */
  if (mode == MB_LOGITS_ALL) {
    rmsnorm_forward(a->a, a->h, m->norm_f, BT, d, c->eps);
    matmul_forward(logits, a->a, m->lm_head, NULL, BT, d, V);
  } else if (mode == MB_LOGITS_LAST) {
    for (int b = 0; b < B; b++)
      rmsnorm_forward(a->a + (size_t)b * d, a->h + ((size_t)b * L + L - 1) * d, m->norm_f, 1, d,
                      c->eps);
    matmul_forward(logits, a->a, m->lm_head, NULL, B, d, V);
  }
  return MB_OK;
}

/* Rows of logits computed at once by mb_score: bounds its scratch to SCORE_BLOCK * V floats. */
#define SCORE_BLOCK 32

mb_status mb_score(mb_model *m, const int32_t *ids, int B, int L, int from, float *logprobs) {
  mb_clear_error();
  if (!logprobs) return mb_fail(MB_ERR_INVALID_ARG, "logprobs is NULL");
  if (from < 1 || from > L) return mb_fail(MB_ERR_INVALID_ARG, "from=%d must be in [1, L=%d]", from, L);
  mb_status st = forward_layers(m, ids, B, L, NULL, NULL);
  if (st) return st;
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

mb_status mb_step(mb_model *m, mb_state *s, const int32_t *ids, float *logits) {
  if (!s) return mb_fail(MB_ERR_INVALID_ARG, "state is NULL");
  return mb_forward(m, ids, s->batch, 1, logits ? MB_LOGITS_LAST : MB_LOGITS_NONE, logits, NULL, s);
}
