// Tests for bindings/checkpoint.js: both golden layouts load to the same config and bit-identical tensors,
// config normalisation (defaults, vocab padding, inference of biases), weight planning and every
// rejection path of readCheckpoint (bad JSON, missing or misplaced tensors, shapes, pickle-only repos).
// Not covered here: HTTP transport (source.test.mjs) and safetensors byte-level parsing (safetensors.test.mjs).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { normalizeConfig, readCheckpoint, planWeights, canonicalTensorName, canonicalizeTensors } from '../bindings/checkpoint.js';
import { openSource } from '../bindings/source.js';
import {
  parseSafetensors, writeSafetensors, tensorToFloat32, float32ToFloat16Bits, float32ToBFloat16Bits,
} from '../bindings/safetensors.js';
import { MembaError } from '../bindings/errors.js';
import { rejectsCode, TOL } from './helpers.mjs';

const HF_DIR = fileURLToPath(new URL('./fixtures/mamba-tiny', import.meta.url));
const ORIG_DIR = fileURLToPath(new URL('./fixtures/mamba-tiny-original-layout', import.meta.url));
const HF_CONFIG = JSON.parse(await readFile(`${HF_DIR}/config.json`, 'utf8'));
const ORIG_CONFIG = JSON.parse(await readFile(`${ORIG_DIR}/config.json`, 'utf8'));
const HF_BYTES = new Uint8Array(await readFile(`${HF_DIR}/model.safetensors`));
const GOLDEN = parseSafetensors(HF_BYTES).tensors; // file name -> tensor (F32)

