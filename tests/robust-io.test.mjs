// robust-io.test.mjs: the I/O side of memory safety and robustness (issue 11). Worker mode: every
// call settles when the worker is terminated, crashes, exits or is disposed with its model;
// Map / Blob / File sources cross the boundary; bad arguments are invalid_argument on the page.
// Loading: a throwing onProgress frees everything, a model too large for the wasm32 heap is oom
// before its tensors are read, NaN / Inf weights are refused (unless allowed), shards are read
// with bounded concurrency and without a warning storm.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Mamba, MembaError, writeSafetensors, parseSafetensors, tensorToFloat32 } from '../bindings/index.js';
import { float32ToFloat16Bits } from '../bindings/safetensors.js';
import { fixture, readCase, rejectsCode, maxDiff, ROOT } from './helpers.mjs';
import { syntheticCheckpoint } from './make-text-model.mjs';

const TINY = fixture('mamba-tiny');
const ids = readCase('mamba-tiny').ids[0];
const tinyFiles = () => ({
  'config.json': fs.readFileSync(path.join(TINY, 'config.json'), 'utf8'),
  'model.safetensors': new Uint8Array(fs.readFileSync(path.join(TINY, 'model.safetensors'))),
});
const CRASH_WORKER = new URL('./crash-worker.mjs', import.meta.url);

/** Settles within `ms`, or says it hung: a call that never settles is the bug these tests catch. */
function within(promise, ms = 5000) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms))),
  ]);
}

/** Rejects within 5 s with a MembaError of `code` (and a message matching `re`); prints it. */
async function settlesWith(what, promise, code, re) {
  const t0 = Date.now();
  await rejectsCode(within(promise), code, re);
  console.log(`${what}: rejected with ${code} after ${Date.now() - t0} ms`);
}

/** A long generation that keeps the worker busy until something stops it. */
const longCall = (remote) => remote.generate([1, 2, 3], { maxNewTokens: 1e6, stopTokens: [] });

test('worker: terminate() rejects the pending and every later call with disposed', async () => {
  const remote = await Mamba.load(TINY, { worker: true });
  const pending = longCall(remote);
  await new Promise((r) => setTimeout(r, 50));
  remote.terminate();
  await settlesWith('pending call after terminate', pending, 'disposed');
  await settlesWith('later call after terminate', remote.forward(ids), 'disposed');
  await within(remote.dispose()); // disposing a terminated model is fine
});

test('worker: dispose rejects queued and later calls with disposed; a second dispose resolves', async () => {
  const remote = await Mamba.load(TINY, { worker: true });
  const pending = longCall(remote);
  await new Promise((r) => setTimeout(r, 50));
  const disposing = remote.dispose();
  const queued = settlesWith('call made while disposing', remote.forward(ids), 'disposed');
  await within(disposing);
  await settlesWith('call pending during dispose', pending, 'disposed');
  await queued;
  await settlesWith('call after dispose', remote.forward(ids), 'disposed');
  const it = remote.stream([1, 2], { maxNewTokens: 2 });
  await settlesWith('stream after dispose', it.next(), 'disposed');
  await within(remote.dispose());
  console.log('second dispose: resolved');
});

test('worker: a crash (uncaught error) or process.exit in a Node worker rejects pending and later calls with internal', async () => {
  for (const [op, re] of [['test-throw', /deliberate crash/], ['test-exit', /exited \(code 3\)/]]) {
    const w = new Worker(CRASH_WORKER);
    const remote = await Mamba.load(TINY, { worker: w });
    assert.equal(maxDiff((await remote.forward(ids)).data, (await remote.forward(ids)).data), 0);
    const pending = longCall(remote);
    await new Promise((r) => setTimeout(r, 50));
    w.postMessage({ op, code: 3 });
    await settlesWith(`${op}: pending call`, pending, 'internal', re);
    await settlesWith(`${op}: later call`, remote.forward(ids), 'internal', re);
    await within(remote.dispose());
    await w.terminate();
  }
});

/** A browser-style Worker (addEventListener, 'error' events) over a Node worker thread. */
class BrowserStyleWorker extends EventTarget {
  constructor(url) {
    super();
    this._w = new Worker(url);
    this._w.on('message', (data) => this.dispatchEvent(new MessageEvent('message', { data })));
    this._w.on('error', (err) => this.dispatchEvent(Object.assign(new Event('error'), { message: `Uncaught ${err.message}` })));
  }

  postMessage(m) {
    this._w.postMessage(m);
  }

