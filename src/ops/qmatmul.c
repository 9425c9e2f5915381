/* qmatmul.c: the forward matmul kernels that read f16 and q8 weights without decoding them to a
 * buffer first.
 *   f16, few tokens (decode): each weight row is converted in registers and dotted with the token,
 *     in exactly the order of the float32 row kernel (matmul.c dot_1x1), so the result equals the
 *     float32 kernel on the decoded weights bit for bit. (Many tokens: matmul.c decodes row blocks
 *     and runs the tiled float32 kernel.)
 *   q8, any number of tokens: as llama.cpp's q8_0 x q8_0. Each token's input is quantised per
 *     block of 32 (a float32 scale dx = max|x| / 127, int8 qx = round(x / dx)); a block's
 *     contribution is (float)(sum qw * qx) * (dw * dx), the integer sum exact; blocks are added in
 *     column order to the bias. The scalar reference and the SIMD kernel (i16 dot products; with
 *     several tokens, 4 rows at a time in 4 lanes) give the same bits. Quantising the input costs
 *     accuracy (the table's q8 tolerances), not speed.
 * Not here: the backward (matmul.c decodes the weights: gradients flow through the dequantised
 * weights), the formats (convert.c). */
#include <math.h>

#include "../internal.h"
#include "../simd.h"

/* ---- f16 ---- */

/* dot(x, decode(w)) with matmul.c dot_1x1's accumulators: 4 vectors over 16 values, then 4, then 1 */
static float dot_f16(const float *x, const uint16_t *w, int C) {
  f32x4 a0 = v_splat(0), a1 = v_splat(0), a2 = v_splat(0), a3 = v_splat(0), lo, hi;
  int c = 0;
  for (; c + 16 <= C; c += 16) {
    v_f16x8_to_f32(w + c, &lo, &hi);
    a0 += lo * v_load(x + c);
    a1 += hi * v_load(x + c + 4);
    v_f16x8_to_f32(w + c + 8, &lo, &hi);
    a2 += lo * v_load(x + c + 8);
    a3 += hi * v_load(x + c + 12);
  }
  for (; c + 4 <= C; c += 4) {
    f32x4 wv = {f16_to_f32(w[c]), f16_to_f32(w[c + 1]), f16_to_f32(w[c + 2]), f16_to_f32(w[c + 3])};
    a0 += wv * v_load(x + c);
  }
  float r = v_hsum((a0 + a1) + (a2 + a3));
  for (; c < C; c++) r += f16_to_f32(w[c]) * x[c];
  return r;
}

void f16_matvec(float *out, const float *inp, const mb_slot *w, const float *bias, int T, int C, int OC) {
  const uint16_t *W = (const uint16_t *)w->data;
  for (int o = 0; o < OC; o++) {
    const uint16_t *row = W + (size_t)o * C;
    float b = bias ? bias[o] : 0.0f;
    for (int t = 0; t < T; t++) out[(size_t)t * OC + o] = dot_f16(inp + (size_t)t * C, row, C) + b;
  }
}

/* ---- q8 ---- */

/* quantises n <= Q8_CHUNK values of x in blocks of 32 (the last may be partial: zeros after); the
 * values are int8 in range, kept as int16 so the kernel does not widen them for every row */
static void quantize_x(int16_t *q, float *d, const float *x, int n) {
  for (int b = 0; b * Q8_BLOCK < n; b++) {
    int k = n - b * Q8_BLOCK < Q8_BLOCK ? n - b * Q8_BLOCK : Q8_BLOCK;
    const float *xb = x + b * Q8_BLOCK;
    float amax = 0.0f;
    for (int j = 0; j < k; j++) amax = fmaxf(amax, fabsf(xb[j]));
    float dx = amax / 127.0f, inv = dx > 0.0f ? 1.0f / dx : 0.0f;
    d[b] = dx;
    for (int j = 0; j < Q8_BLOCK; j++) q[b * Q8_BLOCK + j] = (int16_t)(j < k ? (int)roundf(xb[j] * inv) : 0);
  }
}

/* sum over the 32 values of a block of qw * qx: scalar, and SIMD (exact either way) */
static int32_t block_dot_scalar(const int8_t *qw, const int16_t *qx) {
  int32_t s = 0;
  for (int j = 0; j < Q8_BLOCK; j++) s += (int32_t)qw[j] * qx[j];
  return s;
}

