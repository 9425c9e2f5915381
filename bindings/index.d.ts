// Type declarations for memba-wasm's public API (hand-written; see bindings/*.js for the code).
/**
 * Run and fine-tune Mamba-1 language models with Memba adapters in the browser and Node.
 * @module memba-wasm
 */
import type { RemoteMamba, WorkerLoadOptions } from './remote.js';
export type { RemoteMamba, RemoteAdapter, RemoteTrainer, RemoteDecodeState, WorkerLoadOptions } from './remote.js';

// Conventions: an options argument may be omitted or null (the defaults); any other value that is
// not an object, and any option of the wrong type, out of range, NaN or Infinity, is a MembaError
// 'invalid_argument' (never a TypeError or RangeError).
//
// Limits (README "Limits"): the WASM heap is 4 GB (wasm32), and every buffer a call needs is sized
// in JS (float64) and checked before anything is allocated: what cannot fit is 'oom'. One forward /
// score / inspect call takes at most 2^28 tokens (B * L), a training step 2^24; forward's logits
// are B * L * vocabSize * 4 bytes (about 21,000 tokens at a 50k vocabulary). A decode state holds
// 1..65,536 sequences. LIM chunks / chunk_size are integers in [1, 2^31 - 1].

export type ErrorCode =
  | 'bad_format' | 'shape_mismatch' | 'unsupported' | 'not_found' | 'network'
  | 'invalid_argument' | 'oom' | 'aborted' | 'disposed' | 'non_finite' | 'busy' | 'internal';

/** Every failure of this library. Cancelled calls have name 'AbortError' and code 'aborted'. */
export class MembaError extends Error {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown });
  readonly code: ErrorCode;
}
export const ErrorCodes: Readonly<Record<string, ErrorCode>>;
export function isAbortError(err: unknown): boolean;

export type TokenIds = ArrayLike<number>;

/** Mamba.load's progress: one count of bytes over the whole load (bindings/load-progress.js). */
export interface Progress {
  /** download, read (disk, memory or a cache), convert (to float32), upload (WebGPU), ready (the end);
   * absent in loadAdapter's events, which count the files read only */
  phase?: 'download' | 'read' | 'convert' | 'upload' | 'ready';
  /** the phase, with 'cache' for cache reads, and 'done' (loaded === total) just before 'ready' */
  status: 'download' | 'cache' | 'read' | 'convert' | 'upload' | 'done' | 'ready';
  file: string | null;
  /** bytes so far, over every phase; never decreases */
  loaded: number;
  /** bytes of the whole load; undefined until the weight files' sizes are known */
  total?: number;
}

