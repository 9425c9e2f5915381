// webgpu.test.mjs: every WGSL kernel (web/kernels/) against its C scalar kernel (the oracle, run in
// the WASM build) on random inputs, with sizes that are not multiples of the workgroup sizes, in
// time chunks and from a carried state. Criterion: normalised squared error <= TOL.wgsl_nse.
// Runs on whatever adapter WebGPU finds (Mesa lavapipe on the CI machine); skips, saying why,
// only where there is none.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { requestDevice, GpuKernels, packF16Rows, GEMV_MAX_TOKENS, matmulTakesNorm } from '../web/webgpu.js';
import { getEngine } from '../bindings/engine.js';
import { TOL } from './helpers.mjs';

let gpu = null;
let why = 'not probed';
let engine;

before(async () => {
  const r = await requestDevice();
  if (r.device) {
    gpu = await GpuKernels.create(r.device);
    console.log(`WebGPU adapter: ${r.description}`);
  } else why = r.reason;
  engine = await getEngine();
});

let seed = 12345;
const rand = (n, lo, hi) =>
  Float32Array.from({ length: n }, () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return lo + ((hi - lo) * seed) / 2 ** 32;
  });

function nse(got, want) {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2;
    den += want[i] ** 2;
  }
  return den > 0 ? num / den : num;
}

function check(what, got, want) {
  const e = nse(got, want);
  console.log(`${what}: normalised squared error ${e.toExponential(2)} (limit ${TOL.wgsl_nse})`);
  assert.ok(e <= TOL.wgsl_nse, `${what}: nse ${e}`);
}

/** Runs a C reference kernel (its abi.js wrapper, e.g. 'mb_ref_gate') with args in C order: Float32Arrays are copied in (and out), null is
 * NULL, numbers are scalars. Returns the arrays after the call, in order. */
function cref(fn, args) {
  const e = engine;
  const ptrs = [];
  const call = args.map((a) => {
    if (a === null) return 0;
    if (typeof a === 'number') return a;
    const p = e.malloc(Math.max(4, a.length * 4));
    e.f32(p, a.length).set(a);
    ptrs.push([p, a.length]);
    return p;
  });
  try {
    e[fn](...call);
    return ptrs.map(([p, n]) => e.f32(p, n).slice());
  } finally {
    ptrs.forEach(([p]) => e.free(p));
  }
}

const skip = () => (gpu ? false : `no WebGPU adapter: ${why}`);

