/* fuzz.h: shared parts of the libFuzzer harnesses (tests/fuzz/fuzz_*.c, built by
 * `./build.sh fuzz`): a reader that takes fields from the input bytes (zeros past the end), a
 * small random model, and the sentinel check: a model made once whose logits on a fixed input are
 * recorded at start-up and must not change, whatever the inputs did (heap corruption, a merge
 * that was not undone, shared buffers written out of bounds all show there). */
#ifndef MEMBA_FUZZ_H
#define MEMBA_FUZZ_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/memba.h"
#include "../../src/memba_backend.h"

typedef struct {
  const uint8_t *p;
  size_t n;
} reader;

static inline uint32_t rd_u32(reader *r) {
  uint32_t v = 0;
  size_t k = r->n < 4 ? r->n : 4;
  memcpy(&v, r->p, k);
  r->p += k, r->n -= k;
  return v;
}
static inline int32_t rd_i32(reader *r) { return (int32_t)rd_u32(r); }
static inline float rd_f32(reader *r) {
  uint32_t u = rd_u32(r);
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static inline uint8_t rd_u8(reader *r) {
  uint8_t v = r->n ? r->p[0] : 0;
  if (r->n) r->p++, r->n--;
  return v;
}
/* a small integer in [lo, hi] */
static inline int rd_range(reader *r, int lo, int hi) { return lo + (int)(rd_u8(r) % (unsigned)(hi - lo + 1)); }

static const mb_config FUZZ_MODEL = {.d_model = 16, .n_layer = 2, .vocab_size = 40, .d_state = 4, .d_conv = 4,
                                     .d_inner = 32, .dt_rank = 3, .eps = 1e-5f, .tied_head = 1};

/* the same vocabulary, with dt_rank wider than d_model and d_inner (the dt_proj LoRA's input is then
 * the widest of all: a buffer sized by max(d, E) alone overflows) */
static const mb_config FUZZ_WIDE_RANK = {.d_model = 8, .n_layer = 2, .vocab_size = 40, .d_state = 4, .d_conv = 4,
                                         .d_inner = 16, .dt_rank = 40, .eps = 1e-5f, .tied_head = 1};

static inline mb_model *fuzz_model_of(const mb_config *c, uint32_t seed) {
  mb_model *m = NULL;
  if (mb_model_new(c, &m) || mb_model_init_random(m, seed)) abort();
  return m;
}
static inline mb_model *fuzz_model(uint32_t seed) { return fuzz_model_of(&FUZZ_MODEL, seed); }

/* the sentinel: its own model, checked after every input */
static mb_model *g_sentinel;
static float g_sentinel_logits[8 * 40];
static const int32_t SENTINEL_IDS[8] = {1, 7, 3, 39, 0, 12, 5, 5};

static inline void sentinel_check(void) {
  float now[8 * 40];
  if (!g_sentinel) {
    g_sentinel = fuzz_model(12345);
    if (mb_forward(g_sentinel, SENTINEL_IDS, 1, 8, MB_LOGITS_ALL, g_sentinel_logits, NULL, NULL)) abort();
    return;
  }
  if (mb_forward(g_sentinel, SENTINEL_IDS, 1, 8, MB_LOGITS_ALL, now, NULL, NULL)) abort();
  if (memcmp(now, g_sentinel_logits, sizeof now)) abort(); /* something wrote into another model */
}
#endif
