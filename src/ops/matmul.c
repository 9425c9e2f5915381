/* matmul.c: out[t, o] = sum_c inp[t, c] * weight[o, c] (+ bias[o]), weight row-major [OC, C]
 * (PyTorch nn.Linear layout). The hot loop of prefill (T = B*L) and of decode (T = B, a matvec).
 * Scalar reference + SIMD: for T < 4 a row-streaming matvec, else a kernel register-tiled 4 output
 * rows x 2 tokens; both with scalar tails.
 * linear_forward / linear_backward_input take a typed weight slot and dispatch on its dtype (f32
 * here; f16 and q8 decode row blocks to float32 here or use qmatmul.c's kernels for decode).
 * Threads (core/pool.c): the forward splits output rows (at multiples of the 4-row tile) or, for
 * few rows, tokens; the backward splits tokens. Which kernel runs is chosen from the whole call's
 * shape before splitting, so each value is computed as with one thread, bit for bit.
 * Not here: transposed weights. */
#include "../internal.h"
#include "../simd.h"

/* ld: the row stride of out (OC for a whole matrix; larger when OC rows are a block of one) */
static void mm_forward_scalar(float *out, size_t ld, const float *inp, const float *weight,
                              const float *bias, int T, int C, int OC) {
  for (int t = 0; t < T; t++) {
    const float *x = inp + (size_t)t * C;
    for (int o = 0; o < OC; o++) {
      const float *w = weight + (size_t)o * C;
      float acc = bias ? bias[o] : 0.0f;
      for (int c = 0; c < C; c++) acc += x[c] * w[c];
      out[(size_t)t * ld + o] = acc;
    }
  }
}

void matmul_forward_scalar(float *out, const float *inp, const float *weight, const float *bias,
                           int T, int C, int OC) {
  mm_forward_scalar(out, (size_t)OC, inp, weight, bias, T, C, OC);
}

/* 4 rows x 2 tokens: 8 accumulators; the 4 weight rows are read once for both tokens. */
static void tile_4x2(float *out, const float *x0, const float *x1, const float *w,
                     const float *bias, int o, int C, int OC) {
  const float *w0 = w, *w1 = w + C, *w2 = w + 2 * (size_t)C, *w3 = w + 3 * (size_t)C;
  f32x4 a00 = v_splat(0), a01 = v_splat(0), a10 = v_splat(0), a11 = v_splat(0);
  f32x4 a20 = v_splat(0), a21 = v_splat(0), a30 = v_splat(0), a31 = v_splat(0);
  int c = 0;
  for (; c + 4 <= C; c += 4) {
    f32x4 xa = v_load(x0 + c), xb = v_load(x1 + c), wv;
    wv = v_load(w0 + c); a00 += wv * xa; a01 += wv * xb;
    wv = v_load(w1 + c); a10 += wv * xa; a11 += wv * xb;
    wv = v_load(w2 + c); a20 += wv * xa; a21 += wv * xb;
    wv = v_load(w3 + c); a30 += wv * xa; a31 += wv * xb;
  }
  float r[8] = {v_hsum(a00), v_hsum(a10), v_hsum(a20), v_hsum(a30),
                v_hsum(a01), v_hsum(a11), v_hsum(a21), v_hsum(a31)};
  for (; c < C; c++) {
    r[0] += w0[c] * x0[c]; r[1] += w1[c] * x0[c]; r[2] += w2[c] * x0[c]; r[3] += w3[c] * x0[c];
    r[4] += w0[c] * x1[c]; r[5] += w1[c] * x1[c]; r[6] += w2[c] * x1[c]; r[7] += w3[c] * x1[c];
  }
  for (int i = 0; i < 4; i++) {
    float b = bias ? bias[o + i] : 0.0f;
    out[o + i] = r[i] + b;
    out[(size_t)OC + o + i] = r[4 + i] + b;
  }
}

