// mamba.js: the public Mamba class: a Mamba-1 model in the C core (loaded from a checkpoint by
// load.js, or random), its forward passes, decoding with an explicit recurrent state
// (decode-state.js), generation and streaming of tokens and text, log-likelihood scoring,
// perplexity and multiple-choice evaluation (eval.js), tokenisation, Memba adapters (create,
// load, activate: adapter.js), fine-tuning (createTrainer: trainer.js), LIM inspection, and the
// backend choice (WASM, or each layer's scan on WebGPU: gpu.js). Every failure is a MembaError; cancelled calls reject with name 'AbortError'; after
// any error the model stays usable. Deliberately not here: file formats (checkpoint.js,
// safetensors.js, source.js), the C ABI (abi.js), sampling math (sampler.js), the Worker
// transport (remote.js, worker.js).
import { MembaError, ErrorCodes, throwIfAborted } from './errors.js';
import { Logits, Status } from './abi.js';
import { loadModel, randomModel, weightDtype } from './load.js';
import { weightBlockBytes } from './checkpoint.js';
import { openSource } from './source.js';
import { createSampler } from './sampler.js';
import {
  toIdBatch, toIdList, invalid, yieldToEventLoop, options, checkInt, checkBool, checkSignal, checkFunction,
  heapBytes, copyOut, describe, GrowableArray, textPieces, MAX_BATCH,
} from './ids.js';
import { DecodeState } from './decode-state.js';
import { chooseBackend, gpuRun, residentForward, residentCall } from './gpu.js';
import { Trainer } from './trainer.js';
import { Adapter, normalizeLora, normalizeLim, readAdapterFiles, cAdapterConfig } from './adapter.js';
import { perplexity, evaluate } from './eval.js';
import { modelCache } from './cache.js';

const BACKENDS = new Set(['auto', 'wasm', 'webgpu']);
const RESIDENCIES = new Set(['auto', 'wasm', 'gpu']);
export { AUTO_WEBGPU_MIN_D_INNER } from './gpu.js';

/** The largest model dimension the C core takes (src/core/weights.c). */
const MAX_DIM = 1 << 24;

/** log softmax(row)[id] in float64 (max-shifted, as the C core's xent). */
function logProb(row, id) {
  let max = -Infinity;
  for (let v = 0; v < row.length; v++) if (row[v] > max) max = row[v];
  let sum = 0;
  for (let v = 0; v < row.length; v++) sum += Math.exp(row[v] - max);
  return row[id] - max - Math.log(sum);
}

/** What a stream holds while it runs: its adapter (pinned) and decode state. Released when the
 * stream ends, returns early, or (FinalizationRegistry) is dropped unfinished. */
class StreamResources {
  constructor() {
    this.adapter = null;
    this.state = null;
  }

  hold(adapter) {
    this.adapter = adapter;
    adapter?._pin();
  }

  release() {
    this.state?.dispose();
    this.state = null;
    const a = this.adapter;
    this.adapter = null;
    a?._unpin();
    streams?.unregister(this);
  }
}

/** The backstop for streams read with next() and dropped: their resources go with them. */
const streams = typeof FinalizationRegistry === 'function' ? new FinalizationRegistry((res) => res.release()) : null;

/** Normalizers that act on each character alone, so tokenising a text in pieces cannot change them. */
const LOCAL_NORMALIZERS = new Set(['NFC', 'NFD', 'NFKC', 'NFKD', 'Lowercase']);

/** True when cutting a text before a word's space gives exactly the whole text's tokens: a
 * byte-level pre-tokenizer with the GPT-2 regex, and no normalizer that adds or strips text. */
function piecewiseExact(tk) {
  const json = tk?.tokenizer;
  const pre = json?.pre_tokenizer;
  if (!pre || pre.type !== 'ByteLevel' || pre.use_regex === false) return false;
  const norm = json.normalizer;
  if (!norm) return true;
  const list = norm.type === 'Sequence' ? norm.normalizers ?? [] : [norm];
  return list.every((n) => LOCAL_NORMALIZERS.has(n?.type));
}

export { toIdBatch, DecodeState };

export class Mamba {
  /** The files kept between loads: list(), delete(source), clear() (cache.js). */
  static cache = modelCache;

  /** @private use Mamba.load */
  constructor(engine, handle, config, tokenizer, info) {
    this._engine = engine;
    this._handle = handle;
    this._tokenizer = tokenizer;
    this._states = new Set();
    this._adapters = new Set();
    this._adapter = null; // the active adapter (JS view)
    this._bound = null; // the adapter the C model currently has active
    this._gpu = null; // the WebGPU backend (web/backend.js), when in use
    this._gpuSource = null; // a GPU-only model's weights until they are uploaded (gpu.js)
    this._disposed = false;
    this._lock = Promise.resolve();
    this._busy = 0;
    /** Normalised configuration (dModel, nLayer, vocabSize, dState, dConv, expand, dInner, dtRank, ...). */
    this.config = Object.freeze({ ...config });
    /** Where the model came from, its layout, the backend in use and memory figures. */
    this.info = Object.freeze(info);
  }

