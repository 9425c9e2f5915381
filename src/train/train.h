/* train.h: the training workspace shared by train/workspace.c (sizing, memory plan) and
 * train/train.c (backward driver, loss, training loop). Not seen outside src/train/. */
#ifndef MEMBA_TRAIN_H
#define MEMBA_TRAIN_H

#include "../internal.h"

/* A layer's forward intermediates, kept for its backward (the fields of mb_block_acts): one set
 * per stored layer plus one shared set that recomputed layers use. */
enum { F_A, F_XZ, F_XC, F_U, F_DBC, F_DL, F_DLIN, F_DELTA, F_Y, F_O, F_STATES, F_V, F_APRE, F_POST, F_COUNT };

/* The rest of the workspace (gradients, checkpoints, scratch), sized for B*L tokens. */
enum {
  W_OUT, W_DH, W_DA, W_DXZ, W_DU, W_DDBC, W_DDL, W_DDELTA, W_DDLIN, W_DY, W_DG, W_DO, W_DPOST,
  W_DS, W_SCANPART, W_S0, W_DU0, W_DUSCR, W_LH, W_LG, W_HIN, W_LIMIN, W_HEAD, W_HF, W_DHF, W_HL, W_DROP,
  W_SSM, W_U, W_COUNT
};

struct mb_train_ws {
  float *buf[W_COUNT];
  size_t size[W_COUNT];
  float **sets;          /* [n_sets * F_COUNT]: set k < stored belongs to layer k; the last is shared */
  mb_block_acts *acts;   /* [n_sets] the sets as block activations (out: the shared W_OUT) */
  size_t set_size[F_COUNT];
  int n_sets, stored;
};

/* Sizes everything for a (B, L) step with the active adapter; stores as many layers'
 * intermediates as the memory budget allows (the rest are recomputed in the backward). */
mb_status train_ws_ensure(mb_model *m, int B, int L);
/* the intermediates of layer l: its own set when stored, else the shared one */
mb_block_acts *train_layer_acts(mb_train_ws *w, int l);
/* the block scratch inside the workspace */
mb_block_scratch train_scratch(const mb_train_ws *w);

#endif
