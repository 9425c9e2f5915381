/* simd.h: the one place that knows about vector registers.
 * 128-bit float vectors through GCC/clang vector extensions: the same source becomes WASM SIMD
 * (emcc -msimd128) and SSE2 (native x86-64), so WASM and native builds run the same kernels.
 * Loads and stores are unaligned (memcpy). Not here: any kernel logic (see ops/). Never fast-math. */
#ifndef MEMBA_SIMD_H
#define MEMBA_SIMD_H

#include <stdint.h>
#include <string.h>

typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));

static inline f32x4 v_load(const float *p) { f32x4 v; memcpy(&v, p, 16); return v; }
static inline void v_store(float *p, f32x4 v) { memcpy(p, &v, 16); }
static inline f32x4 v_splat(float x) { return (f32x4){x, x, x, x}; }
static inline float v_hsum(f32x4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }
/* lane select without the vector ternary (not in C mode on every compiler): mask ? a : b */
static inline f32x4 v_select(i32x4 mask, f32x4 a, f32x4 b) {
  i32x4 ai, bi;
  memcpy(&ai, &a, 16);
  memcpy(&bi, &b, 16);
  i32x4 r = (ai & mask) | (bi & ~mask);
  f32x4 out;
  memcpy(&out, &r, 16);
  return out;
}
static inline f32x4 v_min(f32x4 a, f32x4 b) { return v_select(a < b, a, b); }
static inline f32x4 v_max(f32x4 a, f32x4 b) { return v_select(a > b, a, b); }

/* exp(x) for f32x4: Cephes-style range reduction x = n*ln2 + r, |r| <= ln2/2, degree-6
 * polynomial; relative error ~2 ulp over the clamped range [-87.3, 88.7] (below -87.3 it returns
 * exp(-87.3) ~ 1e-38 instead of a subnormal or 0). Tested against expf in tests/c/test_ops.c. */
static inline f32x4 v_exp(f32x4 x) {
  x = v_min(v_max(x, v_splat(-87.3f)), v_splat(88.7f));
  /* round(x / ln2) with the 1.5*2^23 trick (no float->int conversion needed) */
  const f32x4 magic = v_splat(12582912.0f);
  f32x4 t = x * v_splat(1.44269504088896341f) + magic;
  f32x4 n = t - magic;
  f32x4 r = x - n * v_splat(0.693359375f);
  r = r - n * v_splat(-2.12194440e-4f);
  f32x4 p = v_splat(1.9875691500e-4f);
  p = p * r + v_splat(1.3981999507e-3f);
  p = p * r + v_splat(8.3334519073e-3f);
  p = p * r + v_splat(4.1665795894e-2f);
  p = p * r + v_splat(1.6666665459e-1f);
  p = p * r + v_splat(5.0000001201e-1f);
  p = p * (r * r) + r + v_splat(1.0f);
  /* 2^n: n's integer value sits in t's low mantissa bits */
  i32x4 ti, mi;
  memcpy(&ti, &t, 16);
  memcpy(&mi, &magic, 16);
  i32x4 e = ((ti - mi) + 127) << 23;
  f32x4 scale;
  memcpy(&scale, &e, 16);
  return p * scale;
}

/* silu(x) = x * sigmoid(x) */
static inline f32x4 v_silu(f32x4 x) { return x / (v_splat(1.0f) + v_exp(-x)); }

#endif
