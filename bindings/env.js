// env.js: what the code runs on, detected once, here and nowhere else (engine.js, source.js,
// worker.js, remote.js and web/webgpu.js import these constants instead of probing globals).
//   IS_NODE      Node.js (process.versions.node), including its worker threads; also true in
//                hybrids such as Electron's renderer, where IS_BROWSER is true as well
//   IS_BROWSER   a page: a global `window` (main thread of a browser, or a Node DOM shim)
//   IS_WORKER    a Web Worker: a global `self` with postMessage and no window (not a Node worker
//                thread, which talks through node:worker_threads)
//   HAS_WORKER   a global Worker constructor (browsers; not Node 20)
//   HAS_WEBGPU   the platform's own WebGPU (navigator.gpu); Node has none, web/webgpu.js may still
//                get one from the npm package 'webgpu'
//   NAVIGATOR_GPU  that GPU object, or null
//   HAS_SHARED_MEMORY  SharedArrayBuffer usable (Node; cross-origin isolated pages and workers)
//   HARDWARE_CONCURRENCY  navigator.hardwareConcurrency, or null
// Deliberately not here: capability checks of single APIs (fetch, Blob, Cache API), which the
// code using them makes where it uses them.
export const IS_NODE = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
export const IS_BROWSER = typeof window !== 'undefined';
export const IS_WORKER = !IS_BROWSER && typeof self !== 'undefined' && typeof self.postMessage === 'function';
export const HAS_WORKER = typeof Worker !== 'undefined';
export const NAVIGATOR_GPU = globalThis.navigator?.gpu ?? null;
/** SharedArrayBuffer, which the threaded build's heap needs: Node, and pages and workers that are
 * cross-origin isolated (COOP + COEP headers) */
export const HAS_SHARED_MEMORY = typeof SharedArrayBuffer !== 'undefined' && (IS_NODE || globalThis.crossOriginIsolated === true);
/** The cores the browser reports (navigator.hardwareConcurrency), or null (Node: node:os says) */
export const HARDWARE_CONCURRENCY = Number.isInteger(globalThis.navigator?.hardwareConcurrency) ? globalThis.navigator.hardwareConcurrency : null;
export const HAS_WEBGPU = NAVIGATOR_GPU !== null;
