/* init.c: deterministic pseudo-random weights with Mamba-like statistics, so benchmarks (WASM
 * and native, same C) and stress tests can build any model shape without a checkpoint.
 * Not a training initialisation and not a substitute for real weights. */
#include <math.h>
#include <stdlib.h>

#include "../internal.h"

static uint64_t next(uint64_t *s) { /* splitmix64 */
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void uniform(float *x, size_t n, float a, uint64_t *s) {
  if (!x) return;
  for (size_t i = 0; i < n; i++) x[i] = a * (2.0f * (float)(next(s) >> 40) / 16777216.0f - 1.0f);
}

/* uniform values for a parameter of any dtype: made row by row in float32 and converted (the same
 * values, in the same order, as filling a float32 slot directly) */
static mb_status uniform_param(mb_model *m, mb_param p, int layer, float a, uint64_t *s) {
  const mb_slot *sl = model_slot(m, p, layer);
  if (!sl || !sl->data) return MB_OK;
  float *row = mb_alloc_floats(sl->cols);
  if (!row) return mb_fail(MB_ERR_OOM, "out of memory for a weight row");
  mb_status st = MB_OK;
  for (size_t r = 0; r < sl->numel / sl->cols && !st; r++) {
    uniform(row, sl->cols, a, s);
    st = mb_model_param_write(m, p, layer, r, 1, row);
  }
  free(row);
  return st;
}

static void constant(float *x, size_t n, float v) {
  if (!x) return;
  for (size_t i = 0; i < n; i++) x[i] = v;
}

/* the f32 values of a slot to fill (NULL when the config does not have it) */
#define P(p, layer) mb_model_param(m, p, layer, NULL)

mb_status mb_model_init_random(mb_model *m, uint32_t seed) {
  mb_clear_error();
  if (!m) return mb_fail(MB_ERR_INVALID_ARG, "model is NULL");
  const mb_config *c = &m->cfg;
  uint64_t s = seed;
  size_t d = c->d_model, E = c->d_inner, N = c->d_state, K = c->d_conv, R = c->dt_rank;
  mb_status st = uniform_param(m, MB_P_EMBEDDING, -1, 0.035f, &s);
  constant(P(MB_P_NORM_F, -1), d, 1.0f);
  if (!c->tied_head && !st) st = uniform_param(m, MB_P_LM_HEAD, -1, 0.035f, &s);
  for (int l = 0; l < c->n_layer && !st; l++) {
    constant(P(MB_P_NORM, l), d, 1.0f);
    st = uniform_param(m, MB_P_IN_PROJ_W, l, 1.0f / sqrtf((float)d), &s);
    constant(P(MB_P_IN_PROJ_B, l), 2 * E, 0.0f);
    uniform(P(MB_P_CONV_W, l), E * K, 1.0f / sqrtf((float)K), &s);
    uniform(P(MB_P_CONV_B, l), E, 0.1f, &s);
    if (!st) st = uniform_param(m, MB_P_X_PROJ_W, l, 1.0f / sqrtf((float)E), &s);
    if (!st) st = uniform_param(m, MB_P_DT_PROJ_W, l, 1.0f / sqrtf((float)R), &s);
    for (size_t e = 0; e < E; e++) { /* dt in [0.001, 0.1], bias = softplus^-1(dt) */
      float dt = expf(logf(0.001f) + (logf(0.1f) - logf(0.001f)) * (float)(next(&s) >> 40) / 16777216.0f);
      P(MB_P_DT_PROJ_B, l)[e] = dt + logf(-expm1f(-dt));
    }
    for (size_t e = 0; e < E; e++)
      for (size_t n = 0; n < N; n++) P(MB_P_A_LOG, l)[e * N + n] = logf((float)(n + 1));
    constant(P(MB_P_D, l), E, 1.0f);
    if (!st) st = uniform_param(m, MB_P_OUT_PROJ_W, l, 1.0f / sqrtf((float)E), &s);
    constant(P(MB_P_OUT_PROJ_B, l), d, 0.0f);
  }
  return st ? st : mb_model_finalize(m);
}