  /**
   * Loads a Mamba-1 checkpoint (safetensors, HF or original layout, F32/F16/BF16, sharded or not).
   * @param {string|URL|{files: object}|Map} source a directory (Node), a base URL, an HF hub id or in-memory files
   * @param {{ onProgress?: Function, signal?: AbortSignal, backend?: 'auto'|'wasm'|'webgpu',
   *           hubBase?: string, revision?: string, cache?: boolean|object, fetch?: Function,
   *           worker?: boolean|Worker, wasmBinary?: ArrayBuffer|Uint8Array, wasmUrl?: string|URL,
   *           gpu?: GPU, powerPreference?: string }} [opts] worker: run the engine in a Web Worker
   *   (see remote.js); wasmBinary / wasmUrl: engine.js; gpu / powerPreference: web/webgpu.js.
   *   The full list, one line each: LoadOptions in index.d.ts.
   */
  static async load(source, opts) {
    opts = options(opts, 'load');
    if (opts.worker) {
      // the engine in a Web Worker (or Node worker thread): same methods, all async
      const { loadInWorker } = await import('./remote.js');
      return loadInWorker(source, opts);
    }
    const { onProgress, signal, backend = 'auto', residency = 'auto' } = opts;
    if (!BACKENDS.has(backend)) throw invalid(`backend must be 'auto', 'wasm' or 'webgpu', got ${describe(backend)}`);
    if (!RESIDENCIES.has(residency)) throw invalid(`residency must be 'auto', 'wasm' or 'gpu', got ${describe(residency)}`);
    if (residency === 'gpu' && backend !== 'webgpu') throw invalid(`residency 'gpu' needs backend 'webgpu', got backend ${describe(backend)}`);
    checkFunction(onProgress, 'onProgress');
    throwIfAborted(checkSignal(signal));
    const { engine, handle, config, tokenizer, info, gpuSource = null } = await loadModel(source, opts);
    const model = new Mamba(engine, handle, config, tokenizer, info);
    model._gpuSource = gpuSource;
    try {
      await model._chooseBackend(backend, opts);
    } catch (err) {
      model.dispose();
      throw err;
    }
    return model;
  }

  /** Picks the backend ('auto' | 'wasm' | 'webgpu'): see gpu.js chooseBackend. */
  _chooseBackend(backend, opts) {
    return chooseBackend(this, backend, opts);
  }

  _setInfo(patch) {
    this.info = Object.freeze({ ...this.info, ...patch });
  }

  /**
   * Runs fn with the C activations to itself, after the calls queued before it. `adapter` (the
   * one the call was made with) is pinned until fn ends, so disposing it meanwhile does not
   * change what the call computes. A model disposed while the call waited is 'disposed'. Only a
   * call on a WebGPU model counts as busy: it awaits the GPU between layers, so synchronous calls
   * could land in the middle; a WASM call runs its C code in one synchronous piece.
   */
  async _exclusive(fn, adapter = null) {
    const prev = this._lock;
    let release;
    this._lock = new Promise((r) => (release = r));
    adapter?._pin();
    try {
      await prev;
      this._alive();
      const gpu = this._gpu !== null;
      if (gpu) this._busy++;
      try {
        return await fn();
      } finally {
        if (gpu) this._busy--;
      }
    } finally {
      adapter?._unpin();
      release();
    }
  }

  _checkNotBusy() {
    if (this._busy) throw new MembaError(ErrorCodes.BUSY, 'the model is running an asynchronous (WebGPU) call: await it before synchronous calls');
  }

  /**
   * A model of any Mamba-1 shape with deterministic pseudo-random weights (no checkpoint): for
   * benchmarks and stress tests. It runs like a real model but says nothing meaningful.
   * @param {{ dModel: number, nLayer: number, vocabSize: number, dState?: number, dConv?: number,
   *           expand?: number, dtRank?: number }} shape
   */
  static async createRandom(shape, opts) {
    const { seed = 1234, dtype: dt = 'fp32', threads } = options(opts, 'createRandom');
    const dtype = weightDtype(dt);
    checkInt(seed, 'seed', Number.MIN_SAFE_INTEGER);
    if (shape === null || typeof shape !== 'object') throw invalid(`createRandom takes a shape { dModel, nLayer, vocabSize, ... }, got ${describe(shape)}`);
    const dim = (name, dflt, max = MAX_DIM) => checkInt(shape[name] ?? dflt, name, 1, max);
    const dModel = dim('dModel');
    const expand = dim('expand', 2);
    const c = {
      dModel, nLayer: dim('nLayer'), vocabSize: dim('vocabSize'), dState: dim('dState', 16), dConv: dim('dConv', 4, 64),
      dInner: expand * dModel, dtRank: dim('dtRank', Math.ceil(dModel / 16)),
    };
    if (c.dInner > MAX_DIM) throw invalid(`expand * dModel = ${c.dInner} is more than ${MAX_DIM}`);
    heapBytes(`the random model's ${dtype} weights`, Number(weightBlockBytes({ ...c, tieEmbeddings: true, useBias: false, useConvBias: true }, dtype)));
    const { engine, handle, config, tokenizer, info } = await randomModel(shape, seed, dtype, { threads });
    return new Mamba(engine, handle, config, tokenizer, info);
  }

  _alive() {
    if (this._disposed) throw new MembaError(ErrorCodes.DISPOSED, 'this model has been disposed');
  }