function expectThrow(fn, code, pattern) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof MembaError, `expected MembaError, got ${e?.name}: ${e?.message}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

/** The golden tensors as writeSafetensors entries, edited by `edit(map)`. */
function goldenFile(edit = () => {}) {
  const entries = new Map(GOLDEN);
  edit(entries);
  return writeSafetensors(entries);
}

const load = (files, options) => openSource({ files }).then((src) => readCheckpoint(src, options));
const canonical = (fileTensors) => canonicalizeTensors(fileTensors);

test('both golden layouts give equal configs and bit-identical tensors', async () => {
  const hf = await readCheckpoint(await openSource(HF_DIR));
  const orig = await readCheckpoint(await openSource(ORIG_DIR));
  assert.equal(hf.config.layout, 'hf');
  assert.equal(orig.config.layout, 'original');
  assert.deepEqual({ ...hf.config, layout: null }, { ...orig.config, layout: null });
  assert.deepEqual({ ...hf.config }, {
    dModel: 32, nLayer: 2, vocabSize: 64, dState: 8, dConv: 4, expand: 2, dInner: 64, dtRank: 2, eps: 1e-5,
    useBias: false, useConvBias: true, tieEmbeddings: true, layout: 'hf',
  });
  assert.deepEqual(hf.rawConfig, HF_CONFIG);
  assert.equal(hf.tokenizerJson, null);
  assert.deepEqual([...hf.tensors.keys()].sort(), [...orig.tensors.keys()].sort());
  for (const [name, t] of hf.tensors) assert.deepEqual(orig.tensors.get(name).data, t.data, name);
  assert.equal(hf.tensors.get('embeddings.weight').name, 'backbone.embeddings.weight');
  assert.equal(orig.tensors.get('embeddings.weight').name, 'backbone.embedding.weight');

  const plan = planWeights(hf.config, hf.tensors);
  assert.deepEqual(plan.map((w) => w.name), hf.plan.map((w) => w.name));
  assert.equal(plan.length, 1 + 2 * 10 + 1);
  assert.deepEqual(plan.slice(0, 11).map((w) => [w.name, w.layer, w.kind, w.shape]), [
    ['embeddings.weight', -1, 'embeddings.weight', [64, 32]],
    ['layers.0.norm.weight', 0, 'norm.weight', [32]],
    ['layers.0.mixer.in_proj.weight', 0, 'mixer.in_proj.weight', [128, 32]],
    ['layers.0.mixer.conv1d.weight', 0, 'mixer.conv1d.weight', [64, 1, 4]],
    ['layers.0.mixer.conv1d.bias', 0, 'mixer.conv1d.bias', [64]],
    ['layers.0.mixer.x_proj.weight', 0, 'mixer.x_proj.weight', [18, 64]],
    ['layers.0.mixer.dt_proj.weight', 0, 'mixer.dt_proj.weight', [64, 2]],
    ['layers.0.mixer.dt_proj.bias', 0, 'mixer.dt_proj.bias', [64]],
    ['layers.0.mixer.A_log', 0, 'mixer.A_log', [64, 8]],
    ['layers.0.mixer.D', 0, 'mixer.D', [64]],
    ['layers.0.mixer.out_proj.weight', 0, 'mixer.out_proj.weight', [32, 64]],
  ]);
  assert.equal(plan.at(-1).name, 'norm_f.weight');
  for (const w of plan) assert.equal(w.tensor, hf.tensors.get(w.name));
});

test('canonical tensor names', () => {
  assert.equal(canonicalTensorName('backbone.embeddings.weight'), 'embeddings.weight');
  assert.equal(canonicalTensorName('backbone.embedding.weight'), 'embeddings.weight');
  assert.equal(canonicalTensorName('backbone.layers.3.mixer.A_log'), 'layers.3.mixer.A_log');
  assert.equal(canonicalTensorName('backbone.norm_f.weight'), 'norm_f.weight');
  assert.equal(canonicalTensorName('lm_head.weight'), 'lm_head.weight');
  assert.equal(canonicalTensorName('layers.0.mixer.D'), null);
  assert.equal(canonicalTensorName('model.embed_tokens.weight'), null);
  const both = new Map([['backbone.embeddings.weight', GOLDEN.get('backbone.embeddings.weight')],
    ['backbone.embedding.weight', GOLDEN.get('backbone.embeddings.weight')]]);
  expectThrow(() => canonical(both), 'bad_format', /both provide embeddings\.weight/);
});

test('normalizeConfig: HF defaults, derived sizes and bias inference', () => {
  const base = { hidden_size: 100, num_hidden_layers: 3, vocab_size: 50, state_size: 16, conv_kernel: 4, expand: 2 };
  const c = normalizeConfig(base);
  assert.equal(c.dInner, 200);
  assert.equal(c.dtRank, 7);
  assert.equal(c.eps, 1e-5);
  assert.equal(c.useBias, false);
  assert.equal(c.useConvBias, true);
  assert.equal(c.tieEmbeddings, true);
  assert.equal(normalizeConfig({ ...base, time_step_rank: 'auto' }).dtRank, 7);
  assert.equal(normalizeConfig({ ...base, time_step_rank: 5 }).dtRank, 5);
  assert.equal(normalizeConfig({ ...base, intermediate_size: 150 }).dInner, 150);
  assert.equal(normalizeConfig({ ...base, layer_norm_epsilon: 1e-6 }).eps, 1e-6);
  const names = ['layers.0.mixer.in_proj.bias', 'layers.0.mixer.D'];
  assert.equal(normalizeConfig(base, { tensorNames: names }).useBias, true);
  assert.equal(normalizeConfig(base, { tensorNames: names }).useConvBias, false);
  assert.equal(normalizeConfig({ ...base, use_bias: false }, { tensorNames: names }).useBias, false, 'config wins');
  assert.equal(normalizeConfig(base, { tensorNames: ['lm_head.weight'] }).tieEmbeddings, false);
  assert.equal(normalizeConfig({ ...base, residual_in_fp32: false }).dModel, 100);
  assert.ok(Object.isFrozen(c));
});

test('vocab size: original-layout padding, embedding rows are authoritative', () => {
  const orig = { d_model: 32, n_layer: 2, vocab_size: 60, ssm_cfg: {}, pad_vocab_size_multiple: 8 };
  assert.equal(normalizeConfig(orig).vocabSize, 64);
  assert.equal(normalizeConfig({ ...orig, pad_vocab_size_multiple: 16 }).vocabSize, 64);
  assert.equal(normalizeConfig({ ...orig, vocab_size: 50277 }).vocabSize, 50280);
  assert.equal(normalizeConfig({ ...orig, vocab_size: 50277 }, { embeddingShape: [50280, 32] }).vocabSize, 50280);
  assert.equal(normalizeConfig({ ...orig, pad_vocab_size_multiple: undefined }).vocabSize, 64, 'default multiple 8');
  const c = normalizeConfig(orig);
  assert.deepEqual([c.dState, c.dConv, c.expand, c.dInner, c.dtRank, c.useBias, c.useConvBias, c.tieEmbeddings],
    [16, 4, 2, 64, 2, false, true, true]);
  assert.equal(normalizeConfig({ ...HF_CONFIG, vocab_size: 60 }, { embeddingShape: [64, 32] }).vocabSize, 64);
  expectThrow(() => normalizeConfig({ ...orig, vocab_size: 65 }, { embeddingShape: [64, 32] }), 'shape_mismatch', /64 rows.*65/);
  expectThrow(() => normalizeConfig(HF_CONFIG, { embeddingShape: [64, 31] }), 'shape_mismatch');
  expectThrow(() => normalizeConfig(HF_CONFIG, { embeddingShape: [64] }), 'shape_mismatch');
});

test('original-layout checkpoint with a padded vocab loads through readCheckpoint', async () => {
  const config = { ...ORIG_CONFIG, vocab_size: 57 }; // padded to 64 = the embedding rows
  const ck = await load({ 'config.json': config, 'model.safetensors': HF_BYTES });
  assert.equal(ck.config.vocabSize, 64);
  assert.equal(ck.config.layout, 'original');
  await rejectsCode(load({ 'config.json': { ...ORIG_CONFIG, vocab_size: 70 }, 'model.safetensors': HF_BYTES }), 'shape_mismatch');
});

test('normalizeConfig rejects malformed and unsupported configs', () => {
  const hf = HF_CONFIG;
  const o = ORIG_CONFIG;
  const cases = [
    [[1, 2], 'bad_format'], [null, 'bad_format'], [{}, 'bad_format'],
    [{ ...hf, hidden_size: undefined }, 'bad_format'], [{ ...hf, hidden_size: 0 }, 'bad_format'],
    [{ ...hf, num_hidden_layers: 2.5 }, 'bad_format'], [{ ...hf, num_hidden_layers: undefined }, 'bad_format'],
    [{ ...hf, vocab_size: '64' }, 'bad_format'], [{ ...hf, state_size: -8 }, 'bad_format'],
    [{ ...hf, conv_kernel: undefined }, 'bad_format'], [{ ...hf, intermediate_size: undefined, expand: undefined }, 'bad_format'],
    [{ ...hf, time_step_rank: 'big' }, 'bad_format'], [{ ...hf, layer_norm_epsilon: -1 }, 'bad_format'],
    [{ ...hf, use_bias: 'no' }, 'bad_format'], [{ ...hf, tie_word_embeddings: 1 }, 'bad_format'],
    [{ ...hf, model_type: 'mamba2' }, 'unsupported'], [{ ...hf, model_type: 'falcon_mamba' }, 'unsupported'],
    [{ ...hf, hidden_act: 'gelu' }, 'unsupported'],
    [{ ...o, d_model: -1 }, 'bad_format'], [{ ...o, n_layer: undefined }, 'bad_format'], [{ ...o, vocab_size: undefined }, 'bad_format'],
    [{ ...o, ssm_cfg: [] }, 'bad_format'], [{ ...o, ssm_cfg: { d_state: 0 } }, 'bad_format'],
    [{ ...o, ssm_cfg: { layer: 'Mamba2' } }, 'unsupported'], [{ ...o, rms_norm: false }, 'unsupported'],
    [{ ...o, attn_layer_idx: [1] }, 'unsupported'], [{ ...o, d_intermediate: 128 }, 'unsupported'],
    [{ ...o, pad_vocab_size_multiple: 0 }, 'bad_format'],
  ];
  for (const [raw, code] of cases) expectThrow(() => normalizeConfig(raw), code);
  assert.equal(normalizeConfig({ ...o, ssm_cfg: { layer: 'Mamba1' }, residual_in_fp32: false }).layout, 'original');
});

test('planWeights: missing tensors, wrong shapes, wrong dtypes, layers beyond nLayer, biases, lm_head', () => {
  const tensors = canonical(GOLDEN);
  const config = normalizeConfig(HF_CONFIG, { tensorNames: tensors.keys() });
  assert.equal(planWeights(config, tensors).length, 22);
  const without = new Map(tensors);
  without.delete('layers.1.mixer.D');
  expectThrow(() => planWeights(config, without), 'bad_format', /missing tensor layers\.1\.mixer\.D/);
  expectThrow(() => planWeights(normalizeConfig({ ...HF_CONFIG, state_size: 9 }), tensors), 'shape_mismatch',
    /^layers\.0\.mixer\.x_proj\.weight has shape \[18, 64\] but config implies \[20, 64\]$/);
  const asInt = new Map(tensors);
  asInt.set('norm_f.weight', { ...tensors.get('norm_f.weight'), dtype: 'I32' });
  expectThrow(() => planWeights(config, asInt), 'unsupported', /norm_f\.weight has dtype I32/);
  expectThrow(() => planWeights(normalizeConfig({ ...HF_CONFIG, num_hidden_layers: 1 }), tensors), 'shape_mismatch', /layers\.1\..*layer 1/);
  expectThrow(() => planWeights(normalizeConfig({ ...HF_CONFIG, use_bias: true }), tensors), 'bad_format', /missing tensor layers\.0\.mixer\.in_proj\.bias/);
  expectThrow(() => planWeights(normalizeConfig({ ...HF_CONFIG, tie_word_embeddings: false }), tensors), 'bad_format', /missing tensor lm_head\.weight/);
  const noConvBias = new Map([...tensors].filter(([n]) => !n.endsWith('conv1d.bias')));
  expectThrow(() => planWeights(config, noConvBias), 'bad_format', /missing tensor layers\.0\.mixer\.conv1d\.bias/);
  expectThrow(() => planWeights(config, Object.fromEntries(tensors)), 'invalid_argument');
  const extra = new Map(tensors);
  extra.set('layers.0.mixer.something_new', tensors.get('norm_f.weight'));
  assert.equal(planWeights(config, extra).length, 22, 'unknown tensors are ignored');
});

test('readCheckpoint: biases and lm_head are found, inferred and planned in order', async () => {
  const f32 = (n, v) => ({ dtype: 'F32', shape: [n], data: new Float32Array(n).fill(v) });
  const file = goldenFile((m) => {
    for (const l of [0, 1]) {
      m.set(`backbone.layers.${l}.mixer.in_proj.bias`, f32(128, 0.5));
      m.set(`backbone.layers.${l}.mixer.out_proj.bias`, f32(32, -0.5));
    }
    m.set('lm_head.weight', { ...GOLDEN.get('backbone.embeddings.weight') });
  });
  const { use_bias: _, ...config } = HF_CONFIG; // use_bias absent: inferred from the tensors
  const ck = await load({ 'config.json': config, 'model.safetensors': file });
  assert.equal(ck.config.useBias, true);
  assert.equal(ck.config.tieEmbeddings, false);
  const names = ck.plan.map((w) => w.name);
  assert.equal(names.length, 22 + 4 + 1);
  assert.equal(names.at(-1), 'lm_head.weight');
  assert.equal(names[names.indexOf('layers.0.mixer.in_proj.weight') + 1], 'layers.0.mixer.in_proj.bias');
  assert.equal(names[names.indexOf('layers.1.mixer.out_proj.weight') + 1], 'layers.1.mixer.out_proj.bias');
  assert.deepEqual(ck.plan.find((w) => w.name === 'layers.1.mixer.out_proj.bias').shape, [32]);
  const withBiasFalse = await load({ 'config.json': HF_CONFIG, 'model.safetensors': file });
  assert.equal(withBiasFalse.plan.length, 22 + 1, 'config says no bias: the bias tensors are ignored');
});

test('readCheckpoint: F16 and BF16 checkpoints convert within their precision', async () => {
  for (const [dtype, convert, rel] of [['F16', float32ToFloat16Bits, TOL.f16_round_rel], ['BF16', float32ToBFloat16Bits, TOL.bf16_round_rel]]) {
    const file = goldenFile((m) => {
      for (const [n, t] of m) m.set(n, { dtype, shape: t.shape, data: convert(tensorToFloat32(t)) });
    });
    const ck = await load({ 'config.json': HF_CONFIG, 'model.safetensors': file });
    for (const w of ck.plan) {
      assert.equal(w.tensor.dtype, dtype);
      const want = tensorToFloat32(GOLDEN.get(w.tensor.name));
      const got = tensorToFloat32(w.tensor);
      for (let i = 0; i < want.length; i++) {
        assert.ok(Math.abs(got[i] - want[i]) <= Math.abs(want[i]) * rel + TOL.half_round_abs, `${dtype} ${w.name}[${i}]`);
      }
    }
  }
});

test('readCheckpoint: bad files and missing pieces are MembaErrors with the right code', async () => {
  const cfg = HF_CONFIG;
  const shardA = goldenFile((m) => { for (const n of [...m.keys()]) if (!n.includes('layers.1')) m.delete(n); });
  const shardB = goldenFile((m) => { for (const n of [...m.keys()]) if (n.includes('layers.1')) m.delete(n); });
  const weightMap = {};
  for (const n of GOLDEN.keys()) weightMap[n] = n.includes('layers.1') ? 'a.safetensors' : 'b.safetensors';
  const sharded = { 'config.json': cfg, 'model.safetensors.index.json': { weight_map: weightMap }, 'a.safetensors': shardA, 'b.safetensors': shardB };
  const ck = await load(sharded);
  assert.equal(ck.plan.length, 22);

  const cases = [
    ['bad config JSON', { 'config.json': '{"hidden_size": 32,', 'model.safetensors': HF_BYTES }, 'bad_format', /config\.json/],
    ['config not an object', { 'config.json': '[1]', 'model.safetensors': HF_BYTES }, 'bad_format', /config\.json/],
    ['config invalid UTF-8', { 'config.json': new Uint8Array([0x7b, 0xff, 0x7d]), 'model.safetensors': HF_BYTES }, 'bad_format'],
    ['bad tokenizer JSON', { 'config.json': cfg, 'tokenizer.json': 'nope', 'model.safetensors': HF_BYTES }, 'bad_format', /tokenizer\.json/],
    ['no config', { 'model.safetensors': HF_BYTES }, 'not_found', /config\.json/],
    ['no weights at all', { 'config.json': cfg }, 'not_found', /model\.safetensors/],
    ['pickle only', { 'config.json': cfg, 'pytorch_model.bin': new Uint8Array(16) }, 'unsupported',
      /^pytorch_model\.bin \(pickle\) checkpoints are not supported; convert to safetensors/],
    ['truncated safetensors', { 'config.json': cfg, 'model.safetensors': HF_BYTES.subarray(0, 5000) }, 'bad_format', /model\.safetensors/],
    ['config/file layer mismatch', { 'config.json': { ...cfg, num_hidden_layers: 1 }, 'model.safetensors': HF_BYTES }, 'shape_mismatch'],
    ['config/file dim mismatch', { 'config.json': { ...cfg, state_size: 9 }, 'model.safetensors': HF_BYTES }, 'shape_mismatch', /x_proj/],
    ['missing tensor', { 'config.json': cfg, 'model.safetensors': goldenFile((m) => m.delete('backbone.layers.0.mixer.A_log')) }, 'bad_format', /missing tensor layers\.0\.mixer\.A_log/],
    ['missing embeddings', { 'config.json': cfg, 'model.safetensors': goldenFile((m) => m.delete('backbone.embeddings.weight')) }, 'bad_format', /embeddings\.weight/],
    ['index: tensor in the wrong shard', { ...sharded, 'model.safetensors.index.json': { weight_map: { ...weightMap, 'backbone.norm_f.weight': 'a.safetensors' } } }, 'bad_format', /norm_f.*b\.safetensors.*a\.safetensors/],
    ['index: tensor missing from its shard', { ...sharded, 'model.safetensors.index.json': { weight_map: { ...weightMap, 'backbone.extra': 'a.safetensors' } } }, 'bad_format', /backbone\.extra/],
    ['index: shard missing', { ...sharded, 'b.safetensors': undefined }, 'not_found', /b\.safetensors/],
    ['index: not JSON', { ...sharded, 'model.safetensors.index.json': '{' }, 'bad_format'],
    ['index: no weight_map', { ...sharded, 'model.safetensors.index.json': { metadata: {} } }, 'bad_format', /weight_map/],
    ['index: escaping shard name', { ...sharded, 'model.safetensors.index.json': { weight_map: { x: '../x.safetensors' } } }, 'invalid_argument'],
  ];
  for (const [label, files, code, pattern] of cases) {
    await assert.rejects(load(files), (e) => {
      assert.ok(e instanceof MembaError, `${label}: ${e?.name} ${e?.message}`);
      assert.equal(e.code, code, `${label}: ${e.message}`);
      if (pattern) assert.match(e.message, pattern, label);
      return true;
    }, label);
  }
  await rejectsCode(readCheckpoint({}), 'invalid_argument');
});

test('readCheckpoint: progress across its reads is one aggregate with a single done', async () => {
  const tokenizer = new Uint8Array(await readFile(fileURLToPath(new URL('./fixtures/tokenizer/tokenizer.json', import.meta.url))));
  const configBytes = new TextEncoder().encode(JSON.stringify(HF_CONFIG));
  const events = [];
  const ck = await load({ 'config.json': configBytes, 'tokenizer.json': tokenizer, 'model.safetensors': HF_BYTES },
    { onProgress: (e) => events.push(e) });
  assert.ok(ck.tokenizerJson.model);
  const sum = configBytes.length + tokenizer.length + HF_BYTES.length;
  let last = 0;
  for (const e of events) {
    assert.ok(e.loaded >= last);
    last = e.loaded;
  }
  assert.deepEqual(events.at(-1), { status: 'done', file: null, loaded: sum, total: sum });
  assert.equal(events.filter((e) => e.status === 'done').length, 1);
});

test('the configs of the released checkpoints normalise to their dims (mamba-130m-hf keeps n_layer beside HF keys)', () => {
  // config.json of state-spaces/mamba-130m-hf and state-spaces/mamba-130m, as published
  const hf = { architectures: ['MambaForCausalLM'], bos_token_id: 0, conv_kernel: 4, eos_token_id: 0, expand: 2, fused_add_norm: true, hidden_act: 'silu', hidden_size: 768, initializer_range: 0.1, intermediate_size: 1536, layer_norm_epsilon: 1e-5, model_type: 'mamba', n_layer: 24, num_hidden_layers: 24, pad_token_id: 0, pad_vocab_size_multiple: 8, rescale_prenorm_residual: false, residual_in_fp32: true, rms_norm: true, state_size: 16, time_step_floor: 0.0001, time_step_init_scheme: 'random', time_step_max: 0.1, time_step_min: 0.001, time_step_rank: 48, time_step_scale: 1.0, torch_dtype: 'float32', transformers_version: '4.39.0.dev0', use_bias: false, use_cache: true, use_conv_bias: true, vocab_size: 50280 };
  const orig = { d_model: 768, n_layer: 24, vocab_size: 50277, ssm_cfg: {}, rms_norm: true, residual_in_fp32: true, fused_add_norm: true, pad_vocab_size_multiple: 8 };
  const want = { dModel: 768, nLayer: 24, vocabSize: 50280, dState: 16, dConv: 4, expand: 2, dInner: 1536, dtRank: 48, useBias: false, useConvBias: true };
  for (const [raw, layout] of [[hf, 'hf'], [orig, 'original']]) {
    const c = normalizeConfig(raw, { embeddingShape: [50280, 768] });
    assert.equal(c.layout, layout);
    for (const [k, v] of Object.entries(want)) assert.equal(c[k], v, `${layout} ${k}`);
  }
  // the largest released size
  const big = normalizeConfig({ ...orig, d_model: 2560, n_layer: 64 }, { embeddingShape: [50280, 2560] });
  assert.equal(big.dInner, 5120);
  assert.equal(big.dtRank, 160);
});
