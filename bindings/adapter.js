// adapter.js: Memba adapters in JS: the settings (PEFT adapter_config.json + memba_config.json,
// or createAdapter options) validated into one normalised form, the Adapter class over a C
// adapter (LoRA tensors, merge/unmerge, save in the PEFT format), and loading from files.
// Deliberately not here: the math (src/core/adapter.c, src/core/block.c, src/ops/lora.c, src/ops/lim.c) and training.
import { MembaError, ErrorCodes } from './errors.js';
import { parseSafetensors, writeSafetensors, tensorToFloat32 } from './safetensors.js';
import { TARGET_NAMES, Param, LimOutput, LimResetGrad, LimCross, LoraMatrix, enumNames, enumValue } from './abi.js';
import { describe, firstNonFinite, INT32_MAX } from './ids.js';

/** LoRA target names, in the order of mb_target (abi.js). */
export const TARGETS = Object.freeze(Object.keys(TARGET_NAMES).sort((a, b) => TARGET_NAMES[a] - TARGET_NAMES[b]));
export const LIM_DEFAULTS = Object.freeze({ chunks: 4, tau: 0.5, v_th: 1.0, output: 'post_reset', reset_grad: 'mask', surrogate_width: 1.0, cross_layer: 'mean' });
/** The LIM settings that are C enums, and those enums (their values' names are the settings' values). */
const LIM_ENUMS = { output: LimOutput, reset_grad: LimResetGrad, cross_layer: LimCross };
const LIM_KEYS = new Set(['chunks', 'chunk_size', 'tau', 'v_th', 'output', 'reset_grad', 'surrogate_width', 'cross_layer']);
const PREFIX = 'base_model.model.backbone.layers.';

/** LoRA tensor shapes [in, out] of a target for a model config. */
export function loraShape(cfg, target) {
  const { dModel: d, dInner: E, dtRank: R, dState: N } = cfg;
  return { in_proj: [d, 2 * E], 'in_proj.x': [d, E], 'in_proj.z': [d, E], out_proj: [E, d], x_proj: [E, R + 2 * N], dt_proj: [R, E] }[target];
}

/**
 * Validates LIM settings (memba_config.json's "lim" object, spec section 3) and fills defaults.
 * `true` means every default. Returns null for no LIM.
 */
export function normalizeLim(lim, code = ErrorCodes.INVALID_ARGUMENT) {
  if (lim === undefined || lim === null || lim === false) return null;
  const bad = (msg) => new MembaError(code, `LIM: ${msg}`);
  if (lim === true) lim = {};
  if (typeof lim !== 'object' || Array.isArray(lim)) throw bad(`settings must be an object, got ${describe(lim)}`);
  for (const k of Object.keys(lim)) if (!LIM_KEYS.has(k)) throw bad(`unknown setting '${k}'`);
  const given = Object.fromEntries(Object.entries(lim).filter(([, v]) => v !== undefined && v !== null));
  const hasChunks = given.chunks !== undefined;
  const hasSize = given.chunk_size !== undefined;
  if (hasChunks && hasSize) throw bad('give exactly one of chunks and chunk_size, not both');
  const out = { ...LIM_DEFAULTS, ...given };
  if (hasSize) delete out.chunks; // neither given: the paper default (chunks 4) applies
  // chunks and chunk_size are C int32: a larger value would wrap (2^32 + 3 -> 3)
  const int32 = (k) => {
    if (out[k] !== undefined && !(Number.isInteger(out[k]) && out[k] >= 1 && out[k] <= INT32_MAX))
      throw bad(`${k} must be an integer in [1, ${INT32_MAX}], got ${describe(out[k])}`);
  };
  int32('chunks');
  int32('chunk_size');
  // the float settings are C floats: finite as float32 too (1e39 would be Infinity there)
  const f32 = (k, ok, rule) => {
    const v = out[k];
    if (typeof v !== 'number' || !Number.isFinite(Math.fround(v)) || !ok(Math.fround(v))) throw bad(`${k} must be ${rule}, got ${describe(v)}`);
  };
  f32('tau', (v) => v > 0 && v <= 1, 'in (0, 1]');
  f32('v_th', () => true, 'a finite number');
  f32('surrogate_width', (v) => v > 0, 'a finite number > 0');
  for (const [k, e] of Object.entries(LIM_ENUMS)) {
    const allowed = enumNames(e);
    if (!allowed.includes(out[k])) throw bad(`${k} must be one of ${allowed.join(', ')}, got ${describe(out[k])}`);
  }
  return Object.freeze(out);
}