/** Every option Mamba.load (and loadAdapter, for the source ones) reads. */
export interface LoadOptions {
  /** progress events while files are read and weights are written */
  onProgress?: (p: Progress) => void;
  /** aborts the load (rejects with an AbortError) */
  signal?: AbortSignal;
  /** 'wasm'; 'webgpu' (the whole forward and greedy decode on WebGPU with the weights resident there, for fp32 / fp16 without an adapter; adapters and q8 run each layer's scan on WebGPU; an error without an adapter); 'auto' (default): the resident WebGPU path on a hardware adapter for fp32 / fp16 models from d_inner 1536 up (calls with an adapter then run in WASM), else WASM (README "WebGPU"). */
  backend?: 'auto' | 'wasm' | 'webgpu';
  /** Where the weights live (backend 'webgpu'): 'wasm' (in the WASM heap, with a copy on the GPU: everything works, and a lost device falls back to WASM); 'gpu' (on the GPU only: models past the WASM heap; adapters, training, decode states and hidden states are unsupported, and a lost device makes calls unsupported); 'auto' (default): 'gpu' where the weights in fp16 (fp32 when asked for) do not fit the WASM heap, else 'wasm'. */
  residency?: 'auto' | 'wasm' | 'gpu';
  /** Hub base URL for hub ids (default https://huggingface.co). */
  hubBase?: string;
  /** Hub branch, tag or commit for hub ids (default 'main'). */
  revision?: string;
  /** Browser Cache API use for URL / hub sources ('auto', the default: on where available), or a {match, put} object. */
  cache?: 'auto' | boolean | { match(url: string): Promise<Response | undefined>; put(url: string, r: Response): Promise<void> };
  /** fetch implementation for URL / hub sources (default globalThis.fetch) */
  fetch?: typeof fetch;
  /** run the engine in a Web Worker / worker thread: the returned model has the same methods, all async */
  worker?: boolean | Worker;
  /** Node: the hub cache folder (default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub) */
  cacheDir?: string;
  /** Node: hub files from the cache only, no network (default: HF_HUB_OFFLINE) */
  offline?: boolean;
  /** how the large weight matrices (embedding, lm_head, in_proj, x_proj, out_proj) are held in memory:
   * 'fp32', 'fp16' (IEEE half), 'q8' (blocks of 32 values, an fp16 scale + int8 each, as q8_0;
   * inputs are quantised the same way). 'auto' (default): the most precise of fp32 / fp16 / q8
   * that fits the heap. Files of any dtype are converted tensor by tensor (README "Weight dtypes"). */
  dtype?: 'auto' | 'fp32' | 'fp16' | 'q8';
  /** threads for the matmuls, the scan and the conv (1..16; default: the cores reported, at most 8).
   * The first load of a JS realm picks the build: the threaded one (dist/memba-threads.*) in Node and
   * in cross-origin isolated pages and workers, else the single-threaded one; a later load resizes
   * the pool up to that first size. info.threads and info.threadsNote say what runs and why. */
  threads?: number;
  /** the bytes of dist/memba.wasm (used by the first load of a JS realm: the engine is made once) */
  wasmBinary?: ArrayBuffer | Uint8Array;
  /** where a browser fetches memba.wasm (default: next to dist/memba.mjs; first load of a realm only) */
  wasmUrl?: string | URL;
  /** the WebGPU entry point to use instead of navigator.gpu (or, in Node, the npm package 'webgpu') */
  gpu?: { requestAdapter(options?: { powerPreference?: string }): Promise<unknown> };
  /** adapter preference asked of WebGPU (default 'high-performance') */
  powerPreference?: 'high-performance' | 'low-power';
  /** load weights with NaN / Inf values (default false: such a tensor is a bad_format error naming it) */
  allowNonFinite?: boolean;
}

/** A directory (Node), a base URL, an HF hub id ('owner/name'), 'default' (the embedded model; under a
 * bundler use defaultModel from 'memba-wasm/default-model'), files named one by one ({ urls }), or in-memory files. */
export type ModelSource =
  | string
  | URL
  | { urls: Record<string, string | URL> | Map<string, string | URL>; description?: string }
  | { files: Record<string, Uint8Array | ArrayBuffer | string | object | Blob> }
  | Map<string, Uint8Array | ArrayBuffer | string | object | Blob>;

export interface MambaConfig {
  dModel: number; nLayer: number; vocabSize: number; dState: number; dConv: number;
  expand: number; dInner: number; dtRank: number; eps: number; useBias: boolean;
  useConvBias: boolean; tieEmbeddings: boolean; layout: 'hf' | 'original' | 'random';
  eosTokenId: number | null;
}

export interface Tensor { data: Float32Array; dims: number[] }

export interface GenerateOptions {
  maxNewTokens?: number;   // default 32
  temperature?: number;    // default 0 = greedy
  topK?: number;           // default 0 = off
  topP?: number;           // default 1 = off
  /** min-p (HF MinPLogitsWarper): keep tokens with p >= minP * p_max after temperature; default 0 = off */
  minP?: number;
  /** CTRL / HF repetition penalty on every id in the prompt and output so far; default 1 = off */
  repetitionPenalty?: number;
  /** ban ids that would repeat an n-gram of the prompt and output so far (HF no_repeat_ngram_size); default 0 = off */
  noRepeatNgramSize?: number;
  seed?: number;
  signal?: AbortSignal;
  /** Generation stops after any of these ids of the vocabulary (default: the config's eos_token_id). */
  stopTokens?: ArrayLike<number> | Set<number>;
}

