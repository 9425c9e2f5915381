// run.mjs: builds kernels.c with clang 16+ (CLANG, WASM_LD env or clang-16 / wasm-ld-16 on PATH) and
// times each kernel, interleaved, on 256 rows (in cache) and 100000 rows (200 MB, from memory) of
// 2048 int8 values; prints GB/s of q8 weight bytes (34 per 32 values), best and median. Needs a
// runtime with relaxed SIMD: `node --experimental-wasm-relaxed-simd bench/q8-relaxed/run.mjs` on
// Node 20 (on by default from V8 11.4: Chrome 114, Node 22).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'q8-relaxed-'));
execFileSync(process.env.CLANG || 'clang-16', ['--target=wasm32', '-O3', '-msimd128', '-mrelaxed-simd', '-c', path.join(dir, 'kernels.c'), '-o', path.join(tmp, 'k.o')]);
execFileSync(process.env.WASM_LD || 'wasm-ld-16', ['--no-entry', '--export-dynamic', '--initial-memory=268435456', '-o', path.join(tmp, 'k.wasm'), path.join(tmp, 'k.o')]);
const { instance } = await WebAssembly.instantiate(fs.readFileSync(path.join(tmp, 'k.wasm')));
fs.rmSync(tmp, { recursive: true });
const e = instance.exports;
const C = 2048, base = 1 << 20;
for (const [rows, reps] of [[256, 1000], [100000, 10]]) {
  const W = base, S = W + rows * C, X = S + (rows * C) / 8, M = X + 4096, DX = M + 4096;
  const mem = new Uint8Array(e.memory.buffer), f = new Float32Array(e.memory.buffer);
  for (let i = 0; i < rows * C; i += 3) mem[W + i] = (Math.random() * 254 - 127) | 0;
  for (let i = 0; i < (rows * C) / 32; i++) f[S / 4 + i] = Math.random();
  for (let i = 0; i < C / 32; i++) f[DX / 4 + i] = 1;
  const q8 = (rows * C * 34) / 32;
  const runs = ['i16_dot', 'relaxed_7bit', 'relaxed_7bit_nocorr', 'relaxed_sign'].map((k) => [k, () => e[k](W, S, X, M, DX, rows, C), q8]);
  runs.push(['read2 (bound)', () => e.read2(W, rows * C), rows * C]);
  const got = Object.fromEntries(runs.map(([k]) => [k, []]));
  for (let r = 0; r < reps; r++)
    for (const [k, fn, bytes] of runs) {
      const t = performance.now();
      fn();
      got[k].push(bytes / (performance.now() - t) / 1e6);
    }
  console.log(`${rows} rows x ${C} (${rows === 256 ? 'in cache' : 'from memory'}):`);
  for (const [k, v] of Object.entries(got)) {
    v.sort((a, b) => b - a);
    console.log(`  ${k.padEnd(20)} ${v[0].toFixed(2)} GB/s best, ${v[v.length >> 1].toFixed(2)} median`);
  }
}
