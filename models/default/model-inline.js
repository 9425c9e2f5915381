// model-inline.js: the embedded default model with its three files inlined as data: URLs
// (dist/default-model-inline.js, written by build.sh), for bundlers that copy no files: esbuild
// and Rollup. package.json's exports give it for 'memba-wasm/default-model' where none of the
// conditions node, webpack, development or production is set (Vite and webpack set them and get
// model.js, whose URLs they rewrite to copied files), and always for
// 'memba-wasm/default-model/inline'. It adds the weights to the bundle: 19.6 MB of base64, which
// gzip over HTTP brings back to about their 14.7 MB.
import urls from '../../dist/default-model-inline.js';

export const defaultModel = Object.freeze({
  description: 'the embedded default model, inlined (memba-wasm/default-model/inline)',
  urls: Object.freeze({ ...urls }),
});
export default defaultModel;