/** Validates createAdapter's `lora` options; null for no LoRA. */
export function normalizeLora(lora, cfg, code = ErrorCodes.INVALID_ARGUMENT) {
  if (lora === undefined || lora === null || lora === false) return null;
  const bad = (msg) => new MembaError(code, `LoRA: ${msg}`);
  if (typeof lora !== 'object' || Array.isArray(lora)) throw bad(`settings must be an object, got ${describe(lora)}`);
  const { r = 8, alpha = 8, targets = ['in_proj', 'out_proj'], dropout = 0, rslora = false } = lora;
  if (!Number.isInteger(r) || r < 1 || r > 4096) throw bad(`r must be an integer in [1, 4096], got ${describe(r)}`);
  if (typeof alpha !== 'number' || !Number.isFinite(Math.fround(alpha))) throw bad(`alpha must be a finite number, got ${describe(alpha)}`);
  if (typeof dropout !== 'number' || !(dropout >= 0 && Math.fround(dropout) < 1)) throw bad(`dropout must be in [0, 1), got ${describe(dropout)}`);
  if (typeof rslora !== 'boolean') throw bad(`rslora must be true or false, got ${describe(rslora)}`);
  const list = typeof targets === 'string' ? [targets] : targets;
  if (!Array.isArray(list) || list.length === 0) throw bad('targets must be a non-empty list');
  for (const t of list)
    if (!TARGETS.includes(t))
      throw new MembaError(code === ErrorCodes.INVALID_ARGUMENT ? code : ErrorCodes.UNSUPPORTED, `LoRA: unknown target ${describe(t)} (supported: ${TARGETS.join(', ')})`);
  const uniq = [...new Set(list)].sort((a, b) => TARGETS.indexOf(a) - TARGETS.indexOf(b));
  if (uniq.includes('in_proj') && (uniq.includes('in_proj.x') || uniq.includes('in_proj.z')))
    throw bad('in_proj overlaps in_proj.x / in_proj.z: use either the whole projection or its halves');
  return Object.freeze({ r, alpha, targets: Object.freeze(uniq), dropout, rslora });
}

/**
 * Reads a PEFT adapter_config.json: the keys that matter, and a clear error for every PEFT
 * feature that would change the math and is not supported.
 */
export function loraFromPeftConfig(pc) {
  const unsupported = (msg) => new MembaError(ErrorCodes.UNSUPPORTED, `adapter_config.json: ${msg}`);
  if (pc === null || typeof pc !== 'object' || Array.isArray(pc)) throw new MembaError(ErrorCodes.BAD_FORMAT, 'adapter_config.json is not a JSON object');
  if (pc.peft_type !== undefined && pc.peft_type !== 'LORA') throw unsupported(`peft_type ${pc.peft_type} (only LORA)`);
  if (pc.use_dora) throw unsupported('DoRA (use_dora) is not supported');
  if ((pc.bias ?? 'none') !== 'none') throw unsupported(`bias '${pc.bias}' is not supported (only 'none')`);
  if (pc.lora_bias) throw unsupported('lora_bias is not supported');
  if (pc.fan_in_fan_out) throw unsupported('fan_in_fan_out is not supported');
  if (pc.layers_to_transform !== undefined && pc.layers_to_transform !== null) throw unsupported('layers_to_transform is not supported (LoRA on every layer only)');
  if (pc.modules_to_save) throw unsupported('modules_to_save is not supported');
  if (pc.exclude_modules) throw unsupported('exclude_modules is not supported');
  if (pc.use_qalora || pc.use_bdlora) throw unsupported('QALoRA / BD-LoRA are not supported');
  if (pc.target_parameters) throw unsupported('target_parameters is not supported');
  for (const [key, base] of [['rank_pattern', pc.r], ['alpha_pattern', pc.lora_alpha]]) {
    const pat = pc[key] ?? {};
    if (typeof pat !== 'object') throw new MembaError(ErrorCodes.BAD_FORMAT, `adapter_config.json: ${key} is not an object`);
    for (const [k, v] of Object.entries(pat)) if (v !== base) throw unsupported(`${key} entry ${k}: ${v} differs from ${base}`);
  }
  const targets = pc.target_modules;
  if (typeof targets === 'string' && !TARGETS.includes(targets))
    throw unsupported(`target_modules as a pattern ('${targets}') is not supported; list the module names`);
  return normalizeLora({ r: pc.r, alpha: pc.lora_alpha ?? 8, targets, dropout: pc.lora_dropout ?? 0, rslora: !!pc.use_rslora }, null, ErrorCodes.BAD_FORMAT);
}

