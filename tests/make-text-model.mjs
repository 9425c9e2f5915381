// make-text-model.mjs: writes a small random Mamba-1 checkpoint (HF layout) with the golden
// byte-level BPE tokenizer, for tests that need text in and out without the embedded model.
// Usage: node tests/make-text-model.mjs OUT_DIR   (or import { makeTextModel })
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { writeSafetensors } from '../bindings/safetensors.js';

export function makeTextModel(out) {
fs.mkdirSync(out, { recursive: true });
const V = 1024, d = 64, nl = 2, E = 128, N = 16, R = 4, K = 4;
let s = 1; const rnd = (n, a) => Float32Array.from({ length: n }, () => { s = (s * 1103515245 + 12345) >>> 0; return a * (2 * s / 2 ** 32 - 1); });
const t = { 'backbone.embeddings.weight': [[V, d], rnd(V * d, 0.1)], 'backbone.norm_f.weight': [[d], new Float32Array(d).fill(1)] };
for (let l = 0; l < nl; l++) {
  const p = `backbone.layers.${l}.`;
  Object.assign(t, { [p + 'norm.weight']: [[d], new Float32Array(d).fill(1)], [p + 'mixer.in_proj.weight']: [[2 * E, d], rnd(2 * E * d, 0.12)],
    [p + 'mixer.conv1d.weight']: [[E, 1, K], rnd(E * K, 0.5)], [p + 'mixer.conv1d.bias']: [[E], rnd(E, 0.1)],
    [p + 'mixer.x_proj.weight']: [[R + 2 * N, E], rnd((R + 2 * N) * E, 0.09)], [p + 'mixer.dt_proj.weight']: [[E, R], rnd(E * R, 0.5)],
    [p + 'mixer.dt_proj.bias']: [[E], new Float32Array(E).fill(-3)], [p + 'mixer.A_log']: [[E, N], Float32Array.from({ length: E * N }, (_, i) => Math.log(1 + (i % N)))],
    [p + 'mixer.D']: [[E], new Float32Array(E).fill(1)], [p + 'mixer.out_proj.weight']: [[d, E], rnd(d * E, 0.09)] });
}
const entries = {}; for (const [k, [shape, data]] of Object.entries(t)) entries[k] = { dtype: 'F32', shape, data };
fs.writeFileSync(`${out}/model.safetensors`, writeSafetensors(entries));
fs.writeFileSync(`${out}/config.json`, JSON.stringify({ model_type: 'mamba', hidden_size: d, num_hidden_layers: nl, vocab_size: V, state_size: N, conv_kernel: K, expand: 2, time_step_rank: R, layer_norm_epsilon: 1e-5, use_bias: false, use_conv_bias: true, tie_word_embeddings: true, eos_token_id: 0 }));
fs.copyFileSync(new URL('./fixtures/tokenizer/tokenizer.json', import.meta.url), `${out}/tokenizer.json`);
return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) makeTextModel(process.argv[2]);