  /**
   * Throws unsupported for a call that needs the weights in WASM on a model that holds them on
   * the GPU only (residency 'gpu'): adapters, training, decode states, hidden states.
   */
  _needWasm(what) {
    if (this._handle) return;
    const why = this.info.fallbackReason ? ` (${this.info.fallbackReason})` : '';
    throw new MembaError(ErrorCodes.UNSUPPORTED, `${what} needs the weights in WASM, and this model holds them on the GPU only (residency 'gpu')${why}`);
  }

  /** True when the model has a tokenizer (encode/decode work). */
  get hasTokenizer() {
    return this._tokenizer !== null;
  }

  /**
   * Full-sequence forward. ids: one sequence or an array of equal-length sequences.
   * @returns {Promise<{data: Float32Array, dims: number[], hidden?: {data: Float32Array, dims: number[]}}>}
   */
  async forward(ids, opts) {
    this._alive();
    const { outputHidden = false } = options(opts, 'forward');
    checkBool(outputHidden, 'outputHidden');
    const { vocabSize: V, dModel: d, nLayer } = this.config;
    const { flat, B, L } = toIdBatch(ids, V);
    // B * L * V floats of logits can pass 4 GB long before the input is long (21k tokens at a
    // 50k vocabulary): checked here, in float64, before anything is allocated
    const sizes = { logits: heapBytes('forward logits', B, L, V, 4), hidden: outputHidden ? heapBytes('forward hidden states', nLayer, B, L, d, 4) : 0 };
    const adapter = this._adapter; // the call uses the adapter active when it was made
    return this._exclusive(async () => {
      if (!outputHidden && !adapter && this._gpu) {
        const data = await residentForward(this, flat, B, L);
        if (data) return { data, dims: [B, L, V] };
      }
      if (!outputHidden && this._gpu) {
        const out = await gpuRun(this, flat, B, L, 0, () =>
          this._engine.withAlloc(sizes.logits, (lp) => {
            this._engine.mb_split_end(this._handle, Logits.ALL, lp, { what: 'forward' });
            return { data: copyOut(this._engine.f32(lp, B * L * V), 'forward'), dims: [B, L, V] };
          }), null, adapter);
        if (out) return out;
      }
      return this._forwardWasm(flat, B, L, sizes, adapter);
    }, adapter);
  }

  _forwardWasm(flat, B, L, sizes, adapter) {
    this._needWasm(sizes.hidden ? 'forward with outputHidden' : 'forward');
    const { vocabSize: V, dModel: d, nLayer } = this.config;
    const e = this._engine;
    const idp = e.putIds(flat);
    let lp = 0;
    let hp = 0;
    try {
      this._bind(adapter);
      lp = e.malloc(sizes.logits);
      if (sizes.hidden) hp = e.malloc(sizes.hidden);
      e.mb_forward(this._handle, idp, B, L, Logits.ALL, lp, hp, 0, { what: 'forward' });
      const out = { data: copyOut(e.f32(lp, B * L * V), 'forward'), dims: [B, L, V] };
      if (hp) out.hidden = { data: copyOut(e.f32(hp, nLayer * B * L * d), 'forward'), dims: [nLayer, B, L, d] };
      return out;
    } finally {
      e.free(idp);
      e.free(lp);
      e.free(hp);
    }
  }

  /**
   * Per-token log-probabilities: out[b][t] = log p(ids[b][t] | ids[b][<t]) for t >= from (0 before).
   * @returns {Promise<{data: Float32Array, dims: number[]}>}
   */
  async scoreTokens(ids, from = 1, opts) {
    this._alive();
    const { signal } = options(opts, 'scoreTokens');
    throwIfAborted(checkSignal(signal));
    const { flat, B, L } = toIdBatch(ids, this.config.vocabSize);
    checkInt(from, 'from (the first scored position)', 1, L);
    return this._score(flat, B, L, from, this._adapter, signal);
  }

  /** scoreTokens of validated ids with a given adapter (eval.js pins one for a whole run). */
  _score(flat, B, L, from, adapter, signal) {
    const e = this._engine;
    const bytes = heapBytes('score', B, L, 4);
    return this._exclusive(async () => {
      if (!adapter && this._gpu?.resident) { // the resident forward, the log-softmax here
        const r = await residentCall(this, (g) => this._scoreResident(g, flat, B, L, from, signal));
        if (r) return r;
      }
      const viaGpu = await gpuRun(this, flat, B, L, 0, (idp) =>
        e.withAlloc(bytes, (op) => {
          e.mb_split_end_score(this._handle, idp, from, op, { what: 'score' });
          return { data: copyOut(e.f32(op, B * L), 'score'), dims: [B, L] };
        }), null, adapter);
      if (viaGpu) return viaGpu;
      this._needWasm('scoreTokens');
      // a long sequence: through the recurrent state, a chunk at a time (any length; the
      // activations of one chunk only), when the adapter decodes exactly token by token
      if (B === 1 && L > this._scoreChunk && (!adapter || adapter.causal)) return this._scoreLong(flat, L, from, adapter, signal);
      const idp = e.putIds(flat);
      try {
        return e.withAlloc(bytes, (op) => {
          this._bind(adapter);
          e.mb_score(this._handle, idp, B, L, from, op, { what: 'score' });
          return { data: copyOut(e.f32(op, B * L), 'score'), dims: [B, L] };
        });
      } finally {
        e.free(idp);
      }
    }, adapter);
  }

