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
import { IS_NODE, HAS_WORKER, HAS_SHARED_MEMORY, HARDWARE_CONCURRENCY } from './env.js';
import { filesBesideCode, inlineWasm, unbundled, inlineThreads } from './assets.js';

let modulePromise = null;

/** The threaded build's glue, in a variable: bundlers must neither bundle nor copy it (it runs
 * where the package's files are served as they are: Node, an import map, a plain server). */
const THREADS_GLUE = '../dist/memba-threads.mjs';
/** The most threads the `threads` option takes (the C pool's MB_MAX_THREADS). */
export const MAX_THREADS = 16;
/** The default thread count: the cores the platform reports, at most this (decode is memory-bound,
 * so more cores add little; each thread is a worker holding its own stack). */
export const DEFAULT_MAX_THREADS = 8;

/** The `threads` option, checked: an integer 1..MAX_THREADS, or undefined. */
export function threadsOption(threads) {
  if (threads === undefined) return undefined;
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS)
    throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `threads must be an integer from 1 to ${MAX_THREADS}, got ${threads}`);
  return threads;
}

async function defaultThreads() {
  let cores = HARDWARE_CONCURRENCY;
  if (IS_NODE) {
    const os = await nodeImport('node:os');
    cores = os.availableParallelism?.() ?? os.cpus().length;
  }
  return Math.max(1, Math.min(DEFAULT_MAX_THREADS, Number.isInteger(cores) ? cores : 1));
}

/** Why the single-threaded build is used for these options, or null when threads can run. */
function singleThreadReason(opts, want) {
  if (want === 1) return opts.threads === 1 ? 'threads: 1 was asked for' : 'the platform reports 1 core';
  if (opts.wasmBinary) return 'wasmBinary holds the single-threaded build (memba.wasm)';
  if (opts.wasmUrl) return 'wasmUrl names the single-threaded build (memba.wasm)';
  if (!HAS_SHARED_MEMORY)
    return 'the page is not cross-origin isolated, so it has no SharedArrayBuffer: serve it with the headers Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp';
  return null;
}

/** Emscripten's one warning about the pool's short waits on the calling thread: expected here. */
const printErr = (text) => {
  if (!/^Blocking on the main thread/.test(String(text))) console.error(text);
};

/** How long the threaded build's workers may take to start (they usually take well under 1 s). */
const START_LIMIT_MS = 20_000;

/** The threaded module with a pool of `n` threads (n - 1 workers and the caller). */
async function startThreaded(n) {
  // unbundled: the files beside this one; in a bundle (which serves none of them): the inlined
  // copy, the glue and its worker from blob: URLs (a pthread worker imports the glue by its URL)
  let glueHref, workerHref, wasmBinary, create;
  if (IS_NODE || unbundled()) {
    glueHref = new URL(THREADS_GLUE, import.meta.url).href;
    const glue = await import(/* webpackIgnore: true */ /* @vite-ignore */ glueHref);
    create = glue.default;
    workerHref = glue.workerUrl().href;
    if (IS_NODE) wasmBinary = await (await nodeImport('node:fs/promises')).readFile(glue.wasmUrl());
    else wasmBinary = await fetchWasm(glue.wasmUrl());
  } else {
    const t = await inlineThreads();
    glueHref = t.glue;
    workerHref = t.worker;
    wasmBinary = t.wasm;
    create = (await import(/* webpackIgnore: true */ /* @vite-ignore */ glueHref)).default;
  }
  // the glue makes its workers with the global Worker, synchronously inside create(): Node has
  // none, so one that speaks the Web Worker protocol is there for that call only
  const restore = IS_NODE && !HAS_WORKER ? () => delete globalThis.Worker : null;
  if (restore) globalThis.Worker = await (await import('./pthread-node.js')).nodePthreadWorkerClass();
  let ready;
  try {
    ready = create({
      wasmBinary,
      membaPoolSize: n - 1,
      locateFile: (file) => (file.endsWith('.worker.js') ? workerHref : file),
      mainScriptUrlOrBlob: glueHref,
      printErr,
    });
  } finally {
    restore?.();
  }
  // a pool worker that cannot start (a Content-Security-Policy without blob: workers, a missing
  // file) only reports to the console, and the glue would wait for it for ever: so a time limit,
  // after which the single-threaded build runs instead (the note says why)
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`its ${n - 1} worker(s) did not start within ${START_LIMIT_MS / 1000} s`)), START_LIMIT_MS);
  });
  let mod;
  try {
    mod = await Promise.race([ready, limit]);
  } finally {
    clearTimeout(timer);
  }
  const abi = new Abi(mod);
  abi.mb_set_threads(n, { what: 'threads' });
  abi.threaded = true;
  abi.poolThreads = n;
  abi.threads = n;
  abi.threadsNote = `${n} thread${n > 1 ? "s" : ""} (the threaded build)`;
  return abi;
}