export class DecodeState {
  /** tied to the adapter active when it was created */
  readonly batch: number;
  readonly position: number;
  prefill(ids: TokenIds | TokenIds[]): Float32Array;
  step(ids: number | TokenIds): Float32Array;
  clone(): DecodeState;
  save(): { batch: number; position: number; data: Float32Array };
  /** every field checked before anything is written: 'invalid_argument' for a bad value (a position
   * that is not a safe integer >= 0, data with NaN/Inf), 'shape_mismatch' for another state's shape */
  restore(snapshot: { batch: number; position: number; data: Float32Array }): void;
  reset(): void;
  dispose(): void;
  [Symbol.dispose](): void;
}

export type LoraTarget = 'in_proj' | 'in_proj.x' | 'in_proj.z' | 'out_proj' | 'x_proj' | 'dt_proj';
export interface LoraConfig { r: number; alpha: number; targets: LoraTarget[]; dropout: number; rslora: boolean }
export interface LimConfig {
  /** integers in [1, 2^31 - 1] (C int32); tau in (0, 1], v_th finite, surrogate_width > 0 (as float32 too) */
  chunks?: number; chunk_size?: number; tau: number; v_th: number;
  output: 'post_reset' | 'pre_reset'; reset_grad: 'mask' | 'triangle'; surrogate_width: number;
  cross_layer: 'mean' | 'first' | 'none';
}

export class Adapter {
  readonly config: Readonly<{ lora: LoraConfig | null; lim: LimConfig | null }>;
  readonly name: string;
  /** true when token-by-token decoding is exact and O(1) (no LIM, or chunk_size with first/none) */
  readonly causal: boolean;
  readonly merged: boolean;
  tensors(): Record<string, Float32Array>;
  save(): Record<string, Uint8Array | string>;
  /** folds the LoRA into the base weights, keeping a copy (JS memory) of the weights it changes */
  merge(): void;
  /** restores the base weights exactly (from merge's copy); switching away and dispose do too */
  unmerge(): void;
  /** unusable at once; the C adapter is freed when the calls and generations that started with it end */
  dispose(): void;
  [Symbol.dispose](): void;
}

/** Finite values in ranges that cannot destroy the adapter (else 'invalid_argument'). Every AdamW
 * update is checked: one that would leave NaN/Inf in the adapter or its moments is undone ('non_finite'). */
export interface TrainerOptions {
  /** in (0, 1]; default 1e-3 */
  lr?: number;
  /** each in [0, 1) (also as float32) */
  betas?: [number, number];
  /** in (0, 1] */
  eps?: number;
  /** >= 0, with lr * weightDecay <= 1 (each step scales the adapter by 1 - lr * weightDecay) */
  weightDecay?: number;
  /** global-norm clipping threshold >= 0; 0 or absent = none */
  clipNorm?: number; accumulate?: number;
  schedule?: 'constant' | { type: 'constant' | 'cosine'; warmupSteps?: number; totalSteps?: number; minLr?: number };
  seed?: number; memoryBudget?: number;
}
/** An instruction example (LLM-Adapters' commonsense_170k, Alpaca): trained with the Alpaca prompt, loss on the output only. */
export interface InstructionExample { instruction: string; input?: string; output: string }
/** Text, documents (joined by EOS), token-id arrays, { text } documents or instruction examples. */
export type FitData = string | Array<string | ArrayLike<number> | { text: string } | InstructionExample>;
export interface FitEvaluation {
  step: number; epoch: number; trainLoss: number | null; trainPpl: number | null;
  /** mean negative log-likelihood per validation target token (natural log), and exp of it */
  valLoss: number; valPpl: number; valTokens: number;
}
export type FitProgress =
  | { phase: 'train'; step: number; epoch: number; loss: number; gradNorm: number | null; lr: number | null; tokensPerSec: number; secondsLeft: number }
  | ({ phase: 'eval'; best: { step: number; valLoss: number; valPpl: number } } & FitEvaluation);
