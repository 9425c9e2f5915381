/* workspace.c: the memory plan of a training step (checkpointing under a budget). The first pass
 * keeps each layer's input h [B, L, d] and its LIM input [B, c, E], and the full intermediates
 * (scan states [B, L, E, N] included) of as many layers as mb_train_set_budget allows; the
 * backward recomputes the other layers one at a time. Budget 0: O(n_layer * L * d) plus one
 * layer's intermediates. Not here: the math (train.c, core/block.c). */
#include <stdlib.h>
#include <string.h>

#include "train.h"

/* Floats of every buffer for a (B, L) step; 0 when one of them does not fit the address space. */
static int ws_sizes(const mb_model *m, size_t B, size_t L, size_t *sz, size_t *fz) {
  const mb_config *c = &m->cfg;
  const mb_adapter *ad = m->adapter;
  size_t d = c->d_model, E = c->d_inner, N = c->d_state, R = c->dt_rank, DBC = R + 2 * N;
  size_t BT = B * L, r = ad->cfg.r ? (size_t)ad->cfg.r : 1, nl = c->n_layer;
  size_t cl = ad->cfg.lim ? (size_t)lim_chunk_len(&ad->cfg, (int)L) : 1;
  int ovf = 0;
#define F3(a, b, c_) floats3(a, b, c_, &ovf)
  /* the widest LoRA input: d (in_proj), E (x_proj, out_proj) or R (dt_proj, whose rank may pass both) */
  size_t in_max = d > E ? d : E, lim = ad->cfg.lim ? F3(BT, E, 1) : 1, V = c->vocab_size;
  if (R > in_max) in_max = R;
  size_t f[F_COUNT] = {[F_A] = F3(BT, d, 1), [F_XZ] = F3(BT, 2, E), [F_XC] = F3(BT, E, 1), [F_U] = F3(BT, E, 1),
                       [F_DBC] = F3(BT, DBC, 1), [F_DL] = F3(BT, R, 1), [F_DLIN] = F3(BT, E, 1), [F_DELTA] = F3(BT, E, 1),
                       [F_Y] = F3(BT, E, 1), [F_O] = F3(BT, E, 1), [F_STATES] = F3(BT, E, N), [F_V] = lim,
                       [F_APRE] = lim, [F_POST] = lim};
  size_t per[W_COUNT] = {
      [W_OUT] = F3(BT, d, 1), [W_DH] = F3(BT, d, 1), [W_DA] = F3(BT, d, 1), [W_DXZ] = F3(BT, 2, E), [W_DU] = F3(BT, E, 1),
      [W_DDBC] = F3(BT, DBC, 1), [W_DDL] = F3(BT, R, 1), [W_DDELTA] = F3(BT, E, 1), [W_DDLIN] = F3(BT, E, 1),
      [W_DY] = F3(BT, E, 1), [W_DG] = F3(BT, E, 1), [W_DO] = F3(BT, E, 1), [W_DPOST] = lim, [W_DS] = F3(E, N, 1), [W_SCANPART] = F3((E + SCAN_BWD_GROUP - 1) / SCAN_BWD_GROUP, L, 2 * N),
      [W_S0] = F3(E, N, 1), [W_DU0] = F3(B, cl, E), [W_DUSCR] = F3(cl, E, 1), [W_LH] = F3(BT, r, 1), [W_LG] = F3(BT, r, 1),
      [W_HIN] = F3(nl, BT, d), [W_LIMIN] = ad->cfg.lim ? F3(nl * B, cl, E) : 1,
      [W_HEAD] = F3(HEAD_ROWS, V, 1), [W_HF] = F3(HEAD_ROWS, d, 1), [W_DHF] = F3(HEAD_ROWS, d, 1), [W_HL] = F3(BT, d, 1),
      [W_DROP] = ad->cfg.dropout > 0 ? F3(BT, in_max, 1) : 1, [W_SSM] = F3(E, N, 1), [W_U] = F3(cl, E, 1)};
#undef F3
  memcpy(sz, per, sizeof per);
  memcpy(fz, f, sizeof f);
  return !ovf;
}