  terminate() {
    return this._w.terminate();
  }
}

test('worker: a browser-style worker\'s error event rejects pending and later calls with internal', async () => {
  const w = new BrowserStyleWorker(CRASH_WORKER);
  const remote = await Mamba.load(TINY, { worker: w });
  const pending = longCall(remote);
  await new Promise((r) => setTimeout(r, 50));
  w.postMessage({ op: 'test-throw' });
  await settlesWith('browser-style: pending call', pending, 'internal', /deliberate crash/);
  await settlesWith('browser-style: later call', remote.forward(ids), 'internal', /deliberate crash/);
  await w.terminate();
});

test('worker: start-up honours the AbortSignal and rejects when the worker fails to start', async () => {
  await settlesWith('own worker, signal fires during start-up', Mamba.load(TINY, { worker: true, signal: AbortSignal.timeout(1) }), 'aborted');
  const silent = new Worker('setInterval(() => {}, 1000)', { eval: true }); // never says ready
  await settlesWith('worker that never starts, signal', Mamba.load(TINY, { worker: silent, signal: AbortSignal.timeout(100) }), 'aborted');
  await silent.terminate();
  const broken = new Worker('throw new Error("the worker script is broken")', { eval: true });
  await settlesWith('worker whose script throws', Mamba.load(TINY, { worker: broken }), 'internal', /script is broken/);
});

test('worker: Map, Blob and File sources cross the boundary and give the local logits', async () => {
  const local = await Mamba.load(TINY);
  const want = (await local.forward(ids)).data;
  const f = tinyFiles();
  const sources = {
    'Map': new Map(Object.entries(f)),
    '{ files: Map }': { files: new Map(Object.entries(f)) },
    '{ files: Blobs }': { files: { 'config.json': new Blob([f['config.json']]), 'model.safetensors': new Blob([f['model.safetensors']]) } },
    '{ files: Files }': { files: { 'config.json': new File([f['config.json']], 'config.json'), 'model.safetensors': new File([f['model.safetensors']], 'model.safetensors') } },
  };
  for (const [name, src] of Object.entries(sources)) {
    const remote = await Mamba.load(src, { worker: true });
    const d = maxDiff((await remote.forward(ids)).data, want);
    console.log(`${name}: max |remote - local| = ${d}`);
    assert.equal(d, 0);
    await remote.dispose();
  }
  local.dispose();
});

test('worker: null options mean the defaults, as in the local API; Symbol arguments are invalid_argument; the model stays usable', async () => {
  const remote = await Mamba.load(TINY, { worker: true });
  const local = await Mamba.load(TINY);
  const before = (await remote.forward(ids)).data;
  const dNull = maxDiff((await remote.forward(ids, null)).data, (await local.forward(ids)).data);
  console.log(`forward(ids, null) in the worker: max |remote - local| = ${dNull}`);
  assert.equal(dNull, 0);
  assert.deepEqual(await remote.generate(ids, null), await local.generate(ids), 'generate(ids, null) = local generate(ids)');
  const a = await remote.createAdapter(null);
  const la = local.createAdapter(null);
  assert.deepEqual(a.config, la.config, 'createAdapter(null): the default adapter');
  la.dispose();
  await remote.setAdapter(null);
  await settlesWith('forward(Symbol)', remote.forward(Symbol('x')), 'invalid_argument');
  await settlesWith('forward(ids, { outputHidden: Symbol })', remote.forward(ids, { outputHidden: Symbol('y') }), 'invalid_argument');
  await settlesWith('Mamba.load(Symbol)', Mamba.load(Symbol('z'), { worker: true }), 'invalid_argument');
  assert.equal(maxDiff((await remote.forward(ids)).data, before), 0, 'same logits after the errors');
  await remote.dispose();
  local.dispose();
});

test('worker: a callback that throws fails its call with that error; the model stays usable', async () => {
  const remote = await Mamba.load(TINY, { worker: true });
  await remote.createAdapter({ lora: { r: 2 }, seed: 1 });
  const tr = await remote.createTrainer();
  const boom = new Error('progress callback failed');
  await assert.rejects(within(tr.fit([Array.from({ length: 40 }, (_, i) => i % 60)], { seqLen: 8, epochs: 5, onProgress: () => { throw boom; } })), (e) => e === boom);
  console.log('fit with a throwing onProgress: rejected with the callback\'s error');
  assert.equal((await remote.forward(ids)).dims[1], ids.length);
  await remote.dispose();
});

// ---------------------------------------------------------------------------------------------
// Loading

