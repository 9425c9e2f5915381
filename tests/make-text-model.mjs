// make-text-model.mjs: small random Mamba-1 checkpoints (HF layout) for tests that need a model
// of a given shape without the embedded one: syntheticCheckpoint gives the files in memory,
// makeTextModel writes them with the golden byte-level BPE tokenizer (vocab 1024) to a folder.
// Usage: node tests/make-text-model.mjs OUT_DIR   (or import { makeTextModel, syntheticCheckpoint })
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors } from '../bindings/safetensors.js';

export const TOKENIZER_JSON = fileURLToPath(new URL('./fixtures/tokenizer/tokenizer.json', import.meta.url));

/**
 * { 'config.json', 'model.safetensors' } of a random F32 checkpoint: dModel d, nl layers, vocab V,
 * state N, dt rank R, conv K (expand 2, tied head, eos 0), weights from a seeded LCG.
 */
export function syntheticCheckpoint({ d = 64, nl = 2, V = 1024, N = 16, R = 4, K = 4, seed = 1 } = {}) {
  const E = 2 * d;
  let s = seed >>> 0;
  const rnd = (n, a) => Float32Array.from({ length: n }, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), a * (2 * s / 2 ** 32 - 1)));
  const t = { 'backbone.embeddings.weight': [[V, d], rnd(V * d, 0.1)], 'backbone.norm_f.weight': [[d], new Float32Array(d).fill(1)] };
  for (let l = 0; l < nl; l++) {
    const p = `backbone.layers.${l}.`;
    Object.assign(t, {
      [`${p}norm.weight`]: [[d], new Float32Array(d).fill(1)], [`${p}mixer.in_proj.weight`]: [[2 * E, d], rnd(2 * E * d, 0.12)],
      [`${p}mixer.conv1d.weight`]: [[E, 1, K], rnd(E * K, 0.5)], [`${p}mixer.conv1d.bias`]: [[E], rnd(E, 0.1)],
      [`${p}mixer.x_proj.weight`]: [[R + 2 * N, E], rnd((R + 2 * N) * E, 0.09)], [`${p}mixer.dt_proj.weight`]: [[E, R], rnd(E * R, 0.5)],
      [`${p}mixer.dt_proj.bias`]: [[E], new Float32Array(E).fill(-3)],
      [`${p}mixer.A_log`]: [[E, N], Float32Array.from({ length: E * N }, (_, i) => Math.log(1 + (i % N)))],
      [`${p}mixer.D`]: [[E], new Float32Array(E).fill(1)], [`${p}mixer.out_proj.weight`]: [[d, E], rnd(d * E, 0.09)],
    });
  }
  const entries = {};
  for (const [k, [shape, data]] of Object.entries(t)) entries[k] = { dtype: 'F32', shape, data };
  const config = { model_type: 'mamba', hidden_size: d, num_hidden_layers: nl, vocab_size: V, state_size: N, conv_kernel: K, expand: 2, time_step_rank: R, layer_norm_epsilon: 1e-5, use_bias: false, use_conv_bias: true, tie_word_embeddings: true, eos_token_id: 0 };
  return { 'config.json': JSON.stringify(config), 'model.safetensors': writeSafetensors(entries) };
}

/** Writes a synthetic checkpoint (shape as syntheticCheckpoint's) and the golden tokenizer to `out`. */
export function makeTextModel(out, shape) {
  fs.mkdirSync(out, { recursive: true });
  for (const [name, bytes] of Object.entries(syntheticCheckpoint(shape))) fs.writeFileSync(path.join(out, name), bytes);
  fs.copyFileSync(TOKENIZER_JSON, path.join(out, 'tokenizer.json'));
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) makeTextModel(process.argv[2]);