static void sets_free(mb_train_ws *w) {
  if (w->sets)
    for (int k = 0; k < w->n_sets * F_COUNT; k++) free(w->sets[k]);
  free(w->sets);
  free(w->acts);
  w->sets = NULL;
  w->acts = NULL;
  w->n_sets = w->stored = 0;
  memset(w->set_size, 0, sizeof w->set_size);
}

/* the block-activation view of set k */
static void set_view(mb_train_ws *w, int k) {
  float **F = w->sets + (size_t)k * F_COUNT;
  mb_block_acts a = {.a = F[F_A], .xz = F[F_XZ], .xc = F[F_XC], .u = F[F_U], .dbc = F[F_DBC],
                     .dl = F[F_DL], .dlin = F[F_DLIN], .delta = F[F_DELTA], .y = F[F_Y], .o = F[F_O],
                     .states = F[F_STATES], .v = F[F_V], .apre = F[F_APRE], .post = F[F_POST],
                     .out = w->buf[W_OUT]};
  w->acts[k] = a;
}

mb_status train_ws_ensure(mb_model *m, int B, int L) {
  size_t sz[W_COUNT], fz[F_COUNT];
  if (!ws_sizes(m, (size_t)B, (size_t)L, sz, fz))
    return mb_fail(MB_ERR_OOM, "training activations for %d x %d tokens do not fit this address space", B, L);
  mb_train_ws *w = m->train;
  if (!w) {
    w = mb_calloc_n(1, sizeof *w);
    if (!w) return mb_fail(MB_ERR_OOM, "out of memory for the training workspace");
    m->train = w;
  }
  for (int i = 0; i < W_COUNT; i++) {
    if (sz[i] <= w->size[i]) continue;
    float *p = mb_alloc_floats(sz[i]);
    if (!p) return mb_fail(MB_ERR_OOM, "out of memory for training activations (%zu MB more)", sz[i] * 4 >> 20);
    free(w->buf[i]);
    w->buf[i] = p;
    w->size[i] = sz[i];
  }
  size_t set_bytes = 0;
  for (int i = 0; i < F_COUNT; i++)
    if (__builtin_add_overflow(set_bytes, fz[i] * sizeof(float), &set_bytes))
      return mb_fail(MB_ERR_OOM, "training activations of one layer do not fit this address space");
  int nl = m->cfg.n_layer;
  size_t fit = m->train_budget / set_bytes;
  int stored = fit >= (size_t)nl ? nl : (int)fit;
  int fits = 1;
  for (int i = 0; i < F_COUNT; i++) fits &= fz[i] <= w->set_size[i];
  if (w->sets && fits && w->stored == stored) {
    for (int k = 0; k < w->n_sets; k++) set_view(w, k); /* W_OUT may have moved */
    return MB_OK;
  }
  sets_free(w);
  int n_sets = stored < nl ? stored + 1 : nl;
  w->sets = mb_calloc_n((size_t)n_sets * F_COUNT, sizeof(float *));
  w->acts = mb_calloc_n((size_t)n_sets, sizeof(mb_block_acts));
  if (!w->sets || !w->acts) {
    sets_free(w);
    return mb_fail(MB_ERR_OOM, "out of memory for the training workspace");
  }
  w->n_sets = n_sets;
  w->stored = stored;
  for (int k = 0; k < n_sets * F_COUNT; k++) {
    w->sets[k] = mb_alloc_floats(fz[k % F_COUNT]);
    if (!w->sets[k]) {
      sets_free(w);
      return mb_fail(MB_ERR_OOM, "out of memory for training activations (%zu MB per layer)", set_bytes >> 20);
    }
  }
  memcpy(w->set_size, fz, sizeof fz);
  for (int k = 0; k < n_sets; k++) set_view(w, k);
  return MB_OK;
}

mb_block_acts *train_layer_acts(mb_train_ws *w, int l) {
  return &w->acts[l < w->stored ? l : w->n_sets - 1];
}

mb_block_scratch train_scratch(const mb_train_ws *w) {
  mb_block_scratch s = {w->buf[W_LH], w->buf[W_DROP], w->buf[W_SSM], w->buf[W_U]};
  return s;
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
