// gpu.js: the model's side of the WebGPU backend (web/backend.js): choosing it at load time,
// running a split forward through it (falling back to WASM for good on any GPU failure), and the
// one interface the backend reaches the model through: a GpuModel at creation and a GpuPass per
// forward (typedefs below). web/ sees no handle, no engine and no private field of Mamba; the
// split-forward stages, buffers and state pointers stay on this side (abi.js wrappers).
// Deliberately not here: GPU kernels and buffers (web/), the WASM paths (mamba.js).
import { MembaError, ErrorCodes } from './errors.js';
import { Param, SplitBuf, DType } from './abi.js';
import { LoadProgress } from './load-progress.js';
import { tensorToFloat32, float32ToFloat16Bits } from './safetensors.js';

/**
 * 'auto' takes WebGPU (on a hardware adapter, for fp32 / fp16 weights) from this d_inner up, for
 * the resident forward and decode only. Measured (bench/results.md, 2026-12-03, an H200 through
 * Dawn): at mamba-130m (d_inner 1536), the smallest shape measured, greedy decode ran 45-47x and
 * prefill 236-302x one WASM thread. The split path (adapters: each layer's scan on the GPU, the
 * matmuls in WASM) measured 0.83-1.10x, so under 'auto' calls with an adapter run in WASM.
 */
export const AUTO_WEBGPU_MIN_D_INNER = 1536;

/** Whether backend 'auto' tries WebGPU for a model (then only on a hardware adapter). */
export function autoWantsGpu(config, dtype) {
  return config.dInner >= AUTO_WEBGPU_MIN_D_INNER && (dtype === 'fp32' || dtype === 'fp16');
}

/**
 * What GpuBackend.create(gpuModel, opts) gets: the model's shape and the weights its kernels read.
 * @typedef {object} GpuModel
 * @property {Readonly<object>} config the model's normalised config (nLayer, dInner, dState, dtRank, ...)
 * @property {(layer: number) => Float32Array} layerA A = -exp(A_log) of a layer, [E, N] (a copy)
 * @property {(layer: number) => Float32Array} layerD D of a layer, [E] (a copy)
 */

/**
 * What backend.layers(pass) gets: one split forward of B sequences of L tokens, begun by the model
 * (and ended by it after layers() returns). For each layer l in order the backend calls pre(l),
 * runs the middle stage (softplus of delta, the selective scan from and into the state, the gate)
 * reading and writing buffer(...), then post(l).
 * @typedef {object} GpuPass
 * @property {number} B sequences
 * @property {number} L tokens per sequence
 * @property {boolean} lim the gate input is the LIM gate's output (buffer 'lim_v', [B*L, E]) rather
 *   than z (columns E..2E-1 of buffer 'xz', [B*L, 2E])
 * @property {boolean} hasState a decode state is being prefilled: ssm(l, b) is its SSM state, which
 *   the scan starts from and must leave updated; without one the scan starts from zeros
 * @property {(layer: number) => void} pre the C pre stage of a layer (in_proj, conv, x_proj, LIM),
 *   with the call's adapter bound; throws a MembaError
 * @property {(layer: number) => void} post the C post stage of a layer (out_proj, residual)
 * @property {(name: 'xz'|'u'|'dbc'|'delta'|'y'|'lim_v') => Float32Array} buffer a view of an
 *   activation buffer of the open split, whole ([B*L, 2E], [B*L, E], [B*L, R+2N] with B at column R
 *   and C at R+N, delta before softplus, y to write the gated scan output into, the LIM output).
 *   Views of the WASM heap: valid until the next await or engine call; take a fresh one after.
 * @property {(layer: number, b: number) => Float32Array|null} ssm a view of the decode state's
 *   SSM state [E, N] of a layer and sequence (null without a state); same validity as buffer()
 */

/** The GpuModel of a model. */
export function gpuModel(model) {
  const e = model._engine;
  const h = model._handle;
  const { dInner: E, dState: N } = model.config;
  const copy = (ptr, n, what) => {
    if (!ptr) throw new MembaError(ErrorCodes.INTERNAL, `no ${what}`);
    return e.f32(ptr, n).slice();
  };
  return Object.freeze({
    config: model.config,
    layerA: (l) => copy(e.mb_layer_A(h, l), E * N, `A of layer ${l}`),
    layerD: (l) => {
      const { ptr, numel } = e.mb_model_param(h, Param.D, l);
      return copy(ptr, numel, `D of layer ${l}`);
    },
  });
}

