/* kernels.c: a microbenchmark, not part of the library: is relaxed SIMD's i8 dot product
 * (i32x4.relaxed_dot_i8x16_i7x16_add_s) worth a second WASM build for the q8 decode matvec?
 * Each kernel dots `rows` int8 rows of C values (blocks of 32, one float scale each) with one
 * quantised token, two rows at a time half the matrix apart (as src/ops/qmatmul.c decodes). The
 * numbers they return are not checked: only speed is measured. Built by run.mjs with clang 16 or
 * later (Debian's emscripten 3.1.6 uses LLVM 14, which has no relaxed dot builtin). */
#include <stdint.h>
#include <wasm_simd128.h>
typedef unsigned long size_t;
#define EXPORT __attribute__((visibility("default")))

static inline float hsum(v128_t a) {
  return (wasm_f32x4_extract_lane(a, 0) + wasm_f32x4_extract_lane(a, 1)) + (wasm_f32x4_extract_lane(a, 2) + wasm_f32x4_extract_lane(a, 3));
}

/* SIMD128 as the library does it: int8 weights sign-extended to i16, dotted with i16 activations */
#define BLOCK_I16(w, acc, s)                                                                                              \
  {                                                                                                                        \
    const int16_t *xb = (const int16_t *)x + 32 * b;                                                                      \
    v128_t a = wasm_v128_load(w + 32 * b), c = wasm_v128_load(w + 32 * b + 16);                                           \
    v128_t i = wasm_i32x4_add(wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a), wasm_v128_load(xb)),    \
                                             wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a), wasm_v128_load(xb + 8))), \
                              wasm_i32x4_add(wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(c), wasm_v128_load(xb + 16)),  \
                                             wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(c), wasm_v128_load(xb + 24)))); \
    acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(i), wasm_f32x4_splat(s[b] * d)));                   \
  }
/* relaxed dot, activations offset into [0, 127] (7-bit); `corr` subtracts 64 * the block's weight sum,
 * stored beside the scales (the format would grow by 2 bytes a block); without it the numbers are wrong */
#define BLOCK_RELAXED(w, acc, s, corr)                                                                       \
  {                                                                                                           \
    v128_t a = wasm_v128_load(w + 32 * b), c = wasm_v128_load(w + 32 * b + 16);                              \
    v128_t i = __builtin_wasm_relaxed_dot_i8x16_i7x16_add_s_i32x4(a, wasm_v128_load(x + 32 * b), wasm_i32x4_splat(0)); \
    i = __builtin_wasm_relaxed_dot_i8x16_i7x16_add_s_i32x4(c, wasm_v128_load(x + 32 * b + 16), i);          \
    if (corr) i = wasm_i32x4_sub(i, wasm_i32x4_splat(((const int16_t *)s)[b]));                              \
    acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(i), wasm_f32x4_splat(s[b] * d)));     \
  }
/* relaxed dot, 8-bit activations: |x| as the 7-bit operand and x's sign moved onto the weights */
#define BLOCK_SIGN(w, acc, s)                                                                                \
  {                                                                                                           \
    v128_t a = wasm_v128_load(w + 32 * b), c = wasm_v128_load(w + 32 * b + 16);                              \
    v128_t m0 = wasm_v128_load(m + 32 * b), m1 = wasm_v128_load(m + 32 * b + 16);                            \
    a = wasm_i8x16_sub(wasm_v128_xor(a, m0), m0);                                                            \
    c = wasm_i8x16_sub(wasm_v128_xor(c, m1), m1);                                                            \
    v128_t i = __builtin_wasm_relaxed_dot_i8x16_i7x16_add_s_i32x4(a, wasm_v128_load(x + 32 * b), wasm_i32x4_splat(0)); \
    i = __builtin_wasm_relaxed_dot_i8x16_i7x16_add_s_i32x4(c, wasm_v128_load(x + 32 * b + 16), i);          \
    acc = wasm_f32x4_add(acc, wasm_f32x4_mul(wasm_f32x4_convert_i32x4(i), wasm_f32x4_splat(s[b] * d)));     \
  }

#define KERNEL(NAME, BODY)                                                                                   \
  EXPORT float NAME(const int8_t *W, const float *S, const int8_t *x, const int8_t *m, const float *dx, int rows, int C) { \
    float tot = 0;                                                                                            \
    int nb = C / 32, half = rows / 2;                                                                         \
    (void)m;                                                                                                  \
    for (int r = 0; r < half; r++) {                                                                          \
      const int8_t *w0 = W + (size_t)r * C, *w1 = W + (size_t)(r + half) * C;                                 \
      const float *s0 = S + (size_t)r * nb, *s1 = S + (size_t)(r + half) * nb;                                \
      v128_t acc0 = wasm_f32x4_splat(0), acc1 = acc0;                                                         \
      for (int b = 0; b < nb; b++) {                                                                          \
        float d = dx[b];                                                                                      \
        BODY                                                                                                  \
      }                                                                                                       \
      tot += hsum(acc0) + hsum(acc1);                                                                         \
    }                                                                                                         \
    return tot;                                                                                               \
  }

KERNEL(i16_dot, BLOCK_I16(w0, acc0, s0) BLOCK_I16(w1, acc1, s1))
KERNEL(relaxed_7bit_nocorr, BLOCK_RELAXED(w0, acc0, s0, 0) BLOCK_RELAXED(w1, acc1, s1, 0))
KERNEL(relaxed_7bit, BLOCK_RELAXED(w0, acc0, s0, 1) BLOCK_RELAXED(w1, acc1, s1, 1))
KERNEL(relaxed_sign, BLOCK_SIGN(w0, acc0, s0) BLOCK_SIGN(w1, acc1, s1))

/* the read bound: two streams, half the matrix apart, xor-ed together */
EXPORT int read2(const int8_t *W, int n) {
  v128_t a = wasm_i32x4_splat(0), b = a;
  const int8_t *V = W + n / 2;
  for (int i = 0; i < n / 2; i += 32) {
    a = wasm_v128_xor(a, wasm_v128_load(W + i)), b = wasm_v128_xor(b, wasm_v128_load(W + i + 16));
    a = wasm_v128_xor(a, wasm_v128_load(V + i)), b = wasm_v128_xor(b, wasm_v128_load(V + i + 16));
  }
  return wasm_i32x4_extract_lane(wasm_v128_xor(a, b), 0);
}
