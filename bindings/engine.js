// engine.js: the module loader: instantiates the WASM module (dist/memba.mjs + memba.wasm) once
// per JS realm and returns its C API as an Abi (abi.js: checked wrappers of every `mb_*` export
// and the heap helpers malloc / free / withAlloc / putIds / f32 / i32 / lastError). This file
// only loads; everything that knows the C ABI is in abi.js.
// Deliberately not here: model logic (mamba.js) and file parsing (safetensors.js, checkpoint.js).
// wasmUrl: `new URL('memba.wasm', import.meta.url)` written in dist/memba.mjs itself (build.sh adds
// it with --extern-post-js), so the URL is relative to the file beside memba.wasm: Vite and webpack
// copy memba.wasm and rewrite it. esbuild and Rollup leave it relative to the bundle, where there is
// no memba.wasm: there the inlined copy is used (assets.js), unless { wasmUrl } says where it is.
import createMembaModule, { wasmUrl as defaultWasmUrl } from '../dist/memba.mjs';
import { nodeImport } from './node-import.js';
import { MembaError, ErrorCodes } from './errors.js';
import { Abi } from './abi.js';
import { IS_NODE } from './env.js';
import { filesBesideCode, inlineWasm } from './assets.js';

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
 *   wasmBinary: the bytes of memba.wasm; wasmUrl: where to fetch it (default: beside dist/memba.mjs,
 *   as the bundler rewrote it, or the inlined copy in a bundle without it). Node reads
 *   dist/memba.wasm from disk when neither is given.
 * @returns {Promise<Abi>}
 */
export function getEngine(opts = {}) {
  if (!modulePromise) {
    modulePromise = (async () => {
      const args = {};
      if (opts.wasmBinary) {
        args.wasmBinary = opts.wasmBinary;
      } else if (!opts.wasmUrl && !filesBesideCode()) {
        args.wasmBinary = await inlineWasm(); // in a bundle that did not copy memba.wasm
      } else if (IS_NODE && !opts.wasmUrl) {
        const fs = await nodeImport('node:fs/promises'); // Node only: kept out of browser bundles
        args.wasmBinary = await fs.readFile(defaultWasmUrl());
      } else {
        // fetched here rather than by emscripten, so that a failure names the URL and the fix
        args.wasmBinary = await fetchWasm(opts.wasmUrl ?? defaultWasmUrl());
      }
      // with the bytes given, the glue needs no URL; without locateFile it would still resolve
      // 'memba.wasm' against import.meta.url, which a blob: worker's URL cannot be a base for
      args.locateFile = (file) => file;
      const mod = await createMembaModule(args);
      return new Abi(mod);
    })().catch((err) => {
      modulePromise = null;
      if (err instanceof MembaError) throw err;
      throw new MembaError(ErrorCodes.INTERNAL, `could not start the WASM engine: ${err.message ?? err}`, { cause: err });
    });
  }
  return modulePromise;
}

const WASM_HINT = 'Serve node_modules/memba-wasm/dist/memba.wasm at that URL, pass { wasmUrl } with where it is, ' +
  'or { wasmBinary } with its bytes (README, "In the browser")';

/** The bytes of memba.wasm from `url`; a failure is an error that names the URL and the fix. */
async function fetchWasm(url) {
  const fail = (why, cause) => new MembaError(ErrorCodes.NETWORK, `could not start the WASM engine: ${why}. ${WASM_HINT}`, { cause });
  let res;
  try {
    res = await fetch(url, { credentials: 'same-origin' });
  } catch (e) {
    throw fail(`fetching memba.wasm from ${url} failed (${e?.message ?? e})`, e);
  }
  if (!res.ok) throw fail(`fetching memba.wasm from ${url} gave HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  // \0asm: anything else (e.g. a dev server's index.html for an unknown path) is not the module
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d)
    throw fail(`${url} is not memba.wasm (${res.headers.get('content-type') ?? 'no content-type'}, ${bytes.length} bytes)`);
  return bytes;
}
