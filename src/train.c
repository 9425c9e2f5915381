/* train.c: the loss and its gradient for the active adapter's LoRA tensors, through the whole
 * frozen model (spec sections 1-4), and AdamW on the adapter only.
 * Memory plan (checkpointing under a budget): the first pass keeps each layer's input h [B, L, d]
 * and its LIM input membrane [B, c, E], and the full intermediates (scan states [B, L, E, N]
 * included) of as many layers as mb_train_set_budget allows; the backward recomputes the other
 * layers one at a time. Budget 0: O(n_layer * L * d) plus one layer's intermediates. Base weights get no gradients; adapter gradients and moments exist only
 * for adapter tensors. Not here: dropout masks are drawn here but the schedule, accumulation and
 * the NaN policy live in the bindings' Trainer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A layer's forward intermediates, kept for its backward: one set per stored layer plus one
 * shared set that recomputed layers use. */
enum { F_A, F_XZ, F_XC, F_U, F_DBC, F_DLC, F_DLIN, F_DELTA, F_Y, F_V, F_APRE, F_POST, F_O, F_STATES, F_COUNT };

/* The rest of the training workspace (gradients, checkpoints, scratch), sized for B*L tokens. */
enum {
  W_OUT, W_DH, W_DA, W_DXZ, W_DU, W_DDBC, W_DDLC, W_DDELTA, W_DDLIN, W_DY, W_DG, W_DO, W_DPOST,
  W_DS, W_S0, W_DU0, W_DUSCR, W_LH, W_LG, W_HIN, W_LIMIN, W_HEAD, W_HF, W_DHF, W_HL, W_DROP, W_COUNT
};

struct mb_train_ws {
  float *buf[W_COUNT];
  size_t size[W_COUNT];
  float **sets;      /* [(n_sets) * F_COUNT]: set k < stored belongs to layer k; the last is shared */
  size_t set_size[F_COUNT];
  int n_sets, stored;
};

static void ws_sizes(const mb_model *m, size_t B, size_t L, size_t *sz, size_t *fz) {
  const mb_config *c = &m->cfg;
  const mb_adapter *ad = m->adapter;
  size_t d = c->d_model, E = c->d_inner, N = c->d_state, R = c->dt_rank, DBC = R + 2 * N;
  size_t BT = B * L, r = ad->cfg.r ? (size_t)ad->cfg.r : 1, nl = c->n_layer;
  size_t cl = ad->cfg.lim ? (size_t)lim_chunk_len(&ad->cfg, (int)L) : 1;
  size_t in_max = d > E ? d : E, lim = ad->cfg.lim ? BT * E : 1;
  size_t f[F_COUNT] = {[F_A] = BT * d, [F_XZ] = BT * 2 * E, [F_XC] = BT * E, [F_U] = BT * E,
                       [F_DBC] = BT * DBC, [F_DLC] = BT * R, [F_DLIN] = BT * E, [F_DELTA] = BT * E,
                       [F_Y] = BT * E, [F_V] = lim, [F_APRE] = lim, [F_POST] = lim, [F_O] = BT * E,
                       [F_STATES] = BT * E * N};
  size_t per[W_COUNT] = {
      [W_OUT] = BT * d, [W_DH] = BT * d, [W_DA] = BT * d, [W_DXZ] = BT * 2 * E, [W_DU] = BT * E,
      [W_DDBC] = BT * DBC, [W_DDLC] = BT * R, [W_DDELTA] = BT * E, [W_DDLIN] = BT * E,
      [W_DY] = BT * E, [W_DG] = BT * E, [W_DO] = BT * E, [W_DPOST] = lim, [W_DS] = E * N,
      [W_S0] = E * N, [W_DU0] = B * cl * E, [W_DUSCR] = cl * E, [W_LH] = BT * r, [W_LG] = BT * r,
      [W_HIN] = nl * BT * d, [W_LIMIN] = ad->cfg.lim ? nl * B * cl * E : 1,
      [W_HEAD] = 32 * (size_t)c->vocab_size, [W_HF] = 32 * d, [W_DHF] = 32 * d, [W_HL] = BT * d,
      [W_DROP] = ad->cfg.dropout > 0 ? BT * in_max : 1};
  memcpy(sz, per, sizeof per);
  memcpy(fz, f, sizeof f);
}

