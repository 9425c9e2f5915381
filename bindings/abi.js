// abi.js: the ONE JavaScript mirror of the C ABI, src/memba.h and src/memba_backend.h. It must
// change with them, in the same commit (tests/abi.test.mjs parses both headers and build.sh's
// EXPORTS and fails when this file has drifted). Nothing else in bindings/, web/, tests/, bench/
// or demo/ names a `_mb_*` export, a C enum value or a struct offset (engine.js only loads the
// module and hands it to `new Abi(mod)`).
//
// What is here, in the order of the file:
//   1. The C enums, once, under their C names minus the prefix: Status (mb_status), Param
//      (mb_param), Logits (mb_logits_mode), Target (mb_target), LimOutput, LimResetGrad, LimCross
//      (mb_lim_*), SplitBuf (mb_split_buf); ENUMS lists them with their C name and prefix. Two
//      integer arguments that the headers document only in comments get names here too:
//      LoraMatrix (mb_adapter_param's `which`) and AdapterBlock (mb_adapter_block's `which`).
//      The names the JS API uses for enum values: TARGET_NAMES ('in_proj.x' -> Target.IN_PROJ_X)
//      and, for the LIM enums, the lower-cased C names (enumNames / enumValue).
//   2. The structs as tables of [field, type] (MbConfig, MbAdapterConfig, MbAdamw), with
//      writeStruct / readStruct, which go by field name and fail on unknown or missing fields.
//   3. FUNCTIONS: every function of the two headers with its C parameter names in C order, and
//      the class Abi, which turns that table into checked wrappers named as in C:
//        abi.mb_forward(m, ids, B, L, Logits.ALL, logits, hidden, state[, { what, codes }])
//      Wrapper rules:
//      - the JS arguments are the C arguments in C order, their count checked; pointers are
//        unsigned numbers (the heap may exceed 2 GB: every pointer is read back with >>> 0).
//      - a struct argument (`cfg: mb_config`) is given as an object of named fields; the wrapper
//        writes it into a scratch block of the heap.
//      - out-parameters (`out: handle`, `numel: size`, `loss: f32`, ...) are not passed: the
//        wrapper supplies them. A constructor returns its handle (mb_model_new, mb_state_new,
//        mb_adapter_new); a status call with a scalar out-parameter returns that value
//        (mb_train_backward: the loss); a pointer call with `numel` returns { ptr, numel }.
//      - a non-zero mb_status becomes a MembaError: INVALID_ARG -> 'invalid_argument', OOM ->
//        'oom', SHAPE -> 'shape_mismatch', STATE -> 'internal' (a call out of order is always a
//        bug of the bindings: the JS API has no order a user could get wrong), anything else
//        'internal'. The message is `${what}: ${mb_last_error()}` (`what` defaults to the C
//        name). An optional last argument { what, codes } sets the message prefix and overrides
//        the code per status, e.g. mb_model_new of a config read from a file:
//        { codes: { [Status.ERR_INVALID_ARG]: ErrorCodes.BAD_FORMAT } }. Error kinds come only
//        from status codes, never from message text.
//   4. Heap helpers on Abi: malloc (throws 'oom'), free, withAlloc, putIds, f32 / i32 views
//      (fresh after every call that may grow memory), heapBytes.
import { MembaError, ErrorCodes } from './errors.js';

// ---- 1. Enums ----

const freeze = Object.freeze;

/** mb_status (memba.h). */
export const Status = freeze({ OK: 0, ERR_INVALID_ARG: 1, ERR_OOM: 2, ERR_SHAPE: 3, ERR_STATE: 4, ERR_NON_FINITE: 5 });

/** mb_param (memba.h): parameter slots; global ones (layer -1) first, then per layer. */
export const Param = freeze({
  EMBEDDING: 0, NORM_F: 1, LM_HEAD: 2, NORM: 3, IN_PROJ_W: 4, IN_PROJ_B: 5, CONV_W: 6,
  CONV_B: 7, X_PROJ_W: 8, DT_PROJ_W: 9, DT_PROJ_B: 10, A_LOG: 11, D: 12, OUT_PROJ_W: 13,
  OUT_PROJ_B: 14, COUNT: 15,
});

/** mb_dtype (memba.h): how the large weight matrices are held in memory. */
export const DType = freeze({ F32: 0, F16: 1, Q8: 2 });

