/* train.c: the loss and its gradient for the active adapter's LoRA tensors, through the whole
 * frozen model (spec sections 1-4): the training loop over layers (the forward is the one block,
 * core/block.c, keeping its intermediates in the workspace of workspace.c), the loss (the one
 * cross-entropy, ops/xent.c, on the head's logits made as in inference) and the backward.
 * Base weights get no gradients; adapter gradients exist only for adapter tensors. Not here:
 * AdamW (optim.c); the schedule, accumulation and NaN policy (the bindings' Trainer). */
#include <string.h>

#include "train.h"

#define WS(i) (w->buf[i])

typedef struct {
  int B, L, c;   /* c: LIM chunk length (0 without LIM) */
  uint64_t seed; /* dropout seed of this step */
} tctx;

/* layer l's forward into its intermediates; h (in/out) [BT, d] */
static void layer_forward(mb_model *m, int l, const tctx *x, float *h) {
  mb_train_ws *w = m->train;
  size_t cE = (size_t)(x->c ? x->c : 1) * m->cfg.d_inner;
  const float *limin = m->adapter->cfg.lim ? WS(W_LIMIN) + (size_t)l * x->B * cE : NULL;
  mb_block_run run = {x->B, x->L, NULL, limin, x->c, 0, 1, x->seed};
  mb_block_scratch S = train_scratch(w);
  block_forward(m, l, &run, train_layer_acts(w, l), &S, h);
}

/* LoRA backward of target t: gradients into the adapter's gradient block, input gradient into
 * dinp (through the dropout mask when on). */
static void lora_bwd(mb_train_ws *w, mb_adapter *ad, const tctx *x, int l, mb_target t,
                     float *dinp, const float *dout, int dstride, const float *inp, int C, int OC) {
  if (!adapter_has(ad, t)) return;
  int BT = x->B * x->L, r = ad->cfg.r;
  float *dA = ad->grad + (adapter_A(ad, l, t) - ad->block), *dB = ad->grad + (adapter_B(ad, l, t) - ad->block);
  if (!(ad->cfg.dropout > 0.0f)) {
    lora_backward(dA, dB, dinp, WS(W_LH), WS(W_LG), dout, dstride, inp, adapter_A(ad, l, t), adapter_B(ad, l, t), ad->scale, BT, C, OC, r);
    return;
  }
  /* dropout: the dropped input again, then d(inp) = mask / (1 - p) * d(dropped input) */
  size_t n = (size_t)BT * C;
  uint64_t seed = lora_drop_seed(x->seed, l, t);
  lora_dropout(WS(W_DROP), inp, n, ad->cfg.dropout, seed);
  lora_backward(dA, dB, NULL, WS(W_LH), WS(W_LG), dout, dstride, WS(W_DROP), adapter_A(ad, l, t), adapter_B(ad, l, t), ad->scale, BT, C, OC, r);
  float *g = WS(W_DROP); /* free again after dA */
  memset(g, 0, n * sizeof(float));
  matmul_backward_input(g, WS(W_LG), adapter_A(ad, l, t), BT, C, r);
  lora_dropout(g, g, n, ad->cfg.dropout, seed);
  for (size_t i = 0; i < n; i++) dinp[i] += g[i];
}

/* Backward of one layer (its intermediates F from layer_forward). dh (in/out) [BT, d]: gradient
 * of the layer output in, of its input out. dpost: gradient of this layer's post values from the
 * layer above (or NULL); leaves the gradient of this layer's LIM input in W_DU0 ([B, c, E]). */
