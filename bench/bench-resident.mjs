// bench-resident.mjs: the resident WebGPU model (web/resident.js: every weight on the GPU, a
// forward as one compute pass, decode steps recorded once and replayed) at mamba-130m, 1.4b and
// 2.8b shapes, loaded through Mamba.load with residency 'gpu' from an in-memory random F16
// checkpoint (bench/random-checkpoint.mjs; 2.8b does not fit the WASM heap), beside 1-thread WASM
// (Mamba.createRandom of the same shape, where it fits).
// In one run:
//   - the GPU's copy bandwidth: a WGSL vec4 copy kernel timed with GPU timestamps, after a
//     clock warm-up; the decode bound of a shape is that bandwidth over its weight bytes;
//   - prefill of L tokens (last-position logits), wall time with the readback, best of --reps;
//   - decode: generate() (greedy: chunks of steps with one readback each), one readback per
//     step, a 64-step chain, and the GPU time of one step (timestamps) with the JS time to
//     record and submit it, which split what holds decode back;
//   - WASM: prefill of L tokens and 8 decode steps, one thread.
// Prints one JSON line per case and a table; --append adds it to bench/results.md.
// Options: --quick (a small shape, for a smoke run on lavapipe), --L N (512), --reps N (3),
// --cases 130m,1.4b,2.8b, --no-wasm, --append.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Mamba } from '../bindings/index.js';
import { randomCheckpoint } from './random-checkpoint.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const quick = args.includes('--quick');
const L = Number(opt('L', quick ? 64 : 512));
const reps = Number(opt('reps', 3));
const noWasm = args.includes('--no-wasm');
const SHAPES = {
  quick: { dModel: 128, nLayer: 2, vocabSize: 1000 },
  '130m': { dModel: 768, nLayer: 24, vocabSize: 50280 },
  '1.4b': { dModel: 2048, nLayer: 48, vocabSize: 50280 },
  '2.8b': { dModel: 2560, nLayer: 64, vocabSize: 50280 },
};
const WASM_PREFILL = 128; // tokens of the WASM prefill (1.4b runs at about 8 tok/s there)
const cases = quick ? ['quick'] : opt('cases', '130m,1.4b,2.8b').split(',');

// one Dawn instance, its devices with timestamp queries where the adapter has them (unquantised)
const webgpu = await import('webgpu');
for (const [k, v] of Object.entries(webgpu.globals ?? {})) if (!(k in globalThis)) globalThis[k] = v;
const dawn = webgpu.create(['enable-dawn-features=allow_unsafe_apis', 'disable-dawn-features=timestamp_quantization']);
const gpu = {
  async requestAdapter(o) {
    const a = await dawn.requestAdapter(o);
    if (!a) return a;
    const features = a.features.has('timestamp-query') ? ['timestamp-query'] : [];
    return new Proxy(a, {
      get(t, k) {
        if (k === 'requestDevice') return (d = {}) => t.requestDevice({ ...d, requiredFeatures: features });
        const v = t[k];
        return typeof v === 'function' ? v.bind(t) : v;
      },
    });
  },
};

/** GPU nanoseconds of each of n compute passes (record(pass, i) fills pass i, submit(enc) sends it). */
async function timedPasses(device, n, record) {
  const qs = device.createQuerySet({ type: 'timestamp', count: 2 * n });
  const resolve = device.createBuffer({ size: 16 * n, usage: 0x200 | 0x4 }); // QUERY_RESOLVE | COPY_SRC
  const read = device.createBuffer({ size: 16 * n, usage: 0x1 | 0x8 }); // MAP_READ | COPY_DST
  for (let i = 0; i < n; i++) {
    const desc = { timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } };
    const after = i + 1 < n ? null : (enc) => {
      enc.resolveQuerySet(qs, 0, 2 * n, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, read, 0, 16 * n);
    };
    record(desc, after, i);
  }
  await read.mapAsync(1);
  const t = new BigUint64Array(read.getMappedRange().slice(0));
  read.unmap();
  [qs, resolve, read].forEach((x) => x.destroy());
  const each = Array.from({ length: n }, (_, i) => Number(t[2 * i + 1] - t[2 * i]));
  return { each, span: Number(t[2 * n - 1] - t[0]) };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Copy bandwidth (bytes read + written per second) of a WGSL vec4 copy kernel, GPU timestamps. */
