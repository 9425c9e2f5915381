// engine.js: the module loader: instantiates the WASM module (dist/memba.mjs + memba.wasm) once
// per JS realm and returns its C API as an Abi (abi.js: checked wrappers of every `mb_*` export
// and the heap helpers malloc / free / withAlloc / putIds / f32 / i32 / lastError). This file
// only loads; everything that knows the C ABI is in abi.js.
// Deliberately not here: model logic (mamba.js) and file parsing (safetensors.js, checkpoint.js).
import createMembaModule from '../dist/memba.mjs';
import { MembaError, ErrorCodes } from './errors.js';
import { Abi } from './abi.js';
import { IS_NODE } from './env.js';

let modulePromise = null;

/** The most the WASM heap can grow to: build.sh's -sMAXIMUM_MEMORY (4 GB, all of wasm32; a test
 * checks the two agree). */
export const MAX_HEAP_BYTES = 4 * 2 ** 30;
/** What the module itself takes below the heap's limit: static data, the 1 MB stack, and the
 * rest of build.sh's -sINITIAL_MEMORY (16 MB) that the runtime starts with. */
export const RUNTIME_BYTES = 16 * 2 ** 20;
/** The most float32 weight bytes one model can have and still be allocated: a checkpoint that
 * needs more is refused (oom) before its tensors are read (checkpoint.js readCheckpoint). */
export const MAX_WEIGHT_BYTES = MAX_HEAP_BYTES - RUNTIME_BYTES;

/**
 * The shared engine instance (one WASM module, one heap, for every model of this realm). The
 * options count only on the first call of a realm (the module is made once).
 * @param {{ wasmBinary?: ArrayBuffer|Uint8Array, wasmUrl?: string|URL }} [opts]
 *   wasmBinary: the bytes of memba.wasm; wasmUrl: where a browser fetches it (default: next to
 *   dist/memba.mjs). Node reads dist/memba.wasm from disk when neither is given.
 * @returns {Promise<Abi>}
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
      return new Abi(mod);
    })().catch((err) => {
      modulePromise = null;
      throw new MembaError(ErrorCodes.INTERNAL, `could not start the WASM engine: ${err.message}`, { cause: err });
    });
  }
  return modulePromise;
}
