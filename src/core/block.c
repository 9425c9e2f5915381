/* block.c: THE Mamba-1 block (spec sections 1-3), the one place a layer's forward is written.
 * Inference, the one-token decode step (L = 1), scoring, the split stages other backends use and
 * training (which passes buffers that keep what its backward needs) all run these functions.
 *   pre:  a = rmsnorm(h) ; xz = in_proj(a) (+ LoRA) ; u = silu(conv1d(x)) ; dbc = x_proj(u) (+ LoRA)
 *         dlin = dt_proj(dl) (+ LoRA) ; the gate input: z, or the LIM membrane v (Memba)
 *   mid:  delta = softplus(dlin) ; y = scan(u, delta, B, C) ; o = y * silu(gate input)
 *   post: h += out_proj(o) (+ LoRA)
 * `reverse` runs the mixer over each sequence reversed in time (xz is flipped after in_proj and
 * o flipped back before out_proj), the building block of Vision Mamba's bidirectional layer
 * (docs/DEVELOPING.md). Not here: the layer loop, embedding and head (models/lm.c), the
 * backward (train/train.c), buffer ownership (callers hand in mb_block_acts). */
#include <string.h>

#include "../internal.h"

void flip_rows(float *x, int B, int L, int cols, int stride) {
  for (int b = 0; b < B; b++)
    for (int i = 0, j = L - 1; i < j; i++, j--) {
      float *p = x + ((size_t)b * L + i) * stride, *q = x + ((size_t)b * L + j) * stride;
      for (int c = 0; c < cols; c++) {
        float t = p[c];
        p[c] = q[c];
        q[c] = t;
      }
    }
}

/* LoRA of target t added into out (rows of `stride`), on inp [BT, C] (after dropout in training) */
static void block_lora(const mb_model *m, int l, mb_target t, const mb_block_run *x,
                       const mb_block_scratch *S, float *out, int stride, const float *inp, int C,
                       int OC) {
  const mb_adapter *ad = m->adapter;
  if (!lora_on(ad, t)) return;
  size_t BT = (size_t)x->B * x->L;
  const float *in = inp;
  if (x->train && ad->cfg.dropout > 0.0f) {
    lora_dropout(S->drop, inp, BT * C, ad->cfg.dropout, lora_drop_seed(x->seed, l, t));
    in = S->drop;
  }
  lora_forward(out, stride, S->lora_h, in, adapter_A(ad, l, t), adapter_B(ad, l, t), ad->scale,
               (int)BT, C, OC, ad->cfg.r);
}

/* The LIM gate input v from z for each sequence (spec section 3): the membrane starts from the
 * decode state's, or from this layer's LIM input (mean / none; zeros for first, which instead
 * reads the previous layer's post values of the first chunk through prev_post). */
static void block_lim(const mb_model *m, int l, const mb_block_run *x, mb_block_acts *A,
                      const mb_block_scratch *S) {
  const mb_adapter_config *lc = &m->adapter->cfg;
  int E = m->cfg.d_inner, L = x->L, c = x->c;
  size_t cE = (size_t)c * E;
  int first = lc->cross_layer == MB_LIM_FIRST;
  int64_t pos0 = x->state ? x->state->pos : 0;
  for (int b = 0; b < x->B; b++) {
    size_t off = (size_t)b * L;
    float *U = x->state ? mb_state_lim(x->state, l, b) : S->U;
    if (!x->state) {
      if (first) memset(U, 0, cE * sizeof(float));
      else memcpy(U, x->lim_in + b * cE, cE * sizeof(float));
    }
    const float *prev = first && l > 0 ? x->lim_in + b * cE : NULL;
    lim_forward(A->v + off * E, A->post + off * E, A->apre ? A->apre + off * E : NULL, U,
                A->xz + off * 2 * E + E, 2 * E, prev, L, E, c, pos0, lc->tau, lc->v_th,
                lc->output == MB_LIM_PRE_RESET);
  }
}