/* 4 rows x 1 token (decode matvec and the odd token). */
static void tile_4x1(float *out, const float *x0, const float *w, const float *bias, int o,
                     int C) {
  const float *w0 = w, *w1 = w + C, *w2 = w + 2 * (size_t)C, *w3 = w + 3 * (size_t)C;
  f32x4 a0 = v_splat(0), a1 = v_splat(0), a2 = v_splat(0), a3 = v_splat(0);
  int c = 0;
  for (; c + 4 <= C; c += 4) {
    f32x4 xa = v_load(x0 + c);
    a0 += v_load(w0 + c) * xa;
    a1 += v_load(w1 + c) * xa;
    a2 += v_load(w2 + c) * xa;
    a3 += v_load(w3 + c) * xa;
  }
  float r[4] = {v_hsum(a0), v_hsum(a1), v_hsum(a2), v_hsum(a3)};
  for (; c < C; c++) {
    r[0] += w0[c] * x0[c]; r[1] += w1[c] * x0[c]; r[2] += w2[c] * x0[c]; r[3] += w3[c] * x0[c];
  }
  for (int i = 0; i < 4; i++) out[o + i] = r[i] + (bias ? bias[o + i] : 0.0f);
}

/* One row, 4 independent accumulators over 16 floats per iteration. A stream that stays
 * sequential matters: 4 adjacent rows read together measured half the bandwidth of one row at a
 * time on the decode matvec (bench/results.md); dot_2x1 reads two rows that are half the matrix
 * apart. */
static float dot_1x1(const float *x, const float *w, int C) {
  f32x4 a0 = v_splat(0), a1 = v_splat(0), a2 = v_splat(0), a3 = v_splat(0);
  int c = 0;
  for (; c + 16 <= C; c += 16) {
    a0 += v_load(w + c) * v_load(x + c);
    a1 += v_load(w + c + 4) * v_load(x + c + 4);
    a2 += v_load(w + c + 8) * v_load(x + c + 8);
    a3 += v_load(w + c + 12) * v_load(x + c + 12);
  }
  for (; c + 4 <= C; c += 4) a0 += v_load(w + c) * v_load(x + c);
  float r = v_hsum((a0 + a1) + (a2 + a3));
  for (; c < C; c++) r += w[c] * x[c];
  return r;
}

/* dot_1x1 of two rows against one token, each row with dot_1x1's accumulators and order (the
 * same bits); the token's vectors are loaded once for both rows */
