// bench-threads.mjs: `./build.sh bench --threads [--n N] [--reps R] [--quick] [--no-append]`.
// 1 thread against N (default: the cores, at most 8) in one run, interleaved (1, N, 1, N, best of
// each), for the WASM threaded build (through the public API; the pool is resized between rounds)
// and the native build of the same C (MEMBA_THREADS): prefill tokens/s at L=512, decode tokens/s,
// training tokens/s (LoRA r=8 on in_proj + out_proj, LIM on, L=256), on a mamba-130m-shaped model
// with random fp32 weights. Beside decode: the streaming-read bound (build/read_bw: GB/s with 1
// and N threads, divided by the weight bytes every decode step reads). Appends to bench/results.md.
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
const KNOWN = ['--n', '--reps', '--quick', '--no-append'];
for (const a of args) if (a.startsWith('--') && !KNOWN.includes(a)) {
  console.error(`bench --threads: unknown option ${a} (known: ${KNOWN.join(' ')})`);
  process.exit(2);
}
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const quick = args.includes('--quick');
const N = opt('n', Math.min(8, os.availableParallelism?.() ?? os.cpus().length));
const reps = opt('reps', 2);
const shape = quick ? { dModel: 256, nLayer: 4, vocabSize: 8192 } : { dModel: 768, nLayer: 24, vocabSize: 50280 };
const L = quick ? 128 : 512;
const steps = quick ? 32 : 48;
const trainL = quick ? 64 : 256;
if (!Number.isInteger(N) || N < 2 || N > 16) {
  console.error('bench --threads: --n must be 2..16');
  process.exit(2);
}

const ids = Int32Array.from({ length: L }, (_, i) => (i * 7919) % shape.vocabSize);

async function wasmRun(threads) {
  const model = await Mamba.createRandom(shape, { seed: 1234, threads });
  if (model.info.threads !== threads) throw new Error(`asked for ${threads} threads, got ${model.info.threads}: ${model.info.threadsNote}`);
  const st = model.createState();
  const t0 = performance.now();
  let logits = st.prefill(ids);
  const t1 = performance.now();
  for (let i = 0; i < steps; i++) logits = st.step(argmax(logits));
  const t2 = performance.now();
  st.dispose();
  model.createAdapter({ lora: { r: 8, alpha: 16, targets: ['in_proj', 'out_proj'] }, lim: { chunk_size: 16, cross_layer: 'first' }, seed: 1 });
  const trainer = model.createTrainer({ lr: 1e-3, clipNorm: 1 });
  const tids = Array.from(ids.subarray(0, trainL));
  await trainer.step({ ids: tids }); // the first step sizes the buffers
  const t3 = performance.now();
  await trainer.step({ ids: tids });
  const t4 = performance.now();
  const weightBytes = model.info.weightBytes;
  model.dispose();
  return { prefill: L / ((t1 - t0) / 1000), decode: steps / ((t2 - t1) / 1000), train: trainL / ((t4 - t3) / 1000), weightBytes };
}

function nativeRun(threads) {
  const bin = path.join(ROOT, 'build', 'bench_native');
  const env = { ...process.env, MEMBA_THREADS: String(threads) };
  const run = (argv) => {
    const r = spawnSync(bin, argv.map(String), { encoding: 'utf8', env });
    if (r.status !== 0) throw new Error(`bench_native ${argv.join(' ')} failed: ${r.stderr || r.error}`);
    return JSON.parse(r.stdout.trim());
  };
  const inf = run([shape.dModel, shape.nLayer, shape.vocabSize, L, steps, 1]);
  const tr = run(['train', shape.dModel, shape.nLayer, shape.vocabSize, trainL, 2]);
  return { prefill: inf.prefill_tok_s, decode: inf.decode_tok_s, train: tr.train_tok_s };
}

function readBandwidth(threads) {
  const r = spawnSync(path.join(ROOT, 'build', 'read_bw'), [String(threads), quick ? '128' : '512'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`read_bw failed: ${r.stderr || r.error}`);
  return JSON.parse(r.stdout.trim()).read_gb_s;
}

// the first load picks the build: the threaded one, with a pool of N (threads: 1 first would pick memba.wasm)
const engine = await getEngine({ threads: N });
if (!engine.threaded) throw new Error(`no threaded build here: ${engine.threadsNote}`);
const best = {};
const keep = (key, v) => {
  best[key] = best[key] ? Object.fromEntries(Object.keys(v).map((k) => [k, Math.max(best[key][k], v[k])])) : v;
};
for (let r = 0; r < reps; r++) {
  for (const t of [1, N]) {
    keep(`wasm${t}`, await wasmRun(t));
    keep(`native${t}`, nativeRun(t));
    keep(`bw${t}`, { gb: readBandwidth(t) });
    console.error(`round ${r + 1}/${reps}, ${t} thread(s): wasm ${JSON.stringify(best[`wasm${t}`])}`);
  }
}

const f = (x) => x.toFixed(1);
const ratio = (a, b) => (a / b).toFixed(2);
const w1 = best.wasm1, wn = best[`wasm${N}`], n1 = best.native1, nn = best[`native${N}`];
const bound = (gb) => (gb * 1e9) / w1.weightBytes;
const rows = [
  `| metric | WASM 1 thread | WASM ${N} threads | WASM ${N}/1 | native 1 | native ${N} | native ${N}/1 |`,
  '|---|---|---|---|---|---|---|',
  `| prefill tokens/s (L=${L}) | ${f(w1.prefill)} | ${f(wn.prefill)} | ${ratio(wn.prefill, w1.prefill)} | ${f(n1.prefill)} | ${f(nn.prefill)} | ${ratio(nn.prefill, n1.prefill)} |`,
  `| decode tokens/s (${steps} steps) | ${f(w1.decode)} | ${f(wn.decode)} | ${ratio(wn.decode, w1.decode)} | ${f(n1.decode)} | ${f(nn.decode)} | ${ratio(nn.decode, n1.decode)} |`,
  `| decode bound: streaming read GB/s / weight bytes (tokens/s) | ${f(best.bw1.gb)} GB/s: ${f(bound(best.bw1.gb))} | ${f(best[`bw${N}`].gb)} GB/s: ${f(bound(best[`bw${N}`].gb))} | ${ratio(best[`bw${N}`].gb, best.bw1.gb)} | | | |`,
  `| training tokens/s (L=${trainL}, LoRA r=8 in/out_proj, LIM on) | ${f(w1.train)} | ${f(wn.train)} | ${ratio(wn.train, w1.train)} | ${f(n1.train)} | ${f(nn.train)} | ${ratio(nn.train, n1.train)} |`,
];
const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? os.cpus()[0]?.model;
const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
const text = `\n## ${date} UTC: threads, 1 against ${N}${quick ? ' (quick shape)' : ''}\n${cpu}, ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}\n` +
  `Model: d_model ${shape.dModel}, ${shape.nLayer} layers, vocab ${shape.vocabSize}, fp32 (${f(w1.weightBytes / 2 ** 20)} MB); ${reps} interleaved rounds (1, ${N}, 1, ${N}, ...), best of each. WASM: the threaded build.\n\n${rows.join('\n')}\n`;
console.log(text);
if (!args.includes('--no-append')) {
  fs.appendFileSync(path.join(ROOT, 'bench', 'results.md'), text);
  console.log('appended to bench/results.md');
}
