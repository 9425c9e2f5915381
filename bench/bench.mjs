// bench.mjs: `./build.sh bench` / `npm run bench`. Times a mamba-130m-shaped model (d_model 768,
// 24 layers, vocab 50280, random weights made locally) in the WASM build (through the public JS
// API) and in the native build of the same C (bench_native), in one run: prefill tokens/s at
// L=512 (last-position logits), decode tokens/s (greedy, recurrent state), peak memory. Appends
// the figures with date and machine to bench/results.md. Options: --quick (a small shape),
// --no-append, --L N, --decode N, --reps N, --train-reps N. Also training tokens/s (LoRA r=8 on
// in_proj + out_proj, LIM on) at L=256, and the WASM heap of a training step at L=512.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Mamba } from '../bindings/index.js';
import { argmax } from '../bindings/sampler.js';
import { getEngine } from '../bindings/engine.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
for (const a of args) if (a.startsWith('--') && !['--quick', '--no-append', '--L', '--decode', '--reps', '--train-reps'].includes(a)) {
  console.error(`bench: unknown option ${a}`);
  process.exit(2);
}
const quick = args.includes('--quick');
const shape = quick ? { dModel: 256, nLayer: 4, vocabSize: 8192 } : { dModel: 768, nLayer: 24, vocabSize: 50280 };
const L = opt('L', quick ? 128 : 512);
const steps = opt('decode', quick ? 32 : 64);
const reps = opt('reps', 3);

function cpuName() {
  try {
    const m = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) return m[1].trim();
  } catch {}
  return os.cpus()[0]?.model ?? 'unknown cpu';
}

async function benchWasm() {
  const model = await Mamba.createRandom(shape, { seed: 1234, threads: 1 });
  const ids = Int32Array.from({ length: L }, (_, i) => (i * 7919) % shape.vocabSize);
  let bestPrefill = Infinity;
  let bestDecode = Infinity;
  for (let r = 0; r < reps; r++) {
    const st = model.createState();
    const t0 = performance.now();
    let logits = st.prefill(ids);
    const t1 = performance.now();
    for (let i = 0; i < steps; i++) logits = st.step(argmax(logits));
    const t2 = performance.now();
    st.dispose();
    bestPrefill = Math.min(bestPrefill, t1 - t0);
    bestDecode = Math.min(bestDecode, t2 - t1);
  }
  const engine = await getEngine();
  const out = {
    prefill_tok_s: L / (bestPrefill / 1000),
    decode_tok_s: steps / (bestDecode / 1000),
    weight_mb: model.info.weightBytes / 2 ** 20,
    wasm_heap_mb: engine.heapBytes / 2 ** 20,
    peak_rss_mb: process.resourceUsage().maxRSS / 1024,
  };
  model.dispose();
  return out;
}

function benchNative() {
  const bin = path.join(ROOT, 'build', 'bench_native');
  const r = spawnSync(bin, [shape.dModel, shape.nLayer, shape.vocabSize, L, steps, reps].map(String), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bench_native failed: ${r.stderr || r.error}`);
  return JSON.parse(r.stdout.trim());
}

async function trainWasm(seqLen) {
  const model = await Mamba.createRandom(shape, { seed: 1234, threads: 1 });
  model.createAdapter({ lora: { r: 8, alpha: 16, targets: ['in_proj', 'out_proj'] }, lim: { chunk_size: 16, cross_layer: 'first' }, seed: 1 });
  const trainer = model.createTrainer({ lr: 1e-3, clipNorm: 1 });
  const ids = Array.from({ length: seqLen }, (_, i) => (i * 7919) % shape.vocabSize);
  let best = Infinity;
  for (let r = 0; r < trainReps; r++) {
    const t0 = performance.now();
    await trainer.step({ ids });
    best = Math.min(best, performance.now() - t0);
  }
  const mem = trainer.memory();
  const engine = await getEngine();
  model.dispose();
  return { train_tok_s: seqLen / (best / 1000), stored_layers: mem.storedLayers, wasm_heap_mb: engine.heapBytes / 2 ** 20, peak_rss_mb: process.resourceUsage().maxRSS / 1024 };
}

function trainNative(seqLen) {
  const bin = path.join(ROOT, 'build', 'bench_native');
  const r = spawnSync(bin, ['train', shape.dModel, shape.nLayer, shape.vocabSize, seqLen, trainReps].map(String), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bench_native train failed: ${r.stderr || r.error}`);
  return JSON.parse(r.stdout.trim());
}

const native = benchNative();
const wasm = await benchWasm();
const trainL = quick ? 64 : 256;
const trainReps = opt('train-reps', 2);
const nativeTrain = trainNative(trainL);
const wasmTrain = await trainWasm(trainL);
const wasmTrain512 = quick ? null : await trainWasm(512);
const f = (x) => x.toFixed(1);
const shapeText = `d_model ${shape.dModel}, ${shape.nLayer} layers, vocab ${shape.vocabSize}, fp32`;
const rows = [
  `| metric | WASM SIMD (JS API) | native (same C, -O3 SSE2) | WASM / native |`,
  `|---|---|---|---|`,
  `| prefill tokens/s (L=${L}) | ${f(wasm.prefill_tok_s)} | ${f(native.prefill_tok_s)} | ${(wasm.prefill_tok_s / native.prefill_tok_s).toFixed(2)} |`,
  `| decode tokens/s (${steps} steps) | ${f(wasm.decode_tok_s)} | ${f(native.decode_tok_s)} | ${(wasm.decode_tok_s / native.decode_tok_s).toFixed(2)} |`,
  `| weights MB | ${f(wasm.weight_mb)} | ${f(native.weight_mb)} | |`,
  `| peak memory MB | heap ${f(wasm.wasm_heap_mb)}, process RSS ${f(wasm.peak_rss_mb)} | RSS ${f(native.peak_rss_mb)} | |`,
  `| training tokens/s (B=1, L=${trainL}, LoRA r=8 in/out_proj, LIM on) | ${f(wasmTrain.train_tok_s)} | ${f(nativeTrain.train_tok_s)} | ${(wasmTrain.train_tok_s / nativeTrain.train_tok_s).toFixed(2)} |`,
  `| training peak memory MB (L=${trainL}) | heap ${f(wasmTrain.wasm_heap_mb)} (${wasmTrain.stored_layers} layers kept) | RSS ${f(nativeTrain.peak_rss_mb)} | |`,
  ...(wasmTrain512 ? [`| training at L=512: tokens/s, WASM heap MB (limit 2048) | ${f(wasmTrain512.train_tok_s)}, heap ${f(wasmTrain512.wasm_heap_mb)} | | |`] : []),
];
const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
const machine = `${cpuName()}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, single thread`;
const text = `\n## ${date} UTC${quick ? ' (quick shape)' : ''}\n${machine}\nModel: ${shapeText}; best of ${reps} runs.\n\n${rows.join('\n')}\n`;
console.log(text);
if (!args.includes('--no-append')) {
  const file = path.join(ROOT, 'bench', 'results.md');
  if (!fs.existsSync(file)) fs.writeFileSync(file, '# Benchmark results\n\nAppended by `./build.sh bench` (bench/bench.mjs). Newest last.\n');
  fs.appendFileSync(file, text);
  console.log(`appended to ${path.relative(process.cwd(), file)}`);
}
