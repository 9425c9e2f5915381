// remote.js: the page's side of a worker-hosted engine. `Mamba.load(source, { worker })` (or
// loadInWorker) returns an object with the same methods as a local Mamba, each answered by the
// worker (worker.js) so the page stays responsive: every method returns a promise (await works
// the same on both), `stream` is an async iterator, `onProgress` callbacks and `signal`s work
// across the boundary (abort lands within one training step), errors arrive as MembaError with
// their code. Adapters, trainers and decode states come back as remote objects of the same shape.
// Every call settles: a worker that is terminated, disposed with its model, crashes or exits
// rejects every pending and later call ('disposed', or 'internal' with the reason).
// Deliberately not here: anything that runs the model.
import { MembaError, ErrorCodes, abortError, throwIfAborted } from './errors.js';
import { SNAPSHOT, OPTIONS_ARG, isPlainObject } from './protocol.js';
import { HAS_WORKER } from './env.js';
import { nodeImport } from './node-import.js';
import { filesBesideCode, inlineWorker } from './assets.js';

const invalid = (message) => new MembaError(ErrorCodes.INVALID_ARGUMENT, message);

const NODE_WORKER_FILE = './worker.js';

/**
 * Wraps a browser Worker or a Node worker_threads Worker into { post, listen, onFail, terminate }.
 * onFail(fn) calls fn(reason, fatal) when the worker is gone (Node: 'error', 'exit'; browser:
 * 'error', which also covers a module that fails to load) or a message could not be read
 * ('messageerror', not fatal: the worker still runs, but the calls waiting lost their answer).
 */
function wrap(worker) {
  const post = (m) => worker.postMessage(m);
  const terminate = () => {
    try {
      Promise.resolve(worker.terminate()).catch(() => {});
    } catch { /* already gone */ }
  };
  if (typeof worker.addEventListener === 'function' && typeof worker.on !== 'function')
    return {
      post, terminate,
      listen: (fn) => worker.addEventListener('message', (e) => fn(e.data)),
      onFail: (fn) => {
        worker.addEventListener('error', (e) => fn(`the worker failed: ${e?.message || 'an uncaught error (or its script did not load)'}${e?.filename ? ` (${e.filename}:${e.lineno})` : ''}`, true));
        worker.addEventListener('messageerror', () => fn('a message from the worker could not be deserialised', false));
      },
    };
  return {
    post, terminate,
    listen: (fn) => worker.on('message', fn),
    onFail: (fn) => {
      worker.on('error', (err) => fn(`the worker failed: ${err?.message ?? err}`, true));
      worker.on('exit', (code) => fn(`the worker exited (code ${code})`, true));
      worker.on('messageerror', () => fn('a message from the worker could not be deserialised', false));
    },
  };
}

/** Values structured clone copies as they are (walking their fields would mangle them). */
function clonesNatively(v) {
  return ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof Date || v instanceof RegExp ||
    (typeof Blob !== 'undefined' && v instanceof Blob); // File is a Blob
}

/**
 * Replaces callbacks, signals and remote objects in call arguments with markers; plain objects,
 * arrays and Maps are walked, values that structured clone copies (bytes, Blob, File, ...) are
 * passed as they are. A value that cannot cross (a Symbol) is an invalid_argument here.
 */
function encodeArgs(args, callbacks, signals) {
  const enc = (v) => {
    if (typeof v === 'function') {
      callbacks.push(v);
      return { __memba_callback: callbacks.length - 1 };
    }
    if (typeof v === 'symbol') throw invalid(`${String(v)} cannot be sent to the worker`);
    if (v === null || typeof v !== 'object') return v;
    if (v.__memba_handle) return { __memba_ref: v.__memba_handle };
    if (typeof AbortSignal !== 'undefined' && v instanceof AbortSignal) {
      signals.push(v);
      return { __memba_signal: true };
    }
    if (v instanceof URL) return String(v);
    if (clonesNatively(v)) return v;
    if (Array.isArray(v)) return v.map(enc);
    if (v instanceof Map) {
      const m = new Map();
      for (const [k, x] of v) m.set(enc(k), enc(x));
      return m;
    }
    const o = {}; // a plain object, or any other object as its own fields (what structured clone would send)
    for (const [k, x] of Object.entries(v)) o[k] = enc(x);
    return o;
  };
  return args.map(enc);
}

/** An async iterator that fails at once (a stream asked of a disposed object). */
async function* failing(err) {
  throw err;
}

