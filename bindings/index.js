// index.js: the package entry (package.json "exports"). Re-exports the public API only.
export { Mamba, DecodeState } from './mamba.js';
export { Adapter } from './adapter.js';
export { Trainer } from './trainer.js';
export { MembaError, ErrorCodes, isAbortError } from './errors.js';
export { parseSafetensors, writeSafetensors, tensorToFloat32 } from './safetensors.js';
export { loadInWorker, WorkerClient } from './remote.js';