/** The single-threaded module (memba.wasm), from the bytes, the URL, the inlined copy or disk. */
async function startSingle(opts) {
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
  const abi = new Abi(await createMembaModule(args));
  abi.threaded = false;
  abi.poolThreads = 1;
  abi.threads = 1;
  return abi;
}

/** Applies a later load's `threads` to the engine the first load made (one pool per realm). */
function applyThreads(abi, threads) {
  if (threads === undefined || threads === abi.threads) return;
  if (!abi.threaded) {
    abi.threadsNote = `1 thread: the engine of this ${IS_NODE ? 'process' : 'page or worker'} is the single-threaded build (${abi.singleReason})`;
    return;
  }
  const n = Math.min(threads, abi.poolThreads);
  abi.mb_set_threads(n, { what: 'threads' });
  abi.threads = n;
  abi.threadsNote = n < threads ? `${n} threads: the pool the first load made has ${abi.poolThreads}` : `${n} thread${n > 1 ? "s" : ""} (the threaded build)`;
}

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
 * The first call picks the build: the threaded one (dist/memba-threads.*, a SharedArrayBuffer heap
 * and a pool of `threads` threads) where threads can run, else memba.wasm; abi.threads and
 * abi.threadsNote say which and why. A later call's `threads` resizes the pool up to its first size.
 * @param {{ wasmBinary?: ArrayBuffer|Uint8Array, wasmUrl?: string|URL, threads?: number }} [opts]
 *   wasmBinary: the bytes of memba.wasm; wasmUrl: where to fetch it (default: beside dist/memba.mjs,
 *   as the bundler rewrote it, or the inlined copy in a bundle without it). Node reads
 *   dist/memba.wasm from disk when neither is given. threads: 1..16 (default: the cores, at most 8).
 * @returns {Promise<Abi>}
 */
export async function getEngine(opts = {}) {
  const threads = threadsOption(opts.threads);
  if (!modulePromise) {
    modulePromise = (async () => {
      const want = threads ?? (await defaultThreads());
      let why = singleThreadReason(opts, want);
      if (!why) {
        try {
          return await startThreaded(want);
        } catch (err) {
          why = `the threaded build did not start (${err?.message ?? err})`;
        }
      }
      const abi = await startSingle(opts);
      abi.singleReason = why;
      abi.threadsNote = `1 thread: ${why}`;
      return abi;
    })().then((abi) => {
      const mine = modulePromise;
      abi.onBroken = () => {
        if (modulePromise === mine) modulePromise = null; // the next load makes a new engine
      };
      return abi;
    }).catch((err) => {
      modulePromise = null;
      if (err instanceof MembaError) throw err;
      throw new MembaError(ErrorCodes.INTERNAL, `could not start the WASM engine: ${err.message ?? err}`, { cause: err });
    });
    return modulePromise;
  }
  const abi = await modulePromise;
  applyThreads(abi, threads);
  return abi;
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