test('selective_scan_forward.wgsl == selective_scan_forward (C), chunked in time, from a carried state; fused with softplus and the gate == the three C ops', async (t) => {
  if (skip()) return t.skip(skip());
  for (const [B, L, E, N] of [[2, 45, 37, 16], [1, 300, 20, 8], [1, 1, 70, 16]]) {
    const stride = 3 + 2 * N + 1;
    const off = 3;
    const u = rand(B * L * E, -2, 2);
    const delta = rand(B * L * E, 0.001, 1.5);
    const bc = rand(B * L * stride, -1, 1);
    const A = Float32Array.from(rand(E * N, -1, 2), (v) => -Math.exp(v));
    const D = rand(E, 0, 2);
    const s0 = rand(B * E * N, -1, 1);
    // C: one sequence at a time (the C scan reads B and C at bc + offset)
    const yWant = new Float32Array(B * L * E);
    const sWant = new Float32Array(B * E * N);
    for (let b = 0; b < B; b++) {
      const bcb = bc.slice(b * L * stride + off, (b + 1) * L * stride);
      const padded = new Float32Array(L * stride);
      padded.set(bcb);
      const [y, s] = cref('mb_ref_selective_scan', [new Float32Array(L * E), s0.slice(b * E * N, (b + 1) * E * N), u.slice(b * L * E, (b + 1) * L * E), delta.slice(b * L * E, (b + 1) * L * E), padded, stride, A, D, L, E, N]);
      yWant.set(y, b * L * E);
      sWant.set(s, b * E * N);
    }
    const bufs = { y: gpu.buffer(B * L * E), s: gpu.buffer(s0), u: gpu.buffer(u), delta: gpu.buffer(delta), bc: gpu.buffer(bc), A: gpu.buffer(A), D: gpu.buffer(D) };
    gpu.selectiveScan(bufs, { B, L, E, N, bcStride: stride, bcOffset: off, chunk: 64 });
    check(`scan B=${B} L=${L} E=${E} N=${N} y`, await gpu.read(bufs.y, B * L * E), yWant);
    check(`scan B=${B} L=${L} E=${E} N=${N} final state`, await gpu.read(bufs.s, B * E * N), sWant);
    // the fused form a resident forward runs: delta before softplus, y gated by silu(g) (rows of
    // stride gs from column gOff), against the C ops in turn: softplus, the scan, the gate
    const raw = rand(B * L * E, -4, 3);
    const gs = E + 5;
    const gOff = 2;
    const g = rand(B * L * gs, -3, 3);
    const [sp] = cref('mb_ref_softplus', [raw.slice(), B * L * E]);
    const yFused = new Float32Array(B * L * E);
    for (let b = 0; b < B; b++) {
      const padded = new Float32Array(L * stride);
      padded.set(bc.slice(b * L * stride + off, (b + 1) * L * stride));
      const [y] = cref('mb_ref_selective_scan', [new Float32Array(L * E), s0.slice(b * E * N, (b + 1) * E * N), u.slice(b * L * E, (b + 1) * L * E), sp.slice(b * L * E, (b + 1) * L * E), padded, stride, A, D, L, E, N]);
      yFused.set(y, b * L * E);
    }
    const [gated] = cref('mb_ref_gate', [yFused, g.slice(gOff), gs, B * L, E]);
    const fb = { ...bufs, s: gpu.buffer(s0), delta: gpu.buffer(raw), g: gpu.buffer(g) };
    gpu.selectiveScan(fb, { B, L, E, N, bcStride: stride, bcOffset: off, chunk: 64, softplus: true, gStride: gs, gOffset: gOff });
    check(`scan + softplus + gate (fused) B=${B} L=${L} E=${E} N=${N} y`, await gpu.read(fb.y, B * L * E), gated);
    // and dt_proj made inside (the decode step's DT override): delta = dt_proj(bc[:, :R]) + bias,
    // against the C matmul, then softplus, the scan and the gate in turn; weights in float32 and
    // in f16 words (the C side gets the halves' values); R = off (3) and an odd, longer rank
    for (const R of [off, 37]) {
      const st2 = R + 2 * N;
      const bc2 = rand(B * L * st2, -1, 1);
      const wdt = rand(E * R, -0.5, 0.5);
      const halves = randHalves(E * R);
      const bdt = rand(E, -1, 0.5);
      for (const f16 of [false, true]) {
        const wv = f16 ? halves.vals : wdt;
        const dense = new Float32Array(B * L * R);
        for (let i = 0; i < B * L; i++) dense.set(bc2.subarray(i * st2, i * st2 + R), i * R);
        const [dl] = cref('mb_ref_matmul', [new Float32Array(B * L * E), dense, wv, bdt, B * L, R, E]);
        const [sp2] = cref('mb_ref_softplus', [dl, B * L * E]);
        const yd = new Float32Array(B * L * E);
        for (let b = 0; b < B; b++) {
          const [y] = cref('mb_ref_selective_scan', [new Float32Array(L * E), s0.slice(b * E * N, (b + 1) * E * N), u.slice(b * L * E, (b + 1) * L * E), sp2.slice(b * L * E, (b + 1) * L * E), bc2.slice(b * L * st2 + R, (b + 1) * L * st2 + R), st2, A, D, L, E, N]);
          yd.set(y, b * L * E);
        }
        const [gd] = cref('mb_ref_gate', [yd, g.slice(gOff), gs, B * L, E]);
        const Dbias = new Float32Array(2 * E);
        Dbias.set(D);
        Dbias.set(bdt, E);
        const w = gpu.buffer(f16 ? packF16Rows(halves.bits, E, R) : wdt);
        const db = { y: gpu.buffer(B * L * E), s: gpu.buffer(s0), u: bufs.u, bc: gpu.buffer(bc2), A: bufs.A, D: gpu.buffer(Dbias), g: fb.g };
        gpu.selectiveScan(db, { B, L, E, N, bcStride: st2, bcOffset: R, chunk: 64, softplus: true, gStride: gs, gOffset: gOff, dt: { w, f16, R } });
        check(`scan + dt_proj (R=${R}, ${f16 ? 'f16' : 'f32'}) + softplus + gate (fused) B=${B} L=${L} E=${E} N=${N} y`, await gpu.read(db.y, B * L * E), gd);
      }
    }
  }
});