function hfConfig({ d, nl, V, N = 16, R = 8, K = 4 }) {
  return JSON.stringify({ model_type: 'mamba', hidden_size: d, num_hidden_layers: nl, vocab_size: V, state_size: N, conv_kernel: K, expand: 2, time_step_rank: R, tie_word_embeddings: true });
}

test('load: an onProgress that throws at ready fails the load with its error and frees the weights (20 loads)', async () => {
  const { getEngine } = await import('../bindings/engine.js');
  const engine = await getEngine();
  const files = syntheticCheckpoint({ d: 128, nl: 4, V: 2048, N: 16, R: 8, seed: 7 });
  const boom = new Error('progress callback failed at ready');
  const load = () => Mamba.load({ files }, { onProgress: (p) => { if (p.status === 'ready') throw boom; } });
  await assert.rejects(load(), (e) => e === boom); // the first one may grow the heap to hold one model
  const before = engine.heapBytes;
  for (let i = 0; i < 20; i++) await assert.rejects(load(), (e) => e === boom);
  const after = engine.heapBytes;
  const m = await Mamba.load({ files });
  const modelBytes = m.memory().weights;
  m.dispose();
  console.log(`WASM heap: ${(before / 2 ** 20).toFixed(1)} MB after the first failed load, ${(after / 2 ** 20).toFixed(1)} MB after 20 more; one model's weights: ${(modelBytes / 2 ** 20).toFixed(1)} MB`);
  assert.ok(after - before < 2 * modelBytes, `the heap grew by ${after - before} bytes over 20 failed loads (a model is ${modelBytes})`);
});

/**
 * A fake fetch over in-memory files whose bodies are pulled lazily in 64 KB chunks: counts the
 * body bytes each file actually delivered (the check must fire before the tensors are read).
 */
function countingFetch(files) {
  const delivered = {};
  const fetch = async (url) => {
    const name = decodeURIComponent(new URL(url).pathname.split('/').pop());
    const bytes = files[name];
    if (bytes === undefined) return new Response('not found', { status: 404 });
    const data = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
    delivered[name] = 0;
    let pos = 0;
    const body = new ReadableStream({
      pull(ctl) {
        if (pos >= data.length) return ctl.close();
        const chunk = data.slice(pos, pos + 65536);
        pos += chunk.length;
        delivered[name] += chunk.length;
        ctl.enqueue(chunk);
      },
    }, { highWaterMark: 0 });
    return new Response(body, { headers: { 'content-length': String(data.length) } });
  };
  return { fetch, delivered };
}

/** A safetensors file whose header claims `tensors` ({ name: [dtype, shape] }) followed by only
 * `dataBytes` zero bytes of data (the claimed data would not fit any test machine). */
function claimingSafetensors(tensors, dataBytes) {
  const header = {};
  let off = 0;
  for (const [name, [dtype, shape]] of Object.entries(tensors)) {
    const n = shape.reduce((a, b) => a * b, 1) * { F16: 2, F32: 4 }[dtype];
    header[name] = { dtype, shape, data_offsets: [off, off + n] };
    off += n;
  }
  const json = new TextEncoder().encode(JSON.stringify(header).padEnd(8 * Math.ceil(JSON.stringify(header).length / 8)));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  return { bytes: out, headerBytes: 8 + json.length, claimed: off };
}

