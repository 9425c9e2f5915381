/* testutil.h: tiny helpers for the native C tests: a check macro that counts failures, max-diff
 * reporting, a seeded PRNG and a minimal F32-only safetensors reader for the golden fixtures.
 * Test-only code: the library's real loader is the JS one (bindings/safetensors.js). */
#ifndef MEMBA_TESTUTIL_H
#define MEMBA_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail = 0, g_pass = 0;

#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (cond) {                                            \
      g_pass++;                                            \
    } else {                                               \
      g_fail++;                                            \
      printf("FAIL %s:%d: ", __FILE__, __LINE__);          \
      printf(__VA_ARGS__);                                 \
      printf("\n");                                        \
    }                                                      \
  } while (0)

static inline float max_abs_diff(const float *a, const float *b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; i++) {
    float d = fabsf(a[i] - b[i]);
    if (!(d <= m)) m = d; /* NaN propagates as a failure */
  }
  return m;
}

static inline float max_abs(const float *a, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; i++) m = fabsf(a[i]) > m ? fabsf(a[i]) : m;
  return m;
}

/* Prints the max difference and checks it against t * max(1, max|want|). */
static inline void compare(const char *what, const float *got, const float *want, size_t n, double t) {
  float ref = max_abs(want, n), diff = max_abs_diff(got, want, n);
  float lim = (float)(t * (ref > 1 ? ref : 1));
  printf("  %-48s maxdiff %.3g (limit %.3g)\n", what, diff, lim);
  CHECK(diff <= lim, "%s: maxdiff %g > %g", what, diff, lim);
}

/* xorshift64* */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static inline float frand(float lo, float hi) {
  g_rng ^= g_rng >> 12; g_rng ^= g_rng << 25; g_rng ^= g_rng >> 27;
  uint32_t r = (uint32_t)((g_rng * 0x2545F4914F6CDD1Dull) >> 40);
  return lo + (hi - lo) * (float)r / 16777216.0f;
}
static inline void fill_rand(float *x, size_t n, float lo, float hi) {
  for (size_t i = 0; i < n; i++) x[i] = frand(lo, hi);
}

/* ---- minimal safetensors (F32 only) ---- */
typedef struct {
  char *buf;
  size_t len;
  size_t hlen;
} st_file;

static inline int st_open(st_file *f, const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return 0;
  fseek(fp, 0, SEEK_END);
  f->len = (size_t)ftell(fp);
  fseek(fp, 0, SEEK_SET);
  f->buf = malloc(f->len + 1);
  if (fread(f->buf, 1, f->len, fp) != f->len) { fclose(fp); free(f->buf); return 0; }
  fclose(fp);
  uint64_t h;
  memcpy(&h, f->buf, 8);
  f->hlen = (size_t)h;
  return 1;
}

static inline void st_close(st_file *f) { free(f->buf); f->buf = NULL; }

/* Finds "name":{... "data_offsets":[a,b]} in the header; copies the floats into a new buffer. */
static inline float *st_get(st_file *f, const char *name, size_t *numel) {
  char key[256];
  snprintf(key, sizeof key, "\"%s\":", name);
  char *hdr = f->buf + 8;
  char save = hdr[f->hlen];
  hdr[f->hlen] = 0;
  char *p = strstr(hdr, key);
  float *out = NULL;
  if (p) {
    char *off = strstr(p, "\"data_offsets\":[");
    size_t a, b;
    if (off && sscanf(off, "\"data_offsets\":[%zu,%zu]", &a, &b) == 2) {
      *numel = (b - a) / 4;
      out = malloc(b - a + 4);
      memcpy(out, f->buf + 8 + f->hlen + a, b - a);
    }
  }
  hdr[f->hlen] = save;
  return out;
}

#endif