/** mb_logits_mode (memba.h). */
export const Logits = freeze({ NONE: 0, LAST: 1, ALL: 2 });

/** mb_target (memba.h): LoRA targets. */
export const Target = freeze({ IN_PROJ: 0, IN_PROJ_X: 1, IN_PROJ_Z: 2, OUT_PROJ: 3, X_PROJ: 4, DT_PROJ: 5, COUNT: 6 });

/** mb_lim_output, mb_lim_reset_grad, mb_lim_cross (memba.h). */
export const LimOutput = freeze({ POST_RESET: 0, PRE_RESET: 1 });
export const LimResetGrad = freeze({ MASK: 0, TRIANGLE: 1 });
export const LimCross = freeze({ MEAN: 0, FIRST: 1, NONE: 2 });

/** mb_split_buf (memba_backend.h): the activation buffers of an open split forward. */
export const SplitBuf = freeze({ XZ: 0, U: 1, DBC: 2, DELTA: 3, Y: 4, LIM_V: 5 });

/** Every C enum above: its C type name, the prefix its C value names have, and the JS object. */
export const ENUMS = freeze([
  { c: 'mb_status', prefix: 'MB_', values: Status },
  { c: 'mb_param', prefix: 'MB_P_', values: Param },
  { c: 'mb_dtype', prefix: 'MB_DT_', values: DType },
  { c: 'mb_logits_mode', prefix: 'MB_LOGITS_', values: Logits },
  { c: 'mb_target', prefix: 'MB_T_', values: Target },
  { c: 'mb_lim_output', prefix: 'MB_LIM_', values: LimOutput },
  { c: 'mb_lim_reset_grad', prefix: 'MB_LIM_', values: LimResetGrad },
  { c: 'mb_lim_cross', prefix: 'MB_LIM_', values: LimCross },
  { c: 'mb_split_buf', prefix: 'MB_BUF_', values: SplitBuf },
]);

/** mb_adapter_param / mb_adapter_grad `which` (memba.h says it in a comment): lora_A or lora_B. */
export const LoraMatrix = freeze({ A: 0, B: 1 });
/** mb_adapter_block `which` (memba.h says it in a comment): tensors, gradients, AdamW moments 1 and 2. */
export const AdapterBlock = freeze({ TENSORS: 0, GRADS: 1, ADAM_M1: 2, ADAM_M2: 3 });

/** The JS API's names of the LoRA targets (PEFT module names; .x / .z the halves of in_proj). */
export const TARGET_NAMES = freeze({
  in_proj: Target.IN_PROJ, 'in_proj.x': Target.IN_PROJ_X, 'in_proj.z': Target.IN_PROJ_Z,
  out_proj: Target.OUT_PROJ, x_proj: Target.X_PROJ, dt_proj: Target.DT_PROJ,
});

/** The lower-cased names of an enum's values in value order, COUNT left out:
 * enumNames(LimCross) -> ['mean', 'first', 'none']. */
export function enumNames(e) {
  return Object.entries(e).filter(([k]) => k !== 'COUNT').sort((a, b) => a[1] - b[1]).map(([k]) => k.toLowerCase());
}

/** The value of a lower-cased name: enumValue(LimOutput, 'pre_reset') -> 1 (throws 'internal' for
 * a name that is not one: callers validate user input before). */
export function enumValue(e, name) {
  const key = typeof name === 'string' ? name.toUpperCase() : null;
  if (key === null || key === 'COUNT' || !Object.hasOwn(e, key)) throw internal(`no enum value named ${JSON.stringify(name)}`);
  return e[key];
}

// ---- 2. Structs ----

const TYPE_SIZE = { i32: 4, f32: 4 };

function struct(name, fields) {
  let offset = 0;
  const out = [];
  for (const [field, type] of fields) {
    const size = TYPE_SIZE[type];
    offset = Math.ceil(offset / size) * size; // C alignment (every field here is 4 bytes)
    out.push(freeze({ name: field, type, offset }));
    offset += size;
  }
  return freeze({ name, fields: freeze(out), size: Math.ceil(offset / 4) * 4 });
}

