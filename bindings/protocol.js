// protocol.js: what the page and the worker agree on (worker.js / remote.js): the properties of
// each engine class the page sees as plain values, refreshed after every call.
export const SNAPSHOT = {
  Mamba: ['config', 'info', 'hasTokenizer'],
  Adapter: ['config', 'name', 'causal', 'merged'],
  Trainer: ['options', 'stepCount'],
  DecodeState: ['batch', 'position'],
};
