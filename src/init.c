/* init.c: deterministic pseudo-random weights with Mamba-like statistics, so benchmarks (WASM
 * and native, same C) and stress tests can build any model shape without a checkpoint.
 * Not a training initialisation and not a substitute for real weights. */
#include <math.h>

#include "internal.h"

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

static void constant(float *x, size_t n, float v) {
  if (!x) return;
  for (size_t i = 0; i < n; i++) x[i] = v;
}

mb_status mb_model_init_random(mb_model *m, uint32_t seed) {
  mb_clear_error();
  if (!m) return mb_fail(MB_ERR_INVALID_ARG, "model is NULL");
  const mb_config *c = &m->cfg;
  uint64_t s = seed;
  size_t d = c->d_model, E = c->d_inner, N = c->d_state, K = c->d_conv, R = c->dt_rank;
  uniform(m->embedding, (size_t)c->vocab_size * d, 0.035f, &s);
  constant(m->norm_f, d, 1.0f);
  if (!c->tied_head) uniform(m->lm_head, (size_t)c->vocab_size * d, 0.035f, &s);
  for (int l = 0; l < c->n_layer; l++) {
    mb_layer *L = &m->layers[l];
    constant(L->norm, d, 1.0f);
    uniform(L->in_proj_w, 2 * E * d, 1.0f / sqrtf((float)d), &s);
    constant(L->in_proj_b, 2 * E, 0.0f);
    uniform(L->conv_w, E * K, 1.0f / sqrtf((float)K), &s);
    uniform(L->conv_b, E, 0.1f, &s);
    uniform(L->x_proj_w, (R + 2 * N) * E, 1.0f / sqrtf((float)E), &s);
    uniform(L->dt_proj_w, E * R, 1.0f / sqrtf((float)R), &s);
    for (size_t e = 0; e < E; e++) { /* dt in [0.001, 0.1], bias = softplus^-1(dt) */
      float dt = expf(logf(0.001f) + (logf(0.1f) - logf(0.001f)) * (float)(next(&s) >> 40) / 16777216.0f);
      L->dt_proj_b[e] = dt + logf(-expm1f(-dt));
    }
    for (size_t e = 0; e < E; e++)
      for (size_t n = 0; n < N; n++) L->A_log[e * N + n] = logf((float)(n + 1));
    constant(L->D, E, 1.0f);
    uniform(L->out_proj_w, d * E, 1.0f / sqrtf((float)E), &s);
    constant(L->out_proj_b, d, 0.0f);
  }
  return mb_model_finalize(m);
}