static int32_t block_dot_simd(const int8_t *qw, const int16_t *qx) {
  i16x8 w0, w1, w2, w3, x0, x1, x2, x3;
  v_i8x16_to_i16(qw, &w0, &w1);
  v_i8x16_to_i16(qw + 16, &w2, &w3);
  memcpy(&x0, qx, 16), memcpy(&x1, qx + 8, 16), memcpy(&x2, qx + 16, 16), memcpy(&x3, qx + 24, 16);
  return v_hsum_i32((v_dot_i16(w0, x0) + v_dot_i16(w1, x1)) + (v_dot_i16(w2, x2) + v_dot_i16(w3, x3)));
}

/* a block scale (a finite half) as float32: sign in place, the rest moved up 13, times 2^112
 * (exact, subnormal halves included; the loader only writes finite scales >= 0) */
static inline float scale_of(const uint8_t *blk) {
  uint16_t dh;
  memcpy(&dh, blk, 2);
  uint32_t bits = ((uint32_t)(dh & 0x8000) << 16) | ((uint32_t)(dh & 0x7fff) << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f * 5.192296858534828e33f;
}

/* acc + the blocks [b0, b0 + nb) of one weight row against one quantised token */
static inline float row_blocks(float acc, const uint8_t *row, int b0, int nb, const int16_t *qx, const float *dx, int simd) {
  const uint8_t *blk = row + (size_t)b0 * Q8_BLOCK_BYTES;
  if (simd)
    for (int b = 0; b < nb; b++, blk += Q8_BLOCK_BYTES)
      acc += (float)block_dot_simd((const int8_t *)(blk + 2), qx + b * Q8_BLOCK) * (scale_of(blk) * dx[b]);
  else
    for (int b = 0; b < nb; b++, blk += Q8_BLOCK_BYTES)
      acc += (float)block_dot_scalar((const int8_t *)(blk + 2), qx + b * Q8_BLOCK) * (f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)) * dx[b]);
  return acc;
}

/* The sums of 4 vectors, as one vector: {hsum(a), hsum(b), hsum(c), hsum(d)} (exact integers). */
static inline i32x4 hsum4_i32(i32x4 a, i32x4 b, i32x4 c, i32x4 d) {
  i32x4 t0 = __builtin_shufflevector(a, b, 0, 4, 1, 5) + __builtin_shufflevector(a, b, 2, 6, 3, 7);
  i32x4 t1 = __builtin_shufflevector(c, d, 0, 4, 1, 5) + __builtin_shufflevector(c, d, 2, 6, 3, 7);
  return __builtin_shufflevector(t0, t1, 0, 1, 4, 5) + __builtin_shufflevector(t0, t1, 2, 3, 6, 7);
}

/* one row's block against the token (the x vectors loaded once): 4 lanes of partial sums */
static inline i32x4 block_dot_lanes(const int8_t *qw, i16x8 x0, i16x8 x1, i16x8 x2, i16x8 x3) {
  i16x8 w0, w1, w2, w3;
  v_i8x16_to_i16(qw, &w0, &w1);
  v_i8x16_to_i16(qw + 16, &w2, &w3);
  return (v_dot_i16(w0, x0) + v_dot_i16(w1, x1)) + (v_dot_i16(w2, x2) + v_dot_i16(w3, x3));
}

/* acc[r] + the blocks [b0, b0 + nb) of 4 rows against one token: 4 independent sums, one lane
 * each, with row_blocks' arithmetic per lane (the same bits) */
static inline void rows4_blocks(float *acc, const uint8_t *row, size_t rb, int b0, int nb, const int16_t *qx, const float *dx) {
  f32x4 a = {acc[0], acc[1], acc[2], acc[3]};
  const uint8_t *r0 = row + (size_t)b0 * Q8_BLOCK_BYTES, *r1 = r0 + rb, *r2 = r1 + rb, *r3 = r2 + rb;
  for (int b = 0; b < nb; b++) {
    size_t off = (size_t)b * Q8_BLOCK_BYTES;
    i16x8 x0, x1, x2, x3;
    const int16_t *q = qx + b * Q8_BLOCK;
    memcpy(&x0, q, 16), memcpy(&x1, q + 8, 16), memcpy(&x2, q + 16, 16), memcpy(&x3, q + 24, 16);
    i32x4 s = hsum4_i32(block_dot_lanes((const int8_t *)(r0 + off + 2), x0, x1, x2, x3),
                        block_dot_lanes((const int8_t *)(r1 + off + 2), x0, x1, x2, x3),
                        block_dot_lanes((const int8_t *)(r2 + off + 2), x0, x1, x2, x3),
                        block_dot_lanes((const int8_t *)(r3 + off + 2), x0, x1, x2, x3));
    f32x4 dw = {scale_of(r0 + off), scale_of(r1 + off), scale_of(r2 + off), scale_of(r3 + off)};
    a += v_i32_to_f32(s) * (dw * v_splat(dx[b]));
  }
  memcpy(acc, &a, 16);
}

