// pthread-node.js: lets Emscripten's pthreads (dist/memba-threads.mjs, built for the web) run in
// Node. The glue starts its pool with `new Worker(url)` and talks to each worker as to a Web Worker
// (onmessage / postMessage), and the worker script expects `self`, `location` and `importScripts`.
// NodePthreadWorker gives the glue that shape over node:worker_threads, and BOOT gives the worker
// script those globals, then runs it. A worker stops keeping Node alive once it has loaded the module
// (the pool's threads sleep between calls; they must not hold the process open).
// Deliberately not here: choosing the threaded build (engine.js).
import { nodeImport } from './node-import.js';

const BOOT = `
const { parentPort, workerData } = require('node:worker_threads');
globalThis.self = globalThis;
globalThis.location = { href: workerData.url };
globalThis.importScripts = () => { throw new Error('importScripts is not available here'); };
globalThis.postMessage = (msg, transfer) => parentPort.postMessage(msg, transfer);
parentPort.on('message', (data) => globalThis.onmessage && globalThis.onmessage({ data }));
const source = require('node:fs').readFileSync(require('node:url').fileURLToPath(workerData.url), 'utf8');
(0, eval)(source);
`;

/** A Worker class for the glue, over node:worker_threads. */
export async function nodePthreadWorkerClass() {
  const { Worker } = await nodeImport('node:worker_threads');
  return class NodePthreadWorker {
    constructor(url) {
      this._w = new Worker(BOOT, { eval: true, workerData: { url: String(url) } });
      this.onmessage = null;
      this.onerror = null;
      this._w.on('message', (data) => {
        if (data && data.cmd === 'loaded') this._w.unref();
        if (this.onmessage) this.onmessage({ data });
      });
      this._w.on('error', (err) => {
        if (this.onerror) this.onerror(err);
      });
    }

    postMessage(message, transfer) {
      this._w.postMessage(message, transfer);
    }

    terminate() {
      return this._w.terminate();
    }
  };
}
