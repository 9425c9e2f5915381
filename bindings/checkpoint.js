// checkpoint.js: maps a Mamba-1 checkpoint (config.json + safetensors, single file or sharded, HF or
// original state-spaces layout) to a normalised config and a canonical, shape-checked list of tensors.
// It deliberately does no math and no float conversion (the engine loads the planned tensors), and
// reads files only through a Source from source.js.

import { MembaError, ErrorCodes } from './errors.js';
import { parseSafetensors, parseSafetensorsHeader, safetensorsHeaderSize } from './safetensors.js';

const WEIGHT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);

/**
 * Per-layer tensor suffixes (after `layers.{l}.`), in the order the plan lists them.
 * `bias` says which config flag makes the tensor present ('useBias' / 'useConvBias'), if any.
 */
export const LAYER_TENSORS = Object.freeze([
  { kind: 'norm.weight', shape: (c) => [c.dModel] },
  { kind: 'mixer.in_proj.weight', shape: (c) => [2 * c.dInner, c.dModel] },
  { kind: 'mixer.in_proj.bias', shape: (c) => [2 * c.dInner], bias: 'useBias' },
  { kind: 'mixer.conv1d.weight', shape: (c) => [c.dInner, 1, c.dConv] },
  { kind: 'mixer.conv1d.bias', shape: (c) => [c.dInner], bias: 'useConvBias' },
  { kind: 'mixer.x_proj.weight', shape: (c) => [c.dtRank + 2 * c.dState, c.dInner] },
  { kind: 'mixer.dt_proj.weight', shape: (c) => [c.dInner, c.dtRank] },
  { kind: 'mixer.dt_proj.bias', shape: (c) => [c.dInner] },
  { kind: 'mixer.A_log', shape: (c) => [c.dInner, c.dState] },
  { kind: 'mixer.D', shape: (c) => [c.dInner] },
  { kind: 'mixer.out_proj.weight', shape: (c) => [c.dModel, c.dInner] },
  { kind: 'mixer.out_proj.bias', shape: (c) => [c.dModel], bias: 'useBias' },
].map(Object.freeze));

const badFormat = (message) => new MembaError(ErrorCodes.BAD_FORMAT, message);
const unsupported = (message) => new MembaError(ErrorCodes.UNSUPPORTED, message);
const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const fmt = (shape) => `[${shape.join(', ')}]`;

function posInt(obj, key, where, fallback) {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw badFormat(`${where}: missing ${key}`);
  }
  if (!Number.isSafeInteger(v) || v <= 0) throw badFormat(`${where}: ${key} must be a positive integer (got ${JSON.stringify(v)})`);
  return v;
}