export interface FitOptions {
  epochs?: number; batchSize?: number; seqLen?: number; signal?: AbortSignal; yieldEvery?: number;
  onProgress?: (p: FitProgress) => void;
  /** held-out data of the same kinds as fit's data; or validationSplit: the last fraction of the tokens (not both) */
  validation?: FitData; validationSplit?: number;
  /** 0 (default): evaluate after every epoch; N: every N optimizer steps */
  evalEvery?: number;
  /** stop after `patience` evaluations (default 1) without an improvement of more than minDelta (default 0) */
  earlyStopping?: boolean | { patience?: number; minDelta?: number };
  /** leave the adapter with the tensors of the best evaluation (default: on when there is validation data) */
  keepBest?: boolean;
}
export interface FitResult {
  steps: number; losses: number[]; tokens: number; seconds: number; windows: number;
  /** the last epoch's mean training loss per target, and its exp */
  trainLoss: number | null; trainPpl: number | null; valLoss: number | null; valPpl: number | null;
  evaluations: FitEvaluation[]; best: { step: number; epoch: number; valLoss: number; valPpl: number } | null;
  keptBest: boolean; stoppedEarly: boolean;
}
export interface TrainerState {
  format: 'memba-trainer-v1'; stepCount: number; micro: number; calls: number; dataRng: number;
  tensors: Float32Array; grad: Float32Array | null; m1: Float32Array | null; m2: Float32Array | null; options: object;
}
export class Trainer {
  readonly adapter: Adapter;
  readonly options: Readonly<Required<TrainerOptions>>;
  readonly stepCount: number;
  step(batch: { ids: TokenIds | TokenIds[]; labels?: ArrayLike<number> | ArrayLike<number>[] }): Promise<{ loss: number; gradNorm: number | null; step: number; lr: number | null }>;
  gradients(): Record<string, Float32Array>;
  /** Packs every target of the text into windows of seqLen (see the README), shuffles them per epoch and steps;
   * scores validation data (or the held-out last `validationSplit` of the tokens) before training and after every
   * epoch (or every `evalEvery` steps). */
  fit(data: FitData, options?: FitOptions | null): Promise<FitResult>;
  saveState(): TrainerState;
  /** checks everything first (counters, every array's length, finite values, second moments >= 0):
   * a bad state is 'invalid_argument' and changes nothing */
  restoreState(state: TrainerState): void;
  memory(): { storedLayers: number; activationBytes: number; heapBytes: number };
}

export interface PerplexityOptions {
  /** window length in tokens (default 1024, capped to the text); at least 2 */
  seqLen?: number;
  /** step between window starts, in [1, seqLen] (default seqLen: non-overlapping windows) */
  stride?: number;
  /** checked between windows: rejects with an AbortError */
  signal?: AbortSignal;
  /** after each window; tokens: scored so far */
  onProgress?: (p: { window: number; windows: number; tokens: number }) => void;
}
/** nll: mean negative log-likelihood per scored token (natural log); perplexity = exp(nll);
 * tokens: scored tokens (total - 1 when windows overlap or there is one; total - windows with stride = seqLen) */
export interface PerplexityResult { perplexity: number; nll: number; tokens: number }