static void sets_free(mb_train_ws *w) {
  if (!w->sets) return;
  for (int k = 0; k < w->n_sets * F_COUNT; k++) free(w->sets[k]);
  free(w->sets);
  w->sets = NULL;
  w->n_sets = w->stored = 0;
  memset(w->set_size, 0, sizeof w->set_size);
}

/* Sizes everything for a (B, L) step; stores as many layers' intermediates as the memory budget
 * allows (the rest are recomputed in the backward). */
static mb_status ws_ensure(mb_model *m, int B, int L) {
  size_t sz[W_COUNT], fz[F_COUNT];
  ws_sizes(m, (size_t)B, (size_t)L, sz, fz);
  mb_train_ws *w = m->train;
  if (!w) {
    w = calloc(1, sizeof *w);
    if (!w) return mb_fail(MB_ERR_OOM, "out of memory for the training workspace");
    m->train = w;
  }
  for (int i = 0; i < W_COUNT; i++) {
    if (sz[i] <= w->size[i]) continue;
    float *p = malloc(sz[i] * sizeof(float));
    if (!p) return mb_fail(MB_ERR_OOM, "out of memory for training activations (%zu MB more)", sz[i] * 4 >> 20);
    free(w->buf[i]);
    w->buf[i] = p;
    w->size[i] = sz[i];
  }
  size_t set_bytes = 0;
  for (int i = 0; i < F_COUNT; i++) set_bytes += fz[i] * sizeof(float);
  int nl = m->cfg.n_layer;
  size_t fit = m->train_budget / set_bytes;
  int stored = fit >= (size_t)nl ? nl : (int)fit;
  int fits = 1;
  for (int i = 0; i < F_COUNT; i++) fits &= fz[i] <= w->set_size[i];
  if (w->sets && fits && w->stored == stored) return MB_OK;
  sets_free(w);
  int n_sets = stored < nl ? stored + 1 : nl;
  w->sets = calloc((size_t)n_sets * F_COUNT, sizeof(float *));
  if (!w->sets) return mb_fail(MB_ERR_OOM, "out of memory for the training workspace");
  w->n_sets = n_sets;
  w->stored = stored;
  for (int k = 0; k < n_sets * F_COUNT; k++) {
    w->sets[k] = malloc(fz[k % F_COUNT] * sizeof(float));
    if (!w->sets[k]) {
      sets_free(w);
      return mb_fail(MB_ERR_OOM, "out of memory for training activations (%zu MB per layer)", set_bytes >> 20);
    }
  }
  memcpy(w->set_size, fz, sizeof fz);
  return MB_OK;
}

/* the intermediates of layer l: its own set when stored, else the shared one */
static float **layer_set(mb_train_ws *w, int l) {
  return w->sets + (size_t)(l < w->stored ? l : w->n_sets - 1) * F_COUNT;
}

void mb_train_ws_free(mb_model *m) {
  if (!m || !m->train) return;
  for (int i = 0; i < W_COUNT; i++) free(m->train->buf[i]);
  sets_free(m->train);
  free(m->train);
  m->train = NULL;
}

size_t mb_train_ws_bytes(const mb_model *m) {
  size_t n = 0;
  if (!m || !m->train) return 0;
  for (int i = 0; i < W_COUNT; i++) n += m->train->size[i] * sizeof(float);
  for (int i = 0; i < F_COUNT; i++) n += (size_t)m->train->n_sets * m->train->set_size[i] * sizeof(float);
  return n;
}

int mb_train_stored_layers(const mb_model *m) { return m && m->train ? m->train->stored : 0; }

void mb_train_set_budget(mb_model *m, double bytes) {
  if (m) m->train_budget = bytes > 0 ? (size_t)bytes : 0;
}

#define WS(i) (w->buf[i])

/* Inverted dropout with a mask drawn from `seed`: out[i] = x[i] / (1 - p) or 0. Applied to a
 * gradient with the same seed it gives the input gradient through the same mask. */
