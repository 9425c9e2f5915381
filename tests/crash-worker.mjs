// crash-worker.mjs: bindings/worker.js with two ways to die on request, for the worker tests
// (tests/robust-io.test.mjs): { op: 'test-throw' } throws an uncaught error in the worker,
// { op: 'test-exit', code } calls process.exit. Not a test file itself.
import { parentPort } from 'node:worker_threads';
import '../bindings/worker.js';

parentPort.on('message', (m) => {
  if (m?.op === 'test-throw') setTimeout(() => { throw new Error('deliberate crash for the test'); });
  if (m?.op === 'test-exit') process.exit(m.code ?? 3);
});
