// remote.js: the page's side of a worker-hosted engine. `Mamba.load(source, { worker })` (or
// loadInWorker) returns an object with the same methods as a local Mamba, each answered by the
// worker (worker.js) so the page stays responsive: every method returns a promise (await works
// the same on both), `stream` is an async iterator, `onProgress` callbacks and `signal`s work
// across the boundary (abort lands within one training step), errors arrive as MembaError with
// their code. Adapters, trainers and decode states come back as remote objects of the same shape.
// Deliberately not here: anything that runs the model.
import { MembaError, ErrorCodes, abortError } from './errors.js';
import { SNAPSHOT } from './protocol.js';
import { HAS_WORKER } from './env.js';
import { nodeImport } from './node-import.js';


const NODE_WORKER_FILE = './worker.js';

/** Wraps a browser Worker or a Node worker_threads Worker into { post, listen, terminate }. */
function wrap(worker) {
  if (typeof worker.addEventListener === 'function' && typeof worker.on !== 'function')
    return { post: (m) => worker.postMessage(m), listen: (fn) => worker.addEventListener('message', (e) => fn(e.data)), terminate: () => worker.terminate() };
  return { post: (m) => worker.postMessage(m), listen: (fn) => worker.on('message', fn), terminate: () => worker.terminate() };
}

/** A connection to one worker: numbered calls, their events, and remote-object proxies. */
export class WorkerClient {
  constructor(worker, { owned = false } = {}) {
    this._ch = wrap(worker);
    this._owned = owned; // terminate the worker when its model is disposed
    this._next = 1;
    this._pending = new Map();
    this._ready = new Promise((resolve) => {
      this._ch.listen((msg) => {
        if (msg.type === 'ready') return resolve();
        this._pending.get(msg.id)?.(msg);
      });
    });
  }

