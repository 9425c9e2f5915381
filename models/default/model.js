// model.js (package export 'memba-wasm/default-model' for Node, webpack and Vite): the embedded
// default model as a source for Mamba.load, its files named by `new URL('./file', import.meta.url)`
// written out literally, so Vite and webpack copy them into the build and rewrite the URLs. Node
// reads the files from this folder. esbuild and Rollup copy nothing; package.json's export
// conditions give them model-inline.js instead (the files as data: URLs; README, "In the browser").
// A separate entry, so apps that load other models do not get 14.7 MB of weights in their builds.
const urls = Object.freeze({
  'config.json': new URL('./config.json', import.meta.url).href,
  'model.safetensors': new URL('./model.safetensors', import.meta.url).href,
  'tokenizer.json': new URL('./tokenizer.json', import.meta.url).href,
});

// a bundle that picked this file but copied nothing (Rollup with browser: true sets the same
// conditions as Vite): the URLs were not rewritten and this module is no longer in the package
const notCopied = !import.meta.url.endsWith('/models/default/model.js') && urls['model.safetensors'].endsWith('/model.safetensors');

export const defaultModel = Object.freeze({
  description: notCopied
    ? "the embedded default model (memba-wasm/default-model), whose files this bundler did not copy beside the bundle: import defaultModel from 'memba-wasm/default-model/inline' instead (README, \"In the browser\")"
    : 'the embedded default model (memba-wasm/default-model)',
  urls,
});
export default defaultModel;