const TENSORS = {
  embedding: Param.EMBEDDING, norm_f: Param.NORM_F, lm_head: Param.LM_HEAD, norm: Param.NORM, in_proj: Param.IN_PROJ_W,
  in_proj_b: Param.IN_PROJ_B, conv: Param.CONV_W, conv_b: Param.CONV_B, x_proj: Param.X_PROJ_W, dt_proj: Param.DT_PROJ_W,
  dt_proj_b: Param.DT_PROJ_B, D: Param.D, out_proj: Param.OUT_PROJ_W, out_proj_b: Param.OUT_PROJ_B,
};
/* the tensors web/resident.js reads (its LAYER_TENSORS per layer) */
const MODEL_TENSORS = ['embedding', 'norm_f', 'lm_head'];
const LAYER_TENSORS = ['norm', 'in_proj', 'in_proj_b', 'conv', 'conv_b', 'x_proj', 'dt_proj', 'dt_proj_b', 'A', 'D', 'out_proj', 'out_proj_b'];
/* the matrices the C core holds in the model's dtype (src/core/weights.c param_typed) */
const TYPED = new Set(['embedding', 'lm_head', 'in_proj', 'x_proj', 'out_proj']);

/** [rows, cols] of every WeightSource tensor (web/resident.js) of a config. */
function tensorShapes(c) {
  const { dModel: d, dInner: E, dState: N, dtRank: R, vocabSize: V, dConv: K } = c;
  return {
    embedding: [V, d], lm_head: [V, d], norm_f: [1, d], norm: [1, d], in_proj: [2 * E, d], in_proj_b: [1, 2 * E],
    conv: [E, K], conv_b: [1, E], x_proj: [R + 2 * N, E], dt_proj: [E, R], dt_proj_b: [1, E], A: [E, N], D: [1, E],
    out_proj: [d, E], out_proj_b: [1, d],
  };
}

/**
 * Bytes a 'webgpu' load uploads: A and D of every layer (the split backend, web/backend.js; not
 * with split: false, a GPU-only model) and,
 * for fp32 and fp16 weights, every tensor of the resident forward (web/resident.js), f16 matrices
 * as halves packed two to a u32 (rows of ceil(cols / 2) words), plus per layer D and dt_proj's
 * bias side by side (the decode scan's, [2, d_inner] floats). The resident test checks this
 * against what is uploaded.
 */
export function gpuUploadBytes(c, dtype, { split: withSplit = true } = {}) {
  const split = withSplit ? c.nLayer * c.dInner * (c.dState + 1) * 4 : 0;
  if (dtype !== 'fp32' && dtype !== 'fp16') return split;
  const shapes = tensorShapes(c);
  const absent = new Set([...(c.useBias ? [] : ['in_proj_b', 'out_proj_b']), ...(c.useConvBias ? [] : ['conv_b']), ...(c.tieEmbeddings ? ['lm_head'] : [])]);
  const bytes = (names) => names.filter((n) => !absent.has(n)).reduce((sum, n) => {
    const [rows, cols] = shapes[n];
    return sum + (dtype === 'fp16' && TYPED.has(n) ? rows * Math.ceil(cols / 2) * 4 : rows * cols * 4);
  }, 0);
  return split + bytes(MODEL_TENSORS) + c.nLayer * (bytes(LAYER_TENSORS) + 2 * c.dInner * 4);
}

/**
 * The WeightSource (web/resident.js) of a model in WASM: copies of its tensors, f16 matrices as
 * their halves. A q8 model is not resident-capable yet: `unsupported`.
 */
export function weightSource(model) {
  const e = model._engine;
  const h = model._handle;
  const { dInner: E, dState: N } = model.config;
  const shapes = tensorShapes(model.config);
  return Object.freeze({
    config: model.config,
    tensor(name, layer = 0) {
      const [rows, cols] = shapes[name];
      if (name === 'A') return { dtype: 'f32', data: e.f32(e.mb_layer_A(h, layer), E * N).slice(), rows, cols };
      const p = TENSORS[name];
      if (p < Param.NORM) layer = -1; // the model-level tensors (memba.h)
      const { value: dt, numel } = e.mb_model_param_dtype(h, p, layer);
      if (!numel) return null; // absent: a bias the model has not, or a tied head
      if (numel !== rows * cols) throw new MembaError(ErrorCodes.INTERNAL, `${name} of layer ${layer}: ${numel} values, expected ${rows} x ${cols}`);
      if (dt === DType.F32) return { dtype: 'f32', data: e.f32(e.mb_model_param(h, p, layer).ptr, numel).slice(), rows, cols };
      if (dt === DType.F16) {
        const { ptr } = e.mb_model_param_raw(h, p, layer);
        return { dtype: 'f16', data: new Uint16Array(e._heap().buffer.slice(ptr, ptr + 2 * numel)), rows, cols };
      }
      throw new MembaError(ErrorCodes.UNSUPPORTED, `WebGPU residency takes fp32 and fp16 weights, not q8 (${name})`);
    },
  });
}

