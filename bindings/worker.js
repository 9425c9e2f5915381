// worker.js: the engine's side of running memba-wasm in a Web Worker (or a Node worker thread):
// it owns the real Mamba / Adapter / Trainer / DecodeState objects and answers the page's calls
// (see remote.js), streaming generated tokens and progress events back, and aborting a call when
// the page's AbortSignal fires. Start it as a module worker:
//   new Worker(new URL('memba-wasm/worker', import.meta.url), { type: 'module' })   (package export)
// Deliberately not here: any model logic (mamba.js and friends do the work).
import { Mamba, DecodeState } from './mamba.js';
import { Adapter } from './adapter.js';
import { Trainer } from './trainer.js';
import { MembaError, ErrorCodes } from './errors.js';
import { SNAPSHOT, isPlainObject } from './protocol.js';
import { IS_WORKER } from './env.js';
import { nodeImport } from './node-import.js';

const CLASSES = [
  ['Mamba', Mamba],
  ['Adapter', Adapter],
  ['Trainer', Trainer],
  ['DecodeState', DecodeState],
];

async function channel() {
  if (IS_WORKER)
    return { post: (m, t) => self.postMessage(m, t), listen: (fn) => self.addEventListener('message', (e) => fn(e.data)) };
  const { parentPort } = await nodeImport('node:worker_threads'); // Node only: kept out of browser bundles
  return { post: (m, t) => parentPort.postMessage(m, t), listen: (fn) => parentPort.on('message', fn) };
}

const objects = new Map(); // handle -> object
const handles = new WeakMap(); // object -> handle
const calls = new Map(); // call id -> AbortController
let nextHandle = 1;

function className(v) {
  for (const [name, cls] of CLASSES) if (v instanceof cls) return name;
  return null;
}

function snapshot(obj, name) {
  const out = {};
  for (const k of SNAPSHOT[name]) {
    try {
      out[k] = obj[k];
    } catch {
      out[k] = undefined; // e.g. a disposed object's getter
    }
  }
  return out;
}

/** Values going to the page: engine objects become handles, everything else is cloned. */
function encode(v) {
  const name = v && typeof v === 'object' ? className(v) : null;
  if (name) {
    let h = handles.get(v);
    if (!h) {
      h = nextHandle++;
      handles.set(v, h);
      objects.set(h, v);
    }
    return { __memba: name, handle: h, props: snapshot(v, name) };
  }
  if (Array.isArray(v)) return v.map(encode);
  if (isPlainObject(v)) {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = encode(x);
    return o;
  }
  return v;
}

/**
 * Values from the page: handle references become objects, markers become callbacks/signals.
 * Only arrays, Maps and plain objects are walked: Blobs, Files, bytes and the like arrive as
 * structured clone made them and are passed on as they are.
 */
function decode(v, id, post) {
  if (Array.isArray(v)) return v.map((x) => decode(x, id, post));
  if (v instanceof Map) {
    const m = new Map();
    for (const [k, x] of v) m.set(decode(k, id, post), decode(x, id, post));
    return m;
  }
  if (isPlainObject(v)) {
    if (v.__memba_ref) {
      const o = objects.get(v.__memba_ref);
      if (!o) throw new MembaError(ErrorCodes.DISPOSED, 'that object has been disposed');
      return o;
    }
    if (v.__memba_callback !== undefined) {
      const cb = v.__memba_callback; // which of the call's callbacks (a call may pass several)
      return (value) => post({ id, type: 'event', cb, value: encode(value) });
    }
    if (v.__memba_signal) return calls.get(id).signal;
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = decode(x, id, post);
    return o;
  }
  return v;
}

function errorOf(err) {
  return { name: err?.name ?? 'Error', code: err?.code ?? ErrorCodes.INTERNAL, message: err?.message ?? String(err) };
}

async function handle(msg, post) {
  const { id, op } = msg;
  if (op === 'abort') {
    calls.get(id)?.abort(msg.reason ?? 'aborted');
    return;
  }
  const ctl = new AbortController();
  calls.set(id, ctl);
  try {
    const target = msg.target === 0 ? { Mamba } : objects.get(msg.target);
    if (!target) throw new MembaError(ErrorCodes.DISPOSED, 'that object has been disposed');
    const args = decode(msg.args ?? [], id, post);
    if (msg.target === 0 && msg.method !== 'Mamba.load' && msg.method !== 'Mamba.createRandom')
      throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `unknown static call ${msg.method}`);
    const fn = msg.target === 0 ? Mamba[msg.method.slice(6)] : target[msg.method];
    if (typeof fn !== 'function' || msg.method.startsWith('_'))
      throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `no method ${msg.method}`);
    const self = msg.target === 0 ? Mamba : target;
    if (msg.iterate) {
      for await (const value of fn.apply(self, args)) post({ id, type: 'yield', value: encode(value) });
      post({ id, type: 'done', props: msg.target ? snapshot(target, className(target)) : null });
    } else {
      const value = await fn.apply(self, args);
      if (msg.method === 'dispose' && msg.target) objects.delete(msg.target);
      post({ id, type: 'done', value: encode(value), props: msg.target ? snapshot(target, className(target)) : null });
    }
  } catch (err) {
    post({ id, type: 'error', error: errorOf(err) });
  } finally {
    calls.delete(id);
  }
}

// no top-level await: bundlers build workers as classic scripts by default (Vite's worker.format
// 'iife', webpack's worker chunks), where top-level await is a build error
channel().then((ch) => {
  ch.listen((msg) => {
    handle(msg, (m) => ch.post(m));
  });
  ch.post({ type: 'ready' });
});