  /**
   * scoreTokens on the resident GPU model `g`: forwards of chunks of the B sequences through a
   * GPU decode state (each chunk continues from the last; at most 32 MB of logits come back at a
   * time), the log-softmax of each position here in float64, as _scoreLong.
   */
  async _scoreResident(g, flat, B, L, from, signal) {
    const V = this.config.vocabSize;
    const chunk = Math.max(1, Math.min(L, Math.floor((32 << 20) / (4 * V * B))));
    const out = new Float32Array(B * L);
    const prev = new Float32Array(B * V); // logits of the position before the chunk
    const st = g.createState(B);
    try {
      for (let t0 = 0; t0 < L; t0 += chunk) {
        if (t0) {
          await yieldToEventLoop();
          throwIfAborted(signal);
        }
        const n = Math.min(chunk, L - t0);
        const ids = new Int32Array(B * n);
        for (let b = 0; b < B; b++) ids.set(flat.subarray(b * L + t0, b * L + t0 + n), b * n);
        const logits = await g.forward(ids, B, n, { state: st });
        for (let b = 0; b < B; b++) {
          for (let i = 0; i < n; i++) {
            const t = t0 + i;
            const row = i ? logits.subarray((b * n + i - 1) * V, (b * n + i) * V) : prev.subarray(b * V, (b + 1) * V);
            if (t >= from) out[b * L + t] = logProb(row, flat[b * L + t]);
          }
          prev.set(logits.subarray((b * n + n - 1) * V, (b * n + n) * V), b * V);
        }
      }
    } finally {
      g.destroyState(st);
    }
    return { data: out, dims: [B, L] };
  }

  /** Tokens per call above which scoreTokens of one sequence goes chunk by chunk (_scoreLong). */
  get _scoreChunk() {
    return this._scoreChunkOverride ?? 65536;
  }

  /**
   * scoreTokens of one long sequence: forward chunks of the ids through a decode state (each
   * continues from the last), log-softmax of each position's logits in float64 here. Equals the
   * one-call score within decode_vs_forward_rel (tests/robust-long-text.test.mjs).
   */
  async _scoreLong(flat, L, from, adapter, signal) {
    const e = this._engine;
    const V = this.config.vocabSize;
    const chunk = Math.max(1, Math.min(this._scoreChunk, Math.floor((32 << 20) / (4 * V)))); // <= 32 MB of logits
    const out = new Float32Array(L);
    this._bind(adapter);
    const state = e.mb_state_new(this._handle, 1, { what: 'score state' });
    const prev = new Float32Array(V); // logits of the position before the chunk
    const idp = e.malloc(chunk * 4);
    const lp = e.malloc(chunk * V * 4);
    try {
      {
        for (let t0 = 0; t0 < L; t0 += chunk) {
          if (t0) { // between chunks: the event loop runs and an abort lands
            await yieldToEventLoop();
            throwIfAborted(signal);
            this._bind(adapter);
          }
          const n = Math.min(chunk, L - t0);
          e.i32(idp, n).set(flat.subarray(t0, t0 + n));
          e.mb_forward(this._handle, idp, 1, n, Logits.ALL, lp, 0, state, { what: 'score' });
          const logits = e.f32(lp, n * V);
          for (let i = 0; i < n; i++) {
            const t = t0 + i; // position t is scored from the logits at t - 1
            if (t >= from) out[t] = logProb(i ? logits.subarray((i - 1) * V, i * V) : prev, flat[t]);
          }
          prev.set(logits.subarray((n - 1) * V, n * V));
        }
      }
    } finally {
      e.free(idp);
      e.free(lp);
      e.mb_state_free(state);
    }
    return { data: out, dims: [1, L] };
  }

  /**
   * Log-likelihood of a continuation given a context (spec section 4): the sum over the
   * continuation's tokens of log softmax(logits at the previous position).
   */
  async loglikelihood(contextIds, continuationIds) {
    this._alive();
    const ctx = toIdBatch(contextIds, this.config.vocabSize, 'contextIds');
    const cont = toIdBatch(continuationIds, this.config.vocabSize, 'continuationIds');
    if (ctx.B !== 1 || cont.B !== 1) throw invalid('loglikelihood takes one context and one continuation');
    const ids = new Int32Array(ctx.L + cont.L);
    ids.set(ctx.flat);
    ids.set(cont.flat, ctx.L);
    const { data } = await this.scoreTokens(ids, ctx.L);
    let sum = 0;
    for (let t = ctx.L; t < ids.length; t++) sum += data[t];
    return sum;
  }

  /**
   * Perplexity of a text (or one sequence of token ids) by the sliding-window recipe: windows of
   * at most seqLen tokens (default 1024, capped to the text) advancing by stride (default
   * seqLen); each token is scored once, conditioned on the window's earlier tokens (eval.js).
   * @param {{ seqLen?: number, stride?: number, signal?: AbortSignal,
   *           onProgress?: (p: { window: number, windows: number, tokens: number }) => void }} [opts]
   * @returns {Promise<{ perplexity: number, nll: number, tokens: number }>}
   */
  perplexity(textOrIds, opts) {
    return perplexity(this, textOrIds, opts);
  }