/* where each WeightSource tensor is in a checkpoint (checkpoint.js canonical names) */
const FILE_NAMES = {
  embedding: 'embeddings.weight', norm_f: 'norm_f.weight', lm_head: 'lm_head.weight', norm: 'norm.weight',
  in_proj: 'mixer.in_proj.weight', in_proj_b: 'mixer.in_proj.bias', conv: 'mixer.conv1d.weight', conv_b: 'mixer.conv1d.bias',
  x_proj: 'mixer.x_proj.weight', dt_proj: 'mixer.dt_proj.weight', dt_proj_b: 'mixer.dt_proj.bias', A: 'mixer.A_log',
  D: 'mixer.D', out_proj: 'mixer.out_proj.weight', out_proj_b: 'mixer.out_proj.bias',
};

/** Index of the first half that is Inf or NaN (exponent all ones), or -1. */
function firstNonFiniteHalf(h) {
  for (let i = 0; i < h.length; i++) if ((h[i] & 0x7c00) === 0x7c00) return i;
  return -1;
}

/**
 * The WeightSource (web/resident.js) of a parsed checkpoint (checkpoint.js planWeights has
 * checked names and shapes): each tensor converted from the file's bytes when asked for, so one
 * tensor's copy is the most held at once besides the file. With dtype 'fp16' the matrices the C
 * core would hold in fp16 are halves (an F16 file's own bits; F32 / BF16 rounded to nearest
 * even), the rest float32, as a WASM load with that dtype holds them; A = -exp(A_log). A NaN or
 * Inf (in the file, or an F32 value past the f16 range) is bad_format, as in a WASM load, unless
 * allowNonFinite (fp32 only).
 */
export function checkpointWeightSource(config, tensors, dtype, { allowNonFinite = false } = {}) {
  const shapes = tensorShapes(config);
  const bad = (what, i, name) => new MembaError(ErrorCodes.BAD_FORMAT, `tensor ${name} has a non-finite value (${what} at element ${i})${dtype === 'fp32' ? '; pass allowNonFinite: true to load it anyway' : ''}`);
  return Object.freeze({
    config,
    tensor(name, layer = 0) {
      const key = MODEL_TENSORS.includes(name) ? FILE_NAMES[name] : `layers.${layer}.${FILE_NAMES[name]}`;
      const t = tensors.get(key);
      if (!t) return null; // absent: a bias the model has not, or a tied head
      const [rows, cols] = shapes[name];
      if (t.numel !== rows * cols) throw new MembaError(ErrorCodes.SHAPE_MISMATCH, `${t.name} has ${t.numel} values, the model expects ${rows} x ${cols}`);
      if (dtype === 'fp16' && TYPED.has(name)) {
        const data = t.dtype === 'F16'
          ? (t.data.byteOffset % 2 === 0 ? new Uint16Array(t.data.buffer, t.data.byteOffset, t.numel) : new Uint16Array(t.data.slice().buffer))
          : float32ToFloat16Bits(tensorToFloat32(t));
        const i = firstNonFiniteHalf(data);
        if (i >= 0) throw bad(t.dtype === 'F16' ? 'Inf or NaN' : 'past the f16 range, or Inf / NaN', i, t.name);
        return { dtype: 'f16', data, rows, cols };
      }
      const data = tensorToFloat32(t);
      if (name === 'A') for (let i = 0; i < data.length; i++) data[i] = -Math.exp(data[i]);
      if (!allowNonFinite) {
        const i = data.findIndex((v) => v - v !== 0);
        if (i >= 0) throw bad(String(data[i]), i, t.name);
      }
      return { dtype: 'f32', data, rows, cols };
    },
  });
}

const BUFFERS = { xz: SplitBuf.XZ, u: SplitBuf.U, dbc: SplitBuf.DBC, delta: SplitBuf.DELTA, y: SplitBuf.Y, lim_v: SplitBuf.LIM_V };

