// webgpu.test.mjs: every WGSL kernel (web/kernels/) against its C scalar kernel (the oracle, run in
// the WASM build) on random inputs, with sizes that are not multiples of the workgroup sizes, in
// time chunks and from a carried state. Criterion: normalised squared error <= TOL.wgsl_nse.
// Runs on whatever adapter WebGPU finds (Mesa lavapipe on the CI machine); skips, saying why,
// only where there is none.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { requestDevice, GpuKernels } from '../web/webgpu.js';
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

test('selective_scan_forward.wgsl == selective_scan_forward (C), chunked in time, from a carried state', async (t) => {
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
