// bench-webgpu.mjs: `./build.sh bench --webgpu` or `node bench/bench-webgpu.mjs`. In one run, on
// whatever adapter WebGPU finds: the device's copy bandwidth; the selective scan (forward, B=1) at
// the layer shapes of mamba-130m, 1.4b and 2.8b (d_inner 1536 / 4096 / 5120, N 16) for L = 512 and
// 2048 as GB/s moved (u, delta, B, C read; y written) on WebGPU and with the WASM SIMD kernel; and
// end-to-end prefill tokens/s (L=512) with backend 'webgpu' vs 'wasm' for models with those layer
// shapes (4 layers and a 50280 vocab: the full 1.4b / 2.8b do not fit a 4 GB wasm32 heap in fp32).
// Appends the figures with date and machine to bench/results.md (--no-append to skip).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { requestDevice, GpuKernels } from '../web/webgpu.js';
import { getEngine } from '../bindings/engine.js';
import { Mamba } from '../bindings/index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const r = await requestDevice();
if (!r.device) {
  console.log(`no WebGPU adapter: ${r.reason}`);
  process.exit(0);
}
const { device } = r;
const k = await GpuKernels.create(device);
const done = () => device.queue.onSubmittedWorkDone();

async function timeGpu(fn, reps) {
  fn();
  await done();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) fn();
  await done();
  return (performance.now() - t0) / reps / 1000;
}

// copy bandwidth: bytes read + written
const copyMB = quick ? 64 : 256;
const src = device.createBuffer({ size: copyMB << 20, usage: 0x4 | 0x8 | 0x80 });
const dst = device.createBuffer({ size: copyMB << 20, usage: 0x4 | 0x8 | 0x80 });
const tCopy = await timeGpu(() => {
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, dst, 0, copyMB << 20);
  device.queue.submit([enc.finish()]);
}, quick ? 3 : 10);
const copyGBs = (2 * (copyMB << 20)) / tCopy / 1e9;

const engine = await getEngine();
const rand = (n, lo, hi) => Float32Array.from({ length: n }, (_, i) => lo + ((hi - lo) * ((i * 2654435761) % 1000)) / 1000);
const shapes = [['130m', 1536], ['1.4b', 4096], ['2.8b', 5120]];
const N = 16;
const rows = [];
for (const [name, E] of shapes) {
  for (const L of quick ? [512] : [512, 2048]) {
    const stride = 2 * N;
    const u = rand(L * E, -1, 1);
    const delta = rand(L * E, 0.01, 0.5);
    const bc = rand(L * stride, -1, 1);
    const A = Float32Array.from(rand(E * N, 0, 2), (v) => -Math.exp(v));
    const D = rand(E, 0, 1);
    const bytes = 4 * (3 * L * E + L * stride);
    const b = { y: k.buffer(L * E), s: k.buffer(E * N), u: k.buffer(u), delta: k.buffer(delta), bc: k.buffer(bc), A: k.buffer(A), D: k.buffer(D) };
    const tg = await timeGpu(() => k.selectiveScan(b, { B: 1, L, E, N, bcStride: stride, bcOffset: 0, chunk: 512 }), quick ? 2 : 5);
    Object.values(b).forEach((x) => x.destroy());
    // WASM SIMD scan on the same shape
    const e = engine;
    const ptr = (a) => {
      const p = e.malloc(a.length * 4);
      e.f32(p, a.length).set(a);
      return p;
    };
    const pp = [e.malloc(L * E * 4), ptr(new Float32Array(E * N)), ptr(u), ptr(delta), ptr(bc)];
    const pa = ptr(A);
    const pd = ptr(D);
    e.mb_op_selective_scan(pp[0], pp[1], pp[2], pp[3], pp[4], stride, pa, pd, L, E, N);
    const reps = quick ? 1 : 2;
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) e.mb_op_selective_scan(pp[0], pp[1], pp[2], pp[3], pp[4], stride, pa, pd, L, E, N);
    const tw = (performance.now() - t0) / reps / 1000;
    [...pp, pa, pd].forEach((p) => e.free(p));
    rows.push(`| scan ${name} (E=${E}), L=${L} | ${(bytes / tg / 1e9).toFixed(2)} GB/s (${(tg * 1000).toFixed(2)} ms) | ${(bytes / tw / 1e9).toFixed(2)} GB/s (${(tw * 1000).toFixed(1)} ms) | ${(tw / tg).toFixed(2)} |`);
  }
}
device.destroy();

// end to end prefill, L=512 (4 layers of each shape)
const e2e = [];
for (const [name, E] of quick ? [['130m', 1536]] : shapes) {
  const shape = { dModel: E / 2, nLayer: 4, vocabSize: 50280 };
  const L = quick ? 128 : 512;
  const ids = Array.from({ length: L }, (_, i) => (i * 7919) % shape.vocabSize);
  const tps = {};
  for (const backend of ['wasm', 'webgpu']) {
    const model = await Mamba.createRandom(shape, { seed: 1, threads: 1 });
    if (backend === 'webgpu') await model._chooseBackend('webgpu', {});
    await model.forward([ids.slice(0, 16)]);
    const t0 = performance.now();
    await model.scoreTokens(ids, 1); // a full prefill with no logits kept beyond blocks
    tps[backend] = L / ((performance.now() - t0) / 1000);
    model.dispose();
  }
  e2e.push(`| prefill ${name} layer shape x4 layers, L=${L} | ${tps.webgpu.toFixed(1)} tokens/s | ${tps.wasm.toFixed(1)} tokens/s | ${(tps.webgpu / tps.wasm).toFixed(2)} |`);
}

const cpu = (() => {
  try {
    return /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))[1].trim();
  } catch {
    return os.cpus()[0]?.model ?? 'cpu';
  }
})();
const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
const text = `\n## ${date} UTC: WebGPU vs WASM${quick ? ' (quick)' : ''}\nWebGPU adapter: ${r.description}; CPU: ${cpu}, node ${process.version}. Device copy bandwidth (read + write): ${copyGBs.toFixed(1)} GB/s.\n\n| measure | WebGPU | WASM SIMD (1 thread) | WebGPU / WASM speed |\n|---|---|---|---|\n${rows.join('\n')}\n${e2e.join('\n')}\n\nScan GB/s count u, delta, B, C read and y written once; compare with the copy bandwidth above.\n`;
console.log(text);
if (!args.includes('--no-append')) fs.appendFileSync(path.join(ROOT, 'bench', 'results.md'), text);
