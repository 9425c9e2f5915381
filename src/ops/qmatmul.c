/* qmatmul.c: the forward matmul kernels that read f16 and q8 weights without decoding them to a
 * buffer first.
 *   f16, few tokens (decode): each weight row is converted in registers and dotted with the token,
 *     in exactly the order of the float32 row kernel (matmul.c dot_1x1), so the result equals the
 *     float32 kernel on the decoded weights bit for bit. (Many tokens: matmul.c decodes row blocks
 *     and runs the tiled float32 kernel.)
 *   q8, few tokens (decode; linear_forward sends many tokens to matmul.c, which decodes row
 *     blocks as for f16: faster there, see its comment): as llama.cpp's q8_0 x q8_0. Each token's
 *     input is quantised per
 *     block of 32 (a float32 scale dx = max|x| / 127, int8 qx = round(x / dx)); a block's integer
 *     sums (exact) are scaled by dw * dx into float lanes that are summed once per output (the
 *     order: above row_chunk_scalar). The scalar reference and the SIMD kernel (i16 dot products;
 *     with several tokens, 4 rows at a time) give the same bits. Quantising the input costs
 *     accuracy (the table's q8 tolerances), not speed.
 * Not here: the backward (matmul.c decodes the weights: gradients flow through the dequantised
 * weights), the formats (convert.c). */
#include <math.h>

#include "../internal.h"
#include "../simd.h"

/* ---- f16 ---- */

/* 8 halves as float32: times 2^-112 (scaled = 1, for activations pre-scaled by 2^112) or exact */
static inline __attribute__((always_inline)) void f16x8(const uint16_t *p, int scaled, f32x4 *lo, f32x4 *hi) {
  if (scaled) v_f16x8_to_f32_scaled(p, lo, hi);
  else v_f16x8_to_f32(p, lo, hi);
}

/* dot(x, decode(w)) with matmul.c dot_1x1's accumulators: 4 vectors over 16 values, then 4, then
 * 1. The 16-value loop multiplies xm: with scaled = 1, xm is x times 2^112 (see f16_matvec_rows),
 * so the weights need no rebias multiply: each product (w * 2^-112) * (x * 2^112) is the same real
 * number as w * x and rounds to the same float32, and the result equals dot_1x1 on the decoded
 * weights bit for bit. With scaled = 0 (a token with a value of 2^16 or more, where x * 2^112
 * would overflow), xm is x and the weights are rebiased instead: the same bits. */
static inline __attribute__((always_inline)) float dot_f16_with(const float *x, const float *xm, const uint16_t *w, int C, int scaled) {
  f32x4 a0 = v_splat(0), a1 = v_splat(0), a2 = v_splat(0), a3 = v_splat(0), lo, hi;
  int c = 0;
  for (; c + 16 <= C; c += 16) {
    f16x8(w + c, scaled, &lo, &hi);
    a0 += lo * v_load(xm + c);
    a1 += hi * v_load(xm + c + 4);
    f16x8(w + c + 8, scaled, &lo, &hi);
    a2 += lo * v_load(xm + c + 8);
    a3 += hi * v_load(xm + c + 12);
  }
  for (; c + 4 <= C; c += 4) {
    f32x4 wv = {f16_to_f32(w[c]), f16_to_f32(w[c + 1]), f16_to_f32(w[c + 2]), f16_to_f32(w[c + 3])};
    a0 += wv * v_load(x + c);
  }
  float r = v_hsum((a0 + a1) + (a2 + a3));
  for (; c < C; c++) r += f16_to_f32(w[c]) * x[c];
  return r;
}

static float dot_f16(const float *x, const float *xs, const uint16_t *w, int C) { return dot_f16_with(x, xs, w, C, 1); }
static float dot_f16_rebias(const float *x, const uint16_t *w, int C) { return dot_f16_with(x, x, w, C, 0); }

/* dot_f16 of two rows against one token, each row with dot_f16's accumulators and order (so the
 * same bits): the token's vectors are loaded once for both rows, which leaves fewer instructions
 * per weight byte (1.4x in a microbenchmark on an Intel Xeon). The two rows are half the matrix
 * apart (f16_matvec_rows), so each stream stays sequential: two adjacent rows made both streams
 * jump a row every row, 0.65x the speed on an AMD EPYC (measured). */