test('load: a checkpoint whose float32 weights exceed the wasm32 heap is oom before its tensors are read', async () => {
  const { MAX_HEAP_BYTES, MAX_WEIGHT_BYTES } = await import('../bindings/engine.js');
  const flag = /-sMAXIMUM_MEMORY=(\d+)GB/.exec(fs.readFileSync(path.join(ROOT, 'build.sh'), 'utf8'));
  assert.ok(flag, 'build.sh sets -sMAXIMUM_MEMORY in GB');
  assert.equal(MAX_HEAP_BYTES, Number(flag[1]) * 2 ** 30, 'engine.js MAX_HEAP_BYTES mirrors build.sh -sMAXIMUM_MEMORY');
  const d = 4096;
  const V = 262144; // one F16 embedding of 2 GiB: 4 GiB as float32
  const emb = { 'backbone.embeddings.weight': ['F16', [V, d]], 'backbone.norm_f.weight': ['F16', [d]] };
  const big = claimingSafetensors(emb, 4 << 20);
  console.log(`claimed: ${(big.claimed / 2 ** 30).toFixed(2)} GiB of F16 data (${(2 * big.claimed / 2 ** 30).toFixed(2)} GiB as float32, limit ${(MAX_WEIGHT_BYTES / 2 ** 30).toFixed(3)} GiB); file: ${big.bytes.length} bytes`);

  // 1. config.json alone says so: model.safetensors is never fetched
  // (dtype 'fp32' asked for; the default 'auto' would take fp16, which fits, below)
  const a = countingFetch({ 'config.json': hfConfig({ d, nl: 1, V }), 'model.safetensors': big.bytes });
  await rejectsCode(Mamba.load('https://models.test/big/', { fetch: a.fetch, cache: false, dtype: 'fp32' }), 'oom', /fp32 weights need/);
  console.log(`config says it: bytes delivered ${JSON.stringify(a.delivered)}`);
  assert.equal(a.delivered['model.safetensors'], undefined, 'the weights file was not fetched');
  // 1b. 'auto' takes the most precise dtype that fits; a model too large even in q8 is oom the same way
  const huge = countingFetch({ 'config.json': hfConfig({ d: 1024, nl: 1, V: 4 << 20 }), 'model.safetensors': big.bytes });
  await rejectsCode(Mamba.load('https://models.test/huge/', { fetch: huge.fetch, cache: false }), 'oom', /q8 weights need/);
  assert.equal(huge.delivered['model.safetensors'], undefined, 'the weights file was not fetched');

  // 2. a small config, but the header's embedding has 262144 rows: oom once the header is in
  const b = countingFetch({ 'config.json': hfConfig({ d, nl: 1, V: 64 }), 'model.safetensors': big.bytes });
  await rejectsCode(Mamba.load('https://models.test/big/', { fetch: b.fetch, cache: false }), 'oom', /model\.safetensors: the model's fp32 weights need/);
  console.log(`header says it: ${b.delivered['model.safetensors']} bytes of model.safetensors delivered (header ${big.headerBytes}, file ${big.bytes.length})`);
  assert.ok(b.delivered['model.safetensors'] <= big.headerBytes + 65536, 'no more than the header and one chunk was read');

  // 3. the same through in-memory files (short data: oom, not a bad_format about the data) ...
  await rejectsCode(Mamba.load({ files: { 'config.json': hfConfig({ d, nl: 1, V: 64 }), 'model.safetensors': big.bytes } }), 'oom');
  // ... and a Blob, read as a stream
  await rejectsCode(Mamba.load({ files: { 'config.json': hfConfig({ d, nl: 1, V: 64 }), 'model.safetensors': new Blob([big.bytes]) } }), 'oom');

  // 4. a directory with a sparse file as large as its header claims: count what is read from it
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-oom-'));
  const file = path.join(dir, 'model.safetensors');
  const fh = await fs.promises.open(path.join(ROOT, 'package.json'));
  const FileHandle = Object.getPrototypeOf(fh);
  await fh.close();
  const read = FileHandle.read;
  let bytesRead = 0;
  FileHandle.read = async function (...args) { // counts the bytes every FileHandle read returns
    const r = await read.apply(this, args);
    bytesRead += r.bytesRead;
    return r;
  };
  try {
    fs.writeFileSync(path.join(dir, 'config.json'), hfConfig({ d, nl: 1, V: 64 }));
    fs.writeFileSync(file, big.bytes.subarray(0, big.headerBytes));
    fs.truncateSync(file, big.headerBytes + big.claimed); // sparse: no disk used
    await rejectsCode(Mamba.load(dir), 'oom');
    console.log(`directory: ${bytesRead} bytes read (config.json + the header) of a ${(fs.statSync(file).size / 2 ** 30).toFixed(2)} GiB file`);
    assert.ok(bytesRead < big.headerBytes + 4096, `only the header was read (${bytesRead} bytes)`);
  } finally {
    FileHandle.read = read;
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** The tiny fixture with one value of `tensor` replaced by `value` (F32 or F16 storage). */
function tinyWith(tensor, value, dtype = 'F32') {
  const { tensors } = parseSafetensors(tinyFiles()['model.safetensors']);
  const entries = {};
  for (const [name, t] of tensors) {
    const v = tensorToFloat32(t);
    if (name === tensor) v[3] = value;
    entries[name] = dtype === 'F16' ? { dtype, shape: t.shape, data: float32ToFloat16Bits(v) } : { dtype, shape: t.shape, data: v };
  }
  return { 'config.json': tinyFiles()['config.json'], 'model.safetensors': writeSafetensors(entries) };
}

test('load: NaN or Inf in a weight is bad_format naming the tensor, unless allowNonFinite: true', async () => {
  const cases = [
    ['backbone.layers.1.mixer.D', NaN, 'F32'],
    ['backbone.embeddings.weight', Infinity, 'F32'],
    ['backbone.layers.0.mixer.in_proj.weight', -Infinity, 'F16'],
  ];
  for (const [tensor, value, dtype] of cases) {
    const files = tinyWith(tensor, value, dtype);
    await assert.rejects(Mamba.load({ files }), (e) => {
      console.log(`${dtype} ${tensor} = ${value}: ${e.code}: ${e.message}`);
      return e instanceof MembaError && e.code === 'bad_format' && e.message.includes(tensor) && e.message.includes(String(value));
    });
    const m = await Mamba.load({ files }, { allowNonFinite: true });
    assert.equal(m.config.dModel, 32, 'allowNonFinite: true loads it');
    m.dispose();
  }
  await rejectsCode(Mamba.load({ files: tinyFiles() }, { allowNonFinite: 'yes' }), 'invalid_argument');
  const ok = await Mamba.load({ files: tinyFiles() }); // finite weights: unchanged
  ok.dispose();
});

test('load: 1000 shards are fetched at most 4 at a time, with no warning', async () => {
  const { tensors } = parseSafetensors(tinyFiles()['model.safetensors']);
  const files = { 'config.json': tinyFiles()['config.json'] };
  const weightMap = {};
  let i = 0;
  const shard = (name, entry) => {
    const file = `model-${String(i++).padStart(5, '0')}-of-01000.safetensors`;
    files[file] = writeSafetensors({ [name]: entry });
    weightMap[name] = file;
  };
  for (const [name, t] of tensors) shard(name, { dtype: t.dtype, shape: t.shape, data: t.data.slice() });
  while (i < 1000) shard(`backbone.unused_${i}`, { dtype: 'F32', shape: [1], data: new Float32Array(1) }); // tensors the engine skips
  files['model.safetensors.index.json'] = JSON.stringify({ metadata: {}, weight_map: weightMap });
  let inFlight = 0;
  let maxInFlight = 0;
  let requests = 0;
  const fetch = async (url) => {
    requests++;
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    await new Promise((r) => setImmediate(r));
    inFlight--;
    const name = new URL(url).pathname.split('/').pop();
    return files[name] === undefined ? new Response('', { status: 404 }) : new Response(files[name]);
  };
  const warnings = [];
  const onWarning = (w) => warnings.push(w);
  process.on('warning', onWarning);
  try {
    const m = await Mamba.load('https://models.test/sharded/', { fetch, cache: false });
    const local = await Mamba.load(TINY);
    assert.equal(maxDiff((await m.forward(ids)).data, (await local.forward(ids)).data), 0, 'same logits as the single file');
    m.dispose();
    local.dispose();
    await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
  } finally {
    process.off('warning', onWarning);
  }
  console.log(`${requests} requests, at most ${maxInFlight} in flight, ${warnings.length} warnings ${warnings.map((w) => w.name).join(' ')}`);
  assert.ok(maxInFlight <= 4, `${maxInFlight} fetches in flight at once`);
  assert.equal(warnings.length, 0);
});

test('load: a tokenizer.json whose vocab or added tokens have ids that are not token ids is bad_format', async () => {
  const tok = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'fixtures', 'tokenizer', 'tokenizer.json'), 'utf8'));
  const files = { ...tinyFiles() };
  const cases = [
    ['vocab id true', (t) => { t.model.vocab['Ġso'] = true; }], // the fuzz test's tokenizer.json #57: encode returned true
    ['vocab id -3', (t) => { t.model.vocab.a = -3; }],
    ['vocab id 1.5', (t) => { t.model.vocab.a = 1.5; }],
    ['added token id "0"', (t) => { t.added_tokens[0].id = '0'; }],
    ['added_tokens an object', (t) => { t.added_tokens = {}; }],
  ];
  for (const [what, change] of cases) {
    const t = structuredClone(tok);
    change(t);
    await assert.rejects(Mamba.load({ files: { ...files, 'tokenizer.json': t } }), (e) => {
      console.log(`${what}: ${e.code}: ${e.message}`);
      return e instanceof MembaError && e.code === 'bad_format' && /tokenizer\.json/.test(e.message);
    });
  }
  const m = await Mamba.load({ files: { ...files, 'tokenizer.json': tok } }); // the fixture itself loads
  assert.ok(m.hasTokenizer);
  m.dispose();
});
