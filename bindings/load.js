// load.js: builds the C model behind a Mamba: from a checkpoint (the source opened, config.json
// and the safetensors read and planned by checkpoint.js, an lm_head that is a byte-for-byte copy
// of the embedding used tied, the mb_config written, every planned tensor converted to float32
// into its parameter slot with progress and abort between tensors, finalize, the tokenizer), or
// with random weights of a given shape. Returns what the Mamba constructor takes.
// Deliberately not here: reading files (source.js), naming and shape-checking tensors
// (checkpoint.js), the public class (mamba.js).
import { Tokenizer } from '@huggingface/tokenizers';
import { MembaError, ErrorCodes, throwIfAborted } from './errors.js';
import { getEngine, MAX_WEIGHT_BYTES } from './engine.js';
import { Param, Status } from './abi.js';
import { openSource } from './source.js';
import { readCheckpoint, planWeights, normalizeConfig, WEIGHT_DTYPES_IN_MEMORY, weightBlockBytes } from './checkpoint.js';
import { invalid, yieldToEventLoop } from './ids.js';
import { LoadProgress } from './load-progress.js';
import { gpuUploadBytes, checkpointWeightSource, autoWantsGpu } from './gpu.js';

/** Bytes the backend choice may upload (gpu.js pickBackend); what it does not is dropped at 'ready'. */
function plannedUpload(config, dtype, backend) {
  if (backend === 'webgpu') return gpuUploadBytes(config, dtype);
  if ((backend ?? 'auto') === 'auto' && autoWantsGpu(config, dtype)) return gpuUploadBytes(config, dtype, { split: false });
  return 0;
}

/** The parameter slot of each canonical tensor name (per-layer names without `layers.{l}.`). */
const SLOT_OF = {
  'embeddings.weight': Param.EMBEDDING,
  'norm_f.weight': Param.NORM_F,
  'lm_head.weight': Param.LM_HEAD,
  'norm.weight': Param.NORM,
  'mixer.in_proj.weight': Param.IN_PROJ_W,
  'mixer.in_proj.bias': Param.IN_PROJ_B,
  'mixer.conv1d.weight': Param.CONV_W,
  'mixer.conv1d.bias': Param.CONV_B,
  'mixer.x_proj.weight': Param.X_PROJ_W,
  'mixer.dt_proj.weight': Param.DT_PROJ_W,
  'mixer.dt_proj.bias': Param.DT_PROJ_B,
  'mixer.A_log': Param.A_LOG,
  'mixer.D': Param.D,
  'mixer.out_proj.weight': Param.OUT_PROJ_W,
  'mixer.out_proj.bias': Param.OUT_PROJ_B,
};