static void dot_f16_x2(const float *x, const float *xs, const uint16_t *w0, const uint16_t *w1, int C, float *r0, float *r1) {
  f32x4 a0 = v_splat(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0, lo, hi;
  int c = 0;
  for (; c + 16 <= C; c += 16) {
    f32x4 x0 = v_load(xs + c), x1 = v_load(xs + c + 4), x2 = v_load(xs + c + 8), x3 = v_load(xs + c + 12);
    v_f16x8_to_f32_scaled(w0 + c, &lo, &hi);
    a0 += lo * x0;
    a1 += hi * x1;
    v_f16x8_to_f32_scaled(w0 + c + 8, &lo, &hi);
    a2 += lo * x2;
    a3 += hi * x3;
    v_f16x8_to_f32_scaled(w1 + c, &lo, &hi);
    b0 += lo * x0;
    b1 += hi * x1;
    v_f16x8_to_f32_scaled(w1 + c + 8, &lo, &hi);
    b2 += lo * x2;
    b3 += hi * x3;
  }
  for (; c + 4 <= C; c += 4) {
    f32x4 xv = v_load(x + c);
    f32x4 v0 = {f16_to_f32(w0[c]), f16_to_f32(w0[c + 1]), f16_to_f32(w0[c + 2]), f16_to_f32(w0[c + 3])};
    f32x4 v1 = {f16_to_f32(w1[c]), f16_to_f32(w1[c + 1]), f16_to_f32(w1[c + 2]), f16_to_f32(w1[c + 3])};
    a0 += v0 * xv;
    b0 += v1 * xv;
  }
  float s0 = v_hsum((a0 + a1) + (a2 + a3)), s1 = v_hsum((b0 + b1) + (b2 + b3));
  for (; c < C; c++) s0 += f16_to_f32(w0[c]) * x[c], s1 += f16_to_f32(w1[c]) * x[c];
  *r0 = s0, *r1 = s1;
}

#define XS_FLOATS 16384 /* tokens x 2^112 for one call: 64 KB per thread */
static _Thread_local float g_xs[XS_FLOATS];

/* x * 2^112 into xs when every |x| < 2^16 (the product is then exact and finite): returns 1, or 0
 * when the token needs dot_f16_rebias (a large, infinite or nan value) */
static int scale_token(float *xs, const float *x, int C) {
  for (int c = 0; c < C; c++) {
    if (!(fabsf(x[c]) < 65536.0f)) return 0;
    xs[c] = x[c] * F16_REBIAS;
  }
  return 1;
}

void f16_matvec_rows(float *out, size_t ld, const float *inp, const uint16_t *W, const float *bias, int T, int C, int OC) {
  int scaled[4] = {0, 0, 0, 0};
  int fit = T <= 4 && (size_t)T * C <= XS_FLOATS;
  for (int t = 0; fit && t < T; t++) scaled[t] = scale_token(g_xs + (size_t)t * C, inp + (size_t)t * C, C);
  int o = 0;
  if (T == 1 && fit && scaled[0]) { /* decode: two rows at a time, row i with row i + OC / 2 */
    int half = OC / 2;
    for (int i = 0; i < half; i++) {
      float r0, r1;
      dot_f16_x2(inp, g_xs, W + (size_t)i * C, W + (size_t)(i + half) * C, C, &r0, &r1);
      out[i] = r0 + (bias ? bias[i] : 0.0f);
      out[i + half] = r1 + (bias ? bias[i + half] : 0.0f);
    }
    o = 2 * half;
  }
  for (; o < OC; o++) {
    const uint16_t *row = W + (size_t)o * C;
    float b = bias ? bias[o] : 0.0f;
    for (int t = 0; t < T; t++) {
      const float *x = inp + (size_t)t * C;
      float d = fit && scaled[t] ? dot_f16(x, g_xs + (size_t)t * C, row, C) : dot_f16_rebias(x, row, C);
      out[(size_t)t * ld + o] = d + b;
    }
  }
}

void f16_matvec(float *out, const float *inp, const mb_slot *w, const float *bias, int T, int C, int OC) {
  f16_matvec_rows(out, (size_t)OC, inp, (const uint16_t *)w->data, bias, T, C, OC);
}

/* ---- q8 ---- */

/* quantises n <= Q8_CHUNK values of x in blocks of 32 (the last may be partial: zeros after); the
 * values are int8 in range, kept as int16 so the kernel does not widen them for every row */
static void quantize_x(int16_t *q, float *d, const float *x, int n) {
  for (int b = 0; b * Q8_BLOCK < n; b++) {
    int k = n - b * Q8_BLOCK < Q8_BLOCK ? n - b * Q8_BLOCK : Q8_BLOCK;
    const float *xb = x + b * Q8_BLOCK;
    float amax = 0.0f;
    int finite = 1;
    for (int j = 0; j < k; j++) amax = fmaxf(amax, fabsf(xb[j])), finite &= isfinite(xb[j]) != 0;
    float dx = amax / 127.0f, inv = dx > 0.0f ? 1.0f / dx : 0.0f;
    if (!finite) { /* an inf or nan input: the block's products are nan, as in float32 */
      d[b] = NAN;
      memset(q + b * Q8_BLOCK, 0, sizeof(int16_t) * Q8_BLOCK);
      continue;
    }
    d[b] = dx;
    if (isinf(inv)) { /* a block of subnormal values: 1/dx overflows float32, so scale in double */
      for (int j = 0; j < Q8_BLOCK; j++) q[b * Q8_BLOCK + j] = (int16_t)(j < k ? (int)round((double)xb[j] * (127.0 / amax)) : 0);
      continue;
    }
    for (int j = 0; j < Q8_BLOCK; j++) q[b * Q8_BLOCK + j] = (int16_t)(j < k ? (int)roundf(xb[j] * inv) : 0);
  }
}

/* The order of operations, the same in the scalar reference and the SIMD kernel (so they agree
 * bit for bit). A block's 32 products are summed in 4 lanes, exact integers: lane j holds columns
 * 8g + 2j and 8g + 2j + 1 for g = 0..3 (the pairs of v_dot_i16). Each lane has its own float32
 * running sum over the chunk's blocks, acc[j] += (float)lane_j * (dw * dx); at the end of a chunk
 * the output gets (acc[0] + acc[1]) + (acc[2] + acc[3]) (v_hsum). One horizontal sum per output
 * and chunk instead of one per block: llama.cpp's q8_0 dot keeps float lanes the same way. */

static void block_lanes_scalar(int32_t s[4], const int8_t *qw, const int16_t *qx) {
  for (int j = 0; j < 4; j++) {
    int32_t a = 0;
    for (int g = 0; g < 4; g++) {
      int c = 8 * g + 2 * j;
      a += (int32_t)qw[c] * qx[c] + (int32_t)qw[c + 1] * qx[c + 1];
    }
    s[j] = a;
  }
}

/* the blocks [b0, b0 + nb) of one row against one quantised token: the chunk's contribution */
static float row_chunk_scalar(const uint8_t *row, size_t C, int b0, int nb, const int16_t *qx, const float *dx) {
  float acc[4] = {0, 0, 0, 0};
  const int8_t *q = q8_values(row) + (size_t)b0 * Q8_BLOCK;
  const uint16_t *sc = q8_scales(row, C) + b0;
  for (int b = 0; b < nb; b++) {
    int32_t lane[4];
    block_lanes_scalar(lane, q + (size_t)b * Q8_BLOCK, qx + b * Q8_BLOCK);
    uint16_t dh;
    memcpy(&dh, sc + b, 2);
    float d = f16_to_f32(dh) * dx[b];
    for (int j = 0; j < 4; j++) acc[j] += (float)lane[j] * d;
  }
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

/* one row's block against the token (the x vectors loaded once): the 4 lanes */
static inline i32x4 block_dot_lanes(const int8_t *qw, i16x8 x0, i16x8 x1, i16x8 x2, i16x8 x3) {
  i16x8 w0, w1, w2, w3;
  v_i8x16_to_i16(qw, &w0, &w1);
  v_i8x16_to_i16(qw + 16, &w2, &w3);
  return (v_dot_i16(w0, x0) + v_dot_i16(w1, x1)) + (v_dot_i16(w2, x2) + v_dot_i16(w3, x3));
}

static inline void load_qx(const int16_t *q, i16x8 *x0, i16x8 *x1, i16x8 *x2, i16x8 *x3) {
  memcpy(x0, q, 16), memcpy(x1, q + 8, 16), memcpy(x2, q + 16, 16), memcpy(x3, q + 24, 16);
}

#define Q8_TB 8         /* tokens per block of the q8 x q8 kernel (below) */
#define Q8_CHUNK 4096   /* columns per chunk */

/* the scales of blocks [b0, b0 + nb) of a row as float32 (nb <= Q8_CHUNK / Q8_BLOCK), 8 at a
 * time: the same values as f16_to_f32 of each */
static inline void row_scales(float *sc, const uint8_t *row, size_t C, int b0, int nb) {
  const uint16_t *h = q8_scales(row, C) + b0;
  int b = 0;
  for (; b + 8 <= nb; b += 8) {
    f32x4 lo, hi;
    v_f16x8_to_f32(h + b, &lo, &hi);
    v_store(sc + b, lo);
    v_store(sc + b + 4, hi);
  }
  for (; b < nb; b++) {
    uint16_t dh;
    memcpy(&dh, h + b, 2);
    sc[b] = f16_to_f32(dh);
  }
}

/* row_chunk_scalar with SIMD: one row */
static float row_chunk_simd(const uint8_t *row, size_t C, int b0, int nb, const int16_t *qx, const float *dx) {
  f32x4 acc = v_splat(0);
  const int8_t *q = q8_values(row) + (size_t)b0 * Q8_BLOCK;
  float sc[Q8_CHUNK / Q8_BLOCK];
  row_scales(sc, row, C, b0, nb);
  for (int b = 0; b < nb; b++) {
    i16x8 x0, x1, x2, x3;
    load_qx(qx + b * Q8_BLOCK, &x0, &x1, &x2, &x3);
    acc += v_i32_to_f32(block_dot_lanes(q + (size_t)b * Q8_BLOCK, x0, x1, x2, x3)) * v_splat(sc[b] * dx[b]);
  }
  return v_hsum(acc);
}

/* N rows at a time against one token (N a constant, at most 4): the x
 * vectors loaded once per block for the N rows; each row keeps its own lanes, so every output has
 * row_chunk_scalar's arithmetic */
static inline __attribute__((always_inline)) void rowsN_chunk_simd(int N, float *dst, const uint8_t *row, size_t stride, size_t C, int b0, int nb, const int16_t *qx, const float *dx) {
  f32x4 a[4] = {v_splat(0), v_splat(0), v_splat(0), v_splat(0)};
  const int8_t *q[4];
  float sc[4][Q8_CHUNK / Q8_BLOCK];
  for (int r = 0; r < N; r++) {
    q[r] = q8_values(row + (size_t)r * stride) + (size_t)b0 * Q8_BLOCK;
    row_scales(sc[r], row + (size_t)r * stride, C, b0, nb);
  }
  for (int b = 0; b < nb; b++) {
    size_t off = (size_t)b * Q8_BLOCK;
    i16x8 x0, x1, x2, x3;
    load_qx(qx + off, &x0, &x1, &x2, &x3);
    float d = dx[b];
    for (int r = 0; r < N; r++) a[r] += v_i32_to_f32(block_dot_lanes(q[r] + off, x0, x1, x2, x3)) * v_splat(sc[r][b] * d);
  }
  for (int r = 0; r < N; r++) dst[r] += v_hsum(a[r]);
}

/* Tokens in blocks of Q8_TB and columns in chunks of Q8_CHUNK: a chunk of Q8_TB quantised tokens
 * stays in L1 while the rows stream past once per token block; per output, blocks are still
 * added in column order (the running sum lives in out), so the scalar order holds. */
static _Thread_local int16_t g_qx[Q8_TB * Q8_CHUNK];
static _Thread_local float g_dx[Q8_TB * (Q8_CHUNK / Q8_BLOCK)];

void q8_matmul_rows(float *out, size_t ld, const float *inp, const uint8_t *W, const float *bias, int T, int C, int OC) {
  int simd = mb_simd_enabled;
  size_t rb = dtype_row_bytes(MB_DT_Q8, (size_t)C);
  for (int t = 0; t < T; t++)
    for (int o = 0; o < OC; o++) out[(size_t)t * ld + o] = bias ? bias[o] : 0.0f;
  for (int t0 = 0; t0 < T; t0 += Q8_TB) {
    int nt = T - t0 < Q8_TB ? T - t0 : Q8_TB;
    for (int c0 = 0; c0 < C; c0 += Q8_CHUNK) {
      int n = C - c0 < Q8_CHUNK ? C - c0 : Q8_CHUNK, nb = (n + Q8_BLOCK - 1) / Q8_BLOCK;
      for (int i = 0; i < nt; i++)
        quantize_x(g_qx + i * Q8_CHUNK, g_dx + i * (Q8_CHUNK / Q8_BLOCK), inp + (size_t)(t0 + i) * C + c0, n);
      int o = 0;
      /* several tokens: 4 rows at a time (independent sums, x loaded once; the rows are read once
       * per token, from cache after the first). One token (decode): four rows at a time, a quarter
       * of the matrix apart, so each of the four streams stays sequential (two streams, half apart,
       * ran 0.94x: bench/results.md 2026-12-03 18:15); they share the x loads. */
      for (; simd && nt > 1 && o + 4 <= OC; o += 4) {
        const uint8_t *row = W + (size_t)o * rb;
        for (int i = 0; i < nt; i++)
          rowsN_chunk_simd(4, out + (size_t)(t0 + i) * ld + o, row, rb, (size_t)C, c0 / Q8_BLOCK, nb, g_qx + i * Q8_CHUNK,
                           g_dx + i * (Q8_CHUNK / Q8_BLOCK));
      }
      if (simd && nt == 1) { /* decode: rows i, i + OC / 4, i + OC / 2, i + 3 OC / 4 */
        int q4 = OC / 4;
        float quad[4];
        for (int i = 0; i < q4; i++) {
          for (int r = 0; r < 4; r++) quad[r] = out[(size_t)t0 * ld + i + r * q4];
          rowsN_chunk_simd(4, quad, W + (size_t)i * rb, (size_t)q4 * rb, (size_t)C, c0 / Q8_BLOCK, nb, g_qx, g_dx);
          for (int r = 0; r < 4; r++) out[(size_t)t0 * ld + i + r * q4] = quad[r];
        }
        o = 4 * q4;
      }
      for (; o < OC; o++) {
        const uint8_t *row = W + (size_t)o * rb;
        for (int i = 0; i < nt; i++) {
          const int16_t *q = g_qx + i * Q8_CHUNK;
          const float *d = g_dx + i * (Q8_CHUNK / Q8_BLOCK);
          out[(size_t)(t0 + i) * ld + o] += simd ? row_chunk_simd(row, (size_t)C, c0 / Q8_BLOCK, nb, q, d) : row_chunk_scalar(row, (size_t)C, c0 / Q8_BLOCK, nb, q, d);
        }
      }
    }
  }
}

void q8_matmul(float *out, const float *inp, const mb_slot *w, const float *bias, int T, int C, int OC) {
  q8_matmul_rows(out, (size_t)OC, inp, (const uint8_t *)w->data, bias, T, C, OC);
}

/* The reference: token by token, row by row, block by block (plain loops, no SIMD). */
void q8_matmul_scalar_rows(float *out, size_t ld, const float *inp, const uint8_t *W, const float *bias, int T, int C, int OC) {
  size_t rb = dtype_row_bytes(MB_DT_Q8, (size_t)C);
  for (int t = 0; t < T; t++) {
    for (int o = 0; o < OC; o++) out[(size_t)t * ld + o] = bias ? bias[o] : 0.0f;
    for (int c0 = 0; c0 < C; c0 += Q8_CHUNK) { /* quantisation is per block: chunking changes nothing */
      int n = C - c0 < Q8_CHUNK ? C - c0 : Q8_CHUNK;
      quantize_x(g_qx, g_dx, inp + (size_t)t * C + c0, n);
      for (int o = 0; o < OC; o++)
        out[(size_t)t * ld + o] += row_chunk_scalar(W + (size_t)o * rb, (size_t)C, c0 / Q8_BLOCK,
                                                    (n + Q8_BLOCK - 1) / Q8_BLOCK, g_qx, g_dx);
    }
  }
}

void q8_matmul_scalar(float *out, const float *inp, const mb_slot *w, const float *bias, int T, int C, int OC) {
  q8_matmul_scalar_rows(out, (size_t)OC, inp, (const uint8_t *)w->data, bias, T, C, OC);
}