/** A connection to one worker: numbered calls, their events, and remote-object proxies. */
export class WorkerClient {
  constructor(worker, { owned = false } = {}) {
    this._ch = wrap(worker);
    this._owned = owned; // terminate the worker when its model is disposed
    this._next = 1;
    this._pending = new Map(); // call id -> { onMsg(msg), fail(err) }
    this._dead = null; // once the worker is gone: the error every call rejects with
    this._disposed = new Set(); // handles disposed from this side: later calls reject at once
    this._ready = new Promise((resolve, reject) => (this._readyHooks = { resolve, reject }));
    this._ready.catch(() => {}); // a worker that dies before 'ready' fails the calls waiting on it
    this._ch.listen((msg) => {
      if (msg?.type === 'ready') return this._readyHooks.resolve();
      this._pending.get(msg?.id)?.onMsg(msg);
    });
    this._ch.onFail((reason, fatal) => {
      const err = new MembaError(ErrorCodes.INTERNAL, reason);
      if (fatal) this._end(err);
      else for (const p of [...this._pending.values()]) p.fail(err);
    });
  }

  /** The worker is gone (or given up): every pending and later call rejects with `err`. */
  _end(err) {
    if (this._dead) return;
    this._dead = err;
    this._readyHooks.reject(err);
    for (const p of [...this._pending.values()]) p.fail(err);
    this._pending.clear();
    if (this._owned) this._ch.terminate(); // a browser worker may survive its own 'error'
  }

  _decode(v) {
    if (Array.isArray(v)) return v.map((x) => this._decode(x));
    if (isPlainObject(v)) {
      if (v.__memba) return this._proxy(v.__memba, v.handle, v.props);
      const o = {};
      for (const [k, x] of Object.entries(v)) o[k] = this._decode(x);
      return o;
    }
    return v;
  }

  /** Checks and encodes a call's arguments on this side: { enc, callbacks, signal }. */
  _prepare(kind, method, args) {
    const at = OPTIONS_ARG[kind]?.[method];
    if (at !== undefined && args[at] === null) {
      args = args.slice(); // null options mean the defaults, as in the local API
      args[at] = undefined;
    }
    const callbacks = [];
    const signals = [];
    const enc = encodeArgs(args, callbacks, signals);
    const signal = signals[0];
    throwIfAborted(signal);
    return { enc, callbacks, signal };
  }

  /** Resolves when the worker is ready; rejects when it dies first or `signal` fires. */
  _whenReady(signal) {
    if (this._dead) return Promise.reject(this._dead);
    if (!signal) return this._ready;
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(abortError(signal));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      this._ready.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  }