test('conv1d_silu_forward.wgsl == conv1d_silu_forward (C), with and without history, and the next history', async (t) => {
  if (skip()) return t.skip(skip());
  for (const [B, L, E, K] of [[2, 33, 70, 4], [1, 1, 9, 4], [1, 2, 65, 3]]) {
    const xs = 2 * E + 5;
    const x = rand(B * L * xs, -2, 2);
    const w = rand(E * K, -1, 1);
    const bias = rand(E, -0.5, 0.5);
    const hist = rand(B * (K - 1) * E, -1, 1);
    const uWant = new Float32Array(B * L * E);
    const hWant = new Float32Array(B * (K - 1) * E);
    for (let b = 0; b < B; b++) {
      const [u, h] = cref('mb_ref_conv1d_silu', [new Float32Array(L * E), hist.slice(b * (K - 1) * E, (b + 1) * (K - 1) * E), x.slice(b * L * xs, (b + 1) * L * xs), xs, w, bias, L, E, K]);
      uWant.set(u, b * L * E);
      hWant.set(h, b * (K - 1) * E);
    }
    const bufs = { u: gpu.buffer(B * L * E), histOut: gpu.buffer(B * (K - 1) * E), hist: gpu.buffer(hist), x: gpu.buffer(x), w: gpu.buffer(w), bias: gpu.buffer(bias) };
    gpu.conv1dSilu(bufs, { B, L, E, K, xStride: xs, updateHist: true });
    check(`conv B=${B} L=${L} E=${E} K=${K} u`, await gpu.read(bufs.u, B * L * E), uWant);
    check(`conv B=${B} L=${L} E=${E} K=${K} next history`, await gpu.read(bufs.histOut, B * (K - 1) * E), hWant);
  }
});

test('softplus_forward.wgsl and gate_forward.wgsl == their C kernels', async (t) => {
  if (skip()) return t.skip(skip());
  const n = 1000;
  const x = rand(n, -40, 40);
  x.set([20, 20.0001, 19.999, -9.3, -9.1, 0, -100, 1e-3], 0);
  const [want] = cref('mb_ref_softplus', [x.slice(), n]);
  const xb = gpu.buffer(x);
  gpu.softplus({ x: xb }, { n });
  check('softplus n=1000', await gpu.read(xb, n), want);
  const T = 7;
  const E = 67;
  const gs = 2 * E;
  const y = rand(T * E, -3, 3);
  const g = rand(T * gs, -30, 30);
  const [gw] = cref('mb_ref_gate', [y.slice(), g.slice(E), gs, T, E]);
  const yb = gpu.buffer(y);
  gpu.gate({ y: yb, g: gpu.buffer(g) }, { T, E, gStride: gs, gOffset: E });
  check('gate T=7 E=67 (z half of in_proj output)', await gpu.read(yb, T * E), gw);
});

test('lim_forward.wgsl == lim_forward (C): post/pre reset, mean-style start, first transfer, from pos0 > 0', async (t) => {
  if (skip()) return t.skip(skip());
  for (const [L, E, c, pos0, pre, withPrev] of [[18, 70, 4, 0, false, false], [16, 33, 3, 0, true, true], [5, 65, 3, 2, false, true], [7, 10, 16, 0, false, false]]) {
    const zs = 2 * E;
    const z = rand(L * zs, -1.5, 1.5);
    const U0 = rand(c * E, -1, 1);
    const prev = rand(L * E, -1, 1);
    const [v, post, U] = cref('mb_ref_lim', [new Float32Array(L * E), new Float32Array(L * E), U0.slice(), z.slice(E), zs, withPrev ? prev : null, L, E, c, pos0, 0.7, 0.8, pre ? 1 : 0]);
    const bufs = { v: gpu.buffer(L * E), post: gpu.buffer(L * E), U: gpu.buffer(U0), z: gpu.buffer(z), prevPost: withPrev ? gpu.buffer(prev) : undefined };
    gpu.lim(bufs, { B: 1, L, E, c, zStride: zs, zOffset: E, pos0, preReset: pre, tau: 0.7, vTh: 0.8 });
    const name = `lim L=${L} E=${E} c=${c} pos0=${pos0}${pre ? ' pre' : ''}${withPrev ? ' first' : ''}`;
    check(`${name} v`, await gpu.read(bufs.v, L * E), v);
    check(`${name} post`, await gpu.read(bufs.post, L * E), post);
    check(`${name} membrane`, await gpu.read(bufs.U, c * E), U);
  }
});

