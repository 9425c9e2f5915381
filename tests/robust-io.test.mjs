// robust-io.test.mjs: the I/O side of memory safety and robustness (issue 11). Worker mode: every
// call settles when the worker is terminated, crashes, exits or is disposed with its model;
// Map / Blob / File sources cross the boundary; bad arguments are invalid_argument on the page.
// Loading: a throwing onProgress frees everything, a model too large for the wasm32 heap is oom
// before its tensors are read, NaN / Inf weights are refused (unless allowed), shards are read
// with bounded concurrency and without a warning storm.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Mamba, MembaError, writeSafetensors } from '../bindings/index.js';
import { fixture, readCase, rejectsCode, maxDiff, ROOT } from './helpers.mjs';

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

test('worker: null options and Symbol arguments are invalid_argument; the model stays usable', async () => {
  const remote = await Mamba.load(TINY, { worker: true });
  const before = (await remote.forward(ids)).data;
  await settlesWith('forward(ids, null)', remote.forward(ids, null), 'invalid_argument');
  await settlesWith('generate(ids, null)', remote.generate(ids, null), 'invalid_argument');
  await settlesWith('createAdapter(null)', remote.createAdapter(null), 'invalid_argument');
  await settlesWith('forward(Symbol)', remote.forward(Symbol('x')), 'invalid_argument');
  await settlesWith('forward(ids, { outputHidden: Symbol })', remote.forward(ids, { outputHidden: Symbol('y') }), 'invalid_argument');
  await settlesWith('Mamba.load(Symbol)', Mamba.load(Symbol('z'), { worker: true }), 'invalid_argument');
  assert.equal(maxDiff((await remote.forward(ids)).data, before), 0, 'same logits after the errors');
  await remote.dispose();
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
