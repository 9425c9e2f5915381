// The example app of the README's "Bundlers" section (and of tests/bundlers.test.mjs, which builds
// it with Vite, webpack, esbuild and Rollup): loads the embedded default model in a Web Worker and
// streams a continuation. The result also goes to document.body.dataset for the test to read.
import { Mamba } from 'memba-wasm';
import { defaultModel } from 'memba-wasm/default-model';

const $ = (id) => document.getElementById(id);

async function main() {
  const phases = [];
  const model = await Mamba.load(defaultModel, {
    worker: true,
    onProgress: ({ phase, loaded, total }) => {
      if (!phases.includes(phase)) phases.push(phase);
      if (total) $('progress').value = loaded / total; // bytes over the whole load
      $('status').textContent = phase;
    },
  });
  $('status').textContent = `ready (${model.info.backend})`;
  let text = '';
  for await (const piece of model.streamText('The jury said', { maxNewTokens: 16 })) {
    text += piece;
    $('out').textContent = `The jury said${text}`;
  }
  const { threads, threadsNote } = model.info;
  await model.dispose();
  const result = { text, phases, threads, threadsNote };
  // ?recipe: also the README's own-worker recipe (Vite and webpack resolve the package path)
  if (new URLSearchParams(location.search).has('recipe')) {
    const worker = new Worker(new URL('memba-wasm/worker', import.meta.url), { type: 'module' });
    const m = await Mamba.load(defaultModel, { worker });
    result.recipe = await m.decode(await m.generate(await m.encode('The jury said'), { maxNewTokens: 16 }));
    await m.dispose();
    worker.terminate();
  }
  return result;
}

main().then(
  (result) => { document.body.dataset.result = JSON.stringify(result); },
  (err) => {
    $('status').textContent = `${err.code ?? err.name}: ${err.message}`;
    document.body.dataset.error = `${err.code ?? err.name}: ${err.message}`;
  },
);
