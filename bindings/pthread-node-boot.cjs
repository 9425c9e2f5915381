// pthread-node-boot.cjs: the start of each of the threaded build's worker threads in Node
// (pthread-node.js starts it). It gives Emscripten's worker script (dist/memba-threads.worker.js,
// written for Web Workers) the globals it expects: self, location, importScripts, postMessage and
// onmessage over the worker_threads port; then runs it in this global scope. CommonJS on purpose
// (.cjs): it must not depend on how the parent process treats plain .js or --input-type.
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { fileURLToPath } = require('node:url');

globalThis.self = globalThis;
globalThis.location = { href: workerData.url };
globalThis.importScripts = () => {
  throw new Error('importScripts is not available here');
};
globalThis.postMessage = (msg, transfer) => parentPort.postMessage(msg, transfer);
parentPort.on('message', (data) => globalThis.onmessage && globalThis.onmessage({ data }));
(0, eval)(fs.readFileSync(fileURLToPath(workerData.url), 'utf8'));