function posNumber(obj, key, where, fallback) {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw badFormat(`${where}: missing ${key}`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw badFormat(`${where}: ${key} must be a positive number (got ${JSON.stringify(v)})`);
  return v;
}

function dtRankOf(obj, key, where, d) {
  const v = obj[key];
  if (v === undefined || v === null || v === 'auto') return Math.ceil(d / 16);
  return posInt(obj, key, where);
}

/** A boolean config flag; when absent, inferred from the tensor names (if known), else `fallback`. */
function flag(obj, key, where, infer, fallback) {
  const v = obj[key];
  if (v === undefined || v === null) return infer ?? fallback;
  if (typeof v !== 'boolean') throw badFormat(`${where}: ${key} must be true or false (got ${JSON.stringify(v)})`);
  return v;
}

/**
 * Normalises a parsed config.json of either layout.
 * @param {object} raw parsed config.json
 * @param {object} [options]
 * @param {number[]} [options.embeddingShape] shape of the embedding tensor; its row count is the vocab size
 * @param {Iterable<string>} [options.tensorNames] canonical tensor names present in the checkpoint: used
 *   to infer use_bias / use_conv_bias when config.json omits them, and tieEmbeddings (false when
 *   lm_head.weight is present: it is then loaded separately)
 * @returns {{dModel: number, nLayer: number, vocabSize: number, dState: number, dConv: number, expand: number,
 *   dInner: number, dtRank: number, eps: number, useBias: boolean, useConvBias: boolean, tieEmbeddings: boolean,
 *   layout: 'hf'|'original'}}
 * @throws {MembaError} bad_format, unsupported, shape_mismatch
 */
export function normalizeConfig(raw, { embeddingShape, tensorNames } = {}) {
  const where = 'config.json';
  if (!isObject(raw)) throw badFormat(`${where} must be a JSON object`);
  let names = null;
  if (tensorNames !== undefined && tensorNames !== null) names = [...tensorNames];
  const infer = (re) => (names ? names.some((n) => re.test(n)) : undefined);
  const inferBias = infer(/^layers\.\d+\.mixer\.(in_proj|out_proj)\.bias$/);
  const inferConvBias = infer(/^layers\.\d+\.mixer\.conv1d\.bias$/);
  if (raw.model_type !== undefined && raw.model_type !== 'mamba') {
    throw unsupported(`${where}: model_type ${JSON.stringify(raw.model_type)} is not supported (only Mamba-1, "mamba")`);
  }
  // HF -hf configs converted from state-spaces checkpoints keep some original keys (n_layer,
  // pad_vocab_size_multiple, rms_norm) beside hidden_size: hidden_size decides the HF layout
  const original = !Object.hasOwn(raw, 'hidden_size') && (Object.hasOwn(raw, 'd_model') || Object.hasOwn(raw, 'n_layer'));
  let c;
  let configVocab;
  if (original) {
    const ssm = raw.ssm_cfg ?? {};
    if (!isObject(ssm)) throw badFormat(`${where}: ssm_cfg must be an object`);
    if (ssm.layer !== undefined && ssm.layer !== 'Mamba1') throw unsupported(`${where}: ssm_cfg.layer ${JSON.stringify(ssm.layer)} is not supported (only Mamba1)`);
    if (raw.rms_norm === false) throw unsupported(`${where}: rms_norm false (LayerNorm) is not supported`);
    if (Array.isArray(raw.attn_layer_idx) && raw.attn_layer_idx.length) throw unsupported(`${where}: attention layers (attn_layer_idx) are not supported`);
    if (typeof raw.d_intermediate === 'number' && raw.d_intermediate > 0) throw unsupported(`${where}: MLP blocks (d_intermediate > 0) are not supported`);
    const d = posInt(raw, 'd_model', where);
    const expand = posNumber(ssm, 'expand', `${where} ssm_cfg`, 2);
    const dInner = Math.trunc(expand * d);
    if (dInner <= 0) throw badFormat(`${where}: expand * d_model is not a positive integer`);
    configVocab = posInt(raw, 'vocab_size', where);
    const pad = posInt(raw, 'pad_vocab_size_multiple', where, 8);
    c = {
      dModel: d,
      nLayer: posInt(raw, 'n_layer', where),
      vocabSize: Math.ceil(configVocab / pad) * pad,
      dState: posInt(ssm, 'd_state', `${where} ssm_cfg`, 16),
      dConv: posInt(ssm, 'd_conv', `${where} ssm_cfg`, 4),
      expand,
      dInner,
      dtRank: dtRankOf(ssm, 'dt_rank', `${where} ssm_cfg`, d),
      eps: posNumber(raw, 'norm_epsilon', where, 1e-5),
      useBias: flag(ssm, 'bias', `${where} ssm_cfg`, inferBias, false),
      useConvBias: flag(ssm, 'conv_bias', `${where} ssm_cfg`, inferConvBias, true),
      tieEmbeddings: flag(raw, 'tie_embeddings', where, undefined, true),
      layout: 'original',
    };
  } else {
    if (!Object.hasOwn(raw, 'hidden_size')) throw badFormat(`${where}: neither hidden_size (HF layout) nor d_model (original layout) is present`);
    if (raw.hidden_act !== undefined && raw.hidden_act !== 'silu') throw unsupported(`${where}: hidden_act ${JSON.stringify(raw.hidden_act)} is not supported (only silu)`);
    const d = posInt(raw, 'hidden_size', where);
    let dInner;
    let expand;
    if (raw.intermediate_size !== undefined && raw.intermediate_size !== null) {
      dInner = posInt(raw, 'intermediate_size', where);
      expand = raw.expand === undefined || raw.expand === null ? dInner / d : posNumber(raw, 'expand', where);
    } else {
      expand = posNumber(raw, 'expand', where);
      dInner = Math.trunc(expand * d);
      if (dInner <= 0) throw badFormat(`${where}: expand * hidden_size is not a positive integer`);
    }
    configVocab = posInt(raw, 'vocab_size', where);
    c = {
      dModel: d,
      nLayer: posInt(raw, 'num_hidden_layers', where),
      vocabSize: configVocab,
      dState: posInt(raw, 'state_size', where),
      dConv: posInt(raw, 'conv_kernel', where),
      expand,
      dInner,
      dtRank: dtRankOf(raw, 'time_step_rank', where, d),
      eps: posNumber(raw, 'layer_norm_epsilon', where, 1e-5),
      useBias: flag(raw, 'use_bias', where, inferBias, false),
      useConvBias: flag(raw, 'use_conv_bias', where, inferConvBias, true),
      tieEmbeddings: flag(raw, 'tie_word_embeddings', where, undefined, true),
      layout: 'hf',
    };
  }
  if (names && names.includes('lm_head.weight')) c.tieEmbeddings = false;
  if (embeddingShape !== undefined && embeddingShape !== null) {
    if (!Array.isArray(embeddingShape) || embeddingShape.length !== 2 || embeddingShape[1] !== c.dModel ||
        !Number.isSafeInteger(embeddingShape[0])) {
      throw new MembaError(ErrorCodes.SHAPE_MISMATCH, `embeddings.weight has shape ${Array.isArray(embeddingShape) ? fmt(embeddingShape) : String(embeddingShape)} but config implies [vocab, ${c.dModel}]`);
    }
    if (embeddingShape[0] < configVocab) {
      throw new MembaError(ErrorCodes.SHAPE_MISMATCH, `embeddings.weight has ${embeddingShape[0]} rows but config.json says vocab_size ${configVocab}`);
    }
    c.vocabSize = embeddingShape[0];
  }
  return Object.freeze(c);
}

/**
 * Canonical name (HF naming without `backbone.`) of a tensor name as stored in a checkpoint file,
 * or null for a tensor this engine does not use. Accepts the HF and the state-spaces names.
 * @param {string} fileName
 * @returns {string|null}
 */
export function canonicalTensorName(fileName) {
  if (fileName === 'backbone.embeddings.weight' || fileName === 'backbone.embedding.weight') return 'embeddings.weight';
  if (fileName === 'backbone.norm_f.weight') return 'norm_f.weight';
  if (fileName === 'lm_head.weight') return 'lm_head.weight';
  const m = /^backbone\.(layers\.\d+\..+)$/.exec(fileName);
  return m ? m[1] : null;
}

/**
 * Renames file tensors to canonical names, dropping unknown ones.
 * @param {Map<string, import('./safetensors.js').SafetensorsTensor>} fileTensors
 * @returns {Map<string, import('./safetensors.js').SafetensorsTensor>}
 * @throws {MembaError} bad_format when two file tensors map to the same canonical name
 */
export function canonicalizeTensors(fileTensors) {
  const out = new Map();
  for (const [fileName, tensor] of fileTensors) {
    const name = canonicalTensorName(fileName);
    if (name === null) continue;
    if (out.has(name)) throw badFormat(`tensors ${out.get(name).name} and ${fileName} both provide ${name}`);
    out.set(name, tensor);
  }
  return out;
}

/**
 * @typedef {object} PlannedWeight
 * @property {string} name     canonical name, e.g. 'layers.0.mixer.in_proj.weight'
 * @property {number} layer    layer index, -1 for embeddings.weight / norm_f.weight / lm_head.weight
 * @property {string} kind     the name without `layers.{l}.` (e.g. 'mixer.in_proj.weight', 'norm.weight',
 *                             'embeddings.weight', 'norm_f.weight', 'lm_head.weight')
 * @property {number[]} shape  expected shape (checked equal to tensor.shape)
 * @property {import('./safetensors.js').SafetensorsTensor} tensor
 */

/**
 * Lists every tensor the engine must load, in load order (embeddings, layers 0..n-1, norm_f, lm_head when
 * present), checking presence, dtype and shape against the normalised config.
 * @param {ReturnType<typeof normalizeConfig>} config
 * @param {Map<string, import('./safetensors.js').SafetensorsTensor>} tensors canonical name -> tensor
 * @returns {PlannedWeight[]}
 * @throws {MembaError} bad_format (missing tensor), shape_mismatch, unsupported (dtype)
 */
export function planWeights(config, tensors) {
  if (!isObject(config) || !(tensors instanceof Map)) throw new MembaError(ErrorCodes.INVALID_ARGUMENT, 'planWeights(config, tensors): tensors must be a Map');
  const { nLayer, vocabSize, dModel } = config;
  for (const name of tensors.keys()) {
    const m = /^layers\.(\d+)\./.exec(name);
    if (m && Number(m[1]) >= nLayer) {
      throw new MembaError(ErrorCodes.SHAPE_MISMATCH, `tensor ${name} belongs to layer ${m[1]} but config.json has ${nLayer} layers`);
    }
  }
  const plan = [];
  const add = (name, layer, kind, shape) => {
    const tensor = tensors.get(name);
    if (!tensor) throw badFormat(`missing tensor ${name}`);
    if (!WEIGHT_DTYPES.has(tensor.dtype)) throw unsupported(`tensor ${name} has dtype ${tensor.dtype}; weights must be F32, F16 or BF16`);
    const got = tensor.shape;
    if (!Array.isArray(got) || got.length !== shape.length || got.some((v, i) => v !== shape[i])) {
      throw new MembaError(ErrorCodes.SHAPE_MISMATCH, `${name} has shape ${Array.isArray(got) ? fmt(got) : String(got)} but config implies ${fmt(shape)}`);
    }
    plan.push({ name, layer, kind, shape, tensor });
  };
  add('embeddings.weight', -1, 'embeddings.weight', [vocabSize, dModel]);
  for (let l = 0; l < nLayer; l++) {
    for (const t of LAYER_TENSORS) {
      if (t.bias && !config[t.bias]) continue;
      add(`layers.${l}.${t.kind}`, l, t.kind, t.shape(config));
    }
  }
  add('norm_f.weight', -1, 'norm_f.weight', [dModel]);
  if (!config.tieEmbeddings || tensors.has('lm_head.weight')) add('lm_head.weight', -1, 'lm_head.weight', [vocabSize, dModel]);
  return plan;
}

/** The weight dtypes a model can hold in memory (Mamba.load's `dtype`), by their C values. */
export const WEIGHT_DTYPES_IN_MEMORY = Object.freeze({ fp32: 0, fp16: 1, q8: 2 });

/** Tensors that take the model's weight dtype in the C core (core/weights.c param_typed). */
const TYPED = new Set(['embeddings.weight', 'lm_head.weight', 'mixer.in_proj.weight', 'mixer.x_proj.weight', 'mixer.out_proj.weight']);

/** Bytes of one slot in the weight block: rows of the dtype (q8: 34 bytes per 32 values, per row),
 * rounded up to 16 as the C core aligns every slot. */
function slotBytes(kind, shape, dtype) {
  const n = shape.map(BigInt);
  const cols = n.at(-1) ?? 1n;
  const rows = n.slice(0, -1).reduce((p, d) => p * d, 1n);
  const t = TYPED.has(kind) ? dtype : 'fp32';
  const row = t === 'fp16' ? 2n * cols : t === 'q8' ? ((cols + 31n) / 32n) * 34n : 4n * cols;
  return ((rows * row + 15n) / 16n) * 16n;
}

/**
 * Bytes the C model's weight block takes for a normalised config and weight dtype (what
 * mb_model_new_typed allocates: every slot of the plan, the lm_head only when untied, and each
 * layer's derived A), as a BigInt: exact for any shape a file may claim.
 * @param {ReturnType<typeof normalizeConfig>} c
 * @param {'fp32'|'fp16'|'q8'} [dtype]
 * @returns {bigint}
 */
export function weightBlockBytes(c, dtype = 'fp32') {
  const n = (v) => BigInt(v);
  let layer = LAYER_TENSORS.reduce((sum, t) => (t.bias && !c[t.bias] ? sum : sum + slotBytes(t.kind, t.shape(c).filter((d, i, a) => !(t.kind === 'mixer.conv1d.weight' && i === 1 && a.length === 3)), dtype)), 0n);
  layer += ((n(c.dInner) * n(c.dState) * 4n + 15n) / 16n) * 16n; // A = -exp(A_log), kept beside A_log
  const emb = slotBytes('embeddings.weight', [c.vocabSize, c.dModel], dtype);
  const head = c.tieEmbeddings ? 0n : slotBytes('lm_head.weight', [c.vocabSize, c.dModel], dtype);
  return emb + slotBytes('norm_f.weight', [c.dModel], dtype) + head + layer * n(c.nLayer);
}

/** The float32 block (the weight dtype fp32). */
export function float32WeightBytes(c) {
  return weightBlockBytes(c, 'fp32');
}

/** Bytes of the tensors of one safetensors header that the engine would load, in `dtype`. */
function usedWeightBytes(entries, dtype) {
  const kinds = new Set(LAYER_TENSORS.map((t) => t.kind));
  let sum = 0n;
  for (const { name, shape } of entries) {
    const canon = canonicalTensorName(name);
    if (canon === null) continue;
    const kind = canon.replace(/^layers\.\d+\./, '');
    if (canon === kind ? ['embeddings.weight', 'norm_f.weight', 'lm_head.weight'].includes(canon) : kinds.has(kind))
      sum += slotBytes(kind, kind === 'mixer.conv1d.weight' && shape.length === 3 ? [shape[0], shape[2]] : shape, dtype);
  }
  return sum;
}

const fmtBytes = (b) => `${(Number(b) / 2 ** 30).toFixed(2)} GiB`;

/** oom when `bytes` of weights exceed `max` (the engine's heap), saying what asked for them. */
function checkFits(bytes, max, what, dtype = 'fp32') {
  if (max === undefined || bytes <= BigInt(max)) return;
  const hint = dtype === 'q8' ? '' : ` (try dtype: '${dtype === 'fp32' ? 'fp16' : 'q8'}')`;
  throw new MembaError(ErrorCodes.OOM, `${what}: the model's ${dtype} weights need ${fmtBytes(bytes)} (${bytes} bytes), more than the ${fmtBytes(max)} the WASM heap can hold (wasm32); nothing was loaded${hint}`);
}

/**
 * A read `peek` (source.js) that parses each safetensors header as soon as it has arrived and
 * fails the read with oom when the weights it describes cannot fit, before any tensor data is
 * read. `state.bytes` sums the headers of one checkpoint (its shards); `rawConfig` with an
 * embedding's shape gives the block the engine would allocate.
 */
function weightsPeek(rawConfig, max, state, dtype) {
  return (name, prefix) => {
    if (!/\.safetensors$/.test(name)) return 0;
    if (prefix.length < 8) return 8;
    const need = safetensorsHeaderSize(prefix, name);
    if (prefix.length < need) return need;
    const { entries } = parseSafetensorsHeader(prefix, name);
    state.bytes += usedWeightBytes(entries, dtype);
    checkFits(state.bytes, max, name, dtype);
    const emb = entries.find((e) => canonicalTensorName(e.name) === 'embeddings.weight');
    if (emb) {
      const names = entries.map((e) => canonicalTensorName(e.name)).filter((x) => x !== null);
      checkFits(weightBlockBytes(normalizeConfig(rawConfig, { embeddingShape: emb.shape, tensorNames: names }), dtype), max, name, dtype);
    }
    return 0;
  };
}

function parseJson(bytes, fileName) {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new MembaError(ErrorCodes.BAD_FORMAT, `${fileName} is not valid UTF-8 JSON (${e.message})`, { cause: e });
  }
}

