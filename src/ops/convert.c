/* convert.c: the low-precision weight formats and their conversions to and from float32.
 *   f16: IEEE 754 binary16, one uint16 per value (round to nearest even from f32).
 *   q8:  blocks of 32 values: a scale d = max|x| / 127 in fp16 and 32 int8 q = round(x / d),
 *        so x ~ d * q: q8_0's numbers and bytes (34 per 32 values). A row of C values takes
 *        nb = ceil(C / 32) blocks, stored as the nb * 32 int8 values, then the nb scales (q8_0
 *        interleaves each scale with its block, which costs the decode kernel a scalar
 *        conversion per block: measured 1.2x slower end to end; the kernels here convert a
 *        row's scales 8 at a time first). The last block's missing values are zeros.
 * Decoding a row to float32 is exact for f16 (every binary16 is a float32) and for q8 a single
 * multiply (float)q * d, so the SIMD and scalar decoders give the same bits. Ops read f16 / q8
 * weights by decoding blocks of rows into float32 and running the float32 kernels on them.
 * Not here: the matmuls (matmul.c), choosing a dtype (core/weights.c, the bindings). */
#include <math.h>

#include "../internal.h"
#include "../simd.h"

size_t dtype_row_bytes(mb_dtype dt, size_t C) {
  switch (dt) {
    case MB_DT_F16: return C * 2;
    case MB_DT_Q8: return (C + Q8_BLOCK - 1) / Q8_BLOCK * Q8_BLOCK_BYTES;
    default: return C * sizeof(float);
  }
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, bits;
  if (e == 0x1f) bits = sign | 0x7f800000u | (m << 13); /* inf / nan */
  else if (e) bits = sign | ((e + 112) << 23) | (m << 13);
  else if (!m) bits = sign;
  else { /* subnormal: normalise */
    e = 113;
    while (!(m & 0x400)) m <<= 1, e--;
    bits = sign | (e << 23) | ((m & 0x3ff) << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000, a = x & 0x7fffffffu;
  if (a >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0)); /* inf / nan */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds past 65504: inf */
  if (a < 0x38800000u) { /* below 2^-14: a subnormal (or zero) of binary16 */
    if (a < 0x33000000u) return (uint16_t)sign; /* below half the smallest subnormal */
    uint32_t m = (a & 0x7fffff) | 0x800000, shift = 126 - (a >> 23); /* 14..24 */
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    r += rem > half || (rem == half && (r & 1));
    return (uint16_t)(sign | r);
  }
  uint32_t r = a - 0x38000000u; /* rebias 127 -> 15, in place */
  r += 0xfff + ((r >> 13) & 1);   /* round to nearest even on the 13 dropped bits */
  return (uint16_t)(sign | (r >> 13));
}

/* ---- decoding rows to float32: scalar references and SIMD ---- */

void f16_row_to_f32_scalar(float *dst, const uint16_t *src, size_t n) {
  for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
}

/* 8 halves at a time through simd.h's v_f16x8_to_f32 (exact for finite halves); a group with an
 * inf or nan takes the scalar path. */
static void f16_row_to_f32_simd(float *dst, const uint16_t *src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    int special = 0;
    for (int k = 0; k < 8; k++) special |= (src[i + k] & 0x7c00) == 0x7c00;
    if (special) {
      for (int k = 0; k < 8; k++) dst[i + k] = f16_to_f32(src[i + k]);
      continue;
    }
    f32x4 lo, hi;
    v_f16x8_to_f32(src + i, &lo, &hi);
    v_store(dst + i, lo);
    v_store(dst + i + 4, hi);
  }
  for (; i < n; i++) dst[i] = f16_to_f32(src[i]);
}

/* n values of consecutive blocks (int8 q, fp16 scales sc) into dst */
static void q8_blocks_to_f32_scalar(float *dst, const int8_t *q, const uint16_t *sc, size_t n) {
  for (size_t b = 0; b * Q8_BLOCK < n; b++) {
    uint16_t dh;
    memcpy(&dh, sc + b, 2);
    float d = f16_to_f32(dh);
    size_t k = n - b * Q8_BLOCK < Q8_BLOCK ? n - b * Q8_BLOCK : Q8_BLOCK;
    for (size_t j = 0; j < k; j++) dst[b * Q8_BLOCK + j] = (float)q[b * Q8_BLOCK + j] * d;
  }
}

void q8_row_to_f32_scalar(float *dst, const uint8_t *src, size_t C) {
  q8_blocks_to_f32_scalar(dst, q8_values(src), q8_scales(src, C), C);
}