static void dropout_apply(float *out, const float *x, size_t n, float p, uint64_t seed) {
  float keep = 1.0f / (1.0f - p);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  for (size_t i = 0; i < n; i++) {
    s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
    float u = (float)((s * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
    out[i] = u < p ? 0.0f : x[i] * keep;
  }
}

/* LoRA input after dropout (training only; the input itself when dropout is 0). */
static const float *lora_input(mb_train_ws *w, const mb_adapter *ad, const float *x, size_t n,
                               uint64_t seed) {
  if (!(ad->cfg.dropout > 0.0f)) return x;
  dropout_apply(WS(W_DROP), x, n, ad->cfg.dropout, seed);
  return WS(W_DROP);
}

/* seed of the dropout mask of (step, layer, target) */
static uint64_t drop_seed(uint64_t step_seed, int l, int t) { return step_seed * 1000003u + (uint64_t)l * 64u + (uint64_t)t; }

typedef struct {
  int B, L, c;       /* c: LIM chunk length (0 without LIM) */
  uint64_t seed;     /* dropout seed of this step */
} tctx;


/* LoRA forward of target t into out (stride), with dropout on its input during training */
static void lora_fwd(mb_train_ws *w, const mb_adapter *ad, const tctx *x, int l, mb_target t,
                     float *out, int stride, const float *inp, int C, int OC) {
  if (!adapter_has(ad, t)) return;
  int BT = x->B * x->L;
  const float *in = lora_input(w, ad, inp, (size_t)BT * C, drop_seed(x->seed, l, t));
  lora_forward(out, stride, WS(W_LH), in, adapter_A(ad, l, t), adapter_B(ad, l, t), ad->scale, BT, C, OC, ad->cfg.r);
}

/* One layer's forward keeping every intermediate in the workspace; h (in/out) [BT, d].
 * limin: this layer's LIM input [B, c, E] (U0 for mean/none, the previous layer's first-chunk
 * post values for first). */
static void layer_train_forward(mb_model *m, int l, const tctx *x, float *h, const float *limin) {
  const mb_config *c = &m->cfg;
  const mb_layer *W = &m->layers[l];
  const mb_adapter *ad = m->adapter;
  mb_train_ws *w = m->train;
  float **F = layer_set(w, l);
  int B = x->B, L = x->L, BT = B * L, d = c->d_model, E = c->d_inner, N = c->d_state;
  int K = c->d_conv, R = c->dt_rank, DBC = R + 2 * N;
  rmsnorm_forward(F[F_A], h, W->norm, BT, d, c->eps);
  matmul_forward(F[F_XZ], F[F_A], W->in_proj_w, W->in_proj_b, BT, d, 2 * E);
  lora_fwd(w, ad, x, l, MB_T_IN_PROJ, F[F_XZ], 2 * E, F[F_A], d, 2 * E);
  lora_fwd(w, ad, x, l, MB_T_IN_PROJ_X, F[F_XZ], 2 * E, F[F_A], d, E);
  lora_fwd(w, ad, x, l, MB_T_IN_PROJ_Z, F[F_XZ] + E, 2 * E, F[F_A], d, E);
  for (int b = 0; b < B; b++)
    conv1d_forward(F[F_XC] + (size_t)b * L * E, F[F_XZ] + (size_t)b * L * 2 * E, 2 * E, W->conv_w, W->conv_b, L, E, K);
  for (size_t i = 0; i < (size_t)BT * E; i++) F[F_U][i] = silu_f(F[F_XC][i]);
  matmul_forward(F[F_DBC], F[F_U], W->x_proj_w, NULL, BT, E, DBC);
  lora_fwd(w, ad, x, l, MB_T_X_PROJ, F[F_DBC], DBC, F[F_U], E, DBC);
  dt_forward(F[F_DLIN], F[F_DBC], DBC, W->dt_proj_w, W->dt_proj_b, BT, E, R);
  for (int t = 0; t < BT; t++) memcpy(F[F_DLC] + (size_t)t * R, F[F_DBC] + (size_t)t * DBC, R * sizeof(float));
  lora_fwd(w, ad, x, l, MB_T_DT_PROJ, F[F_DLIN], E, F[F_DLC], R, E);
  for (size_t i = 0; i < (size_t)BT * E; i++) F[F_DELTA][i] = softplus_f(F[F_DLIN][i]);
  memset(WS(W_S0), 0, sizeof(float) * (size_t)E * N);
  for (int b = 0; b < B; b++) {
    size_t off = (size_t)b * L;
    selective_scan_forward_save(F[F_Y] + off * E, F[F_STATES] + off * E * N, WS(W_S0), F[F_U] + off * E,
                                F[F_DELTA] + off * E, F[F_DBC] + off * DBC + R, DBC, W->A, W->D, L, E, N);
  }
  const float *g = F[F_XZ] + E;
  int gs = 2 * E;
  if (ad->cfg.lim) {
    const mb_adapter_config *lc = &ad->cfg;
    size_t cE = (size_t)x->c * E;
    for (int b = 0; b < B; b++) {
      size_t off = (size_t)b * L;
      float *U = WS(W_DUSCR); /* the membrane, [c, E] */
      const float *prev = NULL;
      if (lc->cross_layer == MB_LIM_FIRST) {
        memset(U, 0, cE * sizeof(float));
        prev = l > 0 ? limin + b * cE : NULL;
      } else {
        memcpy(U, limin + b * cE, cE * sizeof(float));
      }
      lim_forward(F[F_V] + off * E, F[F_POST] + off * E, F[F_APRE] + off * E, U,
                  F[F_XZ] + off * 2 * E + E, 2 * E, prev, L, E, x->c, 0, lc->tau, lc->v_th,
                  lc->output == MB_LIM_PRE_RESET);
    }
    g = F[F_V];
    gs = E;
  }
  for (int t = 0; t < BT; t++)
    for (int e = 0; e < E; e++)
      F[F_O][(size_t)t * E + e] = F[F_Y][(size_t)t * E + e] * silu_f(g[(size_t)t * gs + e]);
  matmul_forward(WS(W_OUT), F[F_O], W->out_proj_w, W->out_proj_b, BT, E, d);
  lora_fwd(w, ad, x, l, MB_T_OUT_PROJ, WS(W_OUT), d, F[F_O], E, d);
  for (size_t i = 0; i < (size_t)BT * d; i++) h[i] += WS(W_OUT)[i];
}

/* The next layer's LIM input from this layer's post values (W_POST): mean transfer, the first
 * chunk's post values (first), or zeros (none). */
static void lim_next_input(const mb_model *m, int l, const tctx *x, float *next) {
  const mb_adapter_config *lc = &m->adapter->cfg;
  mb_train_ws *w = m->train;
  float **F = layer_set(w, l);
  int E = m->cfg.d_inner, L = x->L, c = x->c;
  size_t cE = (size_t)c * E;
  for (int b = 0; b < x->B; b++) {
    const float *post = F[F_POST] + (size_t)b * L * E;
    float *dst = next + b * cE;
    if (lc->cross_layer == MB_LIM_MEAN) {
      lim_transfer_mean(dst, post, L, E, c);
    } else {
      memset(dst, 0, cE * sizeof(float));
      if (lc->cross_layer == MB_LIM_FIRST) memcpy(dst, post, (size_t)(L < c ? L : c) * E * sizeof(float));
    }
  }
}

/* LoRA backward of target t: gradients into the adapter's gradient block, input gradient into
 * dinp (through the dropout mask when on). */
static void lora_bwd(mb_train_ws *w, mb_adapter *ad, const tctx *x, int l, mb_target t,
                     float *dinp, const float *dout, int dstride, const float *inp, int C, int OC) {
  if (!adapter_has(ad, t)) return;
  int BT = x->B * x->L;
  size_t off = (size_t)(adapter_A(ad, l, t) - ad->block);
  float *dA = ad->grad + off, *dB = ad->grad + (size_t)(adapter_B(ad, l, t) - ad->block);
  const float *in = lora_input(w, ad, inp, (size_t)BT * C, drop_seed(x->seed, l, t));
  if (in == inp) {
    lora_backward(dA, dB, dinp, WS(W_LH), WS(W_LG), dout, dstride, in, adapter_A(ad, l, t), adapter_B(ad, l, t), ad->scale, BT, C, OC, ad->cfg.r);
    return;
  }
  /* dropout: d(inp) = mask / (1 - p) * d(dropped input); W_DROP is free again after dA */
  lora_backward(dA, dB, NULL, WS(W_LH), WS(W_LG), dout, dstride, in, adapter_A(ad, l, t), adapter_B(ad, l, t), ad->scale, BT, C, OC, ad->cfg.r);
  float *g = WS(W_DROP);
  size_t n = (size_t)BT * C;
  memset(g, 0, n * sizeof(float));
  matmul_backward_input(g, WS(W_LG), adapter_A(ad, l, t), BT, C, ad->cfg.r);
  dropout_apply(g, g, n, ad->cfg.dropout, drop_seed(x->seed, l, t));
  for (size_t i = 0; i < n; i++) dinp[i] += g[i];
}

/* Backward of one layer (its intermediates are in the workspace from layer_train_forward).
 * dh (in/out) [BT, d]: gradient of the layer output in, of its input out. dpost: gradient of this
 * layer's post values from the layer above (or NULL); writes the gradient of this layer's LIM
 * input into W_DU0 ([B, c, E]). */
static void layer_backward(mb_model *m, int l, const tctx *x, float *dh, const float *hin,
                           const float *dpost) {
  const mb_config *c = &m->cfg;
  const mb_layer *W = &m->layers[l];
  mb_adapter *ad = m->adapter;
  mb_train_ws *w = m->train;
  float **F = layer_set(w, l);
  int B = x->B, L = x->L, BT = B * L, d = c->d_model, E = c->d_inner, N = c->d_state;
  int K = c->d_conv, R = c->dt_rank, DBC = R + 2 * N;
  size_t nE = (size_t)BT * E;
  /* out = out_proj(o) + LoRA ; residual: dh passes through, dout = dh */
  memset(WS(W_DO), 0, nE * sizeof(float));
  matmul_backward_input(WS(W_DO), dh, W->out_proj_w, BT, E, d);
  lora_bwd(w, ad, x, l, MB_T_OUT_PROJ, WS(W_DO), dh, d, F[F_O], E, d);
  /* o = y * silu(g) */
  const float *g = ad->cfg.lim ? F[F_V] : F[F_XZ] + E;
  gate_backward(WS(W_DY), WS(W_DG), WS(W_DO), F[F_Y], g, ad->cfg.lim ? E : 2 * E, BT, E);
  memset(WS(W_DXZ), 0, (size_t)BT * 2 * E * sizeof(float));
  if (ad->cfg.lim) {
    const mb_adapter_config *lc = &ad->cfg;
    size_t cE = (size_t)x->c * E;
    for (int b = 0; b < B; b++) {
      size_t off = (size_t)b * L;
      lim_backward(WS(W_DXZ) + off * 2 * E + E, 2 * E, WS(W_DU0) + b * cE, WS(W_DUSCR), WS(W_DG) + off * E,
                   dpost ? dpost + off * E : NULL, F[F_APRE] + off * E, L, E, x->c, lc->tau, lc->v_th,
                   lc->output == MB_LIM_PRE_RESET, lc->reset_grad == MB_LIM_TRIANGLE, lc->surrogate_width);
    }
  } else {
    for (int t = 0; t < BT; t++) memcpy(WS(W_DXZ) + (size_t)t * 2 * E + E, WS(W_DG) + (size_t)t * E, E * sizeof(float));
  }
  /* scan (reverse time) */
  memset(WS(W_DU), 0, nE * sizeof(float));
  memset(WS(W_DDELTA), 0, nE * sizeof(float));
  memset(WS(W_DDBC), 0, (size_t)BT * DBC * sizeof(float));
  for (int b = 0; b < B; b++) {
    size_t off = (size_t)b * L;
    selective_scan_backward(WS(W_DU) + off * E, WS(W_DDELTA) + off * E, WS(W_DDBC) + off * DBC + R, WS(W_DS),
                            WS(W_DY) + off * E, F[F_STATES] + off * E * N, WS(W_S0), F[F_U] + off * E,
                            F[F_DELTA] + off * E, F[F_DBC] + off * DBC + R, DBC, W->A, W->D, L, E, N);
  }
  /* delta = softplus(dt_proj(dl) + LoRA) */
  memset(WS(W_DDLIN), 0, nE * sizeof(float));
  softplus_backward(WS(W_DDLIN), WS(W_DDELTA), F[F_DLIN], nE);
  dt_backward(WS(W_DDBC), DBC, WS(W_DDLIN), W->dt_proj_w, BT, E, R);
  if (adapter_has(ad, MB_T_DT_PROJ)) {
    memset(WS(W_DDLC), 0, (size_t)BT * R * sizeof(float));
    lora_bwd(w, ad, x, l, MB_T_DT_PROJ, WS(W_DDLC), WS(W_DDLIN), E, F[F_DLC], R, E);
    for (int t = 0; t < BT; t++)
      for (int r = 0; r < R; r++) WS(W_DDBC)[(size_t)t * DBC + r] += WS(W_DDLC)[(size_t)t * R + r];
  }
  /* dbc = x_proj(u) + LoRA */
  matmul_backward_input(WS(W_DU), WS(W_DDBC), W->x_proj_w, BT, E, DBC);
  lora_bwd(w, ad, x, l, MB_T_X_PROJ, WS(W_DU), WS(W_DDBC), DBC, F[F_U], E, DBC);
  /* u = silu(conv(x)) */
  for (int b = 0; b < B; b++) {
    size_t off = (size_t)b * L;
    conv1d_silu_backward(WS(W_DXZ) + off * 2 * E, 2 * E, WS(W_DU) + off * E, F[F_XC] + off * E, W->conv_w, L, E, K);
  }
  /* xz = in_proj(a) + LoRA */
  memset(WS(W_DA), 0, (size_t)BT * d * sizeof(float));
  matmul_backward_input(WS(W_DA), WS(W_DXZ), W->in_proj_w, BT, d, 2 * E);
  lora_bwd(w, ad, x, l, MB_T_IN_PROJ, WS(W_DA), WS(W_DXZ), 2 * E, F[F_A], d, 2 * E);
  lora_bwd(w, ad, x, l, MB_T_IN_PROJ_X, WS(W_DA), WS(W_DXZ), 2 * E, F[F_A], d, E);
  lora_bwd(w, ad, x, l, MB_T_IN_PROJ_Z, WS(W_DA), WS(W_DXZ) + E, 2 * E, F[F_A], d, E);
  /* a = rmsnorm(h) ; h_out = h + mixer: dh += rmsnorm'(da) */
  rmsnorm_backward(dh, WS(W_DA), hin, W->norm, BT, d, c->eps);
}

/* Loss over labels != -100 and its gradient at the final residual stream: dh = d loss / d h_L.
 * Logits are made 32 rows at a time. Returns the number of counted labels. */
static long head_loss_backward(mb_model *m, const tctx *x, const float *hL, const int32_t *labels,
                               float *dh, double *loss) {
  const mb_config *c = &m->cfg;
  mb_train_ws *w = m->train;
  int d = c->d_model, V = c->vocab_size, BT = x->B * x->L;
  long n = 0;
  for (int t = 0; t < BT; t++) n += labels[t] != -100;
  *loss = 0.0;
  memset(dh, 0, sizeof(float) * (size_t)BT * d);
  if (n == 0) return 0;
  for (int t0 = 0; t0 < BT; t0 += 32) {
    int nb = BT - t0 < 32 ? BT - t0 : 32;
    rmsnorm_forward(WS(W_HF), hL + (size_t)t0 * d, m->norm_f, nb, d, c->eps);
    matmul_forward(WS(W_HEAD), WS(W_HF), m->lm_head, NULL, nb, d, V);
    for (int i = 0; i < nb; i++) {
      float *row = WS(W_HEAD) + (size_t)i * V;
      int y = labels[t0 + i];
      if (y == -100) {
        memset(row, 0, sizeof(float) * (size_t)V);
        continue;
      }
      float mx = row[0];
      for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
      double sum = 0.0;
      for (int v = 0; v < V; v++) sum += exp((double)row[v] - mx);
      double lse = mx + log(sum);
      *loss += lse - row[y];
      /* d loss / d logits = (softmax - onehot) / n */
      for (int v = 0; v < V; v++) row[v] = (float)(exp((double)row[v] - lse) / (double)n);
      row[y] -= 1.0f / (float)n;
    }
    memset(WS(W_DHF), 0, sizeof(float) * (size_t)nb * d);
    matmul_backward_input(WS(W_DHF), WS(W_HEAD), m->lm_head, nb, d, V);
    rmsnorm_backward(dh + (size_t)t0 * d, WS(W_DHF), hL + (size_t)t0 * d, m->norm_f, nb, d, c->eps);
  }
  *loss /= (double)n;
  return n;
}

mb_status mb_train_backward(mb_model *m, const int32_t *ids, const int32_t *labels, int B, int L,
                            uint32_t seed, float *loss_out) {
  mb_clear_error();
  if (!m || !ids || !labels || !loss_out) return mb_fail(MB_ERR_INVALID_ARG, "NULL argument");
  mb_adapter *ad = m->adapter;
  if (!m->finalized) return mb_fail(MB_ERR_STATE, "model weights not finalized");
  if (!ad || ad->cfg.r == 0) return mb_fail(MB_ERR_STATE, "training needs an active adapter with LoRA tensors");
  if (ad->merged) return mb_fail(MB_ERR_STATE, "unmerge the adapter before training it");
  if (B < 1 || L < 1 || (size_t)B * L > (1u << 24)) return mb_fail(MB_ERR_INVALID_ARG, "bad batch shape B=%d L=%d", B, L);
  const mb_config *c = &m->cfg;
  size_t BT = (size_t)B * L, d = c->d_model, E = c->d_inner;
  for (size_t i = 0; i < BT; i++) {
    if (ids[i] < 0 || ids[i] >= c->vocab_size)
      return mb_fail(MB_ERR_INVALID_ARG, "token id %d at position %zu out of range [0, %d)", ids[i], i, c->vocab_size);
    if (labels[i] != -100 && (labels[i] < 0 || labels[i] >= c->vocab_size))
      return mb_fail(MB_ERR_INVALID_ARG, "label %d at position %zu out of range (use -100 to ignore)", labels[i], i);
  }
  mb_status st = mb_adapter_grad_ensure(ad);
  if (st) return st;
  st = ws_ensure(m, B, L);
  if (st) return st;
  mb_train_ws *w = m->train;
  tctx x = {B, L, ad->cfg.lim ? lim_chunk_len(&ad->cfg, L) : 0, seed};
  size_t cE = (size_t)(x.c ? x.c : 1) * E;
  /* first pass: keep each layer's input and LIM input */
  float *h = WS(W_HL);
  for (size_t i = 0; i < BT; i++) memcpy(h + i * d, m->embedding + (size_t)ids[i] * d, d * sizeof(float));
  if (ad->cfg.lim) memset(WS(W_LIMIN), 0, sizeof(float) * B * cE);
  for (int l = 0; l < c->n_layer; l++) {
    memcpy(WS(W_HIN) + (size_t)l * BT * d, h, BT * d * sizeof(float));
    float *limin = ad->cfg.lim ? WS(W_LIMIN) + (size_t)l * B * cE : NULL;
    layer_train_forward(m, l, &x, h, limin);
    if (ad->cfg.lim && l + 1 < c->n_layer) lim_next_input(m, l, &x, limin + B * cE);
  }
  double loss;
  long n = head_loss_backward(m, &x, h, labels, WS(W_DH), &loss);
  if (n == 0) return mb_fail(MB_ERR_INVALID_ARG, "no labels to learn from (all are -100)");
  /* backward, one recomputed layer at a time */
  int have_dpost = 0;
  for (int l = c->n_layer - 1; l >= 0; l--) {
    const float *hin = WS(W_HIN) + (size_t)l * BT * d;
    if (l >= w->stored) { /* not kept: recompute this layer's intermediates */
      memcpy(h, hin, BT * d * sizeof(float));
      float *limin = ad->cfg.lim ? WS(W_LIMIN) + (size_t)l * B * cE : NULL;
      layer_train_forward(m, l, &x, h, limin);
    }
    layer_backward(m, l, &x, WS(W_DH), hin, have_dpost ? WS(W_DPOST) : NULL);
    /* the gradient of this layer's LIM input reaches the layer below's post values */
    have_dpost = 0;
    if (ad->cfg.lim && l > 0 && ad->cfg.cross_layer != MB_LIM_NONE) {
      float *dprev = WS(W_DPOST);
      memset(dprev, 0, BT * E * sizeof(float));
      int nfull = L / x.c;
      for (int b = 0; b < B; b++) {
        const float *du0 = WS(W_DU0) + b * cE;
        float *dp = dprev + (size_t)b * L * E;
        if (ad->cfg.cross_layer == MB_LIM_MEAN) {
          for (int i = 0; i < nfull; i++)
            for (size_t k = 0; k < cE; k++) dp[(size_t)i * cE + k] += du0[k] / (float)nfull;
        } else { /* first: U0[j] = post of token j (j < min(c, L)) */
          for (size_t k = 0; k < (size_t)(L < x.c ? L : x.c) * E; k++) dp[k] += du0[k];
        }
      }
      have_dpost = 1;
    }
  }
  *loss_out = (float)loss;
  return MB_OK;
}