async function copyBandwidth(device) {
  const bytes = quick ? 64 << 20 : 1 << 30;
  const src = device.createBuffer({ size: bytes, usage: 0x80 });
  const dst = device.createBuffer({ size: bytes, usage: 0x80 });
  const module = device.createShaderModule({
    code: `@group(0) @binding(0) var<storage, read> a: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> b: array<vec4f>;
@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) n: vec3u) {
  let stride = n.x * 256u;
  for (var i = g.x; i < arrayLength(&a); i += stride) { b[i] = a[i]; }
}`,
  });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: dst } }] });
  const run = (desc, after) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass(desc);
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(Math.min(65535, bytes / 16 / 256), 1, 1);
    pass.end();
    after?.(enc);
    device.queue.submit([enc.finish()]);
  };
  const warm = performance.now();
  while (performance.now() - warm < (quick ? 100 : 1500)) { // clocks up
    for (let i = 0; i < 10; i++) run();
    await device.queue.onSubmittedWorkDone();
  }
  const { each } = await timedPasses(device, 20, run);
  src.destroy();
  dst.destroy();
  return { bytesPerS: (2 * bytes) / (median(each) / 1e9), best: (2 * bytes) / (Math.min(...each) / 1e9) };
}

/**
 * gemv1v on decode shapes (2.8b and 1.4b in_proj, out_proj, x_proj, lm_head; f16), for each
 * V_LANES and unroll: GPU time of 32 dispatches in one pass (as a decode step runs them), TB/s of
 * weights read: what the default gemvTiles (web/webgpu.js) picks from.
 */
async function tuneGemv(device) {
  const { GpuKernels } = await import('../web/webgpu.js');
  const k = await GpuKernels.create(device);
  const out = [];
  const shapes = quick ? [['quick', 256, 128]] : [['2.8b in_proj', 10240, 2560], ['2.8b out_proj', 2560, 5120], ['2.8b x_proj', 192, 5120], ['1.4b in_proj', 8192, 2048], ['1.4b out_proj', 2048, 4096], ['lm_head', 50280, 2560]];
  for (const [name, OC, C] of shapes) {
    const w = k.buffer((OC * C) / 2);
    const inp = k.buffer(C);
    const o = k.buffer(OC);
    for (const lanes of [8, 16, 32, 64, 128, 256])
      for (const unroll4 of [false, true]) {
        k.gemvTuning = () => ({ lanes, unroll4 });
        const run = (desc, after) => {
          const enc = device.createCommandEncoder();
          const pass = enc.beginComputePass(desc);
          for (let i = 0; i < 32; i++) k.matmul({ out: o, inp, w, bias: null }, { T: 1, C, OC, f16: true }, pass);
          pass.end();
          after?.(enc);
          device.queue.submit([enc.finish()]);
        };
        for (let i = 0; i < (quick ? 1 : 20); i++) run();
        const { each } = await timedPasses(device, quick ? 1 : 5, run);
        const t = median(each) / 32 / 1e9;
        out.push({ name, lanes, unroll4, us: +(t * 1e6).toFixed(2), TBs: +((OC * C * 2) / t / 1e12).toFixed(2) });
      }
    [w, inp, o].forEach((b) => b.destroy());
  }
  k.gemvTuning = null;
  return out;
}

