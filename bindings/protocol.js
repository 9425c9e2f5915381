// protocol.js: what the page and the worker agree on (worker.js / remote.js): the properties of
// each engine class the page sees as plain values, refreshed after every call, and which
// argument of a method is its options object (checked on the page, before anything is sent).
export const SNAPSHOT = {
  Mamba: ['config', 'info', 'hasTokenizer'],
  Adapter: ['config', 'name', 'causal', 'merged'],
  Trainer: ['options', 'stepCount'],
  DecodeState: ['batch', 'position'],
};

/**
 * Per class, the position of each method's options argument (or batch object): `null` there is
 * an invalid_argument on the page side, never a TypeError inside the worker.
 */
export const OPTIONS_ARG = {
  Mamba: {
    load: 1, createRandom: 1, forward: 1, perplexity: 1, evaluate: 1, createState: 0, generate: 1,
    stream: 1, streamText: 1, createAdapter: 0, loadAdapter: 1, createTrainer: 0,
  },
  Adapter: {},
  Trainer: { step: 0, fit: 1 },
  DecodeState: {},
};

/**
 * Whether a value is a plain object (an object literal or Object.create(null)): the only objects
 * whose fields the two sides walk to encode callbacks, signals and remote objects. Everything else
 * (typed arrays, ArrayBuffer, Blob, File, Map values aside, Date, ...) is left to structured clone.
 */
export function isPlainObject(v) {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
