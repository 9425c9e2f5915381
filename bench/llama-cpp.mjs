// llama-cpp.mjs: llama.cpp, native and single-threaded, on the same random weights as the
// project's benchmark (bench/bench-dtypes.mjs: Mamba.createRandom of the mamba-130m shape,
// d_model 768, 24 layers, vocab 50280, seed 1234). It writes the model as GGUF v3 files for
// llama.cpp's `mamba` architecture (Node's standard library only: no converter, no Python), in
// f32, f16 and q8_0, and runs llama.cpp's own binaries on them. llama.cpp is not part of this
// repository and nothing of it is copied here; the script is given the path of a build.
//
// Getting and building llama.cpp (CPU only):
//   git clone https://github.com/ggml-org/llama.cpp && cd llama.cpp
//   cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF
//   cmake --build build -j --target llama-bench llama
// (shared libraries, the default: --check compiles bench/llama-logits.c against build/'s libllama
// and the source tree's include/; it finds the source tree through build/CMakeCache.txt).
// Written against llama.cpp b4748 (Feb 2025); the GGUF keys and tensor names are those of its
// convert_hf_to_gguf.py for MambaForCausalLM.
//
// Usage (build the WASM module first: ./build.sh wasm; or ./build.sh bench --llama BUILD ..., which
// builds and passes every argument on):
//   node bench/llama-cpp.mjs --out DIR                  write the three GGUFs to DIR, nothing else
//   node bench/llama-cpp.mjs --llama BUILD [--rounds N] [-r R] [--append] [--out DIR]
//       runs `BUILD/bin/llama-bench -m FILE -t 1 -p 512 -n 32 -r R -o json` on the f32, f16 and
//       q8_0 files in N interleaved rounds (f32, f16, q8_0, f32, ...; default N 3, R 3) and prints
//       a table of the best round's tok/s for pp512 and tg32 (llama-bench's avg of its R runs);
//       --append adds it to bench/results.md. The GGUFs go to a temporary folder (removed
//       afterwards) unless --out is given.
//   node bench/llama-cpp.mjs --llama BUILD --check
//       faithfulness: llama.cpp's logits for 16 token ids against memba's forward pass on the
//       same model, last position, both as one prefill batch and as prefill of 15 + one
//       recurrent step; prints max abs / relative difference (max |diff| / max |logit|) and
//       whether the argmax agrees, per dtype (f16 / q8_0 against memba's fp16 / q8 models:
//       informational). Exit 1 when f32's relative difference is above 1e-3.
//
// GGUF layout (what llama.cpp's loader reads, src/llama-model.cpp LLM_ARCH_MAMBA):
//   token_embd.weight [d, V]; output_norm.weight [d]; no output.weight (tied: llama.cpp reuses
//   token_embd); per layer blk.N.attn_norm.weight [d], ssm_in.weight [d, 2E], ssm_conv1d.weight
//   [K, E] (2-D: the checkpoint's [E, 1, K] without its unit axis), ssm_conv1d.bias [E],
//   ssm_x.weight [E, R + 2N], ssm_dt.weight [R, E], ssm_dt.bias [E], ssm_a [N, E] = -exp(A_log)
//   (no .weight suffix), ssm_d [E], ssm_out.weight [E, d]. Dimensions are ggml's ne order,
//   fastest first: a row-major [rows, cols] matrix is [cols, rows]. The large matrices
//   (token_embd, ssm_in, ssm_x, ssm_out: the ones memba types too) take the file's dtype; every
//   other tensor stays f32, dt_proj included (48 columns: not a multiple of q8_0's 32-value block,
//   and memba keeps it f32 in every dtype). Tokenizer: "none" with mamba.vocab_size (llama.cpp
//   adds dummy tokens; llama-bench feeds random ids and needs no text).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Mamba } from '../bindings/index.js';
import { Param } from '../bindings/abi.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SHAPE = { dModel: 768, nLayer: 24, vocabSize: 50280 };
const SEED = 1234;
const DTYPES = [
  { name: 'f32', memba: 'fp32', ggml: 0, fileType: 0 }, // GGML_TYPE_F32, LLAMA_FTYPE_ALL_F32
  { name: 'f16', memba: 'fp16', ggml: 1, fileType: 1 }, // GGML_TYPE_F16, LLAMA_FTYPE_MOSTLY_F16
  { name: 'q8_0', memba: 'q8', ggml: 8, fileType: 7 }, // GGML_TYPE_Q8_0, LLAMA_FTYPE_MOSTLY_Q8_0
];
const F32 = 0;
const ALIGN = 32; // GGUF_DEFAULT_ALIGNMENT