static void layer_backward(mb_model *m, int l, const tctx *x, float *dh, const float *hin,
                           const float *dpost) {
  const mb_config *c = &m->cfg;
  const mb_layer *W = &m->layers[l];
  mb_adapter *ad = m->adapter;
  mb_train_ws *w = m->train;
  const mb_block_acts *F = train_layer_acts(w, l);
  int B = x->B, L = x->L, BT = B * L, d = c->d_model, E = c->d_inner, N = c->d_state;
  int K = c->d_conv, R = c->dt_rank, DBC = R + 2 * N;
  size_t nE = (size_t)BT * E;
  /* out = out_proj(o) + LoRA ; residual: dh passes through, dout = dh */
  memset(WS(W_DO), 0, nE * sizeof(float));
  linear_backward_input(WS(W_DO), dh, layer_slot(W, MB_P_OUT_PROJ_W), BT, E, d);
  lora_bwd(w, ad, x, l, MB_T_OUT_PROJ, WS(W_DO), dh, d, F->o, E, d);
  /* o = y * silu(g) */
  memset(WS(W_DY), 0, nE * sizeof(float));
  memset(WS(W_DG), 0, nE * sizeof(float));
  const float *g = ad->cfg.lim ? F->v : F->xz + E;
  gate_backward(WS(W_DY), WS(W_DG), WS(W_DO), F->y, g, ad->cfg.lim ? E : 2 * E, BT, E);
  memset(WS(W_DXZ), 0, (size_t)BT * 2 * E * sizeof(float));
  if (ad->cfg.lim) {
    const mb_adapter_config *lc = &ad->cfg;
    size_t cE = (size_t)x->c * E;
    memset(WS(W_DU0), 0, B * cE * sizeof(float));
    for (int b = 0; b < B; b++) {
      size_t off = (size_t)b * L;
      lim_backward(WS(W_DXZ) + off * 2 * E + E, 2 * E, WS(W_DU0) + b * cE, WS(W_DUSCR), WS(W_DG) + off * E,
                   dpost ? dpost + off * E : NULL, F->apre + off * E, L, E, x->c, lc->tau, lc->v_th,
                   lc->output == MB_LIM_PRE_RESET, lc->reset_grad == MB_LIM_TRIANGLE, lc->surrogate_width);
    }
  } else {
    for (int t = 0; t < BT; t++) memcpy(WS(W_DXZ) + (size_t)t * 2 * E + E, WS(W_DG) + (size_t)t * E, E * sizeof(float));
  }
  /* scan (reverse time), from the zero initial state */
  memset(WS(W_DU), 0, nE * sizeof(float));
  memset(WS(W_DDELTA), 0, nE * sizeof(float));
  memset(WS(W_DDBC), 0, (size_t)BT * DBC * sizeof(float));
  memset(WS(W_S0), 0, sizeof(float) * (size_t)E * N);
  for (int b = 0; b < B; b++) {
    size_t off = (size_t)b * L;
    selective_scan_backward(WS(W_DU) + off * E, WS(W_DDELTA) + off * E, WS(W_DDBC) + off * DBC + R, WS(W_DS), WS(W_SCANPART),
                            WS(W_DY) + off * E, F->states + off * E * N, WS(W_S0), F->u + off * E,
                            F->delta + off * E, F->dbc + off * DBC + R, DBC, W->A, layer_f32(W, MB_P_D), L, E, N);
  }
  /* delta = softplus(dt_proj(dl) + LoRA) */
  memset(WS(W_DDLIN), 0, nE * sizeof(float));
  softplus_backward(WS(W_DDLIN), WS(W_DDELTA), F->dlin, nE);
  dt_backward(WS(W_DDBC), DBC, WS(W_DDLIN), layer_f32(W, MB_P_DT_PROJ_W), BT, E, R);
  if (adapter_has(ad, MB_T_DT_PROJ)) {
    memset(WS(W_DDL), 0, (size_t)BT * R * sizeof(float));
    lora_bwd(w, ad, x, l, MB_T_DT_PROJ, WS(W_DDL), WS(W_DDLIN), E, F->dl, R, E);
    for (int t = 0; t < BT; t++)
      for (int r = 0; r < R; r++) WS(W_DDBC)[(size_t)t * DBC + r] += WS(W_DDL)[(size_t)t * R + r];
  }
  /* dbc = x_proj(u) + LoRA */
  linear_backward_input(WS(W_DU), WS(W_DDBC), layer_slot(W, MB_P_X_PROJ_W), BT, E, DBC);
  lora_bwd(w, ad, x, l, MB_T_X_PROJ, WS(W_DU), WS(W_DDBC), DBC, F->u, E, DBC);
  /* u = silu(conv(x)) */
  for (int b = 0; b < B; b++) {
    size_t off = (size_t)b * L;
    conv1d_silu_backward(WS(W_DXZ) + off * 2 * E, 2 * E, WS(W_DU) + off * E, F->xc + off * E,
                         layer_f32(W, MB_P_CONV_W), L, E, K);
  }
  /* xz = in_proj(a) + LoRA */
  memset(WS(W_DA), 0, (size_t)BT * d * sizeof(float));
  linear_backward_input(WS(W_DA), WS(W_DXZ), layer_slot(W, MB_P_IN_PROJ_W), BT, d, 2 * E);
  lora_bwd(w, ad, x, l, MB_T_IN_PROJ, WS(W_DA), WS(W_DXZ), 2 * E, F->a, d, 2 * E);
  lora_bwd(w, ad, x, l, MB_T_IN_PROJ_X, WS(W_DA), WS(W_DXZ), 2 * E, F->a, d, E);
  lora_bwd(w, ad, x, l, MB_T_IN_PROJ_Z, WS(W_DA), WS(W_DXZ) + E, 2 * E, F->a, d, E);
  /* a = rmsnorm(h) ; h_out = h + mixer: dh += rmsnorm'(da) */
  rmsnorm_backward(dh, WS(W_DA), hin, layer_f32(W, MB_P_NORM), BT, d, c->eps);
}