/* Tokens in blocks of Q8_TB and columns in chunks of Q8_CHUNK: a chunk of Q8_TB quantised tokens
 * stays in L1 while the rows stream past once per token block; per output, blocks are still
 * added in column order (the running sum lives in out), so the scalar order holds. */
#define Q8_TB 8
#define Q8_CHUNK 4096
static _Thread_local int16_t g_qx[Q8_TB * Q8_CHUNK];
static _Thread_local float g_dx[Q8_TB * (Q8_CHUNK / Q8_BLOCK)];

void q8_matmul(float *out, const float *inp, const mb_slot *w, const float *bias, int T, int C, int OC) {
  int simd = mb_simd_enabled;
  size_t rb = dtype_row_bytes(MB_DT_Q8, (size_t)C);
  for (int t = 0; t < T; t++)
    for (int o = 0; o < OC; o++) out[(size_t)t * OC + o] = bias ? bias[o] : 0.0f;
  for (int t0 = 0; t0 < T; t0 += Q8_TB) {
    int nt = T - t0 < Q8_TB ? T - t0 : Q8_TB;
    for (int c0 = 0; c0 < C; c0 += Q8_CHUNK) {
      int n = C - c0 < Q8_CHUNK ? C - c0 : Q8_CHUNK, nb = (n + Q8_BLOCK - 1) / Q8_BLOCK;
      for (int i = 0; i < nt; i++)
        quantize_x(g_qx + i * Q8_CHUNK, g_dx + i * (Q8_CHUNK / Q8_BLOCK), inp + (size_t)(t0 + i) * C + c0, n);
      int o = 0;
      /* several tokens: 4 rows at a time (independent sums, x loaded once); one token (decode): one
       * row at a time, a single sequential stream (matmul.c measured 4 interleaved rows at half the
       * bandwidth) */
      for (; simd && nt > 1 && o + 4 <= OC; o += 4) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)o * rb;
        for (int i = 0; i < nt; i++) {
          float acc[4], *dst = out + (size_t)(t0 + i) * OC + o;
          memcpy(acc, dst, sizeof acc);
          rows4_blocks(acc, row, rb, c0 / Q8_BLOCK, nb, g_qx + i * Q8_CHUNK, g_dx + i * (Q8_CHUNK / Q8_BLOCK));
          memcpy(dst, acc, sizeof acc);
        }
      }
      for (; o < OC; o++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)o * rb;
        for (int i = 0; i < nt; i++) {
          float *dst = out + (size_t)(t0 + i) * OC + o;
          *dst = row_blocks(*dst, row, c0 / Q8_BLOCK, nb, g_qx + i * Q8_CHUNK, g_dx + i * (Q8_CHUNK / Q8_BLOCK), simd);
        }
      }
    }
  }
}

/* The reference: token by token, row by row, block by block (plain loops, no SIMD). */
void q8_matmul_scalar(float *out, const float *inp, const mb_slot *w, const float *bias, int T, int C, int OC) {
  size_t rb = dtype_row_bytes(MB_DT_Q8, (size_t)C);
  for (int t = 0; t < T; t++) {
    for (int o = 0; o < OC; o++) out[(size_t)t * OC + o] = bias ? bias[o] : 0.0f;
    for (int c0 = 0; c0 < C; c0 += Q8_CHUNK) { /* quantisation is per block: chunking changes nothing */
      int n = C - c0 < Q8_CHUNK ? C - c0 : Q8_CHUNK;
      quantize_x(g_qx, g_dx, inp + (size_t)t * C + c0, n);
      for (int o = 0; o < OC; o++)
        out[(size_t)t * OC + o] = row_blocks(out[(size_t)t * OC + o], (const uint8_t *)w->data + (size_t)o * rb,
                                             c0 / Q8_BLOCK, (n + Q8_BLOCK - 1) / Q8_BLOCK, g_qx, g_dx, 0);
    }
  }
}
