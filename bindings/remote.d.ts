// Types of the worker-hosted engine (bindings/remote.js): what Mamba.load(source, { worker }) returns.
// Every method of the local class, each returning a Promise (streams stay async iterators); the
// properties the worker snapshots after every call (protocol.js) are plain values.
import type { Mamba, Adapter, Trainer, DecodeState, ModelSource, LoadOptions } from './index.js';

type Async<F> = F extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;

/** A DecodeState in the worker: prefill and step resolve with the logits. */
export interface RemoteDecodeState {
  readonly batch: number;
  readonly position: number;
  prefill: Async<DecodeState['prefill']>;
  step: Async<DecodeState['step']>;
  clone(): Promise<RemoteDecodeState>;
  save: Async<DecodeState['save']>;
  restore: Async<DecodeState['restore']>;
  reset(): Promise<void>;
  dispose(): Promise<void>;
}

/** An Adapter in the worker. */
export interface RemoteAdapter {
  readonly config: Adapter['config'];
  readonly name: string;
  readonly causal: boolean;
  readonly merged: boolean;
  tensors: Async<Adapter['tensors']>;
  save: Async<Adapter['save']>;
  merge(): Promise<void>;
  unmerge(): Promise<void>;
  dispose(): Promise<void>;
}

/** A Trainer in the worker: step, fit and the rest resolve when the worker has done them. */
export interface RemoteTrainer {
  readonly options: Trainer['options'];
  readonly stepCount: number;
  step: Async<Trainer['step']>;
  gradients: Async<Trainer['gradients']>;
  fit: Async<Trainer['fit']>;
  saveState: Async<Trainer['saveState']>;
  restoreState: Async<Trainer['restoreState']>;
  memory: Async<Trainer['memory']>;
}

/** A Mamba in a Web Worker (or a Node worker thread): the same methods, all returning Promises. */
export interface RemoteMamba {
  readonly config: Mamba['config'];
  readonly info: Mamba['info'];
  readonly hasTokenizer: boolean;
  forward: Async<Mamba['forward']>;
  scoreTokens: Async<Mamba['scoreTokens']>;
  loglikelihood: Async<Mamba['loglikelihood']>;
  perplexity: Async<Mamba['perplexity']>;
  evaluate: Async<Mamba['evaluate']>;
  createState(...args: Parameters<Mamba['createState']>): Promise<RemoteDecodeState>;
  generate: Async<Mamba['generate']>;
  /** token ids as they are generated */
  stream: Mamba['stream'];
  /** the continuation as text pieces */
  streamText: Mamba['streamText'];
  encode: Async<Mamba['encode']>;
  decode: Async<Mamba['decode']>;
  memory: Async<Mamba['memory']>;
  setAdapter(adapter: RemoteAdapter | null): Promise<void>;
  createAdapter(...args: Parameters<Mamba['createAdapter']>): Promise<RemoteAdapter>;
  loadAdapter(...args: Parameters<Mamba['loadAdapter']>): Promise<RemoteAdapter>;
  inspect: Async<Mamba['inspect']>;
  createTrainer(...args: Parameters<Mamba['createTrainer']>): Promise<RemoteTrainer>;
  /** disposes the model; a worker started by Mamba.load ({ worker: true }) is terminated too */
  dispose(): Promise<void>;
  /** terminates the worker at once */
  terminate(): void;
}

/** Mamba.load's options with the worker option given. */
export type WorkerLoadOptions = LoadOptions & { worker: true | Worker | { postMessage(message: unknown): void; terminate(): unknown } };

export type { ModelSource };
