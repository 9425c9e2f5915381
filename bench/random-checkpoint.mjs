// random-checkpoint.mjs: an HF-layout Mamba checkpoint of any shape with pseudo-random weights,
// in memory ({ files } for Mamba.load), so benchmarks can load models past the WASM heap (2.8b in
// f16 is 5.5 GB) through the real load path. The statistics follow src/core/init.c (uniform
// matrices scaled by 1 / sqrt(fan-in), dt bias = softplus^-1 of dt in [0.001, 0.1], A_log =
// log(n + 1)), not its values: a fast xorshift makes the halves. For speed figures only.
import { writeSafetensors, float32ToFloat16Bits } from '../bindings/safetensors.js';

/** Half bits of uniform values in [-a, a) (n of them), from the xorshift state `s` (an object). */
function uniformHalves(n, a, s) {
  // 256 halves of the scale, indexed by 8 random bits: enough spread for a speed benchmark
  const table = float32ToFloat16Bits(Float32Array.from({ length: 256 }, (_, i) => a * ((2 * i + 1) / 256 - 1)));
  const out = new Uint16Array(n);
  let x = s.x;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = table[x & 255];
  }
  s.x = x;
  return out;
}

/**
 * { files: { 'config.json', 'model.safetensors' or an index and shards } } of a tied-embedding Mamba of `shape`
 * ({ dModel, nLayer, vocabSize, dState = 16, dConv = 4 }), matrices in F16, the rest F32.
 */
export function randomCheckpoint({ dModel: d, nLayer, vocabSize: V, dState: N = 16, dConv: K = 4 }, seed = 1234, shardBytes = 2 ** 31) {
  const E = 2 * d;
  const R = Math.ceil(d / 16);
  const s = { x: seed | 1 };
  const f32 = (n, f) => Float32Array.from({ length: n }, (_, i) => f(i));
  const t = new Map();
  const half = (name, shape, a) => t.set(name, { dtype: 'F16', shape, data: uniformHalves(shape[0] * shape[1], a, s) });
  const float = (name, shape, f) => t.set(name, { dtype: 'F32', shape, data: f32(shape.reduce((p, x) => p * x, 1), f) });
  const rnd = () => {
    s.x ^= s.x << 13;
    s.x ^= s.x >>> 17;
    s.x ^= s.x << 5;
    return (s.x >>> 0) / 2 ** 32;
  };
  half('backbone.embeddings.weight', [V, d], 0.035);
  float('backbone.norm_f.weight', [d], () => 1);
  for (let l = 0; l < nLayer; l++) {
    const p = `backbone.layers.${l}.`;
    float(`${p}norm.weight`, [d], () => 1);
    half(`${p}mixer.in_proj.weight`, [2 * E, d], 1 / Math.sqrt(d));
    float(`${p}mixer.conv1d.weight`, [E, 1, K], () => (2 * rnd() - 1) / Math.sqrt(K));
    float(`${p}mixer.conv1d.bias`, [E], () => 0.1 * (2 * rnd() - 1));
    half(`${p}mixer.x_proj.weight`, [R + 2 * N, E], 1 / Math.sqrt(E));
    float(`${p}mixer.dt_proj.weight`, [E, R], () => (2 * rnd() - 1) / Math.sqrt(R));
    float(`${p}mixer.dt_proj.bias`, [E], () => {
      const dt = Math.exp(Math.log(0.001) + (Math.log(0.1) - Math.log(0.001)) * rnd());
      return dt + Math.log(-Math.expm1(-dt));
    });
    float(`${p}mixer.A_log`, [E, N], (i) => Math.log((i % N) + 1));
    float(`${p}mixer.D`, [E], () => 1);
    half(`${p}mixer.out_proj.weight`, [d, E], 1 / Math.sqrt(E));
  }
  const config = {
    architectures: ['MambaForCausalLM'], model_type: 'mamba', hidden_size: d, intermediate_size: E, num_hidden_layers: nLayer,
    vocab_size: V, state_size: N, conv_kernel: K, expand: 2, time_step_rank: R, layer_norm_epsilon: 1e-5, use_bias: false,
    use_conv_bias: true, tie_word_embeddings: true, eos_token_id: 0,
  };
  const files = { 'config.json': new TextEncoder().encode(JSON.stringify(config)) };
  // shards of at most 2 GB, as HF saves large models (one typed array holds at most 4 GB in Node 20)
  const shards = [[]];
  let bytes = 0;
  for (const [name, x] of t) {
    if (bytes + x.data.byteLength > shardBytes && shards.at(-1).length) {
      shards.push([]);
      bytes = 0;
    }
    shards.at(-1).push([name, x]);
    bytes += x.data.byteLength;
  }
  if (shards.length === 1) {
    files['model.safetensors'] = writeSafetensors(t);
    return { files };
  }
  const weightMap = {};
  shards.forEach((list, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    files[file] = writeSafetensors(new Map(list));
    for (const [name] of list) weightMap[name] = file;
  });
  files['model.safetensors.index.json'] = new TextEncoder().encode(JSON.stringify({ weight_map: weightMap }));
  return { files };
}