// ---- arguments ----

const args = process.argv.slice(2);
function flagValue(name, dflt) {
  const i = args.indexOf(name);
  if (i < 0) return dflt;
  if (i + 1 >= args.length) usage(`${name} needs a value`);
  return args[i + 1];
}
function usage(msg) {
  console.error(`llama-cpp.mjs: ${msg}\nusage: node bench/llama-cpp.mjs (--out DIR | --llama BUILD [--check | [--rounds N] [-r R] [--append]] [--out DIR])`);
  process.exit(2);
}
const known = new Set(['--out', '--llama', '--rounds', '-r', '--check', '--append']);
for (let i = 0; i < args.length; i++) {
  if (!known.has(args[i])) usage(`unknown argument ${args[i]}`);
  if (['--out', '--llama', '--rounds', '-r'].includes(args[i])) i++;
}
const outDir = flagValue('--out', null);
const llama = flagValue('--llama', null);
const rounds = Number(flagValue('--rounds', '3'));
const reps = Number(flagValue('-r', '3'));
const check = args.includes('--check');
if (!llama && !outDir) usage('give --out DIR (write the GGUFs) or --llama BUILD (run llama.cpp)');
if (!llama && (check || args.includes('--append'))) usage('--check and --append need --llama BUILD');
if (!(Number.isInteger(rounds) && rounds >= 1) || !(Number.isInteger(reps) && reps >= 1)) usage('--rounds and -r take positive integers');

// ---- the model's float32 tensors ----

/** The random model's tensors as llama.cpp names and shapes them: [{ name, ne, data, quantize }]. */
function modelTensors(model) {
  const e = model._engine, h = model._handle;
  const { dModel: d, nLayer, vocabSize: V, dInner: E, dState: N, dConv: K, dtRank: R, useBias, useConvBias, tieEmbeddings } = model.config;
  // llama.cpp's mamba has no in_proj / out_proj biases and needs the conv bias; createRandom's model fits
  if (useBias || !useConvBias || !tieEmbeddings || E !== 2 * d) throw new Error('only a tied Mamba without in/out_proj biases, with a conv bias and expand 2, is written');
  const get = (p, l, numel) => {
    const { ptr, numel: n } = e.mb_model_param(h, p, l);
    if (!ptr || n !== numel) throw new Error(`parameter ${p} of layer ${l}: ${n} floats, expected ${numel}`);
    return e.f32(ptr, n).slice(); // a copy: heap views go stale when memory grows
  };
  const t = [];
  const add = (name, ne, p, l, quantize = false) => t.push({ name, ne, data: get(p, l, ne.reduce((a, b) => a * b)), quantize });
  add('token_embd.weight', [d, V], Param.EMBEDDING, -1, true);
  add('output_norm.weight', [d], Param.NORM_F, -1);
  for (let l = 0; l < nLayer; l++) {
    const b = `blk.${l}.`;
    add(b + 'attn_norm.weight', [d], Param.NORM, l);
    add(b + 'ssm_in.weight', [d, 2 * E], Param.IN_PROJ_W, l, true);
    add(b + 'ssm_conv1d.weight', [K, E], Param.CONV_W, l);
    add(b + 'ssm_conv1d.bias', [E], Param.CONV_B, l);
    add(b + 'ssm_x.weight', [E, R + 2 * N], Param.X_PROJ_W, l, true);
    add(b + 'ssm_dt.weight', [R, E], Param.DT_PROJ_W, l);
    add(b + 'ssm_dt.bias', [E], Param.DT_PROJ_B, l);
    add(b + 'ssm_a', [N, E], Param.A_LOG, l);
    const a = t.at(-1).data;
    for (let i = 0; i < a.length; i++) a[i] = -Math.exp(a[i]); // llama.cpp's ssm_a is A = -exp(A_log)
    add(b + 'ssm_d', [E], Param.D, l);
    add(b + 'ssm_out.weight', [E, d], Param.OUT_PROJ_W, l, true);
  }
  return t;
}