void block_pre(const mb_model *m, int l, const mb_block_run *x, mb_block_acts *A,
               const mb_block_scratch *S, const float *h) {
  const mb_config *c = &m->cfg;
  const mb_layer *W = &m->layers[l];
  int d = c->d_model, E = c->d_inner, N = c->d_state, K = c->d_conv, R = c->dt_rank;
  int DBC = R + 2 * N, B = x->B, L = x->L, BT = B * L;
  /* a_t = rmsnorm(h_t) * norm.weight ; [x_t; z_t] = in_proj.weight @ a_t (+ bias) (+ LoRA) */
  rmsnorm_forward(A->a, h, layer_f32(W, MB_P_NORM), BT, d, c->eps);
  linear_forward(A->xz, A->a, layer_slot(W, MB_P_IN_PROJ_W), layer_slot(W, MB_P_IN_PROJ_B), BT, d, 2 * E);
  block_lora(m, l, MB_T_IN_PROJ, x, S, A->xz, 2 * E, A->a, d, 2 * E);
  block_lora(m, l, MB_T_IN_PROJ_X, x, S, A->xz, 2 * E, A->a, d, E);
  block_lora(m, l, MB_T_IN_PROJ_Z, x, S, A->xz + E, 2 * E, A->a, d, E);
  if (x->reverse) flip_rows(A->xz, B, L, 2 * E, 2 * E);
  /* u_t = silu(conv1d(x)_t), causal, continuing from the state's history when kept */
  for (int b = 0; b < B; b++) {
    size_t off = (size_t)b * L;
    conv1d_silu_forward(A->u + off * E, A->xc ? A->xc + off * E : NULL,
                        x->state ? mb_state_conv(x->state, l, b) : NULL, A->xz + off * 2 * E, 2 * E,
                        layer_f32(W, MB_P_CONV_W), layer_f32(W, MB_P_CONV_B), L, E, K);
  }
  /* [dl; B; C] = x_proj.weight @ u_t (+ LoRA) ; dlin_t = dt_proj(dl) (+ LoRA) */
  linear_forward(A->dbc, A->u, layer_slot(W, MB_P_X_PROJ_W), NULL, BT, E, DBC);
  block_lora(m, l, MB_T_X_PROJ, x, S, A->dbc, DBC, A->u, E, DBC);
  dt_forward(A->dlin, A->dbc, DBC, layer_f32(W, MB_P_DT_PROJ_W), layer_f32(W, MB_P_DT_PROJ_B), BT, E, R);
  if (lora_on(m->adapter, MB_T_DT_PROJ)) {
    for (int t = 0; t < BT; t++) memcpy(A->dl + (size_t)t * R, A->dbc + (size_t)t * DBC, R * sizeof(float));
    block_lora(m, l, MB_T_DT_PROJ, x, S, A->dlin, E, A->dl, R, E);
  }
  /* the gate input: z, or the LIM membrane v with Memba (it depends on z alone) */
  if (m->adapter && m->adapter->cfg.lim) block_lim(m, l, x, A, S);
}

void block_mid(const mb_model *m, int l, const mb_block_run *x, mb_block_acts *A,
               const mb_block_scratch *S) {
  const mb_config *c = &m->cfg;
  const mb_layer *W = &m->layers[l];
  int E = c->d_inner, N = c->d_state, R = c->dt_rank, DBC = R + 2 * N, L = x->L, BT = x->B * L;
  size_t EN = (size_t)E * N;
  /* delta = softplus(dlin) ; s_t = exp(delta_t A) s_{t-1} + delta_t B_t u_t ; y_t = s_t C_t + D u_t */
  softplus_forward(A->delta, A->dlin, (size_t)BT * E);
  for (int b = 0; b < x->B; b++) {
    size_t off = (size_t)b * L;
    float *s = x->state ? mb_state_ssm(x->state, l, b) : S->ssm;
    if (!x->state) memset(s, 0, sizeof(float) * EN);
    selective_scan_forward(A->y + off * E, s, A->states ? A->states + off * EN : NULL, A->u + off * E,
                           A->delta + off * E, A->dbc + off * DBC + R, DBC, W->A,
                           layer_f32(W, MB_P_D), L, E, N);
  }
  /* o_t = y_t * silu(g_t), g = z, or the LIM membrane v with Memba */
  if (m->adapter && m->adapter->cfg.lim) gate_forward(A->o, A->y, A->v, E, BT, E);
  else gate_forward(A->o, A->y, A->xz + E, 2 * E, BT, E);
  if (x->reverse) flip_rows(A->o, x->B, L, E, E);
}

void block_post(const mb_model *m, int l, const mb_block_run *x, mb_block_acts *A,
                const mb_block_scratch *S, float *h) {
  const mb_layer *W = &m->layers[l];
  int d = m->cfg.d_model, E = m->cfg.d_inner, BT = x->B * x->L;
  /* h_t += out_proj.weight @ o_t (+ bias) (+ LoRA) */
  linear_forward(A->out, A->o, layer_slot(W, MB_P_OUT_PROJ_W), layer_slot(W, MB_P_OUT_PROJ_B), BT, E, d);
  block_lora(m, l, MB_T_OUT_PROJ, x, S, A->out, d, A->o, E, d);
  for (size_t i = 0; i < (size_t)BT * d; i++) h[i] += A->out[i];
}

void block_forward(const mb_model *m, int l, const mb_block_run *x, mb_block_acts *A,
                   const mb_block_scratch *S, float *h) {
  block_pre(m, l, x, A, S, h);
  block_mid(m, l, x, A, S);
  block_post(m, l, x, A, S, h);
}

void lim_layer_input(float *next, const float *post, const mb_adapter_config *lc, int B, int L,
                     int E, int c) {
  size_t cE = (size_t)c * E;
  for (int b = 0; b < B; b++) {
    const float *p = post + (size_t)b * L * E;
    float *dst = next + b * cE;
    if (lc->cross_layer == MB_LIM_MEAN) {
      lim_transfer_mean(dst, p, L, E, c);
    } else {
      memset(dst, 0, cE * sizeof(float));
      if (lc->cross_layer == MB_LIM_FIRST) memcpy(dst, p, (size_t)(L < c ? L : c) * E * sizeof(float));
    }
  }
}