/** mb_config (memba.h). */
export const MbConfig = struct('mb_config', [
  ['d_model', 'i32'], ['n_layer', 'i32'], ['vocab_size', 'i32'], ['d_state', 'i32'], ['d_conv', 'i32'],
  ['d_inner', 'i32'], ['dt_rank', 'i32'], ['eps', 'f32'], ['use_bias', 'i32'], ['use_conv_bias', 'i32'],
  ['tied_head', 'i32'],
]);

/** mb_adapter_config (memba.h). */
export const MbAdapterConfig = struct('mb_adapter_config', [
  ['r', 'i32'], ['alpha', 'f32'], ['rslora', 'i32'], ['targets', 'i32'], ['dropout', 'f32'], ['lim', 'i32'],
  ['chunks', 'i32'], ['chunk_size', 'i32'], ['tau', 'f32'], ['v_th', 'f32'], ['output', 'i32'],
  ['reset_grad', 'i32'], ['surrogate_width', 'f32'], ['cross_layer', 'i32'],
]);

/** mb_adamw (memba.h). */
export const MbAdamw = struct('mb_adamw', [
  ['lr', 'f32'], ['beta1', 'f32'], ['beta2', 'f32'], ['eps', 'f32'], ['weight_decay', 'f32'], ['clip', 'f32'],
]);

/** Every struct above, by C name. */
export const STRUCTS = freeze({ mb_config: MbConfig, mb_adapter_config: MbAdapterConfig, mb_adamw: MbAdamw });

/**
 * Writes `values` (an object with exactly the struct's fields: numbers, or booleans for 0/1) at
 * heap byte offset ptr. i32 fields get ToInt32 of the value, f32 fields its float32 rounding
 * (what an Int32Array / Float32Array store does). Unknown or missing fields throw 'internal'.
 * @param {Uint8Array} heap the WASM heap (HEAPU8)
 */
export function writeStruct(heap, ptr, layout, values) {
  if (values === null || typeof values !== 'object') throw internal(`${layout.name}: values must be an object`);
  for (const k of Object.keys(values))
    if (!layout.fields.some((f) => f.name === k)) throw internal(`${layout.name} has no field '${k}'`);
  const dv = new DataView(heap.buffer, heap.byteOffset + ptr, layout.size);
  for (const { name, type, offset } of layout.fields) {
    let v = values[name];
    if (typeof v === 'boolean') v = v ? 1 : 0;
    if (typeof v !== 'number') throw internal(`${layout.name}.${name} is ${v === undefined ? 'missing' : `not a number (${typeof v})`}`);
    if (type === 'i32') dv.setInt32(offset, v, true);
    else dv.setFloat32(offset, v, true);
  }
}

/** Reads a struct at heap byte offset ptr into an object of its fields. */
export function readStruct(heap, ptr, layout) {
  const dv = new DataView(heap.buffer, heap.byteOffset + ptr, layout.size);
  const out = {};
  for (const { name, type, offset } of layout.fields) out[name] = type === 'i32' ? dv.getInt32(offset, true) : dv.getFloat32(offset, true);
  return out;
}

// ---- 3. Functions and their checked wrappers ----

/**
 * Every function of the two headers, per header, in header order: [C name, return kind, C
 * parameters]. A parameter is its C name, or `name:type` where type is a struct name (an input
 * struct, passed as an object) or an out-parameter the wrapper supplies: handle (T **out), size
 * (size_t *), f32 (float *), i32 (int32_t *). Return kinds: status (checked), void, int, double,
 * ptr (unsigned), size (size_t, unsigned), str (const char * read as a string), mb_config (a
 * const mb_config * read as an object).
 */