// ---- f16 and q8_0 ----

/** IEEE binary16 bits of a float32 given by its bits, rounded to nearest even. */
function f16Bits(x) {
  const sign = (x >>> 16) & 0x8000, a = x & 0x7fffffff;
  if (a >= 0x7f800000) return sign | 0x7c00 | (a > 0x7f800000 ? 0x200 : 0); // inf / nan
  if (a >= 0x477ff000) return sign | 0x7c00; // rounds past 65504
  if (a < 0x38800000) { // a subnormal half (or zero)
    if (a < 0x33000000) return sign;
    const m = (a & 0x7fffff) | 0x800000, shift = 126 - (a >>> 23);
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && (r & 1))) r++;
    return sign | r;
  }
  const r = a - 0x38000000; // rebias the exponent 127 -> 15
  return sign | ((r + 0xfff + ((r >>> 13) & 1)) >>> 13);
}
const cvt = new Float32Array(1), cvtBits = new Uint32Array(cvt.buffer);
const f16 = (v) => ((cvt[0] = v), f16Bits(cvtBits[0]));

function toF16(data) {
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = f16Bits(bits[i]);
  return new Uint8Array(out.buffer);
}

/** ggml's q8_0 (quantize_row_q8_0_ref): per 32 values, an f16 d = amax / 127 and int8 round(x / d). */
function toQ8_0(data) {
  const nb = data.length / 32;
  const out = new Uint8Array(nb * 34), dv = new DataView(out.buffer), q = new Int8Array(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(data[b * 32 + j]));
    const d = Math.fround(amax / 127), id = d ? Math.fround(1 / d) : 0;
    dv.setUint16(b * 34, f16(d), true);
    for (let j = 0; j < 32; j++) {
      const v = Math.fround(data[b * 32 + j] * id);
      q[b * 34 + 2 + j] = Math.sign(v) * Math.round(Math.abs(v)); // roundf: halves away from zero
    }
  }
  return out;
}

// ---- GGUF v3 ----

const GGUF = { U32: 4, F32: 6, BOOL: 7, STRING: 8 };

class Bytes {
  constructor() { this.parts = []; this.length = 0; }
  push(u8) { this.parts.push(u8); this.length += u8.length; }
  num(bytes, set) { const b = new Uint8Array(bytes); set(new DataView(b.buffer)); this.push(b); }
  u32(v) { this.num(4, (d) => d.setUint32(0, v, true)); }
  u64(v) { this.num(8, (d) => d.setBigUint64(0, BigInt(v), true)); }
  str(s) { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.push(b); }
  concat() { return Buffer.concat(this.parts); }
}