/** Wraps onProgress so that several read calls look like one: loaded keeps growing, one 'done'. */
function chainProgress(onProgress) {
  let base = 0;
  return {
    forRead: () => (e) => {
      if (e.status === 'done') { base += e.loaded; return; }
      onProgress({ status: e.status, file: e.file, loaded: base + e.loaded, total: e.total === undefined ? undefined : base + e.total });
    },
    done: () => onProgress({ status: 'done', file: null, loaded: base, total: base }),
  };
}

async function exists(source, name, signal) {
  if (typeof source.has === 'function') return source.has(name, { signal });
  return (await source.read([name], { optional: [name], signal })).get(name) !== null;
}

/** Reads the shards named by model.safetensors.index.json (one read call) and checks them against it. */
async function readShards(source, indexBytes, readOpts) {
  const index = parseJson(indexBytes, 'model.safetensors.index.json');
  if (!isObject(index) || !isObject(index.weight_map)) throw badFormat('model.safetensors.index.json: missing weight_map object');
  const weightMap = index.weight_map;
  const seen = new Set();
  const shardNames = [];
  for (const [tensor, shard] of Object.entries(weightMap)) {
    if (typeof shard !== 'string' || shard === '') throw badFormat(`model.safetensors.index.json: shard of ${tensor} is not a file name`);
    if (!seen.has(shard)) {
      seen.add(shard);
      shardNames.push(shard);
    }
  }
  if (!shardNames.length) throw badFormat('model.safetensors.index.json: weight_map is empty');
  const files = await source.read(shardNames, readOpts);
  const all = new Map();
  for (const shard of shardNames) {
    for (const [name, tensor] of parseSafetensors(files.get(shard), shard).tensors) {
      if (!Object.hasOwn(weightMap, name) || weightMap[name] !== shard) {
        const expected = Object.hasOwn(weightMap, name) ? `the index says ${weightMap[name]}` : 'the index does not list it';
        throw badFormat(`tensor ${name} found in shard ${shard} but ${expected}`);
      }
      all.set(name, tensor);
    }
  }
  for (const [name, shard] of Object.entries(weightMap)) {
    if (!all.has(name)) throw badFormat(`tensor ${name} is listed in model.safetensors.index.json but missing from ${shard}`);
  }
  return all;
}