  /**
   * Multiple-choice accuracy of a task, scored as lm-evaluation-harness does (eval.js): items
   * { context, choices, gold } as an array or a JSONL string; choices carry their own leading
   * space (" answer"). acc_norm divides each log-likelihood by the choice's UTF-8 byte length.
   * @param {{ signal?: AbortSignal, limit?: number,
   *           onProgress?: (p: { item: number, items: number, acc: number, acc_norm: number }) => void }} [opts]
   * @returns {Promise<{ acc: number, acc_norm: number, n: number }>}
   */
  evaluate(task, opts) {
    return evaluate(this, task, opts);
  }

  /** Makes the C model use `adapter` (null = base) for the next call. */
  _bind(adapter) {
    if (this._bound === adapter) return;
    // the C core unmerges a merged adapter it switches away from (W - BA: not exactly W); the
    // adapter does it first, writing back the weights it copied at merge time
    this._bound?._unmergeExact();
    this._engine.mb_model_set_adapter(this._handle, adapter ? adapter._handle : 0, { what: 'set adapter' });
    this._bound = adapter;
  }

  /**
   * A recurrent decode state for `batch` sequences (see DecodeState), tied to the adapter active
   * now. Needs a causal adapter (no LIM, or LIM with chunk_size and cross_layer first/none).
   */
  createState(opts) {
    this._alive();
    this._needWasm('createState (a WASM decode state)');
    const { batch = 1 } = options(opts, 'createState');
    checkInt(batch, 'batch', 1, MAX_BATCH);
    if (this._adapter && !this._adapter.causal)
      throw new MembaError(ErrorCodes.UNSUPPORTED, 'the active adapter\'s LIM gate is not causal (chunks, or mean transfer): a recurrent state cannot reproduce it; generate() recomputes the full forward instead');
    return new DecodeState(this, batch, this._adapter);
  }

  /** The active adapter, or null for the base model. */
  get adapter() {
    return this._adapter;
  }

  /** Makes `adapter` (one of this model's) active; null returns to the base model. */
  setAdapter(adapter) {
    this._alive();
    if (adapter !== null && !(adapter instanceof Adapter && this._adapters.has(adapter) && !adapter._disposed))
      throw invalid('setAdapter takes an adapter of this model (or null)');
    this._adapter = adapter;
    this._bind(adapter);
  }

  /** fromFile: the settings came from adapter files, so what the C core refuses is bad_format */
  _newAdapter(lora, lim, name, { fromFile = false } = {}) {
    this._needWasm('an adapter');
    const e = this._engine;
    const codes = fromFile ? { [Status.ERR_INVALID_ARG]: ErrorCodes.BAD_FORMAT } : {};
    const handle = e.mb_adapter_new(this._handle, cAdapterConfig(lora, lim), { what: fromFile ? 'the adapter files give settings the engine refuses' : 'cannot create adapter', codes });
    const a = new Adapter(this, handle, lora, lim, name);
    this._adapters.add(a);
    return a;
  }

  /**
   * A new adapter for this model, active from now on: LoRA with PEFT initialisation (lora_A
   * kaiming-uniform, lora_B = 0, so it starts as an exact no-op) and/or a LIM gate.
   * @param {{ lora?: { r?: number, alpha?: number, targets?: string[], dropout?: number, rslora?: boolean } | null,
   *           lim?: boolean | object | null, seed?: number, name?: string }} [opts]
   */
  createAdapter(opts) {
    this._alive();
    const { lora = {}, lim = null, seed = 0, name = 'adapter' } = options(opts, 'createAdapter');
    const l = normalizeLora(lora, this.config);
    const m = normalizeLim(lim);
    if (!l && !m) throw invalid('an adapter needs LoRA, a LIM gate, or both');
    checkInt(seed, 'seed', Number.MIN_SAFE_INTEGER);
    if (typeof name !== 'string') throw invalid(`name must be a string, got ${describe(name)}`);
    const a = this._newAdapter(l, m, name);
    this._engine.mb_adapter_init(a._handle, seed >>> 0, { what: 'adapter init' });
    this.setAdapter(a);
    return a;
  }

  /**
   * Loads an adapter (HF PEFT adapter_config.json + adapter_model.safetensors, optional
   * memba_config.json) from a directory, URL, hub id or in-memory files; it becomes active.
   */
  async loadAdapter(source, opts) {
    this._alive();
    this._needWasm('loadAdapter');
    opts = options(opts, 'loadAdapter');
    const { signal, onProgress, name, allowNonFinite = false } = opts;
    checkFunction(onProgress, 'onProgress');
    checkBool(allowNonFinite, 'allowNonFinite');
    if (name !== undefined && typeof name !== 'string') throw invalid(`name must be a string, got ${describe(name)}`);
    throwIfAborted(checkSignal(signal));
    const src = await openSource(source, opts);
    const { lora, lim, tensors } = await readAdapterFiles(src, this.config, { signal, onProgress });
    this._alive();
    const a = this._newAdapter(lora, lim, name ?? src.description, { fromFile: true });
    if (lora) {
      try {
        a._setTensors(tensors, { allowNonFinite });
      } catch (err) {
        a.dispose();
        throw err;
      }
    }
    this.setAdapter(a);
    return a;
  }

