// pthread-node.js: lets Emscripten's pthreads (dist/memba-threads.mjs, built for the web) run in
// Node. The glue starts its pool with `new Worker(url)` and talks to each worker as to a Web Worker
// (onmessage / postMessage), and the worker script expects `self`, `location` and `importScripts`.
// NodePthreadWorker gives the glue that shape over node:worker_threads; each thread starts in
// pthread-node-boot.cjs, which gives the worker script those globals and runs it. A worker stops
// keeping Node alive once it has loaded the module (the pool's threads sleep between calls; they
// must not hold the process open).
// Deliberately not here: choosing the threaded build (engine.js).
import { nodeImport } from './node-import.js';

// in a variable: bundlers must not pick it up (Node only)
const BOOT = './pthread-node-boot.cjs';

/** A Worker class for the glue, over node:worker_threads. */
export async function nodePthreadWorkerClass() {
  const { Worker } = await nodeImport('node:worker_threads');
  return class NodePthreadWorker {
    constructor(url) {
      this._w = new Worker(new URL(BOOT, import.meta.url), { workerData: { url: String(url) } });
      this.onmessage = null;
      this.onerror = null;
      this._w.on('message', (data) => {
        if (data && data.cmd === 'loaded') this._w.unref();
        if (this.onmessage) this.onmessage({ data });
      });
      this._w.on('error', (err) => {
        // the glue's handler rethrows, which here would end the process: the failure reaches the
        // caller instead, as an error of the call that was waiting (bindings/abi.js)
        try {
          if (this.onerror) this.onerror(err);
        } catch {}
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