/**
 * Reads and validates a whole checkpoint from a Source: config.json (required), tokenizer.json (optional),
 * then model.safetensors, or model.safetensors.index.json and its shards.
 * @param {import('./source.js').Source} source from openSource
 * @param {{signal?: AbortSignal, onProgress?: (e: import('./source.js').ProgressEvent) => void, maxWeightBytes?: number}} [options]
 *   onProgress given here sees one aggregate over all reads (loaded grows, total grows as files are
 *   discovered, a single final 'done'); without it the source's own onProgress sees each read separately.
 *   dtype: the weight dtype the model will hold ('fp32', 'fp16', 'q8'), for the size check, or
 *   'auto' (the most precise that fits, returned as sizeDtype);
 *   maxWeightBytes: the most weight bytes the engine can hold; a config or safetensors header
 *   that needs more is oom as soon as it is read, before any tensor data (headers are looked at as
 *   they arrive, see source.js peek);
 *   choose: (rawConfig, { dtype, maxWeightBytes }) => { dtype, maxWeightBytes }, called once
 *   config.json is parsed, before any weight is read, to change those two (a GPU-only load reads
 *   with no heap limit)
 * @returns {Promise<{config: ReturnType<typeof normalizeConfig>, rawConfig: object,
 *   tensors: Map<string, import('./safetensors.js').SafetensorsTensor>, tokenizerJson: object|null,
 *   plan: PlannedWeight[]}>}
 * @throws {MembaError} not_found, bad_format, shape_mismatch, unsupported, network, aborted, oom
 */