/** The fields of mb_adapter_config (abi.js MbAdapterConfig) for normalised settings; no LoRA /
 * no LIM give zeros (and surrogate_width 1, a valid value). */
export function cAdapterConfig(lora, lim) {
  return {
    r: lora ? lora.r : 0,
    alpha: lora ? lora.alpha : 0,
    rslora: lora ? lora.rslora : false,
    targets: lora ? lora.targets.reduce((m, t) => m | (1 << TARGET_NAMES[t]), 0) : 0,
    dropout: lora ? lora.dropout : 0,
    lim: !!lim,
    chunks: lim?.chunks ?? 0,
    chunk_size: lim?.chunk_size ?? 0,
    tau: lim ? lim.tau : 0,
    v_th: lim ? lim.v_th : 0,
    output: lim ? enumValue(LimOutput, lim.output) : 0,
    reset_grad: lim ? enumValue(LimResetGrad, lim.reset_grad) : 0,
    surrogate_width: lim ? lim.surrogate_width : 1,
    cross_layer: lim ? enumValue(LimCross, lim.cross_layer) : 0,
  };
}

/** PEFT tensor name of a LoRA matrix. */
export function peftName(layer, target, which) {
  return `${PREFIX}${layer}.mixer.${target}.lora_${which}.weight`;
}

/**
 * Checks an adapter_model.safetensors against the LoRA settings and the model: every expected
 * tensor present with the right shape, nothing else. Returns Map name -> tensor.
 */
export function checkAdapterTensors(bytes, lora, cfg) {
  const { tensors } = parseSafetensors(bytes, 'adapter_model.safetensors');
  const want = new Map();
  for (let l = 0; l < cfg.nLayer; l++)
    for (const t of lora.targets) {
      const [inDim, outDim] = loraShape(cfg, t);
      want.set(peftName(l, t, 'A'), [lora.r, inDim]);
      want.set(peftName(l, t, 'B'), [outDim, lora.r]);
    }
  for (const name of tensors.keys()) {
    if (want.has(name)) continue;
    const m = /^base_model\.model\.backbone\.layers\.(\d+)\.mixer\.(.+)\.lora_[AB]\.weight$/.exec(name);
    if (m && Number(m[1]) >= cfg.nLayer)
      throw new MembaError(ErrorCodes.SHAPE_MISMATCH, `adapter has layer ${m[1]} but the model has ${cfg.nLayer} layers (made for another base model?)`);
    if (m && !lora.targets.includes(m[2]))
      throw new MembaError(ErrorCodes.BAD_FORMAT, `adapter tensor ${name} is for a target not in target_modules`);
    throw new MembaError(ErrorCodes.UNSUPPORTED, `adapter tensor ${name} is not a LoRA matrix this engine knows`);
  }
  for (const [name, shape] of want) {
    const t = tensors.get(name);
    if (!t) throw new MembaError(ErrorCodes.BAD_FORMAT, `adapter_model.safetensors lacks ${name}`);
    if (t.shape.length !== 2 || t.shape[0] !== shape[0] || t.shape[1] !== shape[1])
      throw new MembaError(ErrorCodes.SHAPE_MISMATCH, `${name} has shape [${t.shape}] but this model and r=${lora.r} need [${shape}] (adapter made for another base model?)`);
  }
  return tensors;
}

/**
 * Reads an adapter from a source: PEFT adapter_config.json + adapter_model.safetensors and/or
 * memba_config.json, validated against the model config. Returns { lora, lim, tensors }.
 */