static void q8_row_to_f32_simd(float *dst, const uint8_t *src, size_t C) {
  size_t full = C / Q8_BLOCK;
  const int8_t *qv = q8_values(src);
  const uint16_t *sc = q8_scales(src, C);
  for (size_t b = 0; b < full; b++) {
    uint16_t dh;
    memcpy(&dh, sc + b, 2);
    f32x4 d = v_splat(f16_to_f32(dh));
    const int8_t *q = qv + b * Q8_BLOCK;
    float *o = dst + b * Q8_BLOCK;
    for (int j = 0; j < Q8_BLOCK; j += 4) {
      f32x4 v = {(float)q[j], (float)q[j + 1], (float)q[j + 2], (float)q[j + 3]};
      v_store(o + j, v * d);
    }
  }
  if (full * Q8_BLOCK < C)
    q8_blocks_to_f32_scalar(dst + full * Q8_BLOCK, qv + full * Q8_BLOCK, sc + full, C - full * Q8_BLOCK);
}

void dtype_rows_to_f32(float *dst, const void *src, mb_dtype dt, size_t rows, size_t C) {
  size_t rb = dtype_row_bytes(dt, C);
  for (size_t r = 0; r < rows; r++) {
    const uint8_t *s = (const uint8_t *)src + r * rb;
    float *o = dst + r * C;
    if (dt == MB_DT_F16) {
      if (mb_simd_enabled) f16_row_to_f32_simd(o, (const uint16_t *)s, C);
      else f16_row_to_f32_scalar(o, (const uint16_t *)s, C);
    } else if (dt == MB_DT_Q8) {
      if (mb_simd_enabled) q8_row_to_f32_simd(o, s, C);
      else q8_row_to_f32_scalar(o, s, C);
    } else {
      memcpy(o, s, C * sizeof(float));
    }
  }
}

void dtype_cols_to_f32(float *dst, const void *row, mb_dtype dt, size_t C, size_t c0, size_t n) {
  const uint8_t *r = row;
  if (dt == MB_DT_Q8) { /* the values and the scales of blocks c0 / 32 on */
    q8_blocks_to_f32_scalar(dst, q8_values(r) + c0, q8_scales(r, C) + c0 / Q8_BLOCK, n);
    return;
  }
  dtype_rows_to_f32(dst, r + dtype_row_bytes(dt, c0), dt, 1, n);
}

/* ---- encoding float32 rows (at load): refuses what the format cannot hold ---- */

mb_status dtype_rows_from_f32(void *dst, const float *src, mb_dtype dt, size_t rows, size_t C) {
  size_t rb = dtype_row_bytes(dt, C);
  for (size_t r = 0; r < rows; r++) {
    const float *x = src + r * C;
    uint8_t *o = (uint8_t *)dst + r * rb;
    for (size_t c = 0; c < C; c++)
      if (!isfinite(x[c])) return mb_fail(MB_ERR_INVALID_ARG, "weight value %g (row %zu, column %zu) is not finite", x[c], r, c);
    if (dt == MB_DT_F32) {
      memcpy(o, x, C * sizeof(float));
    } else if (dt == MB_DT_F16) {
      uint16_t *h = (uint16_t *)(void *)o;
      for (size_t c = 0; c < C; c++) {
        if (fabsf(x[c]) > 65504.0f)
          return mb_fail(MB_ERR_INVALID_ARG, "weight value %g (row %zu, column %zu) is past fp16's range; use fp32", x[c], r, c);
        uint16_t v = f32_to_f16(x[c]);
        memcpy(h + c, &v, 2);
      }
    } else {
      for (size_t b = 0; b * Q8_BLOCK < C; b++) {
        size_t n = C - b * Q8_BLOCK < Q8_BLOCK ? C - b * Q8_BLOCK : Q8_BLOCK;
        const float *xb = x + b * Q8_BLOCK;
        float amax = 0.0f;
        for (size_t j = 0; j < n; j++) amax = fmaxf(amax, fabsf(xb[j]));
        if (amax > 65504.0f * 127.0f)
          return mb_fail(MB_ERR_INVALID_ARG, "weight value %g (row %zu) is past q8's range; use fp32", amax, r);
        uint16_t dh = f32_to_f16(amax / 127.0f);
        float d = f16_to_f32(dh), inv = d > 0.0f ? 1.0f / d : 0.0f;
        memcpy(o + q8_blocks(C) * Q8_BLOCK + b * 2, &dh, 2);
        int8_t *q = (int8_t *)(o + b * Q8_BLOCK);
        for (size_t j = 0; j < Q8_BLOCK; j++) {
          float v = j < n ? roundf(xb[j] * inv) : 0.0f;
          q[j] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : v);
        }
      }
    }
  }
  return MB_OK;
}