/* Loss over labels != -100 (the mean cross-entropy of the head's logits, HEAD_ROWS rows at a
 * time as lm_logits makes them for mb_forward) and its gradient at the final residual stream:
 * dh = d loss / d h_L. Returns the number of counted labels. */
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
  for (int t0 = 0; t0 < BT; t0 += HEAD_ROWS) {
    int nb = BT - t0 < HEAD_ROWS ? BT - t0 : HEAD_ROWS;
    lm_logits(m, WS(W_HEAD), hL + (size_t)t0 * d, d, nb, WS(W_HF));
    for (int i = 0; i < nb; i++) {
      float *row = WS(W_HEAD) + (size_t)i * V;
      int y = labels[t0 + i];
      if (y == -100) {
        memset(row, 0, sizeof(float) * (size_t)V);
        continue;
      }
      double lse = xent_lse(row, V);
      *loss += lse - row[y];
      xent_backward(row, row, lse, y, 1.0 / (double)n, V); /* d loss / d logits, in place */
    }
    /* back through lm_head and norm_f (rows of W_HF are rmsnorm(h) * norm_f) */
    memset(WS(W_DHF), 0, sizeof(float) * (size_t)nb * d);
    linear_backward_input(WS(W_DHF), WS(W_HEAD), &m->lm_head, nb, d, V);
    rmsnorm_backward(dh + (size_t)t0 * d, WS(W_DHF), hL + (size_t)t0 * d, slot_f32(&m->norm_f), nb, d, c->eps);
  }
  *loss /= (double)n;
  return n;
}

/* The gradient reaching layer l-1's post values from layer l's LIM input gradient (W_DU0):
 * U0 = the mean over full chunks (mean) or the first chunk's post values (first). */