let copy = null;
let tuning = null;
let adapterName = '';
const rows = [];
for (const name of cases) {
  const shape = SHAPES[name];
  if (!shape) throw new Error(`unknown case ${name} (${Object.keys(SHAPES).join(', ')})`);
  const t0 = performance.now();
  const ckpt = randomCheckpoint(shape, 1234);
  const makeS = (performance.now() - t0) / 1000;
  const l0 = performance.now();
  const model = await Mamba.load(ckpt, { backend: 'webgpu', residency: 'gpu', gpu });
  const loadS = (performance.now() - l0) / 1000;
  const res = model._gpu.resident;
  const device = res.device;
  adapterName = model.info.adapter;
  copy ??= await copyBandwidth(device);
  if (args.includes('--tune-gemv') && !tuning) {
    tuning = await tuneGemv(device);
    console.log(JSON.stringify(tuning));
  }
  const V = shape.vocabSize;
  const ids = Int32Array.from({ length: L }, (_, i) => (i * 7919) % V);
  await res.forward(ids, 1, L, { last: true }); // warm-up: pipelines, buffers
  let best = Infinity;
  for (let k = 0; k < reps; k++) {
    const s = performance.now();
    await res.forward(ids, 1, L, { last: true });
    best = Math.min(best, performance.now() - s);
  }
  // decode through the API: greedy generate (chunks 1, 2, 4, ... 64, one readback each)
  const prompt = Array.from(ids.subarray(0, 8));
  const genTokens = quick ? 32 : 256;
  await model.generate(prompt, { maxNewTokens: 16, stopTokens: [] }); // warm-up
  const g0 = performance.now();
  await model.generate(prompt, { maxNewTokens: genTokens, stopTokens: [] });
  const generateTokS = genTokens / ((performance.now() - g0) / 1000);
  // decode steps on a GPU state: one readback each, then chained, then timed on the GPU
  const st = res.createState(1);
  await res.forward(ids.subarray(0, 8), 1, 8, { last: true, state: st });
  let next = Uint32Array.of(1);
  const steps = quick ? 8 : 32;
  for (let i = 0; i < 4; i++) next = await res.step(st, next, { greedy: true });
  const s0 = performance.now();
  for (let i = 0; i < steps; i++) next = await res.step(st, next, { greedy: true });
  const stepTokS = steps / ((performance.now() - s0) / 1000);
  await res.decodeGreedy(st, next, 64);
  const c0 = performance.now();
  for (let i = 0; i < 4; i++) next = (await res.decodeGreedy(st, next.subarray(-1), 64)).subarray(-1);
  const chainTokS = 256 / ((performance.now() - c0) / 1000);
  let gpuStepUs = null;
  let recordUs = null;
  let spanTokS = null;
  if (device.features.has('timestamp-query')) {
    let rec = 0;
    const n = 64;
    const { each, span } = await timedPasses(device, n, (desc, after) => {
      const r0 = performance.now();
      res._submitStep(st, 'greedy', desc, after);
      rec += performance.now() - r0;
    });
    gpuStepUs = median(each) / 1000;
    recordUs = (rec / n) * 1000;
    spanTokS = n / (span / 1e9); // first step's start to the last one's end, on the GPU
  }
  const dispatches = res._stepPlan(st, 'greedy').length;
  // where a step's GPU time goes: each dispatch of one step in a pass of its own, timed,
  // summed by kernel (entry point and overrides)
  let profile = null;
  if (device.features.has('timestamp-query')) {
    const ops = res._stepPlan(st, 'greedy').ops;
    const { each } = await timedPasses(device, ops.length / 3, (desc, after, i) => {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass(desc);
      pass.setPipeline(ops[3 * i]);
      pass.setBindGroup(0, ops[3 * i + 1]);
      pass.dispatchWorkgroups(...ops[3 * i + 2]);
      pass.end();
      after?.(enc);
      device.queue.submit([enc.finish()]);
    });
    st.parity ^= 1; // that was one whole step
    st.pos++;
    const by = new Map();
    each.forEach((ns, i) => {
      const key = ops[3 * i].label || 'unlabelled';
      const e = by.get(key) ?? { us: 0, n: 0 };
      e.us += ns / 1000;
      e.n++;
      by.set(key, e);
    });
    profile = [...by].sort((a, b) => b[1].us - a[1].us).map(([k, v]) => ({ kernel: k, us: +v.us.toFixed(1), n: v.n }));
  }
  res.destroyState(st);
  const bound = copy.bytesPerS / res.weightBytes;
  const row = {
    case: name, dtype: model.info.dtype, L, gpuWeightMB: res.weightBytes / 1e6, makeS, loadS,
    gpuPrefillTokS: L / (best / 1000), generateTokS, stepTokS, chainTokS, gpuStepUs, recordUs, spanTokS,
    boundTokS: bound, profile, boundPct: (100 * generateTokS) / bound, dispatchesPerStep: dispatches,
  };
  model.dispose();
  // WASM, one thread, the same shape (createRandom), where it fits the heap in fp16
  row.wasmPrefillTokS = null;
  row.wasmDecodeTokS = null;
  if (!noWasm && name !== '2.8b') {
    const wasm = await Mamba.createRandom(shape, { seed: 1234, dtype: 'fp16', threads: 1 });
    const ws = wasm.createState();
    const wl = Math.min(L, WASM_PREFILL);
    const p0 = performance.now();
    ws.prefill(ids.subarray(0, wl));
    row.wasmPrefillTokS = wl / ((performance.now() - p0) / 1000);
    const w0 = performance.now();
    for (let i = 0; i < 8; i++) ws.step(i);
    row.wasmDecodeTokS = 8 / ((performance.now() - w0) / 1000);
    ws.dispose();
    wasm.dispose();
  }
  console.log(JSON.stringify(row));
  rows.push(row);
}
// the selective scan alone (B=1, the resident forward's fused form: softplus and gate inside) at
// the layer shapes, GPU timestamps; GB/s counts u, delta, B, C, z read and y written once
const scanRows = [];
{
  const { requestDevice, GpuKernels } = await import('../web/webgpu.js');
  const r = await requestDevice({ gpu });
  const k = await GpuKernels.create(r.device);
  const N = 16;
  for (const [name, E] of quick ? [['quick', 256]] : [['130m', 1536], ['1.4b', 4096], ['2.8b', 5120]]) {
    for (const Ls of quick ? [64] : [512, 2048]) {
      const fill = (n, lo, hi) => Float32Array.from({ length: n }, (_, i) => lo + ((hi - lo) * ((i * 2654435761) % 1000)) / 1000);
      const b = { y: k.buffer(Ls * E), s: k.buffer(E * N), u: k.buffer(fill(Ls * E, -1, 1)), delta: k.buffer(fill(Ls * E, -5, 0)), bc: k.buffer(fill(Ls * 2 * N, -1, 1)), A: k.buffer(fill(E * N, -2, -0.1)), D: k.buffer(fill(E, 0, 1)), g: k.buffer(fill(Ls * E, -2, 2)) };
      const run = (desc, after) => {
        const enc = r.device.createCommandEncoder();
        const pass = enc.beginComputePass(desc);
        k.selectiveScan(b, { B: 1, L: Ls, E, N, bcStride: 2 * N, bcOffset: 0, softplus: true, gStride: E }, pass);
        pass.end();
        after?.(enc);
        r.device.queue.submit([enc.finish()]);
      };
      const w0 = performance.now();
      while (performance.now() - w0 < 400) { // the clocks up again after the setup
        for (let i = 0; i < 5; i++) run();
        await r.device.queue.onSubmittedWorkDone();
      }
      const { each } = await timedPasses(r.device, 10, run);
      const t = median(each) / 1e9;
      const bytes = 4 * (4 * Ls * E + 2 * N * Ls);
      scanRows.push({ name, E, L: Ls, ms: t * 1000, GBs: bytes / t / 1e9, pctCopy: (100 * bytes) / t / copy.bytesPerS });
      Object.values(b).forEach((x) => x.destroy());
    }
  }
  console.log(JSON.stringify(scanRows));
}
const f = (x, d = 1) => (x === null || x === undefined ? '-' : x.toFixed(d));
const when = new Date().toISOString().slice(0, 16).replace('T', ' ');
let md = `\n## ${when} UTC: resident WebGPU model (residency 'gpu') vs 1-thread WASM\n`;
md += `WebGPU adapter: ${adapterName}; CPU: ${os.cpus()[0]?.model ?? 'unknown cpu'}, node ${process.version}. WGSL vec4 copy kernel, GPU timestamps after a warm-up: ${(copy.bytesPerS / 1e12).toFixed(2)} TB/s median (best ${(copy.best / 1e12).toFixed(2)}), read + write. Random weights (bench/random-checkpoint.mjs) loaded with Mamba.load({ backend: 'webgpu', residency: 'gpu' }); prefill of ${L} tokens, last-position logits, best of ${reps}, wall time with the readback. Decode: greedy generate() of ${quick ? 32 : 256} tokens; one readback per step; 64-step chains; GPU time of one step (timestamps) and the JS time to record and submit it. Bound: copy bandwidth / GPU weight bytes. WASM: fp16, one thread, prefill of ${Math.min(L, WASM_PREFILL)} tokens, 8 decode steps.\n\n`;
md += '| shape | dtype | GPU weights MB | load s | prefill tok/s | WASM prefill tok/s | generate tok/s | % of bound (tok/s) | readback per step tok/s | 64-step chain tok/s | GPU us / step | JS us / step | dispatches / step | WASM decode tok/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n';
for (const x of rows)
  md += `| ${x.case} | ${x.dtype} | ${x.gpuWeightMB.toFixed(0)} | ${x.loadS.toFixed(1)} | ${f(x.gpuPrefillTokS)} | ${f(x.wasmPrefillTokS)} | ${f(x.generateTokS)} | ${x.boundPct.toFixed(0)}% (${x.boundTokS.toFixed(0)}) | ${f(x.stepTokS)} | ${f(x.chainTokS)} | ${f(x.gpuStepUs, 0)} | ${f(x.recordUs, 0)} | ${x.dispatchesPerStep} | ${f(x.wasmDecodeTokS)} |\n`;