/* IEEE binary16 bits to a number (a test helper, independent of the code under test) */
function halfToNumber(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
}

/* random finite halves with magnitudes 2^-16 .. 2^1 (some subnormal): n bits and their values */
function randHalves(n) {
  const bits = new Uint16Array(n);
  const vals = new Float32Array(n);
  const r = rand(3 * n, 0, 1);
  for (let i = 0; i < n; i++) {
    const e = Math.floor(r[3 * i] * 17); // 0 (subnormal) .. 16, i.e. |v| < 4
    bits[i] = (r[3 * i + 1] < 0.5 ? 0x8000 : 0) | (e << 10) | Math.floor(r[3 * i + 2] * 1024);
    vals[i] = halfToNumber(bits[i]);
  }
  return { bits, vals };
}

test('matmul_forward.wgsl == matmul_forward (C): gemv and gemm, f32 and f16 weights, bias, strides, offsets, accumulate', async (t) => {
  if (skip()) return t.skip(skip());
  // [T, C, OC]: decode sizes (T <= GEMV_MAX_TOKENS), prefill sizes past the 64 x 64 tiles, odd C (f16 rows end in half a word)
  const shapes = [[1, 768, 37], [1, 2056, 300], [1, 101, 70], [3, 101, 70], [GEMV_MAX_TOKENS, 64, 9], [GEMV_MAX_TOKENS + 1, 48, 130], [70, 101, 65], [130, 33, 7]];
  for (const [T, C, OC] of shapes)
    for (const f16 of [false, true])
      for (const variant of ['plain', 'bias+acc+strides']) {
        const extended = variant !== 'plain';
        const ldi = extended ? C + 5 : C;
        const ldo = extended ? OC + 3 : OC;
        const vec = T === 1 && matmulTakesNorm(C, f16, 8); // gemv1v (whole vec4 rows), with ioff 8 rather than 7
        const ioff = extended ? (vec ? 8 : 7) : 0;
        const ooff = extended ? 2 : 0;
        const inp = rand(ioff + T * ldi, -1, 1);
        const { bits, vals } = f16 ? randHalves(OC * C) : { bits: null, vals: rand(OC * C, -0.5, 0.5) };
        const bias = extended ? rand(OC, -0.2, 0.2) : null;
        const out0 = rand(ooff + T * ldo, -1, 1);
        // the oracle: C's scalar matmul on the dense rows, then the strided add in JS
        const dense = new Float32Array(T * C);
        for (let i = 0; i < T; i++) dense.set(inp.subarray(ioff + i * ldi, ioff + i * ldi + C), i * C);
        const [ref] = cref('mb_ref_matmul', [new Float32Array(T * OC), dense, vals, bias, T, C, OC]);
        const want = out0.slice();
        for (let i = 0; i < T; i++)
          for (let o = 0; o < OC; o++) want[ooff + i * ldo + o] = (extended ? out0[ooff + i * ldo + o] : 0) + ref[i * OC + o];
        const outb = gpu.buffer(extended ? out0 : new Float32Array(out0.length));
        const w = gpu.buffer(f16 ? packF16Rows(bits, OC, C) : vals);
        gpu.matmul({ out: outb, inp: gpu.buffer(inp), w, bias: bias ? gpu.buffer(bias) : null }, { T, C, OC, f16, acc: extended, ldi, ldo, ioff, ooff });
        const got = await gpu.read(outb, out0.length);
        if (!extended) for (let i = 0; i < ooff; i++) got[i] = want[i];
        check(`matmul ${vec ? 'gemv1v' : T === 1 ? 'gemv1' : T <= GEMV_MAX_TOKENS ? 'gemv' : 'gemm'} T=${T} C=${C} OC=${OC} ${f16 ? 'f16' : 'f32'} ${variant}`, got, want);
      }
});