/** The metadata convert_hf_to_gguf.py's MambaModel writes, plus a vocabulary of type "none". */
function metadata(model, dt) {
  const c = model.config;
  return [
    ['general.architecture', GGUF.STRING, 'mamba'],
    ['general.type', GGUF.STRING, 'model'],
    ['general.name', GGUF.STRING, `memba random mamba-130m shape (seed ${SEED})`],
    ['mamba.context_length', GGUF.U32, 2 ** 20], // what the converter writes: arbitrary for a recurrent model
    ['mamba.embedding_length', GGUF.U32, c.dModel],
    ['mamba.feed_forward_length', GGUF.U32, 0],
    ['mamba.attention.head_count', GGUF.U32, 0],
    ['mamba.block_count', GGUF.U32, c.nLayer],
    ['mamba.ssm.conv_kernel', GGUF.U32, c.dConv],
    ['mamba.ssm.inner_size', GGUF.U32, c.dInner],
    ['mamba.ssm.state_size', GGUF.U32, c.dState],
    ['mamba.ssm.time_step_rank', GGUF.U32, c.dtRank],
    ['mamba.attention.layer_norm_rms_epsilon', GGUF.F32, c.eps],
    ['mamba.ssm.dt_b_c_rms', GGUF.BOOL, false],
    ['general.file_type', GGUF.U32, dt.fileType],
    ['mamba.vocab_size', GGUF.U32, c.vocabSize],
    ['tokenizer.ggml.model', GGUF.STRING, 'none'],
    ['general.quantization_version', GGUF.U32, 2],
  ];
}

const pad = (n) => Math.ceil(n / ALIGN) * ALIGN;

/** Writes one GGUF v3 file of the tensors in dtype dt; returns its size in bytes. */
function writeGguf(file, model, tensors, dt) {
  const typed = tensors.map((t) => {
    const type = t.quantize ? dt.ggml : F32;
    const nbytes = type === 8 ? (t.data.length / 32) * 34 : t.data.length * (type === 1 ? 2 : 4);
    if (type === 8 && t.ne[0] % 32) throw new Error(`${t.name}: ${t.ne[0]} columns do not make q8_0 blocks`);
    return { ...t, type, nbytes };
  });
  const kv = metadata(model, dt);
  const h = new Bytes();
  h.push(Buffer.from('GGUF', 'latin1'));
  h.u32(3); // version
  h.u64(typed.length);
  h.u64(kv.length);
  for (const [key, type, v] of kv) {
    h.str(key);
    h.u32(type);
    if (type === GGUF.STRING) h.str(v);
    else if (type === GGUF.U32) h.u32(v);
    else if (type === GGUF.F32) h.num(4, (d) => d.setFloat32(0, v, true));
    else if (type === GGUF.BOOL) h.push(Uint8Array.of(v ? 1 : 0));
  }
  let offset = 0;
  for (const t of typed) {
    h.str(t.name);
    h.u32(t.ne.length);
    for (const n of t.ne) h.u64(n);
    h.u32(t.type);
    h.u64(offset);
    offset += pad(t.nbytes);
  }
  const header = h.concat();
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, header);
    fs.writeSync(fd, Buffer.alloc(pad(header.length) - header.length));
    for (const t of typed) {
      const bytes = t.type === 8 ? toQ8_0(t.data) : t.type === 1 ? toF16(t.data) : new Uint8Array(t.data.buffer, t.data.byteOffset, t.nbytes);
      fs.writeSync(fd, bytes);
      fs.writeSync(fd, Buffer.alloc(pad(t.nbytes) - t.nbytes));
    }
  } finally {
    fs.closeSync(fd);
  }
  return pad(header.length) + offset;
}

/** Writes the three GGUFs into dir; returns { f32: path, f16: path, q8_0: path }. */
async function writeAll(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const model = await Mamba.createRandom(SHAPE, { seed: SEED, dtype: 'fp32', threads: 1 });
  try {
    const tensors = modelTensors(model);
    const files = {};
    for (const dt of DTYPES) {
      files[dt.name] = path.join(dir, `mamba-130m-random-${dt.name}.gguf`);
      const size = writeGguf(files[dt.name], model, tensors, dt);
      console.log(`wrote ${files[dt.name]} (${(size / 2 ** 20).toFixed(1)} MiB)`);
    }
    return files;
  } finally {
    model.dispose();
  }
}

// ---- llama.cpp ----

function llamaBin(name) {
  const p = path.join(llama, 'bin', name);
  if (!fs.existsSync(p)) throw new Error(`${p} not found: give --llama the build folder of llama.cpp (build the ${name} target)`);
  return p;
}