static void dot_2x1(const float *x, const float *w0, const float *w1, int C, float *r0, float *r1) {
  f32x4 a0 = v_splat(0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  int c = 0;
  for (; c + 16 <= C; c += 16) {
    f32x4 x0 = v_load(x + c), x1 = v_load(x + c + 4), x2 = v_load(x + c + 8), x3 = v_load(x + c + 12);
    a0 += v_load(w0 + c) * x0;
    a1 += v_load(w0 + c + 4) * x1;
    a2 += v_load(w0 + c + 8) * x2;
    a3 += v_load(w0 + c + 12) * x3;
    b0 += v_load(w1 + c) * x0;
    b1 += v_load(w1 + c + 4) * x1;
    b2 += v_load(w1 + c + 8) * x2;
    b3 += v_load(w1 + c + 12) * x3;
  }
  for (; c + 4 <= C; c += 4) {
    f32x4 xv = v_load(x + c);
    a0 += v_load(w0 + c) * xv;
    b0 += v_load(w1 + c) * xv;
  }
  float s0 = v_hsum((a0 + a1) + (a2 + a3)), s1 = v_hsum((b0 + b1) + (b2 + b3));
  for (; c < C; c++) s0 += w0[c] * x[c], s1 += w1[c] * x[c];
  *r0 = s0, *r1 = s1;
}

/* Few tokens (decode, small batches): memory-bound, so stream each weight row once and reuse it
 * from L1 for every token. One token: two rows at a time, row i with row i + OC / 2, so that
 * each of the two streams stays sequential through the whole matrix (adjacent rows made each
 * stream jump a row every row, which ran the f16 kernel at 0.65x on an AMD EPYC, measured). */
static void matvec_rows(float *out, size_t ld, const float *inp, const float *weight, const float *bias,
                        int T, int C, int OC) {
  int o = 0;
  if (T == 1) {
    int half = OC / 2;
    for (int i = 0; i < half; i++) {
      float r0, r1;
      dot_2x1(inp, weight + (size_t)i * C, weight + (size_t)(i + half) * C, C, &r0, &r1);
      out[i] = r0 + (bias ? bias[i] : 0.0f);
      out[i + half] = r1 + (bias ? bias[i + half] : 0.0f);
    }
    o = 2 * half;
  }
  for (; o < OC; o++) {
    const float *w = weight + (size_t)o * C;
    float b = bias ? bias[o] : 0.0f;
    for (int t = 0; t < T; t++) out[(size_t)t * ld + o] = dot_1x1(inp + (size_t)t * C, w, C) + b;
  }
}

/* Tokens are processed in blocks so a block of inputs stays in cache while all weight rows
 * stream past it once per block. */
#define T_BLOCK 64

/* few: the whole call has fewer than 4 tokens (a part of a split call runs the kernel the whole
 * call would) */
static void mm_forward_simd(float *out, size_t ld, const float *inp, const float *weight,
                            const float *bias, int T, int C, int OC, int few) {
  if (few) {
    matvec_rows(out, ld, inp, weight, bias, T, C, OC);
    return;
  }
  for (int t0 = 0; t0 < T; t0 += T_BLOCK) {
    int t1 = t0 + T_BLOCK < T ? t0 + T_BLOCK : T;
    int o = 0;
    for (; o + 4 <= OC; o += 4) {
      const float *w = weight + (size_t)o * C;
      int t = t0;
      for (; t + 2 <= t1; t += 2)
        tile_4x2(out + (size_t)t * ld, inp + (size_t)t * C, inp + (size_t)(t + 1) * C, w, bias,
                 o, C, (int)ld);
      if (t < t1) tile_4x1(out + (size_t)t * ld, inp + (size_t)t * C, w, bias, o, C);
    }
    for (; o < OC; o++)
      for (int t = t0; t < t1; t++)
        out[(size_t)t * ld + o] =
            dot_1x1(inp + (size_t)t * C, weight + (size_t)o * C, C) + (bias ? bias[o] : 0.0f);
  }
}

void matmul_forward_simd_ld(float *out, size_t ld, const float *inp, const float *weight, const float *bias,
                            int T, int C, int OC, int few) {
  mm_forward_simd(out, ld, inp, weight, bias, T, C, OC, few);
}

void matmul_forward_simd(float *out, const float *inp, const float *weight, const float *bias,
                         int T, int C, int OC) {
  mm_forward_simd(out, (size_t)OC, inp, weight, bias, T, C, OC, T < 4);
}

void matmul_forward(float *out, const float *inp, const float *weight, const float *bias, int T,
                    int C, int OC) {
  mb_slot w = {MB_DT_F32, (void *)weight, (size_t)OC * C, (size_t)C, (size_t)OC * C * sizeof(float)};
  linear_forward_f32b(out, inp, &w, bias, T, C, OC);
}

/* dinp[t, c] += sum_o dout[t, o] * weight[o, c]: the input gradient through a frozen linear layer
 * (no weight gradient: base weights are never trained). Scalar reference: one axpy per (t, o). */
/* ld: the row stride of dout */
static void mm_backward_scalar(float *dinp, const float *dout, size_t ld, const float *weight, int T,
                               int C, int OC) {
  for (int t = 0; t < T; t++) {
    float *dx = dinp + (size_t)t * C;
    const float *dy = dout + (size_t)t * ld;
    for (int o = 0; o < OC; o++) {
      float g = dy[o];
      if (g == 0.0f) continue;
      const float *w = weight + (size_t)o * C;
      for (int c = 0; c < C; c++) dx[c] += g * w[c];
    }
  }
}

void matmul_backward_input_scalar(float *dinp, const float *dout, const float *weight, int T,
                                  int C, int OC) {
  mm_backward_scalar(dinp, dout, (size_t)OC, weight, T, C, OC);
}

/* SIMD: tiles of 4 tokens x 8 columns held in 8 accumulators while a block of weight rows
 * [o0, o1) (kept in cache) streams past; column tails fall back to a scalar loop. 8 accumulators
 * fit the 16 vector registers V8 gives WASM SIMD on x86 (16 spilled: 2.5x slower, measured). */
static void backward_tile(float *dinp, const float *dout, const float *weight, int t0, int nt,
                          int c0, int C, size_t OC, int o0, int o1) {
  f32x4 a00 = v_splat(0), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
  const float *g0 = dout + (size_t)t0 * OC, *g1 = g0 + (nt > 1 ? OC : 0), *g2 = g0 + (nt > 2 ? 2 * (size_t)OC : 0), *g3 = g0 + (nt > 3 ? 3 * (size_t)OC : 0);
  for (int o = o0; o < o1; o++) {
    const float *w = weight + (size_t)o * C + c0;
    f32x4 w0 = v_load(w), w1 = v_load(w + 4);
    f32x4 g;
    g = v_splat(g0[o]); a00 += g * w0; a01 += g * w1;
    g = v_splat(g1[o]); a10 += g * w0; a11 += g * w1;
    g = v_splat(g2[o]); a20 += g * w0; a21 += g * w1;
    g = v_splat(g3[o]); a30 += g * w0; a31 += g * w1;
  }
  f32x4 acc[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
  for (int i = 0; i < nt; i++) {
    float *dx = dinp + (size_t)(t0 + i) * C + c0;
    for (int k = 0; k < 2; k++) v_store(dx + 4 * k, v_load(dx + 4 * k) + acc[i][k]);
  }
}

/* simd: chosen from the whole call's shape (mm_backward_simd_ok), so a split call runs one kernel */
static int mm_backward_simd_ok(int T, int OC) { return mb_simd_enabled && T * (size_t)OC >= 64; }

static void mm_backward(float *dinp, const float *dout, size_t ld, const float *weight, int T, int C,
                        int OC, int simd) {
  if (!simd) {
    mm_backward_scalar(dinp, dout, ld, weight, T, C, OC);
    return;
  }
  int c8 = C - C % 8;
  /* rows in blocks of ~64 KB so each block is read from memory once for all tokens */
  int ob = (int)(65536 / ((size_t)C * sizeof(float)));
  ob = ob < 8 ? 8 : ob;
  for (int o0 = 0; o0 < OC; o0 += ob) {
    int o1 = o0 + ob < OC ? o0 + ob : OC;
    for (int t0 = 0; t0 < T; t0 += 4) {
      int nt = T - t0 < 4 ? T - t0 : 4;
      for (int c0 = 0; c0 < c8; c0 += 8) backward_tile(dinp, dout, weight, t0, nt, c0, C, ld, o0, o1);
      if (c8 < C) /* column tail */
        for (int i = 0; i < nt; i++)
          for (int o = o0; o < o1; o++) {
            float g = dout[(size_t)(t0 + i) * ld + o];
            const float *w = weight + (size_t)o * C;
            float *dx = dinp + (size_t)(t0 + i) * C;
            for (int c = c8; c < C; c++) dx[c] += g * w[c];
          }
    }
  }
}

void matmul_backward_input(float *dinp, const float *dout, const float *weight, int T, int C,
                           int OC) {
  mb_slot w = {MB_DT_F32, (void *)weight, (size_t)OC * C, (size_t)C, (size_t)OC * C * sizeof(float)};
  linear_backward_input(dinp, dout, &w, T, C, OC);
}

/* ---- through a typed weight slot: the one place a matmul learns the weight's dtype ----
 * f16 and q8 weights are decoded a block of rows at a time into float32 (exact for f16, one
 * multiply per value for q8: the same bits scalar or SIMD) and the float32 kernels run on the
 * block, writing their columns of the output. The scalar reference is the scalar decoder plus the
 * scalar kernel, so a typed matmul differs from its reference only as the float32 kernels do. */
#define DECODE_FLOATS 16384 /* 64 KB of decoded weights: stays in L2 while the tokens pass */
static _Thread_local float g_decoded[DECODE_FLOATS];

/* rows decoded at a time: a multiple of 4 (the kernels' row tile) where the buffer allows, so every
 * output is computed by the same instructions as with float32 weights: a typed matmul equals the
 * float32 matmul of its decoded weights bit for bit */
static int rows_per_block(int C) {
  int rb = DECODE_FLOATS / (C > 0 ? C : 1);
  return rb >= 4 ? rb & ~3 : rb < 1 ? 1 : rb;
}

/* Rows wider than the buffer (C > DECODE_FLOATS, rare): one row at a time, in column blocks
 * (multiples of Q8_BLOCK, so q8 blocks stay whole), in the scalar reference's order of operations,
 * with or without SIMD. */
static void wide_forward(float *out, const float *inp, const mb_slot *w, const float *b, int T, int C, int OC) {
  size_t rb = dtype_row_bytes(w->dtype, (size_t)C);
  for (int o = 0; o < OC; o++) {
    const uint8_t *row = (const uint8_t *)w->data + (size_t)o * rb;
    for (int t = 0; t < T; t++) out[(size_t)t * OC + o] = b ? b[o] : 0.0f;
    for (size_t c0 = 0; c0 < (size_t)C; c0 += DECODE_FLOATS) {
      size_t n = (size_t)C - c0 < DECODE_FLOATS ? (size_t)C - c0 : DECODE_FLOATS;
      dtype_cols_to_f32(g_decoded, row, w->dtype, (size_t)C, c0, n);
      for (int t = 0; t < T; t++) { /* the running sum carries over blocks: the scalar order */
        const float *x = inp + (size_t)t * C + c0;
        float acc = out[(size_t)t * OC + o];
        for (size_t c = 0; c < n; c++) acc += x[c] * g_decoded[c];
        out[(size_t)t * OC + o] = acc;
      }
    }
  }
}

static void wide_backward(float *dinp, const float *dout, const mb_slot *w, int T, int C, int OC) {
  size_t rb = dtype_row_bytes(w->dtype, (size_t)C);
  for (int o = 0; o < OC; o++) {
    const uint8_t *row = (const uint8_t *)w->data + (size_t)o * rb;
    for (size_t c0 = 0; c0 < (size_t)C; c0 += DECODE_FLOATS) {
      size_t n = (size_t)C - c0 < DECODE_FLOATS ? (size_t)C - c0 : DECODE_FLOATS;
      dtype_cols_to_f32(g_decoded, row, w->dtype, (size_t)C, c0, n);
      for (int t = 0; t < T; t++) {
        float g = dout[(size_t)t * OC + o], *dx = dinp + (size_t)t * C + c0;
        for (size_t c = 0; c < n; c++) dx[c] += g * g_decoded[c];
      }
    }
  }
}

/* out[:, 0:n] (rows of stride ld) from weight rows o0 .. o0+n-1; `few`: the whole call's T < 4 */
static void linear_rows(float *out, size_t ld, const float *inp, const mb_slot *w, int o0,
                        const float *b, int T, int C, int n, int few) {
  size_t rb = dtype_row_bytes(w->dtype, (size_t)C);
  const uint8_t *rows = (const uint8_t *)w->data + (size_t)o0 * rb;
  if (b) b += o0;
  if (w->dtype == MB_DT_F32) {
    if (mb_simd_enabled) mm_forward_simd(out, ld, inp, (const float *)rows, b, T, C, n, few);
    else mm_forward_scalar(out, ld, inp, (const float *)rows, b, T, C, n);
    return;
  }
  if (w->dtype == MB_DT_Q8 && few) { /* decode: q8 x q8 (qmatmul.c), memory-bound */
    if (mb_simd_enabled) q8_matmul_rows(out, ld, inp, rows, b, T, C, n);
    else q8_matmul_scalar_rows(out, ld, inp, rows, b, T, C, n);
    return;
  }
  /* many tokens (prefill, training): compute-bound, where q8 x q8 with per-block scales costs
   * about 2.5x the instructions per multiply-add of the float32 tile on 128-bit SIMD (0.6x the
   * speed, measured): so q8 rows are decoded to float32 like f16 rows, once per call, and the
   * tokens are not quantised (more accurate, and the same arithmetic as the backward) */
  if (w->dtype == MB_DT_F16 && few && mb_simd_enabled) { /* decode: rows converted in registers, as matvec_rows */
    f16_matvec_rows(out, ld, inp, (const uint16_t *)rows, b, T, C, n);
    return;
  }
  int nb = rows_per_block(C);
  for (int r0 = 0; r0 < n; r0 += nb) {
    int k = n - r0 < nb ? n - r0 : nb;
    dtype_rows_to_f32(g_decoded, rows + (size_t)r0 * rb, w->dtype, (size_t)k, (size_t)C);
    if (mb_simd_enabled) mm_forward_simd(out + r0, ld, inp, g_decoded, b ? b + r0 : NULL, T, C, k, few);
    else mm_forward_scalar(out + r0, ld, inp, g_decoded, b ? b + r0 : NULL, T, C, k);
  }
}

typedef struct {
  float *out;
  const float *inp;
  const mb_slot *w;
  const float *b;
  int T, C, OC, few, by_tokens;
} lin_job;

static void linear_range(void *p, int i0, int i1) {
  const lin_job *j = p;
  if (j->by_tokens)
    linear_rows(j->out + (size_t)i0 * j->OC, (size_t)j->OC, j->inp + (size_t)i0 * j->C, j->w, 0, j->b, i1 - i0, j->C, j->OC, j->few);
  else
    linear_rows(j->out + i0, (size_t)j->OC, j->inp, j->w, i0, j->b, j->T, j->C, i1 - i0, j->few);
}

/* out = inp @ w^T + b with an f32 bias pointer (matmul_forward's form) */
void linear_forward_f32b(float *out, const float *inp, const mb_slot *w, const float *b, int T, int C, int OC) {
  if (w->dtype != MB_DT_F32 && (size_t)C > DECODE_FLOATS && !(w->dtype == MB_DT_Q8 && T < 4)) {
    wide_forward(out, inp, w, b, T, C, OC); /* rare: one thread */
    return;
  }
  uint64_t work = (uint64_t)T * C * OC;
  lin_job j = {out, inp, w, b, T, C, OC, T < 4, 0};
  /* rows while each thread gets at least two 4-row tiles; else tokens (4 or more per part) */
  int threads = mb_get_threads();
  if (OC >= 8 * threads || T < 8) {
    mb_parallel_for(OC, 4, work, linear_range, &j);
  } else {
    j.by_tokens = 1;
    mb_parallel_for(T, 4, work, linear_range, &j);
  }
}

void linear_forward(float *out, const float *inp, const mb_slot *w, const mb_slot *bias, int T,
                    int C, int OC) {
  linear_forward_f32b(out, inp, w, bias ? slot_f32(bias) : NULL, T, C, OC);
}

typedef struct {
  float *dinp;
  const float *dout;
  const mb_slot *w;
  int C, OC, simd;
} linb_job;

/* tokens i0 .. i1-1: each token's input gradient is its own sum over the rows */
static void linear_backward_range(void *p, int i0, int i1) {
  const linb_job *j = p;
  float *dinp = j->dinp + (size_t)i0 * j->C;
  const float *dout = j->dout + (size_t)i0 * j->OC;
  int T = i1 - i0, C = j->C, OC = j->OC;
  if (j->w->dtype == MB_DT_F32) {
    mm_backward(dinp, dout, (size_t)OC, slot_f32(j->w), T, C, OC, j->simd);
    return;
  }
  size_t rb = dtype_row_bytes(j->w->dtype, (size_t)C);
  int nb = rows_per_block(C);
  for (int o0 = 0; o0 < OC; o0 += nb) {
    int n = OC - o0 < nb ? OC - o0 : nb;
    dtype_rows_to_f32(g_decoded, (const uint8_t *)j->w->data + (size_t)o0 * rb, j->w->dtype, (size_t)n, (size_t)C);
    mm_backward(dinp, dout + o0, (size_t)OC, g_decoded, T, C, n, j->simd);
  }
}

void linear_backward_input(float *dinp, const float *dout, const mb_slot *w, int T, int C, int OC) {
  if (w->dtype != MB_DT_F32 && (size_t)C > DECODE_FLOATS) {
    wide_backward(dinp, dout, w, T, C, OC); /* rare: one thread */
    return;
  }
  linb_job j = {dinp, dout, w, C, OC, mm_backward_simd_ok(T, OC)};
  mb_parallel_for(T, 4, (uint64_t)T * C * OC, linear_backward_range, &j);
}