/** The GpuPass of a split forward the model has begun (statePtr: a decode state or 0). */
function gpuPass(model, B, L, statePtr, adapter) {
  const e = model._engine;
  const h = model._handle;
  const { dInner: E, dState: N, dtRank: R } = model.config;
  const BL = B * L;
  const sizes = { xz: BL * 2 * E, u: BL * E, dbc: BL * (R + 2 * N), delta: BL * E, y: BL * E, lim_v: BL * E };
  return Object.freeze({
    B,
    L,
    lim: !!adapter?.config?.lim,
    hasState: !!statePtr,
    // the adapter is bound again before each stage: synchronous calls may run between the awaits
    pre(l) {
      model._bind(adapter);
      e.mb_split_pre(h, l, { what: 'split pre' });
    },
    post(l) {
      model._bind(adapter);
      e.mb_split_post(h, l, { what: 'split post' });
    },
    buffer(name) {
      if (!Object.hasOwn(BUFFERS, name)) throw new MembaError(ErrorCodes.INTERNAL, `no split buffer '${name}'`);
      const p = e.mb_split_buffer(h, BUFFERS[name]);
      if (!p) throw new MembaError(ErrorCodes.INTERNAL, `split buffer '${name}' is not open`);
      return e.f32(p, sizes[name]);
    },
    ssm(l, b) {
      const p = statePtr ? e.mb_state_ssm_ptr(statePtr, l, b) : 0;
      return p ? e.f32(p, E * N) : null;
    },
  });
}

/**
 * 'wasm': the WASM engine only. 'webgpu': the resident model (fp32 / fp16) and the split path
 * (adapters, q8) on WebGPU (an error where there is no adapter). 'auto': the resident model on
 * WebGPU where a hardware adapter exists and the model is large enough for it to pay
 * (autoWantsGpu, AUTO_WEBGPU_MIN_D_INNER), else WASM; no split path.
 * Options read: gpu, powerPreference (web/webgpu.js requestDevice).
 */
export async function chooseBackend(model, backend, opts) {
  await pickBackend(model, backend, opts);
  LoadProgress.of(opts)?.ready(); // the end of Mamba.load's progress (load-progress.js)
}

async function pickBackend(model, backend, opts) {
  if (model.info.residency === 'gpu') return gpuOnly(model, opts);
  if (backend === 'wasm') return;
  if (backend === 'auto' && !autoWantsGpu(model.config, model.info.dtype)) return;
  const split = backend === 'webgpu'; // the split path only where asked for: it does not pay
  const { GpuBackend } = await import('../web/backend.js');
  const r = await GpuBackend.create(gpuModel(model), { ...opts, split });
  if (!r.backend) {
    if (backend === 'webgpu') throw new MembaError(ErrorCodes.UNSUPPORTED, `backend 'webgpu': ${r.reason}`);
    return;
  }
  if (backend === 'auto' && r.backend.software) {
    r.backend.destroy();
    return; // a CPU implementation of WebGPU never beats WASM
  }
  const progress = LoadProgress.of(opts);
  const { nLayer, dInner, dState } = model.config;
  if (split) progress?.upload(nLayer * dInner * (dState + 1) * 4); // A and D of every layer
  // the resident forward (web/resident.js): every weight on the GPU, for forward() without an
  // adapter; the split path above serves adapters, decode states and scoring
  if (model.info.dtype === 'fp32' || model.info.dtype === 'fp16') {
    const { GpuResident } = await import('../web/resident.js');
    try {
      r.backend.resident = await GpuResident.create(r.backend.device, weightSource(model), { onUpload: (n) => progress?.upload(n), kernels: r.backend.kernels });
    } catch (err) {
      r.backend.destroy();
      if (backend === 'webgpu') throw new MembaError(ErrorCodes.UNSUPPORTED, `backend 'webgpu': the weights could not be uploaded (${err?.message ?? err})`, { cause: err });
      return;
    }
  }
  model._gpu = r.backend;
  model._setInfo({ backend: 'webgpu', adapter: r.backend.description, gpuWeightBytes: r.backend.resident?.weightBytes ?? 0 });
}

/**
 * A model with no weights in WASM (load.js gpuOnlyModel): a device, and every weight uploaded
 * from the checkpoint (model._gpuSource, dropped after). No device, or weights the GPU cannot
 * hold, fail the load: there is nothing to fall back to.
 */
