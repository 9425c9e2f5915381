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
import { Logits } from './abi.js';
import { loadModel, randomModel } from './load.js';
import { openSource } from './source.js';
import { createSampler } from './sampler.js';
import { toIdBatch, invalid, yieldToEventLoop } from './ids.js';
import { DecodeState } from './decode-state.js';
import { chooseBackend, gpuRun } from './gpu.js';
import { Trainer } from './trainer.js';
import { Adapter, normalizeLora, normalizeLim, readAdapterFiles, cAdapterConfig } from './adapter.js';
import { perplexity, evaluate } from './eval.js';
import { modelCache } from './cache.js';

const BACKENDS = new Set(['auto', 'wasm', 'webgpu']);
export { AUTO_WEBGPU_MIN_D_INNER } from './gpu.js';

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
  static async load(source, opts = {}) {
    if (opts === null || typeof opts !== 'object') throw invalid('options must be an object');
    if (opts.worker) {
      // the engine in a Web Worker (or Node worker thread): same methods, all async
      const { loadInWorker } = await import('./remote.js');
      return loadInWorker(source, opts);
    }
    const { onProgress, signal, backend = 'auto' } = opts;
    if (!BACKENDS.has(backend)) throw invalid(`backend must be 'auto', 'wasm' or 'webgpu', got ${backend}`);
    if (onProgress !== undefined && typeof onProgress !== 'function') throw invalid('onProgress must be a function');
    throwIfAborted(signal);
    const { engine, handle, config, tokenizer, info } = await loadModel(source, opts);
    const model = new Mamba(engine, handle, config, tokenizer, info);
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

  /** Runs fn with the C activations to itself (GPU calls await between layers). */
  async _exclusive(fn) {
    const prev = this._lock;
    let release;
    this._lock = new Promise((r) => (release = r));
    await prev;
    this._busy++;
    try {
      return await fn();
    } finally {
      this._busy--;
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
  static async createRandom(shape, { seed = 1234 } = {}) {
    const { engine, handle, config, tokenizer, info } = await randomModel(shape, seed);
    return new Mamba(engine, handle, config, tokenizer, info);
  }

  _alive() {
    if (!this._handle) throw new MembaError(ErrorCodes.DISPOSED, 'this model has been disposed');
  }

  /** True when the model has a tokenizer (encode/decode work). */
  get hasTokenizer() {
    return this._tokenizer !== null;
  }

  /**
   * Full-sequence forward. ids: one sequence or an array of equal-length sequences.
   * @returns {Promise<{data: Float32Array, dims: number[], hidden?: {data: Float32Array, dims: number[]}}>}
   */
  async forward(ids, { outputHidden = false } = {}) {
    this._alive();
    const { flat, B, L } = toIdBatch(ids, this.config.vocabSize);
    const adapter = this._adapter; // the call uses the adapter active when it was made
    return this._exclusive(async () => {
      if (!outputHidden && this._gpu) {
        const V = this.config.vocabSize;
        const out = await gpuRun(this, flat, B, L, 0, () =>
          this._engine.withAlloc(B * L * V * 4, (lp) => {
            this._engine.mb_split_end(this._handle, Logits.ALL, lp, { what: 'forward' });
            return { data: this._engine.f32(lp, B * L * V).slice(), dims: [B, L, V] };
          }), null, adapter);
        if (out) return out;
      }
      return this._forwardWasm(flat, B, L, outputHidden, adapter);
    });
  }

  _forwardWasm(flat, B, L, outputHidden, adapter) {
    const { vocabSize: V, dModel: d, nLayer } = this.config;
    const e = this._engine;
    const idp = e.putIds(flat);
    let lp = 0;
    let hp = 0;
    try {
      this._bind(adapter);
      lp = e.malloc(B * L * V * 4);
      if (outputHidden) hp = e.malloc(nLayer * B * L * d * 4);
      e.mb_forward(this._handle, idp, B, L, Logits.ALL, lp, hp, 0, { what: 'forward' });
      const out = { data: e.f32(lp, B * L * V).slice(), dims: [B, L, V] };
      if (outputHidden) out.hidden = { data: e.f32(hp, nLayer * B * L * d).slice(), dims: [nLayer, B, L, d] };
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
  async scoreTokens(ids, from = 1) {
    this._alive();
    const { flat, B, L } = toIdBatch(ids, this.config.vocabSize);
    if (!Number.isInteger(from) || from < 1 || from > L) throw invalid(`from must be an integer in [1, ${L}]`);
    return this._score(flat, B, L, from, this._adapter);
  }

  /** scoreTokens of validated ids with a given adapter (eval.js pins one for a whole run). */
  _score(flat, B, L, from, adapter) {
    const e = this._engine;
    return this._exclusive(async () => {
      const viaGpu = await gpuRun(this, flat, B, L, 0, (idp) =>
        e.withAlloc(B * L * 4, (op) => {
          e.mb_split_end_score(this._handle, idp, from, op, { what: 'score' });
          return { data: e.f32(op, B * L).slice(), dims: [B, L] };
        }), null, adapter);
      if (viaGpu) return viaGpu;
      const idp = e.putIds(flat);
      try {
        return e.withAlloc(B * L * 4, (op) => {
          this._bind(adapter);
          e.mb_score(this._handle, idp, B, L, from, op, { what: 'score' });
          return { data: e.f32(op, B * L).slice(), dims: [B, L] };
        });
      } finally {
        e.free(idp);
      }
    });
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
  perplexity(textOrIds, opts = {}) {
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
  evaluate(task, opts = {}) {
    return evaluate(this, task, opts);
  }

  /** Makes the C model use `adapter` (null = base) for the next call. */
  _bind(adapter) {
    if (this._bound === adapter) return;
    this._engine.mb_model_set_adapter(this._handle, adapter ? adapter._handle : 0, { what: 'set adapter' });
    this._bound = adapter;
  }

  /**
   * A recurrent decode state for `batch` sequences (see DecodeState), tied to the adapter active
   * now. Needs a causal adapter (no LIM, or LIM with chunk_size and cross_layer first/none).
   */
  createState({ batch = 1 } = {}) {
    this._alive();
    if (!Number.isInteger(batch) || batch < 1) throw invalid(`batch must be a positive integer, got ${batch}`);
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
    if (adapter !== null && !(adapter instanceof Adapter && this._adapters.has(adapter)))
      throw invalid('setAdapter takes an adapter of this model (or null)');
    this._adapter = adapter;
    this._bind(adapter);
  }

  _newAdapter(lora, lim, name) {
    const e = this._engine;
    const handle = e.mb_adapter_new(this._handle, cAdapterConfig(lora, lim), { what: 'cannot create adapter' });
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
  createAdapter({ lora = {}, lim = null, seed = 0, name = 'adapter' } = {}) {
    this._alive();
    const l = normalizeLora(lora, this.config);
    const m = normalizeLim(lim);
    if (!l && !m) throw invalid('an adapter needs LoRA, a LIM gate, or both');
    if (!Number.isInteger(seed)) throw invalid(`seed must be an integer, got ${seed}`);
    const a = this._newAdapter(l, m, name);
    this._engine.mb_adapter_init(a._handle, seed >>> 0, { what: 'adapter init' });
    this.setAdapter(a);
    return a;
  }

  /**
   * Loads an adapter (HF PEFT adapter_config.json + adapter_model.safetensors, optional
   * memba_config.json) from a directory, URL, hub id or in-memory files; it becomes active.
   */
  async loadAdapter(source, opts = {}) {
    this._alive();
    const { signal, onProgress } = opts;
    throwIfAborted(signal);
    const src = await openSource(source, opts);
    const { lora, lim, tensors } = await readAdapterFiles(src, this.config, { signal, onProgress });
    this._alive();
    const a = this._newAdapter(lora, lim, opts.name ?? src.description);
    if (lora) {
      try {
        a._setTensors(tensors);
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
  createTrainer(opts = {}) {
    this._alive();
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
    const { flat, B, L } = toIdBatch(ids, this.config.vocabSize);
    const c = a.config.lim.chunk_size ?? Math.max(1, Math.floor(L / a.config.lim.chunks));
    return this._exclusive(async () => this._inspect(a, flat, B, L, c));
  }

  _inspect(a, flat, B, L, c) {
    const { nLayer, dInner: E } = this.config;
    const e = this._engine;
    const idp = e.putIds(flat);
    let vp = 0;
    let up = 0;
    try {
      vp = e.malloc(nLayer * B * L * E * 4);
      up = e.malloc(nLayer * B * c * E * 4);
      this._bind(a);
      e.mb_inspect(this._handle, idp, B, L, vp, up, { what: 'inspect' });
      const layers = [];
      for (let l = 0; l < nLayer; l++)
        layers.push({
          limV: { data: e.f32(vp + l * B * L * E * 4, B * L * E).slice(), dims: [B, L, E] },
          membrane: { data: e.f32(up + l * B * c * E * 4, B * c * E).slice(), dims: [B, c, E] },
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
  async generate(promptIds, opts = {}) {
    const out = [];
    for await (const id of this.stream(promptIds, opts)) out.push(id);
    return out;
  }

  /**
   * The same as generate, as an async iterator of token ids (one per decode step).
   * @param {{ maxNewTokens?: number, temperature?: number, topK?: number, topP?: number, minP?: number,
   *           repetitionPenalty?: number, noRepeatNgramSize?: number, seed?: number,
   *           signal?: AbortSignal, stopTokens?: number[] }} [opts] (the processors: sampler.js)
   */
  async *stream(promptIds, opts = {}) {
    this._alive();
    const { maxNewTokens = 32, signal, stopTokens } = opts ?? {};
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
      throw invalid(`maxNewTokens must be an integer >= 0, got ${maxNewTokens}`);
    const sample = createSampler(opts);
    const stop = new Set(stopTokens ?? (Number.isInteger(this.config.eosTokenId) ? [this.config.eosTokenId] : []));
    const { flat, B } = toIdBatch(promptIds, this.config.vocabSize, 'promptIds');
    if (B !== 1) throw invalid('generate takes one prompt');
    throwIfAborted(signal);
    if (maxNewTokens === 0) return;
    const adapter = this._adapter; // the whole generation uses the adapter active at its start
    if (adapter && !adapter.causal) {
      // A non-causal LIM gate (paper chunks, or mean transfer) depends on the whole sequence:
      // exact generation recomputes the full forward for every new token (O(L) per token).
      const ids = Array.from(flat);
      for (let i = 0; i < maxNewTokens; i++) {
        await yieldToEventLoop();
        throwIfAborted(signal);
        this._alive();
        if (!adapter._handle) throw new MembaError(ErrorCodes.DISPOSED, 'the adapter was disposed during generation');
        const id = sample(await this._exclusive(() => this._lastLogits(Int32Array.from(ids), adapter)), ids);
        yield id;
        if (stop.has(id)) break;
        ids.push(id);
      }
      return;
    }
    const state = new DecodeState(this, 1, adapter);
    const history = Array.from(flat); // prompt + generated: what the repetition processors see
    try {
      let logits = await this._exclusive(() => this._prefill(state, flat));
      for (let i = 0; i < maxNewTokens; i++) {
        await yieldToEventLoop();
        throwIfAborted(signal);
        this._alive();
        const id = sample(logits, history);
        history.push(id);
        yield id;
        if (stop.has(id) || i + 1 === maxNewTokens) break;
        logits = await this._exclusive(() => {
          this._alive(); // disposed while the caller held the token?
          return state._run(Int32Array.of(id), 1, 1);
        });
      }
    } finally {
      state.dispose();
    }
  }

  /**
   * Like stream, as text: yields the new text as it grows (a character split over byte-level
   * tokens comes out once its last byte has arrived). `prompt` is text or token ids.
   */
  async *streamText(prompt, opts = {}) {
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
    }, () => state.reset(), state._adapter);
    return viaGpu ?? state._run(flat, 1, flat.length);
  }

  /** Logits [V] of the last position of one sequence, from a full forward with `adapter`. */
  _lastLogits(flat, adapter) {
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

  /** Text -> token ids (needs a tokenizer.json with the model). */
  encode(text) {
    this._alive();
    if (!this._tokenizer) throw new MembaError(ErrorCodes.UNSUPPORTED, 'this model was loaded without a tokenizer.json');
    if (typeof text !== 'string') throw invalid('encode takes a string');
    if (text.length === 0) return [];
    return Array.from(this._tokenizer.encode(text, { add_special_tokens: false }).ids);
  }

  /** Token ids -> text (special tokens skipped). */
  decode(ids) {
    this._alive();
    if (!this._tokenizer) throw new MembaError(ErrorCodes.UNSUPPORTED, 'this model was loaded without a tokenizer.json');
    const arr = Array.from(ids ?? [], (v) => {
      if (!Number.isInteger(v) || v < 0) throw invalid(`decode: ${v} is not a token id`);
      return v;
    });
    if (arr.length === 0) return '';
    return this._tokenizer.decode(arr, { skip_special_tokens: true });
  }

  /** Bytes held in the WASM heap by weights and cached activations. */
  memory() {
    this._alive();
    const e = this._engine;
    return { weights: e.mb_model_weight_bytes(this._handle), activations: e.mb_model_activation_bytes(this._handle) };
  }

  /** Frees the model and its states; later calls throw 'disposed'. Safe to call twice. */
  dispose() {
    if (!this._handle) return;
    for (const s of [...this._states]) s.dispose();
    for (const a of [...this._adapters]) a.dispose();
    this._gpu?.destroy();
    this._gpu = null;
    this._engine.mb_model_free(this._handle);
    this._handle = 0;
  }

  [Symbol.dispose]() {
    this.dispose();
  }
}