export const FUNCTIONS = freeze({
  'memba.h': [
    ['mb_last_error', 'str', ''],
    ['mb_model_new', 'status', 'cfg:mb_config out:handle'],
    ['mb_model_new_typed', 'status', 'cfg:mb_config dtype out:handle'],
    ['mb_model_free', 'void', 'm'],
    ['mb_model_config', 'mb_config', 'm'],
    ['mb_model_param', 'ptr', 'm p layer numel:size'],
    ['mb_model_param_dtype', 'int', 'm p layer numel:size'],
    ['mb_model_param_raw', 'ptr', 'm p layer bytes:size'],
    ['mb_model_param_write', 'status', 'm p layer row0 rows src'],
    ['mb_model_finalize', 'status', 'm'],
    ['mb_model_init_random', 'status', 'm seed'],
    ['mb_model_weight_bytes', 'size', 'm'],
    ['mb_model_activation_bytes', 'size', 'm'],
    ['mb_model_trim', 'void', 'm'],
    ['mb_forward', 'status', 'm ids B L mode logits hidden state'],
    ['mb_score', 'status', 'm ids B L from logprobs'],
    ['mb_state_new', 'status', 'm batch out:handle'],
    ['mb_state_free', 'void', 's'],
    ['mb_state_reset', 'void', 's'],
    ['mb_state_copy', 'status', 'dst src'],
    ['mb_state_batch', 'int', 's'],
    ['mb_state_pos', 'double', 's'],
    ['mb_state_data', 'ptr', 's numel:size'],
    ['mb_state_set_pos', 'void', 's pos'],
    ['mb_step', 'status', 'm s ids logits'],
    ['mb_adapter_new', 'status', 'm cfg:mb_adapter_config out:handle'],
    ['mb_adapter_free', 'void', 'a'],
    ['mb_adapter_param', 'ptr', 'a t layer which numel:size'],
    ['mb_adapter_init', 'status', 'a seed'],
    ['mb_adapter_causal', 'int', 'a'],
    ['mb_model_set_adapter', 'status', 'm a'],
    ['mb_adapter_merge', 'status', 'm a'],
    ['mb_adapter_unmerge', 'status', 'm a'],
    ['mb_adapter_merged', 'int', 'a'],
    ['mb_inspect', 'status', 'm ids B L lim_v lim_u0 chunk_len:i32'],
    ['mb_train_backward', 'status', 'm ids labels B L seed loss:f32'],
    ['mb_train_set_budget', 'void', 'm bytes'],
    ['mb_train_stored_layers', 'int', 'm'],
    ['mb_adapter_zero_grad', 'status', 'a'],
    ['mb_adapter_grad', 'ptr', 'a t layer which numel:size'],
    ['mb_adapter_block', 'ptr', 'a which numel:size'],
    ['mb_adapter_grad_norm', 'double', 'a'],
    ['mb_adamw_step', 'status', 'a opt:mb_adamw step grad_norm:f32'],
    ['mb_adapter_reset_optimizer', 'status', 'a'],
    ['mb_malloc', 'ptr', 'n'],
    ['mb_free', 'void', 'p'],
    ['mb_set_threads', 'status', 'n'],
    ['mb_get_threads', 'int', ''],
  ],
  'memba_backend.h': [
    ['mb_split_begin', 'status', 'm ids B L state'],
    ['mb_split_pre', 'status', 'm layer'],
    ['mb_split_mid', 'status', 'm layer'],
    ['mb_split_post', 'status', 'm layer'],
    ['mb_split_end', 'status', 'm mode logits'],
    ['mb_split_end_score', 'status', 'm ids from logprobs'],
    ['mb_split_buffer', 'ptr', 'm which'],
    ['mb_layer_A', 'ptr', 'm layer'],
    ['mb_state_ssm_ptr', 'ptr', 's layer b'],
    ['mb_set_simd', 'void', 'on'],
    ['mb_get_simd', 'int', ''],
    ['mb_pool_selftest', 'int', 'mode'],
    ['mb_ref_selective_scan', 'void', 'y s u delta bc bc_stride A D L E N'],
    ['mb_ref_conv1d_silu', 'void', 'u hist x x_stride w bias L E K'],
    ['mb_ref_softplus', 'void', 'x n'],
    ['mb_ref_matmul', 'void', 'out inp weight bias T C OC'],
    ['mb_ref_rmsnorm', 'void', 'out inp weight T C eps'],
    ['mb_ref_gate', 'void', 'y g g_stride T E'],
    ['mb_ref_lim', 'void', 'v post U z z_stride prev_post L E c pos0 tau v_th pre_reset'],
    ['mb_op_selective_scan', 'void', 'y s u delta bc bc_stride A D L E N'],
  ],
});

const OUT_TYPES = new Set(['handle', 'size', 'f32', 'i32']);

/** FUNCTIONS as a flat list of { name, ret, params: [{ name, type }] }. */
export function functionList() {
  return Object.values(FUNCTIONS).flat().map(([name, ret, params]) => ({
    name, ret,
    params: params.split(' ').filter(Boolean).map((p) => {
      const [pname, type = null] = p.split(':');
      return { name: pname, type };
    }),
  }));
}