  /**
   * Sends a prepared call; `onMsg` gets its 'yield' / 'done' / 'error' messages, `fail` an error of
   * this side (the worker gone, a message that could not be sent, a callback that threw). Returns its id.
   */
  _send({ enc, callbacks, signal }, target, method, iterate, onMsg, fail) {
    const id = this._next++;
    let thrown = null; // an error thrown by one of the caller's callbacks: the call fails with it
    const onAbort = () => this._post({ op: 'abort', id, reason: String(signal.reason?.message ?? signal.reason ?? 'aborted') });
    const cleanup = () => {
      this._pending.delete(id);
      signal?.removeEventListener('abort', onAbort);
    };
    const entry = {
      onMsg: (msg) => {
        if (msg.type === 'event') {
          if (thrown) return;
          const cbs = Number.isInteger(msg.cb) ? [callbacks[msg.cb]] : callbacks;
          try {
            for (const cb of cbs) cb?.(this._decode(msg.value));
          } catch (err) {
            thrown = err; // as a throwing callback fails a local call: stop the worker's, then reject with it
            this._post({ op: 'abort', id, reason: String(err?.message ?? err) });
          }
          return;
        }
        const last = msg.type === 'done' || msg.type === 'error';
        if (last) cleanup();
        if (!thrown) return onMsg(msg);
        if (!last) return; // values after a callback threw: nobody takes them
        if (msg.type === 'done') this._discard(msg.value);
        fail(thrown);
      },
      fail: (err) => {
        cleanup();
        fail(err);
      },
    };
    if (this._dead) {
      fail(this._dead);
      return id;
    }
    this._pending.set(id, entry);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      this._ch.post({ id, op: 'call', target, method, args: enc, iterate });
    } catch (err) {
      // e.g. a DataCloneError: a value structured clone cannot copy (a class with private state, a WeakMap)
      entry.fail(err?.name === 'DataCloneError' ? invalid(`an argument of ${method} cannot be sent to the worker: ${err.message}`) : err);
    }
    return id;
  }

  _post(msg) {
    if (this._dead) return;
    try {
      this._ch.post(msg);
    } catch { /* the worker is going away: its exit event settles the calls */ }
  }

  /** A result nobody will receive (its call failed on this side): dispose the remote object. */
  _discard(value) {
    if (value?.__memba) this._post({ id: this._next++, op: 'call', target: value.handle, method: 'dispose', args: [] });
  }

  _error(e) {
    const err = new MembaError(e.code, e.message);
    if (e.name === 'AbortError') err.name = 'AbortError';
    return err;
  }

  /** One call of `method` on the worker-side object `target` (0: the Mamba class) of class `kind`. */
  async call(target, method, args, proxyState, kind = 'Mamba') {
    const prepared = this._prepare(kind, method.replace(/^Mamba\./, ''), args);
    await this._whenReady(prepared.signal);
    return new Promise((resolve, reject) => {
      this._send(prepared, target, method, false, (msg) => {
        if (msg.props && proxyState) Object.assign(proxyState, msg.props);
        if (msg.type === 'error') reject(this._error(msg.error));
        else resolve(this._decode(msg.value));
      }, reject);
    });
  }

  /** A streaming call: yields the worker's values; stopping early aborts the worker's loop. */
  async *iterate(target, method, args, kind = 'Mamba') {
    const prepared = this._prepare(kind, method, args);
    await this._whenReady(prepared.signal);
    const queue = [];
    let wake = null;
    let finished = false;
    const push = (msg) => {
      queue.push(msg);
      wake?.();
    };
    const id = this._send(prepared, target, method, true, push, (err) => push({ type: 'fail', err }));
    try {
      for (;;) {
        if (queue.length === 0) await new Promise((r) => (wake = r));
        wake = null;
        const msg = queue.shift();
        if (msg.type === 'fail') {
          finished = true;
          throw msg.err;
        }
        if (msg.type === 'error') {
          finished = true;
          throw this._error(msg.error);
        }
        if (msg.type === 'done') {
          finished = true;
          return;
        }
        yield this._decode(msg.value);
      }
    } finally {
      if (!finished && this._pending.has(id)) {
        // the caller stopped early (break, return, a throw in its loop): stop the worker's loop too
        this._pending.delete(id);
        this._post({ op: 'abort', id, reason: 'the stream was closed' });
      }
    }
  }

  /** A stand-in for a worker-side object: methods are remote calls, SNAPSHOT are values. */
  _proxy(kind, handle, props) {
    const state = { ...props };
    const client = this;
    const gone = () => new MembaError(ErrorCodes.DISPOSED, `this ${kind === 'Mamba' ? 'model' : kind} has been disposed`);
    const dispose = async () => {
      if (client._disposed.has(handle)) return; // twice is fine, as for a local object
      client._disposed.add(handle);
      try {
        if (!client._dead) await client.call(handle, 'dispose', [], state, kind);
      } finally {
        // the worker ends with its model: whatever is still pending there is disposed with it
        if (kind === 'Mamba' && client._owned) client._end(new MembaError(ErrorCodes.DISPOSED, 'the model has been disposed (its worker was stopped)'));
      }
    };
    return new Proxy(
      {},
      {
        get(_, key) {
          if (key === '__memba_handle') return handle;
          if (key === 'then') return undefined; // not a thenable
          if (key === 'kind') return kind;
          if (SNAPSHOT[kind].includes(key)) return state[key];
          if (key === Symbol.asyncIterator || typeof key === 'symbol') return undefined;
          if (key === 'dispose') return dispose;
          if (kind === 'Mamba' && key === 'terminate') return () => client.terminate();
          const disposed = () => client._disposed.has(handle);
          if (key === 'stream' || key === 'streamText')
            return (...args) => (disposed() ? failing(gone()) : client.iterate(handle, key, args, kind));
          return (...args) => (disposed() ? Promise.reject(gone()) : client.call(handle, key, args, state, kind));
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

  /** Stops the worker: every pending and later call rejects with 'disposed'. */
  terminate() {
    this._end(new MembaError(ErrorCodes.DISPOSED, 'the worker was terminated'));
    this._ch.terminate();
  }
}

/**
 * Loads a model in a worker. `worker`: a Worker running bindings/worker.js, or true to start one
 * (browsers: a module Worker; Node: a worker thread). The start-up honours `signal` and fails
 * (and stops a worker it started) when the worker does not start.
 */
export async function loadInWorker(source, opts = {}) {
  if (opts === null || typeof opts !== 'object') throw invalid('options must be an object');
  const { worker, ...rest } = opts;
  throwIfAborted(rest.signal);
  encodeArgs([source, rest], [], []); // what cannot cross fails before a worker is started
  let w = worker;
  let release = () => {};
  const owned = w === true || w === undefined;
  if (owned) {
    if (HAS_WORKER && filesBesideCode()) {
      // written out literally at the call site: the form Vite and webpack detect, bundling
      // worker.js with its imports as a worker entry
      w = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    } else if (HAS_WORKER) {
      ({ worker: w, release } = await inlineWorker()); // esbuild, Rollup: worker.js was not copied
    } else {
      // Node: a worker thread; the file name in a variable, so bundlers do not copy worker.js
      // as a plain asset without its imports, and node:worker_threads stays out of browser bundles
      const { Worker: NodeWorker } = await nodeImport('node:worker_threads');
      const here = import.meta.url; // not new URL(x, import.meta.url): webpack would try to bundle x
      w = new NodeWorker(new URL(NODE_WORKER_FILE, here));
    }
  }
  if (!w || typeof w.postMessage !== 'function') throw invalid('worker must be a Worker running bindings/worker.js, or true');
  const client = new WorkerClient(w, { owned });
  try {
    return await client.load(source, rest);
  } catch (err) {
    if (owned) client.terminate();
    throw err;
  } finally {
    release();
  }
}