  /**
   * A trainer for the active adapter (only its LoRA tensors are updated). Options: lr (1e-3),
   * betas ([0.9, 0.999]), eps (1e-8), weightDecay (0), clipNorm (0 = none), accumulate (1),
   * schedule ('constant' | { type: 'constant' | 'cosine', warmupSteps, totalSteps, minLr }), seed (0),
   * memoryBudget (256 MB: bytes of layer intermediates kept between forward and backward; layers
   * beyond it are recomputed, with the same numbers).
   */
  createTrainer(opts) {
    this._alive();
    opts = options(opts, 'createTrainer');
    if (!this._adapter) throw new MembaError(ErrorCodes.UNSUPPORTED, 'create or load an adapter first: the trainer trains the active adapter');
    return new Trainer(this, this._adapter, opts, toIdBatch);
  }

  /**
   * Runs the forward pass with the active adapter and returns what its LIM gate saw: per layer
   * the gate input v [B, L, E] and the membrane the layer started from [B, c, E] (the transferred one).
   */
  async inspect(ids) {
    this._alive();
    const a = this._adapter;
    if (!a || !a.config.lim) throw new MembaError(ErrorCodes.UNSUPPORTED, 'inspect needs an active adapter with a LIM gate');
    const { nLayer, dInner: E } = this.config;
    const { flat, B, L } = toIdBatch(ids, this.config.vocabSize);
    const c = a.config.lim.chunk_size ?? Math.max(1, Math.floor(L / a.config.lim.chunks));
    const sizes = { v: heapBytes('inspect (lim_v)', nLayer, B, L, E, 4), u: heapBytes('inspect (membrane)', nLayer, B, c, E, 4) };
    return this._exclusive(async () => this._inspect(a, flat, B, L, c, sizes), a);
  }

  _inspect(a, flat, B, L, c, sizes) {
    const { nLayer, dInner: E } = this.config;
    const e = this._engine;
    const idp = e.putIds(flat);
    let vp = 0;
    let up = 0;
    try {
      vp = e.malloc(sizes.v);
      up = e.malloc(sizes.u);
      this._bind(a);
      e.mb_inspect(this._handle, idp, B, L, vp, up, { what: 'inspect' });
      const layers = [];
      for (let l = 0; l < nLayer; l++)
        layers.push({
          limV: { data: copyOut(e.f32(vp + l * B * L * E * 4, B * L * E), 'inspect'), dims: [B, L, E] },
          membrane: { data: copyOut(e.f32(up + l * B * c * E * 4, B * c * E), 'inspect'), dims: [B, c, E] },
        });
      return { chunkLength: c, layers };
    } finally {
      e.free(idp);
      e.free(vp);
      e.free(up);
    }
  }

  /**
   * Generates tokens after a prompt. temperature 0 (default) = greedy.
   * @returns {Promise<number[]>} the new token ids
   */
  async generate(promptIds, opts) {
    const out = [];
    for await (const id of this.stream(promptIds, opts)) out.push(id);
    return out;
  }

  /**
   * The same as generate, as an async iterator of token ids (one per decode step). Options are
   * checked at the first next(). The generation keeps the adapter active at its start (disposing
   * it meanwhile frees it when the generation ends) and its decode state until it ends: after the
   * last token (before it is handed out), on return() / break, on an error, or, for a stream
   * dropped unfinished, when it is garbage-collected.
   * @param {{ maxNewTokens?: number, temperature?: number, topK?: number, topP?: number, minP?: number,
   *           repetitionPenalty?: number, noRepeatNgramSize?: number, seed?: number,
   *           signal?: AbortSignal, stopTokens?: number[] }} [opts] (the processors: sampler.js)
   * @returns {AsyncGenerator<number, void, void>}
   */
  stream(promptIds, opts) {
    const res = new StreamResources();
    const gen = this._generate(promptIds, opts, res);
    streams?.register(gen, res, res);
    return gen;
  }

  async *_generate(promptIds, opts, res) {
    try {
      this._alive();
      const o = options(opts, 'generate');
      const { maxNewTokens = 32 } = o;
      checkInt(maxNewTokens, 'maxNewTokens', 0);
      const signal = checkSignal(o.signal);
      const sample = createSampler(o);
      const stop = this._stopSet(o.stopTokens);
      const { flat, B } = toIdBatch(promptIds, this.config.vocabSize, 'promptIds');
      if (B !== 1) throw invalid('generate takes one prompt');
      throwIfAborted(signal);
      if (maxNewTokens === 0) return;
      const adapter = this._adapter; // the whole generation uses the adapter active at its start
      res.hold(adapter);
      if (adapter && !adapter.causal) {
        yield* this._generateFull(flat, adapter, maxNewTokens, sample, stop, signal, res);
        return;
      }
      const history = Array.from(flat); // prompt + generated: what the repetition processors see
      let left = maxNewTokens;
      // where the ids come from: the resident WebGPU model (its state stays on the GPU) when there
      // is one, then WASM, which goes on from the history if the GPU source ends (it failed)
      const sources = [];
      if (!adapter && this._gpu?.resident) {
        const greedy = (o.temperature ?? 0) === 0 && (o.repetitionPenalty ?? 1) === 1 && (o.noRepeatNgramSize ?? 0) === 0;
        sources.push(() => this._decodeResident(history, sample, greedy, res, () => left));
      }
      sources.push(() => this._decodeWasm(history, sample, adapter, res));
      for (const source of sources) {
        for await (const id of source()) {
          await yieldToEventLoop();
          throwIfAborted(signal);
          this._alive();
          history.push(id);
          left--;
          if (stop.has(id) || left === 0) {
            res.release(); // the last token: nothing stays held while the caller has it
            yield id;
            return;
          }
          yield id;
        }
        res.state?.dispose();
        res.state = null;
      }
    } finally {
      res.release();
    }
  }

