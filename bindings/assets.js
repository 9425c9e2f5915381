// assets.js: where the engine's own files come from in a browser (memba.wasm and the worker script).
// Vite and webpack see `new URL('memba.wasm', import.meta.url)` (dist/memba.mjs) and
// `new Worker(new URL('./worker.js', import.meta.url))` (remote.js), copy or bundle the files and
// rewrite the URLs; unbundled code (Node, an import map over node_modules) finds them beside itself.
// esbuild and Rollup bundle the JS but leave those URLs pointing beside the bundle, where nothing
// was copied. There the package uses its copies inlined in JS, which it loads only then, by dynamic
// import: dist/memba-wasm-inline.js (memba.wasm in base64, 0.16 MB) and dist/worker-inline.js
// (worker.js bundled with its imports, run from a blob: URL); web/webgpu.js does the same for its
// WGSL kernels (dist/kernels-inline.js). build.sh writes all three.
// Deliberately not here: the model's files (a source's URLs: source.js) and wasmUrl (engine.js).
import { wasmUrl, moduleUrl } from '../dist/memba.mjs';

/**
 * True where memba.wasm and worker.js can be fetched by their URLs: unbundled, or bundled by a tool
 * that copied them (the wasm's URL was rewritten: a hashed name or a data: URL). False inside a
 * bundle that left the URLs alone, and in the inlined worker (a blob: URL is no base for them).
 */
export function filesBesideCode() {
  let url;
  try {
    url = wasmUrl();
  } catch {
    return false;
  }
  if (!url.pathname.endsWith('/memba.wasm')) return true; // rewritten by a bundler
  try {
    return new URL(moduleUrl()).pathname.endsWith('/dist/memba.mjs'); // the package's own layout
  } catch {
    return false;
  }
}

/** The bytes of memba.wasm from the inlined copy. @returns {Promise<Uint8Array>} */
export async function inlineWasm() {
  const { default: b64 } = await import('../dist/memba-wasm-inline.js');
  return base64Bytes(b64);
}

/** A module Worker running the inlined, self-contained copy of worker.js, and a function that frees
 * its blob: URL (call it once the worker has answered or failed). */
export async function inlineWorker() {
  const { default: source } = await import('../dist/worker-inline.js');
  const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
  return { worker: new Worker(url, { type: 'module' }), release: () => URL.revokeObjectURL(url) };
}

/** True where the package's own files are served as they are (no bundler moved this code): only
 * there can the threaded build's files be fetched by URL (bundlers see no literal URL of them). */
export function unbundled() {
  try {
    return new URL(moduleUrl()).pathname.endsWith('/dist/memba.mjs') && wasmUrl().pathname.endsWith('/memba.wasm');
  } catch {
    return false;
  }
}

/** The threaded build from its inlined copy: the glue and its pthread worker as blob: URLs, the
 * wasm's bytes. @returns {Promise<{ glue: string, worker: string, wasm: Uint8Array }>} */
export async function inlineThreads() {
  const { default: t } = await import('../dist/memba-threads-inline.js');
  const blob = (text) => URL.createObjectURL(new Blob([text], { type: 'text/javascript' }));
  return { glue: blob(t.glue), worker: blob(t.worker), wasm: base64Bytes(t.wasm) };
}

function base64Bytes(b64) {
  if (typeof Uint8Array.fromBase64 === 'function') return Uint8Array.fromBase64(b64);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