/** mb_status -> error code (see the opening comment). */
export const STATUS_CODES = freeze({
  [Status.ERR_INVALID_ARG]: ErrorCodes.INVALID_ARGUMENT,
  [Status.ERR_OOM]: ErrorCodes.OOM,
  [Status.ERR_SHAPE]: ErrorCodes.SHAPE_MISMATCH,
  [Status.ERR_STATE]: ErrorCodes.INTERNAL,
  [Status.ERR_NON_FINITE]: ErrorCodes.NON_FINITE,
});

function internal(msg) {
  return new MembaError(ErrorCodes.INTERNAL, `memba ABI: ${msg}`);
}

/**
 * The C API of one WASM module instance: a checked wrapper per function of FUNCTIONS (named as
 * in C, e.g. abi.mb_forward) and heap helpers. Made once per module by engine.js.
 */
export class Abi {
  /** @param {object} mod the emscripten module (dist/memba.mjs) */
  constructor(mod) {
    /** @private the raw module: only this file calls its `_mb_*` exports */
    this._mod = mod;
    /** Names of FUNCTIONS the module does not export (their wrappers throw 'internal'); [] normally. */
    this.missing = [];
    for (const f of functionList()) this[f.name] = this._wrap(f);
    // scratch space for struct arguments and out-parameters (calls are synchronous: no overlap)
    const structBytes = Math.max(...Object.values(STRUCTS).map((s) => s.size));
    this._outPtr = Math.ceil(structBytes / 8) * 8;
    this._scratch = this.malloc(this._outPtr + 8);
  }

  /** The heap as bytes. In the threaded build another thread can grow the memory (a new thread's
   * stack and TLS), which leaves the glue's views on the old, shorter buffer: re-made here. */
  _heap() {
    const mem = this._mod.wasmMemory;
    if (mem && this._mod.HEAPU8.byteLength !== mem.buffer.byteLength) this._mod.HEAPU8 = new Uint8Array(mem.buffer);
    return this._mod.HEAPU8;
  }

  _wrap({ name, ret, params }) {
    const raw = this._mod[`_${name}`];
    if (typeof raw !== 'function') {
      this.missing.push(name);
      return () => {
        throw internal(`${name} is not exported by the WASM module (build.sh EXPORTS)`);
      };
    }
    const visible = params.filter((p) => !OUT_TYPES.has(p.type));
    const outs = params.filter((p) => OUT_TYPES.has(p.type));
    const n = visible.length;
    const takesOpts = ret === 'status';
    const simple = outs.length === 0 && !visible.some((p) => p.type);
    const abi = this;
    return function (...args) {
      if (abi.broken) {
        if (name.endsWith('_free')) return undefined; // disposing after a failure frees nothing, and is fine
        throw abi.broken;
      }
      if (args.length !== n && !(takesOpts && args.length === n + 1))
        throw internal(`${name} takes ${n} argument(s) (${visible.map((p) => p.name).join(', ')}), got ${args.length}`);
      let cargs = args;
      let outPtr = 0;
      if (!simple) {
        cargs = [];
        let i = 0;
        for (const p of params) {
          if (OUT_TYPES.has(p.type)) {
            outPtr = abi._scratch + abi._outPtr;
            abi._heap().fill(0, outPtr, outPtr + 8);
            cargs.push(outPtr);
          } else if (p.type) {
            writeStruct(abi._heap(), abi._scratch, STRUCTS[p.type], args[i++]);
            cargs.push(abi._scratch);
          } else cargs.push(args[i++]);
        }
      } else if (args.length > n) cargs = args.slice(0, n);
      let r;
      try {
        r = raw(...cargs);
      } catch (e) {
        throw abi._failed(name, e);
      }
      const out = outs.length ? abi._readOut(outs[0].type, outPtr) : undefined;
      switch (ret) {
        case 'status':
          if (r !== Status.OK) {
            const { what = name, codes = {} } = args[n] ?? {};
            throw new MembaError(codes[r] ?? STATUS_CODES[r] ?? ErrorCodes.INTERNAL, `${what}: ${abi.lastError()}`);
          }
          return out;
        case 'ptr':
          return outs.length ? { ptr: r >>> 0, numel: out } : r >>> 0;
        case 'size':
          return r >>> 0;
        case 'str':
          return abi._mod.UTF8ToString(r >>> 0);
        case 'mb_config':
          return (r >>> 0) ? readStruct(abi._heap(), r >>> 0, MbConfig) : null;
        case 'void':
          return undefined;
        default: // int, double (with an out-parameter: { value, [its name]: out })
          return outs.length ? { value: r, [outs[0].name]: out } : r;
      }
    };
  }