  /** Replaces callbacks, signals and remote objects in call arguments with markers. */
  _encodeArgs(args, id, onEvent, signals) {
    const enc = (v) => {
      if (typeof v === 'function') {
        onEvent.push(v);
        return { __memba_callback: true };
      }
      if (v && typeof v === 'object') {
        if (v.__memba_handle) return { __memba_ref: v.__memba_handle };
        if (typeof AbortSignal !== 'undefined' && v instanceof AbortSignal) {
          signals.push(v);
          return { __memba_signal: true };
        }
        if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof URL) return v instanceof URL ? String(v) : v;
        if (Array.isArray(v)) return v.map(enc);
        const o = {};
        for (const [k, x] of Object.entries(v)) o[k] = enc(x);
        return o;
      }
      return v;
    };
    return args.map(enc);
  }

  _decode(v) {
    if (Array.isArray(v)) return v.map((x) => this._decode(x));
    if (v && typeof v === 'object' && !ArrayBuffer.isView(v)) {
      if (v.__memba) return this._proxy(v.__memba, v.handle, v.props);
      const o = {};
      for (const [k, x] of Object.entries(v)) o[k] = this._decode(x);
      return o;
    }
    return v;
  }

  /** Starts a call; returns { id, events: handler registration, settle: promise-like hooks }. */
  _start(target, method, args, iterate, onMsg) {
    const id = this._next++;
    const callbacks = [];
    const signals = [];
    const enc = this._encodeArgs(args, id, callbacks, signals);
    const signal = signals[0];
    if (signal?.aborted) throw abortError(signal);
    const onAbort = () => this._ch.post({ op: 'abort', id, reason: String(signal.reason?.message ?? signal.reason ?? 'aborted') });
    signal?.addEventListener('abort', onAbort, { once: true });
    this._pending.set(id, (msg) => {
      if (msg.type === 'event') {
        for (const cb of callbacks) cb(this._decode(msg.value));
        return;
      }
      if (msg.type === 'done' || msg.type === 'error') {
        this._pending.delete(id);
        signal?.removeEventListener('abort', onAbort);
      }
      onMsg(msg);
    });
    this._ch.post({ id, op: 'call', target, method, args: enc, iterate });
    return id;
  }

  _error(e) {
    const err = new MembaError(e.code, e.message);
    if (e.name === 'AbortError') err.name = 'AbortError';
    return err;
  }

  async call(target, method, args, proxyState) {
    await this._ready;
    return new Promise((resolve, reject) => {
      try {
        this._start(target, method, args, false, (msg) => {
          if (msg.props && proxyState) Object.assign(proxyState, msg.props);
          if (msg.type === 'error') reject(this._error(msg.error));
          else resolve(this._decode(msg.value));
        });
      } catch (err) {
        reject(err);
      }
    });
  }

  async *iterate(target, method, args) {
    await this._ready;
    const queue = [];
    let wake = null;
    this._start(target, method, args, true, (msg) => {
      queue.push(msg);
      wake?.();
    });
    for (;;) {
      if (queue.length === 0) await new Promise((r) => (wake = r));
      wake = null;
      const msg = queue.shift();
      if (msg.type === 'error') throw this._error(msg.error);
      if (msg.type === 'done') return;
      yield this._decode(msg.value);
    }
  }

  /** A stand-in for a worker-side object: methods are remote calls, SNAPSHOT are values. */
  _proxy(kind, handle, props) {
    const state = { ...props };
    const client = this;
    return new Proxy(
      {},
      {
        get(_, key) {
          if (key === '__memba_handle') return handle;
          if (key === 'then') return undefined; // not a thenable
          if (key === 'kind') return kind;
          if (SNAPSHOT[kind].includes(key)) return state[key];
          if (key === Symbol.asyncIterator || typeof key === 'symbol') return undefined;
          if (key === 'stream' || key === 'streamText') return (...args) => client.iterate(handle, key, args);
          if (kind === 'Mamba' && key === 'terminate') return () => client._ch.terminate();
          if (kind === 'Mamba' && key === 'dispose')
            return async () => {
              await client.call(handle, 'dispose', [], state);
              if (client._owned) client.terminate();
            };
          return (...args) => client.call(handle, key, args, state);
        },
      },
    );
  }

  /** Mamba.load inside the worker; returns the remote model. */
  load(source, opts) {
    return this.call(0, 'Mamba.load', [source, opts ?? {}]);
  }

  createRandom(shape, opts) {
    return this.call(0, 'Mamba.createRandom', [shape, opts ?? {}]);
  }

  terminate() {
    this._ch.terminate();
  }
}

/**
 * Loads a model in a worker. `worker`: a Worker running bindings/worker.js, or true to start one
 * (browsers: a module Worker; Node: a worker thread).
 */
export async function loadInWorker(source, opts = {}) {
  const { worker, ...rest } = opts;
  let w = worker;
  const owned = w === true || w === undefined;
  if (owned) {
    if (HAS_WORKER) {
      // written out literally at the call site: the form Vite and webpack detect, bundling
      // worker.js with its imports as a worker entry (esbuild and Rollup: README, "In the browser")
      w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    } else {
      // Node: a worker thread; the file name in a variable, so bundlers do not copy worker.js
      // as a plain asset without its imports, and node:worker_threads stays out of browser bundles
      const { Worker: NodeWorker } = await nodeImport('node:worker_threads');
      const here = import.meta.url; // not new URL(x, import.meta.url): webpack would try to bundle x
      w = new NodeWorker(new URL(NODE_WORKER_FILE, here));
    }
  }
  if (!w || typeof w.postMessage !== 'function') throw new MembaError(ErrorCodes.INVALID_ARGUMENT, 'worker must be a Worker running bindings/worker.js, or true');
  const client = new WorkerClient(w, { owned });
  try {
    return await client.load(source, rest);
  } catch (err) {
    if (owned) client.terminate();
    throw err;
  }
}
