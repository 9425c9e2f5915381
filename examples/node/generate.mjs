// A Node script: the embedded default model continues a prompt, streamed to stdout.
//   node examples/node/generate.mjs "The jury said"      (in this repository, after ./build.sh)
//   node node_modules/memba-wasm/examples/node/generate.mjs "Once upon a time"   (installed)
// Progress (bytes over the whole load) goes to stderr.
import { Mamba } from 'memba-wasm';

const prompt = process.argv.slice(2).join(' ') || 'The jury said';
const model = await Mamba.load('default', {
  onProgress: ({ phase, loaded, total }) => {
    if (process.stderr.isTTY) process.stderr.write(`\r${phase.padEnd(8)} ${total ? ((100 * loaded) / total).toFixed(0) : '?'}%   ${phase === 'ready' ? '\n' : ''}`);
  },
});
process.stdout.write(prompt);
for await (const piece of model.streamText(prompt, { maxNewTokens: 16 })) process.stdout.write(piece);
process.stdout.write('\n');
model.dispose();