/** One llama-bench run: { pp, tg (tok/s, avg of its reps), ppSd, tgSd, commit, build, size }. */
function llamaBench(file) {
  const r = spawnSync(llamaBin('llama-bench'), ['-m', file, '-t', '1', '-p', '512', '-n', '32', '-r', String(reps), '-o', 'json'], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`llama-bench failed (${r.status ?? r.error}): ${r.stderr.trim().split('\n').slice(-5).join('\n')}`);
  const tests = JSON.parse(r.stdout);
  const pp = tests.find((t) => t.n_prompt === 512 && t.n_gen === 0), tg = tests.find((t) => t.n_prompt === 0 && t.n_gen === 32);
  return { pp: pp.avg_ts, ppSd: pp.stddev_ts, tg: tg.avg_ts, tgSd: tg.stddev_ts, commit: pp.build_commit, build: pp.build_number, size: pp.model_size, type: pp.model_type };
}

/** Compiles bench/llama-logits.c against the build; returns the binary's path. */
function logitsTool(dir) {
  const cache = fs.readFileSync(path.join(llama, 'CMakeCache.txt'), 'utf8');
  const src = /^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$/m.exec(cache)?.[1];
  if (!src) throw new Error(`no source folder in ${path.join(llama, 'CMakeCache.txt')}`);
  const lib = ['bin', 'src', 'lib'].map((d) => path.join(llama, d)).find((d) => fs.existsSync(path.join(d, 'libllama.so')));
  if (!lib) throw new Error(`no libllama.so under ${llama}: build llama.cpp with shared libraries (the default) and the llama target`);
  const exe = path.join(dir, 'llama-logits');
  const cc = process.env.CC || 'cc';
  const r = spawnSync(cc, ['-O2', '-o', exe, path.join(ROOT, 'bench', 'llama-logits.c'), `-I${path.join(src, 'include')}`, `-I${path.join(src, 'ggml', 'include')}`,
    `-L${lib}`, '-lllama', `-Wl,-rpath,${lib}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cc} llama-logits.c failed: ${r.stderr || r.error}`);
  return exe;
}

// ---- --check ----

function compare(ours, theirs) {
  let maxAbs = 0, maxRef = 0, a = 0, b = 0;
  for (let i = 0; i < ours.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(ours[i] - theirs[i]));
    maxRef = Math.max(maxRef, Math.abs(ours[i]));
    if (ours[i] > ours[a]) a = i;
    if (theirs[i] > theirs[b]) b = i;
  }
  return { maxAbs, rel: maxAbs / maxRef, maxRef, argmax: [a, b] };
}

async function runCheck(dir) {
  const files = await writeAll(dir);
  const exe = logitsTool(dir);
  const V = SHAPE.vocabSize;
  const ids = Array.from({ length: 16 }, (_, i) => ((i + 1) * 7919) % V);
  console.log(`ids: ${ids.join(' ')}`);
  const paths = ['prefill', 'step'];
  const fmt = (c) => `max |diff| ${c.maxAbs.toExponential(3)}, relative ${c.rel.toExponential(3)}, argmax ${c.argmax[0] === c.argmax[1] ? 'agrees' : `DIFFERS (${c.argmax[1]} vs ${c.argmax[0]})`}`;
  let failed = false, ref = null;
  for (const dt of DTYPES) {
    const out = path.join(dir, `logits-${dt.name}.bin`);
    const r = spawnSync(exe, [files[dt.name], out, ...ids.map(String)], { encoding: 'utf8', maxBuffer: 1 << 24 });
    if (r.status !== 0) throw new Error(`llama-logits on ${dt.name} failed: ${r.stderr.trim().split('\n').slice(-8).join('\n')}`);
    const buf = fs.readFileSync(out);
    const theirs = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + 8 * V));
    const model = await Mamba.createRandom(SHAPE, { seed: SEED, dtype: dt.memba });
    const ours = {};
    try {
      ours.prefill = (await model.forward(ids)).data.slice((ids.length - 1) * V);
      const st = model.createState();
      st.prefill(ids.slice(0, -1));
      ours.step = st.step(ids.at(-1)).slice();
      st.dispose();
    } finally {
      model.dispose();
    }
    ref ??= ours; // memba fp32
    paths.forEach((what, k) => {
      const t = theirs.subarray(k * V, (k + 1) * V);
      const c = compare(ours[what], t);
      console.log(`${dt.name.padEnd(4)} ${what.padEnd(7)} llama.cpp vs memba ${dt.memba.padEnd(4)}: ${fmt(c)} (max |logit| ${c.maxRef.toFixed(3)})`);
      if (dt.name === 'f32') {
        if (!(c.rel <= 1e-3)) (failed = true), console.log('  FAIL: relative difference above 1e-3');
      } else {
        console.log(`${''.padEnd(12)} against memba fp32: llama.cpp ${dt.name} ${fmt(compare(ref[what], t))}; memba ${dt.memba} ${fmt(compare(ref[what], ours[what]))}`);
      }
    });
  }
  console.log(failed ? 'check FAILED: the f32 GGUF is not faithful' : 'check passed: f32 relative difference <= 1e-3 (f16 / q8_0: information only)');
  return failed ? 1 : 0;
}