export async function readAdapterFiles(src, config, { signal, onProgress } = {}) {
  const files = await src.read(['adapter_config.json', 'adapter_model.safetensors', 'memba_config.json'], {
    optional: ['adapter_config.json', 'adapter_model.safetensors', 'memba_config.json'], signal, onProgress,
  });
  const json = (name) => {
    const b = files.get(name);
    if (!b) return null;
    try {
      return JSON.parse(new TextDecoder().decode(b));
    } catch (err) {
      throw new MembaError(ErrorCodes.BAD_FORMAT, `${name} is not valid JSON: ${err.message}`);
    }
  };
  const peft = json('adapter_config.json');
  const memba = json('memba_config.json');
  if (!peft && !memba) throw new MembaError(ErrorCodes.NOT_FOUND, `no adapter_config.json or memba_config.json in ${src.description}`);
  const lora = peft ? loraFromPeftConfig(peft) : null;
  if (memba !== null && (typeof memba !== 'object' || Array.isArray(memba))) throw new MembaError(ErrorCodes.BAD_FORMAT, 'memba_config.json is not a JSON object');
  const lim = memba ? normalizeLim(memba.lim ?? null, ErrorCodes.BAD_FORMAT) : null;
  let tensors = null;
  if (lora) {
    const bytes = files.get('adapter_model.safetensors');
    if (!bytes) throw new MembaError(ErrorCodes.NOT_FOUND, `adapter_model.safetensors missing in ${src.description}`);
    tensors = checkAdapterTensors(bytes, lora, config);
  }
  return { lora, lim, tensors };
}

/** The base weight slot each LoRA target adds to (in_proj.x / in_proj.z: halves of in_proj). */
const TARGET_PARAM = { in_proj: Param.IN_PROJ_W, 'in_proj.x': Param.IN_PROJ_W, 'in_proj.z': Param.IN_PROJ_W, out_proj: Param.OUT_PROJ_W, x_proj: Param.X_PROJ_W, dt_proj: Param.DT_PROJ_W };

/**
 * A Memba adapter (LoRA + LIM) bound to one model. Create with model.createAdapter / loadAdapter.
 * Lifetime: dispose() makes it unusable at once, but a call or generation that started with it
 * holds it (_pin / _unpin) and the C adapter is freed when the last one ends.
 */
export class Adapter {
  /** @private */
  constructor(model, handle, lora, lim, name) {
    this._model = model;
    this._engine = model._engine;
    this._handle = handle; // the C adapter, until it is freed
    this._disposed = false; // dispose() was called (the C adapter may live on while pinned)
    this._pins = 0; // calls and generations in progress that use this adapter
    /** Normalised settings: { lora: {r, alpha, targets, dropout, rslora} | null, lim: {...} | null }. */
    this.config = Object.freeze({ lora, lim });
    this.name = name;
  }

  _alive() {
    if (this._disposed || !this._handle) throw new MembaError(ErrorCodes.DISPOSED, 'this adapter has been disposed');
    this._model._alive();
  }

  /** True when token-by-token decoding is exact and O(1) per token (no LIM, or chunk_size with first/none). */
  get causal() {
    const lim = this.config.lim;
    return !lim || (lim.chunk_size !== undefined && lim.cross_layer !== 'mean');
  }

  get merged() {
    this._alive();
    return this._engine.mb_adapter_merged(this._handle) === 1;
  }

  _param(target, layer, which) {
    const e = this._engine;
    const { ptr, numel } = e.mb_adapter_param(this._handle, TARGET_NAMES[target], layer, LoraMatrix[which]);
    if (!ptr) throw new MembaError(ErrorCodes.INTERNAL, `no LoRA ${which} for ${target} in layer ${layer}`);
    return e.f32(ptr, numel);
  }

  /** LoRA tensors by PEFT name (copies). */
  tensors() {
    this._alive();
    const out = {};
    const lora = this.config.lora;
    if (!lora) return out;
    for (let l = 0; l < this._model.config.nLayer; l++)
      for (const t of lora.targets) for (const w of ['A', 'B']) out[peftName(l, t, w)] = this._param(t, l, w).slice();
    return out;
  }

  /**
   * Writes LoRA tensors (Map name -> safetensors tensor) into the C adapter. A tensor holding NaN
   * or Inf is refused ('bad_format', naming it) unless allowNonFinite: such an adapter would
   * turn every output into NaN.
   */
  _setTensors(tensors, { allowNonFinite = false } = {}) {
    const lora = this.config.lora;
    for (let l = 0; l < this._model.config.nLayer; l++)
      for (const t of lora.targets)
        for (const w of ['A', 'B']) {
          const name = peftName(l, t, w);
          const dst = this._param(t, l, w);
          tensorToFloat32(tensors.get(name), dst);
          const i = allowNonFinite ? -1 : firstNonFinite(dst);
          if (i >= 0)
            throw new MembaError(ErrorCodes.BAD_FORMAT, `adapter tensor ${name} holds a non-finite value (${dst[i]} at index ${i}); pass allowNonFinite: true to load it anyway`);
        }
  }

