// bench-dtypes.mjs: `./build.sh bench --dtypes`. Weight dtypes (fp32, fp16, q8) on a
// mamba-130m-shaped random model (d_model 768, 24 layers, vocab 50280): prefill tokens/s (L=512,
// last-position logits) and decode tokens/s (greedy, recurrent state) in the WASM build (public JS
// API) and the native build of the same C (bench_native), in interleaved rounds, best of each.
// Then memory at the seed's sizes, each in a fresh process (the WASM heap never shrinks): a
// 1.4B shape (d_model 2048, 48 layers) in q8 and fp16 and a 2.8B shape (d_model 2560, 64 layers)
// in q8, each loaded and generating 8 tokens; Memba training of a 370M shape (d_model 1024, 48
// layers; LoRA r=32 on in_proj + LIM, seq 512, batch 1) over an fp16 base. Appends to
// bench/results.md. Options: --rounds N (3), --no-memory, --no-append.
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
const DTYPES = ['fp32', 'fp16', 'q8'];
const SHAPE = { dModel: 768, nLayer: 24, vocabSize: 50280 };
const L = 512;
const STEPS = 32;

/** One WASM measurement: prefill then decode, on a fresh random model of the dtype. */
async function wasmRun(dtype) {
  const model = await Mamba.createRandom(SHAPE, { seed: 1234, dtype, threads: 1 });
  const ids = Int32Array.from({ length: L }, (_, i) => (i * 7919) % SHAPE.vocabSize);
  const st = model.createState();
  const t0 = performance.now();
  let logits = st.prefill(ids);
  const t1 = performance.now();
  for (let i = 0; i < STEPS; i++) logits = st.step(argmax(logits));
  const t2 = performance.now();
  st.dispose();
  const out = { prefill: L / ((t1 - t0) / 1000), decode: STEPS / ((t2 - t1) / 1000), mb: model.info.weightBytes / 2 ** 20 };
  model.dispose();
  return out;
}

function nativeRun(dtype) {
  const r = spawnSync(path.join(ROOT, 'build', 'bench_native'), [SHAPE.dModel, SHAPE.nLayer, SHAPE.vocabSize, L, STEPS, 1, DTYPES.indexOf(dtype)].map(String), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`bench_native failed: ${r.stderr || r.error}`);
  const j = JSON.parse(r.stdout.trim());
  return { prefill: j.prefill_tok_s, decode: j.decode_tok_s, mb: j.weight_mb };
}

/** --memory-child KIND DTYPE: one memory measurement in this (fresh) process, as JSON. */
async function memoryChild(kind, dtype) {
  const engine = await getEngine();
  const t0 = performance.now();
  if (kind === 'train370m') {
    const m = await Mamba.createRandom({ dModel: 1024, nLayer: 48, vocabSize: 50280 }, { seed: 1, dtype, threads: 1 });
    m.createAdapter({ lora: { r: 32, alpha: 64, targets: ['in_proj'] }, lim: { chunk_size: 16, cross_layer: 'first' }, seed: 1 });
    const tr = m.createTrainer({ lr: 1e-4 });
    const ids = Array.from({ length: 512 }, (_, i) => (i * 7919) % 50280);
    const t1 = performance.now();
    const { loss } = await tr.step({ ids });
    const mem = tr.memory();
    return { weightsMb: m.info.weightBytes / 2 ** 20, heapMb: engine.heapBytes / 2 ** 20, stepSeconds: (performance.now() - t1) / 1000, loss, storedLayers: mem.storedLayers, seconds: (performance.now() - t0) / 1000 };
  }
  const shape = kind === '1.4b' ? { dModel: 2048, nLayer: 48, vocabSize: 50280 } : { dModel: 2560, nLayer: 64, vocabSize: 50280 };
  const m = await Mamba.createRandom(shape, { seed: 1, dtype, threads: 1 });
  const t1 = performance.now();
  const out = await m.generate([1, 2, 3, 4], { maxNewTokens: 8, stopTokens: [] });
  return { weightsMb: m.info.weightBytes / 2 ** 20, heapMb: engine.heapBytes / 2 ** 20, generated: out.length, tokS: 8 / ((performance.now() - t1) / 1000), seconds: (performance.now() - t0) / 1000 };
}