static void lim_input_backward(mb_model *m, const tctx *x, float *dprev) {
  mb_train_ws *w = m->train;
  int E = m->cfg.d_inner, L = x->L, nfull = L / x->c;
  size_t cE = (size_t)x->c * E;
  memset(dprev, 0, (size_t)x->B * L * E * sizeof(float));
  for (int b = 0; b < x->B; b++) {
    const float *du0 = WS(W_DU0) + b * cE;
    float *dp = dprev + (size_t)b * L * E;
    if (m->adapter->cfg.cross_layer == MB_LIM_MEAN) {
      for (int i = 0; i < nfull; i++)
        for (size_t k = 0; k < cE; k++) dp[(size_t)i * cE + k] += du0[k] / (float)nfull;
    } else { /* first: U0[j] = post of token j (j < min(c, L)) */
      for (size_t k = 0; k < (size_t)(L < x->c ? L : x->c) * E; k++) dp[k] += du0[k];
    }
  }
}

static mb_status train_check(const mb_model *m, const int32_t *ids, const int32_t *labels, int B,
                             int L, const float *loss_out) {
  if (!m || !ids || !labels || !loss_out) return mb_fail(MB_ERR_INVALID_ARG, "NULL argument");
  const mb_adapter *ad = m->adapter;
  if (!m->finalized) return mb_fail(MB_ERR_STATE, "model weights not finalized");
  if (!ad || ad->cfg.r == 0) return mb_fail(MB_ERR_STATE, "training needs an active adapter with LoRA tensors");
  if (ad->merged) return mb_fail(MB_ERR_STATE, "unmerge the adapter before training it");
  if (B < 1 || L < 1 || (size_t)B * L > (1u << 24)) return mb_fail(MB_ERR_INVALID_ARG, "bad batch shape B=%d L=%d", B, L);
  size_t BT = (size_t)B * L;
  mb_status st = lm_check_ids(m, ids, BT, "token id");
  if (st) return st;
  for (size_t i = 0; i < BT; i++)
    if (labels[i] != -100 && (labels[i] < 0 || labels[i] >= m->cfg.vocab_size))
      return mb_fail(MB_ERR_INVALID_ARG, "label %d at position %zu out of range (use -100 to ignore)", labels[i], i);
  return MB_OK;
}

mb_status mb_train_backward(mb_model *m, const int32_t *ids, const int32_t *labels, int B, int L,
                            uint32_t seed, float *loss_out) {
  mb_clear_error();
  mb_status st = train_check(m, ids, labels, B, L, loss_out);
  if (st) return st;
  mb_adapter *ad = m->adapter;
  st = mb_adapter_grad_ensure(ad);
  if (st) return st;
  st = train_ws_ensure(m, B, L);
  if (st) return st;
  const mb_config *c = &m->cfg;
  mb_train_ws *w = m->train;
  size_t BT = (size_t)B * L, d = c->d_model, E = c->d_inner;
  tctx x = {B, L, ad->cfg.lim ? lim_chunk_len(&ad->cfg, L) : 0, seed};
  size_t cE = (size_t)(x.c ? x.c : 1) * E;
  /* first pass: keep each layer's input and LIM input */
  float *h = WS(W_HL);
  lm_embed(m, h, ids, BT);
  if (ad->cfg.lim) memset(WS(W_LIMIN), 0, sizeof(float) * B * cE);
  for (int l = 0; l < c->n_layer; l++) {
    memcpy(WS(W_HIN) + (size_t)l * BT * d, h, BT * d * sizeof(float));
    layer_forward(m, l, &x, h);
    if (ad->cfg.lim && l + 1 < c->n_layer)
      lim_layer_input(WS(W_LIMIN) + (size_t)(l + 1) * B * cE, train_layer_acts(w, l)->post, &ad->cfg, B, L, (int)E, x.c);
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
      layer_forward(m, l, &x, h);
    }
    layer_backward(m, l, &x, WS(W_DH), hin, have_dpost ? WS(W_DPOST) : NULL);
    /* the gradient of this layer's LIM input reaches the layer below's post values */
    have_dpost = ad->cfg.lim && l > 0 && ad->cfg.cross_layer != MB_LIM_NONE;
    if (have_dpost) lim_input_backward(m, &x, WS(W_DPOST));
  }
  *loss_out = (float)loss;
  return MB_OK;
}