  /** The adapter in the HF PEFT format (+ memba_config.json when it has a LIM gate). */
  save() {
    this._alive();
    const { lora, lim } = this.config;
    const files = {};
    if (lora) {
      const cfg = {
        peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: this._model.info.hubId ?? null, revision: null,
        r: lora.r, lora_alpha: lora.alpha, lora_dropout: lora.dropout, target_modules: [...lora.targets],
        use_rslora: lora.rslora, use_dora: false, bias: 'none', fan_in_fan_out: false, init_lora_weights: true,
        inference_mode: true, modules_to_save: null, layers_to_transform: null, layers_pattern: null,
        rank_pattern: {}, alpha_pattern: {},
      };
      files['adapter_config.json'] = JSON.stringify(cfg, null, 2);
      const entries = {};
      for (const [name, data] of Object.entries(this.tensors())) {
        const [target, w] = /mixer\.(.+)\.lora_([AB])/.exec(name).slice(1);
        const [inDim, outDim] = loraShape(this._model.config, target);
        entries[name] = { dtype: 'F32', shape: w === 'A' ? [lora.r, inDim] : [outDim, lora.r], data };
      }
      files['adapter_model.safetensors'] = writeSafetensors(entries, { format: 'pt' });
    }
    if (lim) files['memba_config.json'] = JSON.stringify({ lim }, null, 2);
    return files;
  }

  /**
   * Folds the LoRA into the base weights (faster decode); makes this adapter active. The C core
   * keeps a copy of the weight matrices the merge changes (their float32 bytes), so unmerge
   * restores them bit for bit; when that copy does not fit the heap, merge is `oom` and nothing
   * changes.
   */
  merge() {
    this._alive();
    this._model._checkNotBusy(); // base weights must not change under an in-flight forward
    this._model.setAdapter(this);
    if (this._engine.mb_adapter_merged(this._handle) === 1) return;
    if (this._model.info.dtype && this._model.info.dtype !== 'fp32')
      throw new MembaError(ErrorCodes.UNSUPPORTED, `merge folds the LoRA into float32 weights; this model holds ${this._model.info.dtype} weights (load it with dtype: 'fp32' to merge)`);
    this._engine.mb_adapter_merge(this._model._handle, this._handle, { what: 'merge' });
  }

  /** Takes the LoRA out of the base weights again (restores them exactly). */
  unmerge() {
    this._alive();
    this._model._checkNotBusy();
    this._unmergeExact();
  }

  /** Unmerges when merged. Every path that unmerges goes through here: unmerge(), switching
   * adapters (Mamba._bind), dispose. */
  _unmergeExact() {
    const e = this._engine;
    if (!this._handle || e.mb_adapter_merged(this._handle) !== 1) return;
    e.mb_adapter_unmerge(this._model._handle, this._handle, { what: 'unmerge' });
  }

  /** A call or generation starts using this adapter: its C adapter stays until _unpin. */
  _pin() {
    this._pins++;
  }

  _unpin() {
    this._pins--;
    if (this._pins === 0 && this._disposed) this._free();
  }

  /**
   * Makes the adapter unusable (unmerging it and deactivating it first). The C adapter is freed
   * now, or when the last call or generation that started with it ends. Safe to call twice.
   */
  dispose() {
    if (this._disposed) return;
    this._disposed = true;
    if (this._model._adapter === this) this._model._adapter = null;
    if (this._pins === 0) this._free();
  }

  /** Frees the C adapter (model: the model is being disposed, no weights to restore). */
  _free({ model = false } = {}) {
    if (!this._handle) return;
    if (!model) this._unmergeExact();
    if (this._model._bound === this) this._model._bound = null; // mb_adapter_free unbinds it
    this._engine.mb_adapter_free(this._handle);
    this._handle = 0;
    this._model._adapters.delete(this);
  }

  [Symbol.dispose]() {
    this.dispose();
  }
}
