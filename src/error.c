/* error.c: last-error recording, kernel selection and the exported allocator.
 * The library reports failures through status codes plus this message; it never prints. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

static _Thread_local char g_err[512]; /* per thread: each thread sees its own last error */
int mb_simd_enabled = 1;

const char *mb_last_error(void) { return g_err; }

void mb_clear_error(void) { g_err[0] = 0; }

mb_status mb_fail(mb_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_err, sizeof g_err, fmt, ap);
  va_end(ap);
  return st;
}

void mb_set_simd(int on) { mb_simd_enabled = on ? 1 : 0; }
int mb_get_simd(void) { return mb_simd_enabled; }

/* every allocation of the core goes through these, so one limit covers all */
static int alloc_ok(uint64_t n, size_t size) {
  return size && n <= SIZE_MAX / size && n * size <= (uint64_t)MB_ALLOC_LIMIT;
}
void *mb_calloc_n(uint64_t n, size_t size) {
  return alloc_ok(n ? n : 1, size) ? calloc(n ? (size_t)n : 1, size) : NULL;
}
float *mb_alloc_floats(uint64_t n) {
  return alloc_ok(n ? n : 1, sizeof(float)) ? malloc((n ? (size_t)n : 1) * sizeof(float)) : NULL;
}
float *mb_calloc_floats(uint64_t n) { return mb_calloc_n(n, sizeof(float)); }
void *mb_malloc(size_t n) { return alloc_ok(n ? n : 1, 1) ? malloc(n ? n : 1) : NULL; }
void mb_free(void *p) { free(p); }

float silu_f(float x) { return x / (1.0f + expf(-x)); }

float softplus_f(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