// ---- benchmark ----

async function runBench(dir) {
  const files = await writeAll(dir);
  const res = Object.fromEntries(DTYPES.map((d) => [d.name, []]));
  let info = null;
  for (let r = 0; r < rounds; r++)
    for (const dt of DTYPES) {
      const x = llamaBench(files[dt.name]);
      info ??= x;
      res[dt.name].push(x);
      console.log(`round ${r + 1} ${dt.name}: pp512 ${x.pp.toFixed(1)} ± ${x.ppSd.toFixed(1)} tok/s, tg32 ${x.tg.toFixed(1)} ± ${x.tgSd.toFixed(1)} tok/s (${x.type})`);
    }
  const f = (x) => x.toFixed(1);
  const rows = ['| dtype (GGUF) | model MiB | pp512 tok/s (best; all rounds) | tg32 tok/s (best; all rounds) |', '|---|---|---|---|'];
  for (const dt of DTYPES) {
    const xs = res[dt.name];
    const best = (k) => Math.max(...xs.map((x) => x[k]));
    rows.push(`| ${dt.name} | ${f(xs[0].size / 2 ** 20)} | ${f(best('pp'))} (${xs.map((x) => f(x.pp)).join(', ')}) | ${f(best('tg'))} (${xs.map((x) => f(x.tg)).join(', ')}) |`);
  }
  const date = new Date().toISOString().slice(0, 16).replace('T', ' ');
  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model;
  const text = `\n## ${date} UTC: llama.cpp, native, single thread\n${cpu}, ${os.cpus().length} cores. llama.cpp at commit ${info.commit} (build ${info.build}), ` +
    `CPU backend built with -DGGML_NATIVE=ON, \`llama-bench -t 1 -p 512 -n 32 -r ${reps}\`, ${rounds} interleaved rounds (f32, f16, q8_0, f32, ...), best of each. ` +
    `Random mamba-130m-shaped weights (d_model 768, 24 layers, vocab 50280, seed ${SEED}): the model of the weight-dtype entries, written as GGUF by bench/llama-cpp.mjs ` +
    `(token_embd, ssm_in, ssm_x, ssm_out in the dtype, every other tensor f32; output tied to token_embd).\n\n${rows.join('\n')}\n`;
  console.log(text);
  if (args.includes('--append')) {
    fs.appendFileSync(path.join(ROOT, 'bench', 'results.md'), text);
    console.log('appended to bench/results.md');
  }
}

// ---- main ----

const dir = outDir ? path.resolve(outDir) : fs.mkdtempSync(path.join(os.tmpdir(), 'memba-llama-'));
let status = 0;
try {
  if (!llama) await writeAll(dir);
  else if (check) status = await runCheck(dir);
  else await runBench(dir);
} catch (err) {
  console.error(`llama-cpp.mjs: ${err.message}`);
  status = 1;
} finally {
  if (!outDir) fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