for (const x of rows.filter((r) => r.profile))
  md += `\nOne ${x.case} decode step, each dispatch in its own timed pass (GPU us, summed by kernel; count): ${x.profile.map((p) => `${p.kernel} ${p.us} (${p.n})`).join('; ')}\n`;
if (tuning) {
  md += '\n| gemv1v, f16, 32 dispatches in a pass | lanes | unroll 2: us (TB/s) | unroll 4: us (TB/s) |\n|---|---|---|---|\n';
  for (const x of tuning.filter((t) => !t.unroll4)) {
    const y = tuning.find((t) => t.name === x.name && t.lanes === x.lanes && t.unroll4);
    md += `| ${x.name} | ${x.lanes} | ${x.us} (${x.TBs}) | ${y.us} (${y.TBs}) |\n`;
  }
}
md += '\n| scan (fused softplus and gate, B=1, N=16) | L | GPU ms | GB/s | % of copy |\n|---|---|---|---|---|\n';
for (const x of scanRows) md += `| ${x.name} (E=${x.E}) | ${x.L} | ${x.ms.toFixed(3)} | ${x.GBs.toFixed(0)} | ${x.pctCopy.toFixed(1)}% |\n`;
console.log(md);
if (args.includes('--append')) fs.appendFileSync(path.join(ROOT, 'bench/results.md'), md);
process.exit(0);