  /** Decoding in WASM: a decode state prefilled with `history`, then one step per id (as _decodeResident). */
  async *_decodeWasm(history, sample, adapter, res) {
    this._needWasm('generate');
    const state = new DecodeState(this, 1, adapter, { internal: true });
    res.state = state;
    let logits = await this._exclusive(() => this._prefill(state, Int32Array.from(history)), adapter);
    for (;;) {
      const id = sample(logits, history);
      yield id;
      logits = await this._exclusive(() => state._run(Int32Array.of(id), 1, 1), adapter);
    }
  }

  /**
   * Decoding on the resident GPU model (gpu.js residentCall): yields each next id, with the GPU
   * state fed everything in `history` (the caller pushes each id before the next is asked for).
   * Greedy takes the argmax on the GPU and runs chains of steps with one readback each
   * (resident.js submitGreedy): 1, 2, 4, ... up to the resident model's decodeChunk, never past
   * `wanted()` (the ids the caller still takes), each chain submitted before the one before it is
   * read back, so the GPU never waits for the host. Otherwise the logits come back every step and
   * `sample` picks. Ends (without an error) when the GPU fails: the model is then on WASM, and
   * the caller goes on from the history.
   */
  async *_decodeResident(history, sample, greedy, res, wanted) {
    const gpu = this._gpu.resident;
    const st = gpu.createState(1);
    res.state = { dispose: () => gpu.destroyState(st) };
    let r = await this._exclusive(() => residentCall(this, (g) => g.forward(Int32Array.from(history), 1, history.length, { last: true, state: st })));
    if (!r) return;
    let id = sample(r, history);
    yield id;
    if (greedy) {
      let chunk = 1;
      let first = Uint32Array.of(id); // the first chain starts from this id, the others from the GPU
      let inFlight = null; // { n, ids: Promise } submitted, not yet read back
      const submit = (g, n) => {
        const ids = g.submitGreedy(st, n, first);
        ids.catch(() => {}); // a chain abandoned with the generation (or after a failure) rejects unseen
        first = null;
        chunk *= 2;
        return { n, ids };
      };
      for (;;) {
        const out = await this._exclusive(() => residentCall(this, async (g) => {
          const cur = inFlight ?? submit(g, Math.max(1, Math.min(chunk, g.decodeChunk, wanted())));
          const more = wanted() - cur.n; // ids still wanted after this chain's
          const next = more > 0 ? submit(g, Math.min(chunk, g.decodeChunk, more)) : null;
          return { ids: await cur.ids, next };
        }));
        if (!out) return;
        inFlight = out.next;
        for (const x of out.ids) yield x;
      }
    }
    for (;;) {
      r = await this._exclusive(() => residentCall(this, (g) => g.step(st, Uint32Array.of(id))));
      if (!r) return;
      id = sample(r, history);
      yield id;
    }
  }

  /** Generation with a non-causal LIM gate (paper chunks, or mean transfer): it depends on the
   * whole sequence, so exact generation recomputes the full forward for every new token (O(L)). */
  async *_generateFull(flat, adapter, maxNewTokens, sample, stop, signal, res) {
    const ids = Array.from(flat);
    for (let i = 0; i < maxNewTokens; i++) {
      await yieldToEventLoop();
      throwIfAborted(signal);
      this._alive();
      const id = sample(await this._exclusive(() => this._lastLogits(Int32Array.from(ids), adapter), adapter), ids);
      if (stop.has(id) || i + 1 === maxNewTokens) {
        res.release();
        yield id;
        return;
      }
      yield id;
      ids.push(id);
    }
  }

  /** The ids generation stops after: stopTokens (ids of this vocabulary), or the config's EOS. */
  _stopSet(stopTokens) {
    if (stopTokens === undefined || stopTokens === null)
      return new Set(Number.isInteger(this.config.eosTokenId) ? [this.config.eosTokenId] : []);
    const list = stopTokens instanceof Set ? Array.from(stopTokens) : stopTokens;
    return new Set(toIdList(list, this.config.vocabSize, 'stopTokens'));
  }

  /**
   * Like stream, as text: yields the new text as it grows (a character split over byte-level
   * tokens comes out once its last byte has arrived). `prompt` is text or token ids.
   */
  async *streamText(prompt, opts) {
    this._alive();
    if (!this._tokenizer) throw new MembaError(ErrorCodes.UNSUPPORTED, 'streamText needs a model with a tokenizer.json');
    const ids = typeof prompt === 'string' ? this.encode(prompt) : prompt;
    const out = [];
    let printed = '';
    for await (const id of this.stream(ids, opts)) {
      out.push(id);
      const text = this.decode(out);
      const safe = text.endsWith('\uFFFD') ? text.slice(0, -1) : text;
      if (safe.length > printed.length && safe.startsWith(printed)) {
        yield safe.slice(printed.length);
        printed = safe;
      }
    }
    const text = out.length ? this.decode(out) : '';
    if (text.length > printed.length && text.startsWith(printed)) yield text.slice(printed.length);
  }