test('matmul_forward.wgsl gemv1v with the rmsnorm fused in front == rmsnorm_forward then matmul_forward (C), f32 and f16, bias, offsets, accumulate', async (t) => {
  if (skip()) return t.skip(skip());
  for (const [C, OC, ioff] of [[768, 37, 0], [2056, 300, 8], [64, 1000, 4]])
    for (const f16 of [false, true]) {
      if (!matmulTakesNorm(C, f16, ioff)) continue;
      const inp = rand(ioff + C, -3, 3);
      const nw = rand(C, 0.5, 1.5);
      const { bits, vals } = f16 ? randHalves(OC * C) : { bits: null, vals: rand(OC * C, -0.5, 0.5) };
      const bias = rand(OC, -0.2, 0.2);
      const out0 = rand(OC, -1, 1);
      const [normed] = cref('mb_ref_rmsnorm', [new Float32Array(C), inp.slice(ioff), nw, 1, C, 1e-5]);
      const [ref] = cref('mb_ref_matmul', [new Float32Array(OC), normed, vals, bias, 1, C, OC]);
      const want = Float32Array.from(ref, (v, o) => v + out0[o]);
      const w = gpu.buffer(f16 ? packF16Rows(bits, OC, C) : vals);
      // the default tiles, then others (a benchmark's tuning): few and many lanes, four loads at a time
      for (const tune of [null, { lanes: 8, unroll4: true }, { lanes: 64, unroll4: true }, { lanes: 16, unroll4: false }]) {
        gpu.gemvTuning = tune && (() => tune);
        const outb = gpu.buffer(out0);
        gpu.matmul({ out: outb, inp: gpu.buffer(inp), w, bias: gpu.buffer(bias), norm: gpu.buffer(nw) }, { T: 1, C, OC, f16, acc: true, ioff, eps: 1e-5 });
        check(`rmsnorm + matmul gemv1v C=${C} OC=${OC} ioff=${ioff} ${f16 ? 'f16' : 'f32'} ${tune ? JSON.stringify(tune) : 'default tiles'}`, await gpu.read(outb, OC), want);
      }
      gpu.gemvTuning = null;
    }
  assert.throws(() => gpu.matmul({ out: gpu.buffer(8), inp: gpu.buffer(8), w: gpu.buffer(8), bias: null, norm: gpu.buffer(8) }, { T: 1, C: 7, OC: 1 }), /fused norm/);
});

test('rmsnorm_forward.wgsl == rmsnorm_forward (C), rows with strides and offsets', async (t) => {
  if (skip()) return t.skip(skip());
  for (const [T, C, ldi, ioff] of [[1, 768, 768, 0], [5, 300, 310, 4], [3, 2048, 2048, 0]]) {
    const inp = rand(ioff + T * ldi, -3, 3);
    const weight = rand(C, 0.5, 1.5);
    const dense = new Float32Array(T * C);
    for (let i = 0; i < T; i++) dense.set(inp.subarray(ioff + i * ldi, ioff + i * ldi + C), i * C);
    const [want] = cref('mb_ref_rmsnorm', [new Float32Array(T * C), dense, weight, T, C, 1e-5]);
    const out = gpu.buffer(T * C);
    gpu.rmsnorm({ out, inp: gpu.buffer(inp), weight: gpu.buffer(weight) }, { T, C, eps: 1e-5, ldi, ioff });
    check(`rmsnorm T=${T} C=${C} ldi=${ldi} ioff=${ioff}`, await gpu.read(out, T * C), want);
  }
});

test('embedding_forward.wgsl gathers rows exactly, f32 and f16 tables, an id past the table gives zeros', async (t) => {
  if (skip()) return t.skip(skip());
  const V = 50;
  const C = 37;
  const ids = Uint32Array.from([3, 0, 49, 3, 17, 50]);
  for (const f16 of [false, true]) {
    const { bits, vals } = f16 ? randHalves(V * C) : { bits: null, vals: rand(V * C, -1, 1) };
    const out = gpu.buffer(ids.length * C);
    gpu.embedding({ out, ids: gpu.buffer(ids), w: gpu.buffer(f16 ? packF16Rows(bits, V, C) : vals) }, { n: ids.length, C, V, f16 });
    const got = await gpu.read(out, ids.length * C);
    let maxdiff = 0;
    ids.forEach((id, i) => {
      for (let c = 0; c < C; c++) maxdiff = Math.max(maxdiff, Math.abs(got[i * C + c] - (id < V ? vals[id * C + c] : 0)));
    });
    console.log(`embedding ${f16 ? 'f16' : 'f32'} n=${ids.length} C=${C}: max |diff| ${maxdiff} (exact expected)`);
    assert.equal(maxdiff, 0);
  }
});