function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  // compare 4 bytes at a time where both views are aligned, bytes otherwise
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0 && a.length % 4 === 0) {
    const x = new Uint32Array(a.buffer, a.byteOffset, a.length / 4);
    const y = new Uint32Array(b.buffer, b.byteOffset, b.length / 4);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Loads a checkpoint into a new C model. Options read: signal, onProgress, dtype (how the large
 * matrices are held: 'auto', 'fp32', 'fp16', 'q8'), allowNonFinite (keep
 * NaN / Inf weights instead of refusing them), the source options (hubBase, revision, cache,
 * fetch: source.js openSource) and the engine options (wasmBinary, wasmUrl: engine.js getEngine).
 * A model whose float32 weights cannot fit the WASM heap is oom before its tensors are read. An
 * onProgress that throws (at any event, 'ready' included) fails the load with its own error, and
 * everything the load allocated is freed.
 * @returns {Promise<{ engine: import('./abi.js').Abi, handle: number, config: object, tokenizer: Tokenizer|null, info: object }>}
 */
export async function loadModel(source, opts) {
  const { signal, allowNonFinite = false, residency = 'auto' } = opts;
  if (typeof allowNonFinite !== 'boolean') throw invalid(`allowNonFinite must be true or false, got ${allowNonFinite}`);
  let dtype = weightDtype(opts.dtype ?? 'auto', true);
  // one progress in bytes over every phase (load-progress.js); gpu.js adds the upload and 'ready'
  const progress = LoadProgress.start(opts);
  const src = await openSource(source, opts);
  let gpuOnly = false;
  const choose = (rawConfig, cur) => {
    gpuOnly = gpuResidency(rawConfig, residency, opts.backend, dtype);
    return gpuOnly ? { dtype: (dtype = dtype === 'fp32' ? 'fp32' : 'fp16'), maxWeightBytes: undefined } : cur;
  };
  const ckpt = await readCheckpoint(src, { signal, onProgress: progress?.onRead, maxWeightBytes: MAX_WEIGHT_BYTES, dtype, choose });
  // an lm_head that is a byte-for-byte copy of the embedding (some exports save tied weights
  // twice) is used tied: it would cost a second [V, d] block for nothing
  const head = ckpt.tensors.get('lm_head.weight');
  const emb = ckpt.tensors.get('embeddings.weight');
  if (head && emb && head.dtype === emb.dtype && head.data.length === emb.data.length && bytesEqual(head.data, emb.data)) {
    ckpt.tensors.delete('lm_head.weight');
    ckpt.config = { ...ckpt.config, tieEmbeddings: true };
  }
  const plan = planWeights(ckpt.config, ckpt.tensors);
  if (gpuOnly) return gpuOnlyModel(src, ckpt, dtype, opts, progress);
  // 'auto': the most precise dtype that fits the heap (fp32 where it fits, as before; a model that
  // does not fit in fp32 loads in fp16 or q8 instead of failing)
  if (dtype === 'auto') dtype = ckpt.sizeDtype;
  if (allowNonFinite && dtype !== 'fp32') throw invalid(`allowNonFinite keeps NaN / Inf weights, which only dtype 'fp32' holds (this load: '${dtype}')`);
  progress?.planned(plan.reduce((n, p) => n + p.tensor.data.length, 0), plannedUpload(ckpt.config, dtype, opts.backend));
  const engine = await getEngine(opts);
  throwIfAborted(signal);
  const handle = createModel(engine, ckpt.config, ckpt.tensors.has('lm_head.weight'), dtype);
  try {
    await writeWeights(engine, handle, plan, { signal, progress, allowNonFinite });
    engine.mb_model_finalize(handle, { what: 'finalize' });
    return { engine, handle, ...loaded(src, ckpt, engine, { residency: 'wasm', dtype, weightBytes: engine.mb_model_weight_bytes(handle) }) };
  } catch (err) {
    engine.mb_model_free(handle); // whatever failed (a throwing onProgress too): nothing stays behind
    throw err;
  }
}

/**
 * Whether a load keeps the weights on the GPU only (residency 'gpu'): asked for, or, with
 * residency 'auto' and backend 'webgpu', when the weights in the GPU's dtype (fp32 when asked
 * for, else fp16) do not fit the WASM heap. q8 has no GPU form: residency 'gpu' refuses it.
 */
export function gpuResidency(rawConfig, residency, backend, dtype) {
  if (residency === 'wasm' || backend !== 'webgpu') return false;
  if (dtype === 'q8') {
    if (residency === 'gpu') throw new MembaError(ErrorCodes.UNSUPPORTED, "residency 'gpu' holds fp32 or fp16 weights; q8 has no WebGPU kernels yet");
    return false;
  }
  if (residency === 'gpu') return true;
  return weightBlockBytes(normalizeConfig(rawConfig), dtype === 'fp32' ? 'fp32' : 'fp16') > BigInt(MAX_WEIGHT_BYTES);
}

/**
 * A model whose weights go from the checkpoint straight to the GPU (gpu.js chooseBackend uploads
 * them from `gpuSource`, tensor by tensor): no C model, so the WASM heap holds none of them.
 */
async function gpuOnlyModel(src, ckpt, dtype, opts, progress) {
  const { allowNonFinite = false } = opts;
  if (allowNonFinite && dtype !== 'fp32') throw invalid(`allowNonFinite keeps NaN / Inf weights, which only dtype 'fp32' holds (this load: '${dtype}')`);
  progress?.planned(0, gpuUploadBytes(ckpt.config, dtype, { split: false }));
  const engine = await getEngine(opts); // the CPU side: sampling, tokenizer, nothing of the model
  throwIfAborted(opts.signal);
  // backend becomes 'webgpu' once the weights are uploaded (gpu.js)
  const gpuSource = checkpointWeightSource(ckpt.config, ckpt.tensors, dtype, { allowNonFinite });
  return { engine, handle: 0, gpuSource, ...loaded(src, ckpt, engine, { residency: 'gpu', dtype, weightBytes: 0 }) };
}

/** The config (with the EOS id), tokenizer and info of a loaded checkpoint; `patch`: residency, dtype, weightBytes. */
function loaded(src, ckpt, engine, patch) {
  const tokenizer = ckpt.tokenizerJson ? makeTokenizer(ckpt.tokenizerJson) : null;
  const info = {
    source: src.description,
    // a hub id names the base model in saved adapters (PEFT's base_model_name_or_path)
    hubId: src.kind === 'hub' ? /^hub repo (\S+)/.exec(src.description)?.[1] ?? null : null,
    layout: ckpt.config.layout,
    backend: 'wasm',
    ...patch,
    threads: engine.threads,
    threadsNote: engine.threadsNote,
  };
  const eos = ckpt.rawConfig?.eos_token_id;
  const config = { ...ckpt.config, eosTokenId: Number.isInteger(eos) ? eos : null };
  return { config, tokenizer, info };
}

/**
 * The tokenizer of a tokenizer.json. The ids it can produce are checked first (the library takes
 * any JSON value as an id, and encode would return it): every vocab entry's id and every added
 * token's id must be a non-negative integer, a Unigram vocab a list of [piece, score].
 */
function makeTokenizer(json) {
  const bad = (msg) => new MembaError(ErrorCodes.BAD_FORMAT, `tokenizer.json: ${msg}`);
  const isId = (v) => Number.isSafeInteger(v) && v >= 0;
  const vocab = json.model?.vocab;
  if (Array.isArray(vocab)) {
    vocab.forEach((e, i) => {
      if (!Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number' || !Number.isFinite(e[1]))
        throw bad(`model.vocab entry ${i} is not a [piece, score] pair`);
    });
  } else if (vocab !== null && typeof vocab === 'object') {
    for (const [piece, id] of Object.entries(vocab)) if (!isId(id)) throw bad(`model.vocab id of ${JSON.stringify(piece).slice(0, 40)} is ${JSON.stringify(id)?.slice(0, 40)}, not a token id`);
  }
  if (json.added_tokens !== undefined && json.added_tokens !== null) {
    if (!Array.isArray(json.added_tokens)) throw bad('added_tokens is not a list');
    json.added_tokens.forEach((t, i) => {
      if (t === null || typeof t !== 'object' || !isId(t.id) || typeof t.content !== 'string') throw bad(`added_tokens[${i}] needs an integer id >= 0 and a content string`);
    });
  }
  try {
    return new Tokenizer(json, {});
  } catch (err) {
    throw new MembaError(ErrorCodes.BAD_FORMAT, `tokenizer.json could not be read: ${err.message}`, { cause: err });
  }
}

/** The `dtype` option: how the large weight matrices are held ('fp32', 'fp16', 'q8'; 'auto' for a checkpoint). */
export function weightDtype(dtype = 'fp32', auto = false) {
  if (!(Object.hasOwn(WEIGHT_DTYPES_IN_MEMORY, dtype) || (auto && dtype === 'auto')))
    throw invalid(`dtype must be ${auto ? "'auto', " : ''}'fp32', 'fp16' or 'q8', got ${typeof dtype === 'string' ? `'${dtype}'` : String(dtype)}`);
  return dtype;
}

/** A new C model of any Mamba-1 shape with deterministic pseudo-random weights (see Mamba.createRandom). */
export async function randomModel(shape, seed, dtype = 'fp32', engineOpts = {}) {
  const int = (v, name) => {
    if (!Number.isInteger(v) || v < 1) throw invalid(`${name} must be a positive integer, got ${v}`);
    return v;
  };
  const dModel = int(shape?.dModel, 'dModel');
  const expand = int(shape.expand ?? 2, 'expand');
  const config = {
    dModel, nLayer: int(shape.nLayer, 'nLayer'), vocabSize: int(shape.vocabSize, 'vocabSize'),
    dState: int(shape.dState ?? 16, 'dState'), dConv: int(shape.dConv ?? 4, 'dConv'), expand,
    dInner: expand * dModel, dtRank: int(shape.dtRank ?? Math.ceil(dModel / 16), 'dtRank'),
    eps: 1e-5, useBias: false, useConvBias: true, tieEmbeddings: true, layout: 'random', eosTokenId: null,
  };
  const engine = await getEngine(engineOpts);
  const handle = createModel(engine, config, false, dtype);
  try {
    engine.mb_model_init_random(handle, seed >>> 0, { what: 'init' });
  } catch (err) {
    engine.mb_model_free(handle);
    throw err;
  }
  const info = { source: `random (seed ${seed})`, layout: 'random', backend: 'wasm', residency: 'wasm', dtype, weightBytes: engine.mb_model_weight_bytes(handle), threads: engine.threads, threadsNote: engine.threadsNote };
  return { engine, handle, config, tokenizer: null, info };
}

/** mb_model_new_typed for a normalised config (weights uninitialised). */
function createModel(engine, c, hasLmHead, dtype) {
  const cfg = {
    d_model: c.dModel, n_layer: c.nLayer, vocab_size: c.vocabSize, d_state: c.dState, d_conv: c.dConv,
    d_inner: c.dInner, dt_rank: c.dtRank, eps: c.eps, use_bias: c.useBias, use_conv_bias: c.useConvBias,
    tied_head: !hasLmHead,
  };
  engine.reserve(Number(weightBlockBytes({ ...c, tieEmbeddings: !hasLmHead }, dtype))); // > 2 GB in one block: abi.js reserve
  // a config out of range came from a file: bad_format; oom stays oom
  return engine.mb_model_new_typed(cfg, WEIGHT_DTYPES_IN_MEMORY[dtype], { what: 'cannot create model', codes: { [Status.ERR_INVALID_ARG]: ErrorCodes.BAD_FORMAT } });
}

/** Rows converted at a time into an fp16 / q8 slot: about 4 MB of float32 in the heap. */
const TYPED_ROW_BYTES = 4 << 20;

/**
 * Writes a tensor into a slot of another dtype (fp16, q8) through a float32 buffer of a few rows
 * at a time: the C core converts them (mb_model_param_write), so no float32 copy of the tensor,
 * let alone of the model, is made. NaN / Inf cannot be held: bad_format, naming the tensor.
 */
function writeTyped(engine, handle, slot, layer, tensor, tensorToFloat32) {
  const cols = tensor.shape.length > 1 ? tensor.shape.at(-1) : tensor.numel;
  const rows = tensor.numel / cols;
  const step = Math.max(1, Math.floor(TYPED_ROW_BYTES / (4 * cols)));
  const bytesPer = tensor.data.length / tensor.numel;
  engine.withAlloc(Math.min(rows, step) * cols * 4, (buf) => {
    for (let r0 = 0; r0 < rows; r0 += step) {
      const n = Math.min(step, rows - r0);
      const part = { ...tensor, numel: n * cols, shape: [n, cols], data: tensor.data.subarray(r0 * cols * bytesPer, (r0 + n) * cols * bytesPer) };
      tensorToFloat32(part, engine.f32(buf, n * cols));
      engine.mb_model_param_write(handle, slot, layer, r0, n, buf, { what: `tensor ${tensor.name}`, codes: { [Status.ERR_INVALID_ARG]: ErrorCodes.BAD_FORMAT } });
    }
  });
}

/** Index of the first NaN or +-Inf in `a`, or -1 (one pass: x - x is 0 only for finite x). */
function firstNonFinite(a) {
  for (let i = 0; i < a.length; i++) if (a[i] - a[i] !== 0) return i;
  return -1;
}

/**
 * Converts every planned tensor into its slot, yielding (progress, abort) every 50 ms. A tensor
 * with a NaN or Inf is bad_format (named), unless allowNonFinite.
 */
async function writeWeights(engine, handle, plan, { signal, progress, allowNonFinite }) {
  const { tensorToFloat32 } = await import('./safetensors.js');
  let lastYield = Date.now();
  for (let i = 0; i < plan.length; i++) {
    const { name, layer, tensor } = plan[i];
    const key = layer >= 0 ? name.replace(/^layers\.\d+\./, '') : name;
    const slot = SLOT_OF[key];
    if (slot === undefined) continue; // a tensor the engine does not use
    const { value: dt, numel } = engine.mb_model_param_dtype(handle, slot, layer);
    if (!numel) throw new MembaError(ErrorCodes.INTERNAL, `no slot for ${name}`);
    if (numel !== tensor.numel)
      throw new MembaError(ErrorCodes.SHAPE_MISMATCH, `${name} has ${tensor.numel} values, the model expects ${numel}`);
    if (dt === WEIGHT_DTYPES_IN_MEMORY.fp32) {
      const { ptr } = engine.mb_model_param(handle, slot, layer);
      if (!ptr) throw new MembaError(ErrorCodes.INTERNAL, `no slot for ${name}`);
      const out = tensorToFloat32(tensor, engine.f32(ptr, tensor.numel));
      const bad = allowNonFinite ? -1 : firstNonFinite(out);
      if (bad >= 0)
        throw new MembaError(ErrorCodes.BAD_FORMAT, `tensor ${tensor.name} has a non-finite value (${out[bad]} at element ${bad}); pass allowNonFinite: true to load it anyway`);
    } else {
      writeTyped(engine, handle, slot, layer, tensor, tensorToFloat32);
    }
    const pause = Date.now() - lastYield > 50;
    progress?.convert(name, tensor.data.length, pause); // bytes, as the reads
    if (pause) {
      await yieldToEventLoop();
      throwIfAborted(signal);
      lastYield = Date.now();
    }
  }
  progress?.convert(plan.at(-1)?.name ?? null, 0, true); // the phase's last event
}