export async function readCheckpoint(source, { signal, onProgress, maxWeightBytes, dtype = 'fp32', choose } = {}) {
  if (!source || typeof source.read !== 'function') throw new MembaError(ErrorCodes.INVALID_ARGUMENT, 'readCheckpoint: source must come from openSource()');
  if (onProgress !== undefined && typeof onProgress !== 'function') throw new MembaError(ErrorCodes.INVALID_ARGUMENT, 'onProgress must be a function');
  const chain = onProgress ? chainProgress(onProgress) : null;
  const sized = { bytes: 0n }; // float32 bytes of the weights the headers read so far describe
  let peek;
  const opts = (optional = []) => ({ optional, signal, onProgress: chain?.forRead(), peek });

  const meta = await source.read(['config.json', 'tokenizer.json'], opts(['tokenizer.json']));
  const rawConfig = parseJson(meta.get('config.json'), 'config.json');
  // choose (Mamba.load's residency): given config.json, the dtype and heap limit to read with
  if (choose) ({ dtype, maxWeightBytes } = choose(rawConfig, { dtype, maxWeightBytes }));
  // 'auto': the most precise dtype whose block fits (the loader may still pick fp16 for F16 files)
  if (dtype === 'auto') {
    const c0 = normalizeConfig(rawConfig);
    dtype = ['fp32', 'fp16', 'q8'].find((d) => maxWeightBytes === undefined || weightBlockBytes(c0, d) <= BigInt(maxWeightBytes)) ?? 'q8';
  }
  // fail before downloading weights: a bad config, or one whose weights cannot fit the heap
  checkFits(weightBlockBytes(normalizeConfig(rawConfig), dtype), maxWeightBytes, 'config.json', dtype);
  if (maxWeightBytes !== undefined) peek = weightsPeek(rawConfig, maxWeightBytes, sized, dtype);
  const tokBytes = meta.get('tokenizer.json');
  const tokenizerJson = tokBytes ? parseJson(tokBytes, 'tokenizer.json') : null;
  if (tokenizerJson !== null && !isObject(tokenizerJson)) throw badFormat('tokenizer.json must be a JSON object');

  let fileTensors;
  const single = (await source.read(['model.safetensors'], opts(['model.safetensors']))).get('model.safetensors');
  if (single) {
    fileTensors = parseSafetensors(single, 'model.safetensors').tensors;
  } else {
    const indexName = 'model.safetensors.index.json';
    const indexBytes = (await source.read([indexName], opts([indexName]))).get(indexName);
    if (indexBytes) {
      fileTensors = await readShards(source, indexBytes, opts());
    } else if (await exists(source, 'pytorch_model.bin', signal)) {
      throw unsupported(`pytorch_model.bin (pickle) checkpoints are not supported; convert to safetensors (${source.description})`);
    } else {
      throw new MembaError(ErrorCodes.NOT_FOUND, `neither model.safetensors nor model.safetensors.index.json found in ${source.description}`);
    }
  }
  const tensors = canonicalizeTensors(fileTensors);
  const config = normalizeConfig(rawConfig, { embeddingShape: tensors.get('embeddings.weight')?.shape, tensorNames: tensors.keys() });
  const plan = planWeights(config, tensors);
  chain?.done();
  return { config, rawConfig, tensors, tokenizerJson, plan, sizeDtype: dtype };
}