/** One multiple-choice item (a JSONL line of a task file; other fields are ignored). */
export interface TaskItem {
  context: string;
  /** at least 2; tokenised as given, so each carries its separator (" answer", as lm-eval's target_delimiter) */
  choices: string[];
  /** index of the correct choice */
  gold: number;
}
export interface EvaluateOptions {
  /** only the first `limit` items */
  limit?: number;
  /** checked between items: rejects with an AbortError */
  signal?: AbortSignal;
  /** after each item, with the running accuracies */
  onProgress?: (p: { item: number; items: number; acc: number; acc_norm: number }) => void;
}
/** acc: fraction of items whose highest log-likelihood choice is gold (ties: lowest index);
 * acc_norm: the same with log-likelihoods divided by the choice's UTF-8 byte length; n: items scored */
export interface EvaluateResult { acc: number; acc_norm: number; n: number }

/** One file kept between loads (Mamba.cache.list()): url (browsers) or path (Node); repo, revision, file for hub files. */
export interface CacheEntry { url?: string; path?: string; repo?: string; revision?: string; refs?: string[]; file?: string; size: number | null }
export interface ModelCache {
  /** browsers: the Cache API entries of this library; Node: the hub cache's snapshot files */
  list(options?: { cacheDir?: string }): Promise<CacheEntry[]>;
  /** removes the files of a hub id (every revision, or { revision } in browsers) or, in browsers, under a base URL; resolves with how many */
  delete(source: string | URL, options?: { revision?: string; cacheDir?: string }): Promise<number>;
  /** removes every file (Node: only with an explicit cacheDir); resolves with how many */
  clear(options?: { cacheDir?: string }): Promise<number>;
}

