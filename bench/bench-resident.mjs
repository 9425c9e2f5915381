// bench-resident.mjs: the resident WebGPU forward (web/resident.js: every weight on the GPU, the
// whole forward as one command buffer) against 1-thread WASM prefill of the same random weights,
// at mamba-130m and 1.4b shapes. Prefill of L tokens, last-position logits, wall time including
// the upload of the ids and the readback of the logits; best of --reps (default 3) after one
// warm-up run; then greedy decode steps (the argmax on the GPU, one id back per step) against
// WASM decode steps. Prints one JSON line per case and a table; --append adds it to bench/results.md.
// Options: --quick (a small shape, for a smoke run on lavapipe), --L N (512), --reps N, --append,
// --wasm-reps N (default 1: 1.4b prefill in WASM takes tens of seconds), --no-wasm.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Mamba } from '../bindings/index.js';
import { weightSource } from '../bindings/gpu.js';
import { requestDevice } from '../web/webgpu.js';
import { GpuResident } from '../web/resident.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const quick = args.includes('--quick');
const L = opt('L', quick ? 64 : 512);
const reps = opt('reps', 3);
const wasmReps = opt('wasm-reps', 1);
const noWasm = args.includes('--no-wasm'); // GPU figures only (WASM columns left empty)
const cases = quick
  ? [{ name: 'quick', shape: { dModel: 128, nLayer: 2, vocabSize: 1000 }, dtype: 'fp16' }]
  : [
      { name: '130m', shape: { dModel: 768, nLayer: 24, vocabSize: 50280 }, dtype: 'fp32' },
      { name: '130m', shape: { dModel: 768, nLayer: 24, vocabSize: 50280 }, dtype: 'fp16' },
      { name: '1.4b', shape: { dModel: 2048, nLayer: 48, vocabSize: 50280 }, dtype: 'fp16' },
    ];

const r = await requestDevice();
if (!r.device) {
  console.error(`bench-resident: no WebGPU device (${r.reason})`);
  process.exit(1);
}
console.log(`adapter: ${r.description}`);
const rows = [];
for (const c of cases) {
  const model = await Mamba.createRandom(c.shape, { seed: 1234, dtype: c.dtype, threads: 1 });
  const ids = Int32Array.from({ length: L }, (_, i) => (i * 7919) % c.shape.vocabSize);
  const t0 = performance.now();
  const gpu = await GpuResident.create(r.device, weightSource(model));
  const uploadMs = performance.now() - t0;
  await gpu.forward(ids, 1, L, { last: true }); // warm-up: pipelines, buffers
  let best = Infinity;
  for (let k = 0; k < reps; k++) {
    const s = performance.now();
    await gpu.forward(ids, 1, L, { last: true });
    best = Math.min(best, performance.now() - s);
  }
  // decode: greedy steps from a prefilled GPU state (one id back per step) vs the WASM state
  const steps = quick ? 8 : 64;
  const gst = gpu.createState(1);
  await gpu.forward(ids.subarray(0, 8), 1, 8, { last: true, state: gst });
  let next = Uint32Array.of(1);
  for (let i = 0; i < 4; i++) next = await gpu.step(gst, next, { greedy: true }); // warm-up
  const d0 = performance.now();
  for (let i = 0; i < steps; i++) next = await gpu.step(gst, next, { greedy: true });
  const gpuDecodeMs = performance.now() - d0;
  // the same steps chained on the GPU: each step's input id is copied from the previous step's
  // argmax, all submitted, one readback at the end (what a stream without per-token ids costs)
  const idsBuf = gpu._buf('ids', 1);
  const nextBuf = gpu._buf('next', 1);
  const c0 = performance.now();
  for (let i = 0; i < steps; i++) {
    const enc = r.device.createCommandEncoder();
    // the copy runs after the ids _record writes through the queue (0), before the step's pass
    enc.copyBufferToBuffer(nextBuf, 0, idsBuf, 0, 4);
    gpu._record(enc, Uint32Array.of(0), 1, 1, { state: gst, argmaxInto: nextBuf });
    r.device.queue.submit([enc.finish()]);
  }
  await gpu.kernels.read(gpu._buf('logits', c.shape.vocabSize), 1);
  const chainedMs = performance.now() - c0;
  gpu.destroyState(gst);
  const wsteps = noWasm ? 0 : Math.min(steps, c.name === '1.4b' ? 8 : steps);
  const wst = model.createState();
  let wl = wst.prefill(ids.subarray(0, 8));
  const w0 = performance.now();
  for (let i = 0; i < wsteps; i++) wl = wst.step(i % 300);
  const wasmDecodeMs = performance.now() - w0;
  wst.dispose();
  let wasmBest = Infinity;
  for (let k = 0; k < (noWasm ? 0 : wasmReps); k++) {
    const st = model.createState();
    const s = performance.now();
    st.prefill(ids);
    wasmBest = Math.min(wasmBest, performance.now() - s);
    st.dispose();
  }
  const row = {
    case: c.name, dtype: c.dtype, L, gpuWeightMB: gpu.weightBytes / 1e6, uploadS: uploadMs / 1000,
    gpuPrefillTokS: L / (best / 1000), wasmPrefillTokS: L / (wasmBest / 1000),
  };
  row.ratio = row.gpuPrefillTokS / row.wasmPrefillTokS;
  row.gpuDecodeTokS = steps / (gpuDecodeMs / 1000);
  row.gpuChainedDecodeTokS = steps / (chainedMs / 1000);
  row.wasmDecodeTokS = wsteps / (wasmDecodeMs / 1000);
  console.log(JSON.stringify(row));
  rows.push(row);
  gpu.destroy();
  model.dispose();
}
const when = new Date().toISOString().slice(0, 16).replace('T', ' ');
const cpu = os.cpus()[0]?.model ?? 'unknown cpu';
let md = `\n## ${when} UTC: resident WebGPU forward vs 1-thread WASM prefill\n`;
md += `WebGPU adapter: ${r.description}; CPU: ${cpu}, node ${process.version}. Random mamba weights (seed 1234), prefill of ${L} tokens, last-position logits; GPU: best of ${reps} after a warm-up, wall time with the readback; WASM: best of ${wasmReps}, one thread.\n\n`;
md += '| shape | dtype | GPU weights MB | upload s | GPU prefill tok/s | WASM prefill tok/s | GPU / WASM | GPU greedy decode tok/s | GPU decode, no readback per token | WASM decode tok/s |\n|---|---|---|---|---|---|---|---|---|---|\n';
for (const x of rows) md += `| ${x.case} | ${x.dtype} | ${x.gpuWeightMB.toFixed(1)} | ${x.uploadS.toFixed(1)} | ${x.gpuPrefillTokS.toFixed(1)} | ${x.wasmPrefillTokS.toFixed(1)} | ${x.ratio.toFixed(1)}x | ${x.gpuDecodeTokS.toFixed(1)} | ${x.gpuChainedDecodeTokS.toFixed(1)} | ${x.wasmDecodeTokS.toFixed(1)} |\n`;
console.log(md);
if (args.includes('--append')) fs.appendFileSync(path.join(ROOT, 'bench/results.md'), md);
process.exit(0);
