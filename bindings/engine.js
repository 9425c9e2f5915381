// engine.js: loads the WASM module (dist/memba.mjs + memba.wasm) once per JS realm and wraps the
// C API's raw pointers: unsigned pointers (the heap may exceed 2 GB), fresh typed-array views
// after every call that may grow memory, and C status codes turned into MembaError.
// Deliberately not here: model logic (mamba.js) and file parsing (safetensors.js, checkpoint.js).
import createMembaModule from '../dist/memba.mjs';
import { MembaError, ErrorCodes } from './errors.js';
import { IS_NODE } from './env.js';

let modulePromise = null;

/** C status codes (src/memba.h) -> error codes. */
const STATUS_CODES = {
  1: ErrorCodes.INVALID_ARGUMENT,
  2: ErrorCodes.OOM,
  3: ErrorCodes.SHAPE_MISMATCH,
  4: ErrorCodes.INTERNAL,
};

/** Parameter slots of src/memba.h (mb_param). */
export const Param = Object.freeze({
  EMBEDDING: 0, NORM_F: 1, LM_HEAD: 2, NORM: 3, IN_PROJ_W: 4, IN_PROJ_B: 5, CONV_W: 6,
  CONV_B: 7, X_PROJ_W: 8, DT_PROJ_W: 9, DT_PROJ_B: 10, A_LOG: 11, D: 12, OUT_PROJ_W: 13,
  OUT_PROJ_B: 14,
});

export const Logits = Object.freeze({ NONE: 0, LAST: 1, ALL: 2 });

/**
 * The shared engine instance (one WASM module, one heap, for every model of this realm).
 * @param {{ wasmBinary?: ArrayBuffer|Uint8Array, wasmUrl?: string|URL }} [opts]
 */
export function getEngine(opts = {}) {
  if (!modulePromise) {
    modulePromise = (async () => {
      const args = {};
      if (opts.wasmBinary) {
        args.wasmBinary = opts.wasmBinary;
      } else if (IS_NODE) {
        const fs = await import('node:fs/promises');
        args.wasmBinary = await fs.readFile(new URL('../dist/memba.wasm', import.meta.url));
      } else {
        const url = opts.wasmUrl ?? new URL('../dist/memba.wasm', import.meta.url);
        args.locateFile = () => String(url);
      }
      const mod = await createMembaModule(args);
      return new Engine(mod);
    })().catch((err) => {
      modulePromise = null;
      throw new MembaError(ErrorCodes.INTERNAL, `could not start the WASM engine: ${err.message}`, { cause: err });
    });
  }
  return modulePromise;
}

export class Engine {
  constructor(mod) {
    this.mod = mod;
  }

  /** Message of the last C failure. */
  lastError() {
    return this.mod.UTF8ToString(this.mod._mb_last_error());
  }

  /** Throws a MembaError for a non-zero C status. */
  check(status, what) {
    if (status !== 0) {
      throw new MembaError(STATUS_CODES[status] ?? ErrorCodes.INTERNAL, `${what}: ${this.lastError()}`);
    }
  }

  /** Allocates n bytes on the heap (throws 'oom'); returns an unsigned pointer. */
  malloc(n) {
    const p = this.mod._mb_malloc(n) >>> 0;
    if (p === 0) throw new MembaError(ErrorCodes.OOM, `out of WASM memory allocating ${n} bytes`);
    return p;
  }

  free(p) {
    if (p) this.mod._mb_free(p);
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

  f32(ptr, n) {
    return new Float32Array(this.mod.HEAPU8.buffer, ptr, n);
  }

  i32(ptr, n) {
    return new Int32Array(this.mod.HEAPU8.buffer, ptr, n);
  }

  /** Writes ids (Int32Array) to a new heap buffer; returns its pointer (caller frees). */
  putIds(ids) {
    const p = this.malloc(ids.length * 4);
    this.i32(p, ids.length).set(ids);
    return p;
  }

  /** Calls a C constructor fn(...args, out) that hands its handle back through `out`; throws the
   * status as a MembaError (codes: statusCodes overrides STATUS_CODES per status). */
  create(fn, args, what, statusCodes = {}) {
    return this.withAlloc(4, (outp) => {
      const st = fn(...args, outp);
      if (st !== 0) throw new MembaError(statusCodes[st] ?? STATUS_CODES[st] ?? ErrorCodes.INTERNAL, `${what}: ${this.lastError()}`);
      return new Uint32Array(this.mod.HEAPU8.buffer, outp, 1)[0];
    });
  }

  /** Reads a size_t written at ptr (wasm32: 4 bytes). */
  readSize(ptr) {
    return new Uint32Array(this.mod.HEAPU8.buffer, ptr, 1)[0];
  }
}