export class Mamba {
  /** the files kept between loads */
  static cache: ModelCache;
  /** with { worker }: the engine runs in a Web Worker (or Node worker thread), every method returns a Promise */
  static load(source: ModelSource, options: WorkerLoadOptions): Promise<RemoteMamba>;
  static load(source: ModelSource, options?: (LoadOptions & { worker?: false }) | null): Promise<Mamba>;
  static load(source: ModelSource, options?: LoadOptions | null): Promise<Mamba | RemoteMamba>;
  /** dimensions are integers in [1, 2^24] (dConv <= 64); the weights (4 bytes per parameter) must fit the heap, else 'oom' */
  static createRandom(shape: { dModel: number; nLayer: number; vocabSize: number; dState?: number; dConv?: number; expand?: number; dtRank?: number }, options?: { seed?: number; dtype?: 'fp32' | 'fp16' | 'q8'; threads?: number } | null): Promise<Mamba>;
  readonly config: Readonly<MambaConfig>;
  /** hubId: the hub repo a model came from (null otherwise); adapter: the WebGPU adapter in use; gpuWeightBytes: weight bytes resident on the GPU (backend 'webgpu', fp32 / fp16); residency: where the weights are ('gpu': on the GPU only, weightBytes 0); fallbackReason: why WebGPU was given up */
  readonly info: Readonly<{ source: string; hubId?: string | null; layout: string; backend: 'wasm' | 'webgpu'; residency: 'wasm' | 'gpu'; dtype: 'fp32' | 'fp16' | 'q8'; weightBytes: number; threads: number; threadsNote: string; adapter?: string; gpuWeightBytes?: number; fallbackReason?: string }>;
  readonly hasTokenizer: boolean;
  /** at most 2^28 tokens; the logits (B * L * vocabSize * 4 bytes) must fit the 4 GB heap, else 'oom' */
  forward(ids: TokenIds | TokenIds[], options?: { outputHidden?: boolean } | null): Promise<Tensor & { hidden?: Tensor }>;
  /** log p(ids[t] | ids[<t]) for t >= from (0 before); one long sequence is scored chunk by chunk through the recurrent state (any length); signal: checked between chunks */
  scoreTokens(ids: TokenIds | TokenIds[], from?: number, options?: { signal?: AbortSignal } | null): Promise<Tensor>;
  loglikelihood(contextIds: TokenIds, continuationIds: TokenIds): Promise<number>;
  /** sliding-window perplexity of a text (needs a tokenizer) or of one sequence of ids, with the active adapter */
  perplexity(textOrIds: string | TokenIds, options?: PerplexityOptions | null): Promise<PerplexityResult>;
  /** multiple-choice accuracy (lm-evaluation-harness scoring) of items or a JSONL string of them; needs a tokenizer */
  evaluate(task: TaskItem[] | string, options?: EvaluateOptions | null): Promise<EvaluateResult>;
  /** batch: an integer in [1, 65536]; the state (nLayer * batch * ((dConv - 1) * dInner + dInner * dState
   * [+ chunk_size * dInner with a causal LIM]) * 4 bytes) and its logits (batch * vocabSize * 4) must fit, else 'oom' */
  createState(options?: { batch?: number } | null): DecodeState;
  generate(promptIds: TokenIds, options?: GenerateOptions | null): Promise<number[]>;
  /** keeps the adapter active at its start until it ends, and releases its decode state when it ends
   * (before the last token is handed out), on return(), or when dropped unfinished and garbage-collected */
  stream(promptIds: TokenIds, options?: GenerateOptions | null): AsyncGenerator<number, void, void>;
  /** the continuation as text pieces (needs a tokenizer); prompt as text or ids */
  streamText(prompt: string | TokenIds, options?: GenerateOptions | null): AsyncGenerator<string, void, void>;
  /** texts of any length: long ones are tokenised in pieces that give the same ids (byte-level BPE) */
  encode(text: string): number[];
  /** ids: integers below the vocabulary size (the model's or the tokenizer's, the larger) */
  decode(ids: TokenIds): string;
  /** bytes of the WASM heap held by the weights, cached activations and live decode states */
  memory(): { weights: number; activations: number; states: number };
  readonly adapter: Adapter | null;
  setAdapter(adapter: Adapter | null): void;
  createAdapter(options?: { lora?: Partial<LoraConfig> | null; lim?: boolean | Partial<LimConfig> | null; seed?: number; name?: string } | null): Adapter;
  /** allowNonFinite: load tensors holding NaN / Inf (refused by default: 'bad_format' naming the tensor) */
  loadAdapter(source: ModelSource, options?: (LoadOptions & { name?: string; allowNonFinite?: boolean }) | null): Promise<Adapter>;
  inspect(ids: TokenIds | TokenIds[]): Promise<{ chunkLength: number; layers: { limV: Tensor; membrane: Tensor }[] }>;
  createTrainer(options?: TrainerOptions | null): Trainer;
  dispose(): void;
  [Symbol.dispose](): void;
}

export function parseSafetensors(bytes: Uint8Array, fileName?: string): {
  tensors: Map<string, { name: string; dtype: string; shape: number[]; numel: number; data: Uint8Array }>;
  metadata: Record<string, string>;
};
export function writeSafetensors(entries: Record<string, { dtype: string; shape: number[]; data: ArrayBufferView }>, metadata?: Record<string, string>): Uint8Array;
export function tensorToFloat32(tensor: { dtype: string; numel: number; data: Uint8Array }, out?: Float32Array): Float32Array;

/** Loads a model in a worker (what Mamba.load(source, { worker }) does). */
export function loadInWorker(source: ModelSource, options?: LoadOptions): Promise<RemoteMamba>;

/** The page's connection to a Worker (or Node worker thread) running bindings/worker.js. */
export class WorkerClient {
  /** owned: terminate the worker when its model is disposed */
  constructor(worker: { postMessage(message: unknown): void; terminate(): unknown }, options?: { owned?: boolean });
  /** Mamba.load inside the worker; resolves to the remote model (same methods, all async) */
  load(source: ModelSource, options?: LoadOptions): Promise<RemoteMamba>;
  createRandom(shape: { dModel: number; nLayer: number; vocabSize: number; dState?: number; dConv?: number; expand?: number; dtRank?: number }, options?: { seed?: number }): Promise<RemoteMamba>;
  terminate(): void;
}