function memory(kind, dtype) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--memory-child', kind, dtype], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) return { error: (r.stderr || String(r.error)).trim().split('\n').at(-1) };
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

if (args[0] === '--memory-child') {
  console.log(JSON.stringify(await memoryChild(args[1], args[2])));
  process.exit(0);
}

const rounds = args.includes('--rounds') ? Number(args[args.indexOf('--rounds') + 1]) : 3;
const best = {};
for (let r = 0; r < rounds; r++)
  for (const dtype of DTYPES)
    for (const [impl, run] of [['wasm', wasmRun], ['native', nativeRun]]) {
      const x = await run(dtype);
      const k = `${impl} ${dtype}`;
      best[k] = best[k] ?? { prefill: 0, decode: 0, mb: x.mb, all: [] };
      best[k].prefill = Math.max(best[k].prefill, x.prefill);
      best[k].decode = Math.max(best[k].decode, x.decode);
      best[k].all.push(x.decode);
      console.log(`round ${r + 1} ${k}: prefill ${x.prefill.toFixed(1)} tok/s, decode ${x.decode.toFixed(1)} tok/s`);
    }
const f = (x) => x.toFixed(1);
const rows = ['| dtype | weights MB | WASM prefill tok/s (L=512) | native prefill | WASM decode tok/s (best; all rounds) | native decode | WASM / native decode |', '|---|---|---|---|---|---|---|'];
for (const d of DTYPES) {
  const w = best[`wasm ${d}`], n = best[`native ${d}`];
  rows.push(`| ${d} | ${f(w.mb)} | ${f(w.prefill)} | ${f(n.prefill)} | ${f(w.decode)} (${w.all.map(f).join(', ')}) | ${f(n.decode)} | ${(w.decode / n.decode).toFixed(2)} |`);
}
const mem = [];
if (!args.includes('--no-memory')) {
  mem.push('| model (random weights) | dtype | weights MB | WASM heap MB | decode tok/s | note |', '|---|---|---|---|---|---|');
  for (const [kind, dtype, limit] of [['1.4b', 'q8', 1800], ['1.4b', 'fp16', 3200], ['2.8b', 'q8', 3400], ['train370m', 'fp16', 4096]]) {
    const m = memory(kind, dtype);
    console.log(kind, dtype, JSON.stringify(m));
    const name = { '1.4b': '1.4B shape (d_model 2048, 48 layers, vocab 50280), generate 8 tokens', '2.8b': '2.8B shape (d_model 2560, 64 layers), generate 8 tokens', train370m: '370M shape (d_model 1024, 48 layers): one Memba training step, LoRA r=32 on in_proj + LIM, seq 512' }[kind];
    if (m.error) mem.push(`| ${name} | ${dtype} | | | | failed: ${m.error} |`);
    else mem.push(`| ${name} | ${dtype} | ${f(m.weightsMb)} | ${f(m.heapMb)} (goal < ${limit}) | ${m.tokS ? f(m.tokS) : `step ${f(m.stepSeconds)} s`} | ${m.heapMb < limit ? 'meets the goal' : 'misses the goal'} |`);
  }
}
const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model;
const text = `\n## ${date} UTC: weight dtypes\n${cpu}, ${os.cpus().length} cores, node ${process.version}, single thread. ` +
  `Random mamba-130m-shaped weights (d_model 768, 24 layers, vocab 50280), ${rounds} interleaved rounds (wasm fp32, native fp32, wasm fp16, ...), best of each.\n\n${rows.join('\n')}\n` +
  (mem.length ? `\nMemory at the seed's sizes (each in a fresh process):\n\n${mem.join('\n')}\n` : '');
console.log(text);
if (!args.includes('--no-append')) {
  fs.appendFileSync(path.join(ROOT, 'bench', 'results.md'), text);
  console.log('appended to bench/results.md');
}