  /** A call that threw out of the module (a trap, or a crashed worker thread of the threaded
   * build, which the runtime unwinds to here): the C state may be half-changed, so this engine is
   * done; every later call throws the same error, and onBroken lets engine.js make a new one. */
  _failed(name, e) {
    const why = e === 'unwind' ? 'a worker thread of the engine crashed' : `${e?.name ?? 'error'}: ${e?.message ?? e}`;
    this.broken = new MembaError(ErrorCodes.INTERNAL, `the WASM engine failed in ${name} (${why}); it cannot be used again: load the model again`, { cause: e });
    this.onBroken?.();
    return this.broken;
  }

  _readOut(type, p) {
    const dv = new DataView(this._heap().buffer, p, 4);
    if (type === 'f32') return dv.getFloat32(0, true);
    if (type === 'i32') return dv.getInt32(0, true);
    return dv.getUint32(0, true); // handle, size_t: wasm32 pointers, unsigned
  }

  /** Message of the last C failure of this thread ("" when none). */
  lastError() {
    return this.mb_last_error();
  }

  /** Allocates n bytes on the heap (throws 'oom'); returns an unsigned pointer. A size that
   * does not fit wasm32's size_t is 'oom' here: passed on, it would wrap to a small buffer. */
  malloc(n) {
    if (!Number.isSafeInteger(n) || n < 0) throw internal(`malloc of ${n} bytes`);
    if (n >= 2 ** 32) throw new MembaError(ErrorCodes.OOM, `out of WASM memory: ${n} bytes do not fit the 4 GB heap`);
    const p = this.mb_malloc(n);
    if (p === 0) throw new MembaError(ErrorCodes.OOM, `out of WASM memory allocating ${n} bytes`);
    return p;
  }

  /** Frees a pointer from malloc (0 is ignored). */
  free(p) {
    if (p) this.mb_free(p);
  }

  /**
   * Makes room for one allocation of `bytes` (> 1 GB) before the C core asks for it. The C
   * allocator (emscripten's dlmalloc) grows the heap with sbrk(increment), a signed 32-bit
   * increment, so one request that grows the heap by 2 GB or more fails although the heap could
   * hold it. Allocating the room in 1 GB pieces and freeing them leaves it as the allocator's free
   * top, from which the large request is served without growing. Best effort: an allocation
   * that fails here is left to fail (as oom) in the C core.
   */
  reserve(bytes) {
    if (!(bytes > 2 ** 30)) return;
    const pieces = [];
    try {
      for (let left = bytes + (64 << 20); left > 0; left -= 2 ** 30) {
        const p = this.mb_malloc(Math.min(left, 2 ** 30)) >>> 0;
        if (!p) break;
        pieces.push(p);
      }
    } finally {
      for (const p of pieces.reverse()) this.mb_free(p);
    }
  }

  /** Runs fn(ptr) with a temporary allocation of n bytes. */
  withAlloc(n, fn) {
    const p = this.malloc(n);
    try {
      return fn(p);
    } finally {
      this.free(p);
    }
  }

  /** A Float32Array view of n floats at ptr (valid until the next call that may grow memory). */
  f32(ptr, n) {
    return new Float32Array(this._heap().buffer, ptr, n);
  }

  /** An Int32Array view of n ints at ptr (valid until the next call that may grow memory). */
  i32(ptr, n) {
    return new Int32Array(this._heap().buffer, ptr, n);
  }

  /** Writes ids (Int32Array) to a new heap buffer; returns its pointer (caller frees). */
  putIds(ids) {
    const p = this.malloc(ids.length * 4);
    this.i32(p, ids.length).set(ids);
    return p;
  }

  /** Bytes of the WASM heap now. */
  get heapBytes() {
    return this._heap().length;
  }
}
