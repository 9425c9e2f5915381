// model.js (package export 'memba-wasm/default-model'): the embedded default model as a source for
// Mamba.load, its files named by `new URL('./file', import.meta.url)` written out literally, so
// Vite and webpack copy them into the build and rewrite the URLs (esbuild and Rollup copy nothing:
// put config.json, model.safetensors and tokenizer.json next to the bundle; the weights are not
// inlined in JS as memba.wasm and the worker are, README, "In the browser").
// Node reads the files from this folder. A separate entry, so apps that load other models do not
// get 14.7 MB of weights copied into their builds.
export const defaultModel = Object.freeze({
  description: 'the embedded default model (memba-wasm/default-model)',
  urls: Object.freeze({
    'config.json': new URL('./config.json', import.meta.url).href,
    'model.safetensors': new URL('./model.safetensors', import.meta.url).href,
    'tokenizer.json': new URL('./tokenizer.json', import.meta.url).href,
  }),
});
export default defaultModel;