  /** Prefill of a fresh decode state: the prompt's scans on the GPU when in use (the state's
   * SSM and conv parts come back to WASM), else WASM. Returns the last position's logits. */
  async _prefill(state, flat) {
    const V = this.config.vocabSize;
    const e = this._engine;
    const viaGpu = await gpuRun(this, flat, 1, flat.length, state._handle, () => {
      e.mb_split_end(this._handle, Logits.LAST, state._logits, { what: 'prefill' });
      return e.f32(state._logits, V).slice();
    }, () => state._reset(), state._adapter);
    return viaGpu ?? state._run(flat, 1, flat.length);
  }

  /** Logits [V] of the last position of one sequence, from a full forward with `adapter`. */
  _lastLogits(flat, adapter) {
    this._needWasm('generate');
    const e = this._engine;
    const V = this.config.vocabSize;
    const idp = e.putIds(flat);
    try {
      return e.withAlloc(V * 4, (lp) => {
        this._bind(adapter);
        e.mb_forward(this._handle, idp, 1, flat.length, Logits.LAST, lp, 0, 0, { what: 'forward' });
        return e.f32(lp, V).slice();
      });
    } finally {
      e.free(idp);
    }
  }

  /** Text -> token ids (needs a tokenizer.json with the model). Long texts are tokenised in
   * pieces (see _encodeIds): the same ids, without the tokenizer ever seeing megabytes at once. */
  encode(text) {
    return Array.from(this._encodeIds(text));
  }

  /**
   * Text -> token ids as an Int32Array, what fit and perplexity use: a text of more than
   * 2 x TEXT_PIECE_CHARS characters is tokenised in pieces (ids.js textPieces: cut before a space
   * that starts a word, which for byte-level BPE tokenizers gives exactly the whole text's ids)
   * appended to one growing Int32Array; with any other kind of tokenizer it is tokenised whole.
   */
  _encodeIds(text, pieceChars) {
    this._alive();
    if (!this._tokenizer) throw new MembaError(ErrorCodes.UNSUPPORTED, 'this model was loaded without a tokenizer.json');
    if (typeof text !== 'string') throw invalid(`encode takes a string, got ${describe(text)}`);
    if (text.length === 0) return new Int32Array(0);
    const tk = this._tokenizer;
    const encode = (piece) => tk.encode(piece, { add_special_tokens: false }).ids;
    if (!piecewiseExact(tk)) return Int32Array.from(encode(text));
    const out = new GrowableArray(Int32Array, Math.ceil(text.length / 4));
    for (const piece of textPieces(text, pieceChars)) out.append(encode(piece));
    return out.result();
  }

  /** Token ids -> text (special tokens skipped). ids: an array of token ids of this model. */
  decode(ids) {
    this._alive();
    if (!this._tokenizer) throw new MembaError(ErrorCodes.UNSUPPORTED, 'this model was loaded without a tokenizer.json');
    const arr = toIdList(ids, this._decodeLimit(), 'decode: ids');
    if (arr.length === 0) return '';
    return this._tokenizer.decode(arr, { skip_special_tokens: true });
  }

  /** Ids decode takes: below the model's vocabulary size or the tokenizer's, the larger (a
   * tokenizer may know more ids than the embedding has rows, and the embedding may be padded). */
  _decodeLimit() {
    if (this._decodeIds === undefined) {
      const json = this._tokenizer.tokenizer;
      let n = 0;
      const vocab = json?.model?.vocab;
      if (Array.isArray(vocab)) n = vocab.length;
      else if (vocab && typeof vocab === 'object') for (const id of Object.values(vocab)) if (id >= n) n = id + 1;
      for (const t of json?.added_tokens ?? []) if (Number.isInteger(t?.id) && t.id >= n) n = t.id + 1;
      this._decodeIds = Math.max(n, this.config.vocabSize);
    }
    return this._decodeIds;
  }

  /** Bytes held in the WASM heap by weights, cached activations and live decode states. */
  memory() {
    this._alive();
    if (!this._handle) return { weights: 0, activations: 0, states: 0 }; // residency 'gpu': nothing in WASM
    const e = this._engine;
    let states = 0;
    for (const s of this._states) states += s._bytes;
    return { weights: e.mb_model_weight_bytes(this._handle), activations: e.mb_model_activation_bytes(this._handle), states };
  }

  /** Frees the model, its states and adapters; later calls throw 'disposed'. Safe to call twice. */
  dispose() {
    if (this._disposed) return;
    this._disposed = true;
    this._gpuSource = null;
    for (const s of Array.from(this._states)) s.dispose();
    for (const a of Array.from(this._adapters)) {
      a._disposed = true;
      a._free({ model: true }); // even while pinned: a generation using it now ends with 'disposed'
    }
    this._adapter = null;
    this._gpu?.destroy();
    this._gpu = null;
    if (this._handle) this._engine.mb_model_free(this._handle);
    this._handle = 0;
  }

  [Symbol.dispose]() {
    this.dispose();
  }
}