async function gpuOnly(model, opts) {
  const src = model._gpuSource;
  model._gpuSource = null; // the file's bytes are freed with it once uploaded
  const { GpuBackend } = await import('../web/backend.js');
  const r = await GpuBackend.create({ config: model.config }, { ...opts, split: false });
  if (!r.backend) throw new MembaError(ErrorCodes.UNSUPPORTED, `residency 'gpu': ${r.reason}`);
  const progress = LoadProgress.of(opts);
  const { GpuResident } = await import('../web/resident.js');
  try {
    r.backend.resident = await GpuResident.create(r.backend.device, src, { onUpload: (n) => progress?.upload(n), kernels: r.backend.kernels });
  } catch (err) {
    r.backend.destroy();
    if (err instanceof MembaError) throw err;
    if (err?.name === 'GpuSizeError') throw new MembaError(ErrorCodes.OOM, `residency 'gpu': a weight does not fit this GPU (${err.message})`, { cause: err });
    throw new MembaError(ErrorCodes.UNSUPPORTED, `residency 'gpu': the weights could not be uploaded (${err?.message ?? err})`, { cause: err });
  }
  model._gpu = r.backend;
  model._setInfo({ backend: 'webgpu', adapter: r.backend.description, gpuWeightBytes: r.backend.resident.weightBytes });
}

/** The model's GPU backend if usable; a lost device switches the model to WASM for good. */
function gpuOk(model) {
  if (model._gpu?.lost) gpuFailed(model, new Error(model._gpu.lostReason));
  return model._gpu ?? null;
}

function gpuFailed(model, err) {
  if (!model._gpu) return;
  try {
    model._gpu.destroy();
  } catch {}
  model._gpu = null;
  // a GPU-only model has no weights to run on WASM: its calls are unsupported from now on (mamba.js _needWasm)
  const gpuOnlyModel = model.info.residency === 'gpu';
  model._setInfo({ backend: 'wasm', fallbackReason: `WebGPU failed (${err?.message ?? err}); ${gpuOnlyModel ? "this model's weights were on the GPU only: load it again" : 'running on WASM'}` });
}

/**
 * forward() on the resident GPU model (no adapter, no hidden states): the logits of every
 * position [B * L, V]. Undefined where there is none, or after a GPU failure (the model then
 * falls back to WASM for good, as gpuRun).
 */
export function residentForward(model, flat, B, L) {
  return residentCall(model, (res) => res.forward(flat, B, L));
}

/**
 * fn(resident) on the model's resident GPU model: its result, or undefined where there is none
 * or when it fails: the model then falls back to WASM for good (what was on the GPU is gone),
 * except for a call whose buffers do not fit the device (GpuSizeError), which alone goes to WASM.
 */
export async function residentCall(model, fn) {
  const res = gpuOk(model)?.resident;
  if (!res) return undefined;
  try {
    return await fn(res);
  } catch (err) {
    // the caller's abort (ours: code 'aborted'), not a GPU failure: the GPU stays. A mapAsync
    // that a lost device aborts is a DOMException named AbortError: that one is a GPU failure
    if (err instanceof MembaError && err.code === ErrorCodes.ABORTED) throw err;
    if (err?.name === 'GpuSizeError') { // a call too large for the GPU runs on WASM; the GPU stays
      if (!model._handle) throw new MembaError(ErrorCodes.OOM, `this call does not fit the GPU, and the model's weights are on the GPU only (${err.message})`, { cause: err });
      return undefined;
    }
    gpuFailed(model, err);
    return undefined;
  }
}

/**
 * The split forward with the GPU backend: begin, layers on the GPU, then `end(idsPtr)`. On any GPU
 * failure the model falls back to WASM (for a GpuSizeError, this call only), `restore()` undoes
 * partial state changes, and the caller's WASM path runs instead (returns undefined; also when
 * there is no GPU backend).
 */
export async function gpuRun(model, flat, B, L, statePtr, end, restore, adapter) {
  const gpu = gpuOk(model);
  if (!gpu || !model._handle || !gpu.split) return undefined; // the split needs the C model (not a GPU-only one) and the split backend
  const e = model._engine;
  const idp = e.putIds(flat);
  try {
    model._bind(adapter);
    e.mb_split_begin(model._handle, idp, B, L, statePtr, { what: 'forward' });
    try {
      await gpu.layers(gpuPass(model, B, L, statePtr, adapter));
    } catch (err) {
      if (err?.name !== 'GpuSizeError') gpuFailed(model, err); // as residentCall
      restore?.();
      return undefined;
    }
    model._bind(adapter);
    return end(idp);
  } finally {
    e.free(idp);
  }
}
