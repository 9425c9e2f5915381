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
typedef uint32_t u32x4 __attribute__((vector_size(16)));
typedef int16_t i16x8 __attribute__((vector_size(16)));
typedef uint16_t u16x8 __attribute__((vector_size(16)));
typedef int8_t i8x16 __attribute__((vector_size(16)));

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

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

/* ---- integer lanes for the f16 and q8 weight kernels (ops/convert.c, ops/matmul.c) ---- */

/* 8 halves (IEEE binary16, finite) to two f32x4 of their values times 2^-112, exactly: each half
 * sign-extended to 32 bits and shifted up 13, so the lane holds sign | exponent | mantissa << 13
 * (the 3 copies of the sign between them cleared). As float32 that is the half times 2^-112 (for
 * subnormal halves too). Sign extension, not an interleave with zeros: WASM has it as one
 * instruction (i32x4.extend_*_i16x8_s), while the interleave became a generic shuffle that ran the
 * f16 matvec at 0.55x the speed (measured). */
static inline void v_f16x8_to_f32_scaled(const uint16_t *p, f32x4 *lo, f32x4 *hi) {
  i16x8 h;
  memcpy(&h, p, 16);
  /* sign-extend in i32, then shift as unsigned (a left shift of a negative int is undefined) */
  u32x4 ia = (u32x4)__builtin_convertvector(__builtin_shufflevector(h, h, 0, 1, 2, 3), i32x4);
  u32x4 ib = (u32x4)__builtin_convertvector(__builtin_shufflevector(h, h, 4, 5, 6, 7), i32x4);
  ia = (ia << 13) & 0x8fffe000u;
  ib = (ib << 13) & 0x8fffe000u;
  memcpy(lo, &ia, 16);
  memcpy(hi, &ib, 16);
}

#define F16_REBIAS 5.192296858534828e33f /* 2^112 */

/* 8 halves (finite) to two f32x4, exactly: the scaled lanes times 2^112 */
static inline void v_f16x8_to_f32(const uint16_t *p, f32x4 *lo, f32x4 *hi) {
  v_f16x8_to_f32_scaled(p, lo, hi);
  *lo *= v_splat(F16_REBIAS);
  *hi *= v_splat(F16_REBIAS);
}

/* 16 int8 to two i16x8, sign-extended (i16x8.extend_{low,high}_i8x16_s in WASM; an interleave
 * with zeros and a shift, as before, ran the q8 matvec at 0.6x the speed, measured) */
static inline void v_i8x16_to_i16(const int8_t *p, i16x8 *lo, i16x8 *hi) {
  i8x16 v;
  memcpy(&v, p, 16);
  *lo = __builtin_convertvector(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7), i16x8);
  *hi = __builtin_convertvector(__builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15), i16x8);
}

/* lanes i of the result: a[2i] * b[2i] + a[2i+1] * b[2i+1], in 32 bits (pmaddwd / i32x4.dot_i16x8_s) */
static inline i32x4 v_dot_i16(i16x8 a, i16x8 b) {
#if defined(__wasm_simd128__)
  v128_t va, vb;
  memcpy(&va, &a, 16);
  memcpy(&vb, &b, 16);
  v128_t r = wasm_i32x4_dot_i16x8(va, vb);
#elif defined(__SSE2__)
  __m128i va, vb;
  memcpy(&va, &a, 16);
  memcpy(&vb, &b, 16);
  __m128i r = _mm_madd_epi16(va, vb);
#else
  i32x4 r;
  for (int i = 0; i < 4; i++) r[i] = (int32_t)a[2 * i] * b[2 * i] + (int32_t)a[2 * i + 1] * b[2 * i + 1];
#endif
  i32x4 out;
  memcpy(&out, &r, 16);
  return out;
}

static inline f32x4 v_i32_to_f32(i32x4 v) { return __builtin_convertvector(v, f32x4); }
static inline int32_t v_hsum_i32(i32x4 v) { return (v[0] + v[1]) + (v[2] + v[3]); }

/* silu(x) = x * sigmoid(x) */
static inline f32x4 v_silu(f32x4 x) { return x / (v_splat(1.0f) + v_exp(-x)); }

#endif
