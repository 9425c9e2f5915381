// model.test.mjs: the WASM engine through the public API against the golden vectors:
// logits, hidden states, greedy tokens (exact) and log-likelihoods for both checkpoint layouts;
// decode steps against the full forward at every position; batch against single runs; decode
// state clone/save/restore/reset; F16/BF16 checkpoints made here; scalar vs SIMD kernels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Mamba, MembaError } from '../bindings/index.js';
import { writeSafetensors, parseSafetensors, tensorToFloat32 } from '../bindings/safetensors.js';
import { getEngine } from '../bindings/engine.js';
import { fixture, readCase, readExpected, assertClose, maxDiff, maxAbs, TOL, ROOT } from './helpers.mjs';

const CASES = ['mamba-tiny', 'mamba-tiny-original-layout'];

for (const name of CASES) {
  test(`${name}: logits, hidden states, greedy tokens, log-likelihoods match golden`, async () => {
    const c = readCase(name);
    const exp = readExpected(name);
    const model = await Mamba.load(fixture(name));
    assert.equal(model.info.layout, name.includes('original') ? 'original' : 'hf');
    const out = await model.forward(c.ids, { outputHidden: true });
    assert.deepEqual(out.dims, exp.get('logits').shape);
    assertClose(`${name} logits`, out.data, exp.get('logits'), 'logits_rel');
    const [nLayer, B, L, d] = out.hidden.dims;
    for (let l = 0; l < nLayer; l++) {
      const got = out.hidden.data.subarray(l * B * L * d, (l + 1) * B * L * d);
      assertClose(`${name} hidden.${l}`, got, exp.get(`hidden.${l}`), 'hidden_rel');
    }
    const greedy = exp.get('greedy');
    const [, G] = greedy.shape;
    const P = c.greedy_prompt_len;
    for (let b = 0; b < c.ids.length; b++) {
      const want = Array.from(greedy.subarray(b * G, (b + 1) * G));
      // golden greedy = G new tokens after the first P ids
      const got = await model.generate(c.ids[b].slice(0, P), { maxNewTokens: G, temperature: 0, stopTokens: [] });
      assert.deepEqual(got, want, `greedy row ${b}`);
      const ll = await model.loglikelihood(c.ids[b].slice(0, P), c.ids[b].slice(P));
      assertClose(`${name} loglik row ${b}`, [ll], [exp.get('loglik_after_prompt')[b]], 'loglik_rel');
    }
    model.dispose();
  });
}

test('decode steps equal the full forward at every position; batch of 2 equals two single runs', async () => {
  const c = readCase('mamba-tiny');
  const model = await Mamba.load(fixture('mamba-tiny'));
  const V = model.config.vocabSize;
  const full = await model.forward(c.ids);
  const [B, L] = full.dims;
  for (let b = 0; b < B; b++) {
    const single = await model.forward(c.ids[b]);
    assertClose(`batch row ${b} vs single`, single.data, full.data.subarray(b * L * V, (b + 1) * L * V), 'batch_vs_single_rel');
  }
  // one state per row, token by token
  let worst = 0;
  for (let b = 0; b < B; b++) {
    const st = model.createState();
    for (let t = 0; t < L; t++) {
      const logits = st.step(c.ids[b][t]);
      worst = Math.max(worst, maxDiff(logits, full.data.subarray((b * L + t) * V, (b * L + t + 1) * V)));
    }
    assert.equal(st.position, L);
    st.dispose();
  }
  console.log(`decode vs forward, all ${B * L} positions: maxdiff ${worst}`);
  assert.ok(worst <= TOL.decode_vs_forward_rel * Math.max(1, maxAbs(full.data)));
  // batched state: both rows at once, prefill half then step
  const st2 = model.createState({ batch: 2 });
  const half = 9;
  let logits = st2.prefill(c.ids.map((r) => r.slice(0, half)));
  for (let t = half; t < L; t++) logits = st2.step([c.ids[0][t], c.ids[1][t]]);
  for (let b = 0; b < 2; b++)
    assertClose(`batched prefill+steps row ${b}, last position`, logits.subarray(b * V, (b + 1) * V),
      full.data.subarray((b * L + L - 1) * V, (b * L + L) * V), 'decode_vs_forward_rel');
  st2.dispose();
  model.dispose();
});

test('decode state: clone, save/restore and reset reproduce the same continuation', async () => {
  const ids = readCase('mamba-tiny').ids[0];
  const model = await Mamba.load(fixture('mamba-tiny'));
  const st = model.createState();
  st.prefill(ids.slice(0, 6));
  const snap = st.save();
  assert.equal(snap.position, 6);
  const copy = st.clone();
  const a = st.step(ids[6]);
  const b = copy.step(ids[6]);
  assert.equal(maxDiff(a, b), 0, 'clone continues identically');
  st.restore(snap);
  assert.equal(st.position, 6);
  assert.equal(maxDiff(st.step(ids[6]), a), 0, 'restored state continues identically');
  st.reset();
  assert.equal(st.position, 0);
  const fresh = model.createState();
  assert.equal(maxDiff(st.step(ids[0]), fresh.step(ids[0])), 0, 'reset equals a fresh state');
  const other = model.createState({ batch: 2 });
  assert.throws(() => other.restore(snap), (e) => e instanceof MembaError && e.code === 'shape_mismatch');
  assert.throws(() => st.restore({}), (e) => e instanceof MembaError && e.code === 'invalid_argument');
  assert.throws(() => st.step([1, 2]), (e) => e instanceof MembaError && e.code === 'invalid_argument');
  model.dispose();
  assert.throws(() => st.step(1), (e) => e instanceof MembaError && e.code === 'disposed');
});

/** The mamba-tiny checkpoint re-encoded with every tensor in `dtype`, as in-memory files. */
function convertedCheckpoint(dtype) {
  const { tensors } = parseSafetensors(new Uint8Array(fs.readFileSync(fixture('mamba-tiny/model.safetensors'))));
  const entries = {};
  for (const [k, t] of tensors) entries[k] = { dtype, shape: t.shape, data: tensorToFloat32(t) };
  return entries;
}

for (const [dtype, tolName] of [['F16', 'f16_weights_logits_rel'], ['BF16', 'bf16_weights_logits_rel']]) {
  test(`${dtype} checkpoint (made here) loads and agrees within its precision`, async () => {
    const { float32ToFloat16Bits, float32ToBFloat16Bits } = await import('../bindings/safetensors.js');
    const conv = dtype === 'F16' ? float32ToFloat16Bits : float32ToBFloat16Bits;
    const entries = convertedCheckpoint(dtype);
    for (const e of Object.values(entries)) e.data = conv(e.data);
    const files = {
      'config.json': fs.readFileSync(fixture('mamba-tiny/config.json'), 'utf8'),
      'model.safetensors': writeSafetensors(entries),
    };
    const model = await Mamba.load({ files });
    const c = readCase('mamba-tiny');
    const out = await model.forward(c.ids);
    const d = assertClose(`${dtype} weights logits vs F32 golden`, out.data, readExpected('mamba-tiny').get('logits'), tolName);
    assert.ok(d > 0, 'rounded weights must change the logits a little (else the file was not converted)');
    model.dispose();
  });
}

test('scalar reference kernels and SIMD kernels agree on the whole model (WASM)', async () => {
  const c = readCase('mamba-tiny');
  const model = await Mamba.load(fixture('mamba-tiny'));
  const engine = await getEngine();
  const simd = await model.forward(c.ids);
  engine.mb_set_simd(0);
  try {
    const scalar = await model.forward(c.ids);
    assertClose('WASM scalar vs SIMD logits', simd.data, scalar.data, 'simd_vs_scalar_rel');
    assertClose('WASM scalar logits vs golden', scalar.data, readExpected('mamba-tiny').get('logits'), 'logits_rel');
  } finally {
    engine.mb_set_simd(1);
  }
  model.dispose();
});

test('sampling: seeded generation is reproducible; topK=1 equals greedy', async () => {
  const ids = readCase('mamba-tiny').ids[0].slice(0, 5);
  const model = await Mamba.load(fixture('mamba-tiny'));
  const opts = { maxNewTokens: 12, temperature: 1.3, topP: 0.95, seed: 1234, stopTokens: [] };
  const a = await model.generate(ids, opts);
  const b = await model.generate(ids, opts);
  assert.deepEqual(a, b);
  const other = await model.generate(ids, { ...opts, seed: 99 });
  assert.notDeepEqual(a, other, 'a different seed should change a 12-token sample');
  const greedy = await model.generate(ids, { maxNewTokens: 12, stopTokens: [] });
  assert.deepEqual(await model.generate(ids, { ...opts, topK: 1 }), greedy);
  const streamed = [];
  for await (const id of model.stream(ids, { maxNewTokens: 12, stopTokens: [] })) streamed.push(id);
  assert.deepEqual(streamed, greedy);
  // stops after a stop token (by default the config's eos_token_id)
  const stopId = greedy[2];
  const stopped = await model.generate(ids, { maxNewTokens: 12, stopTokens: [stopId] });
  assert.deepEqual(stopped, greedy.slice(0, greedy.indexOf(stopId) + 1));
  model.dispose();
});

test('generate with noRepeatNgramSize never repeats an n-gram; repetitionPenalty changes greedy output', async () => {
  const model = await Mamba.load(path.join(ROOT, 'models', 'default'));
  const prompt = model.encode('The jury said');
  const n = 3;
  const ids = [...prompt, ...(await model.generate(prompt, { maxNewTokens: 60, noRepeatNgramSize: n }))];
  const grams = new Set();
  for (let i = 0; i + n <= ids.length; i++) {
    const g = ids.slice(i, i + n).join(',');
    assert.ok(!grams.has(g), `3-gram ${g} repeated at ${i}`);
    grams.add(g);
  }
  const plain = await model.generate(prompt, { maxNewTokens: 40 });
  const penal = await model.generate(prompt, { maxNewTokens: 40, repetitionPenalty: 1.3 });
  const distinct = (a) => new Set(a).size / a.length;
  console.log(`greedy distinct-1 ${distinct(plain).toFixed(2)}, with repetitionPenalty 1.3 ${distinct(penal).toFixed(2)}`);
  assert.notDeepEqual(penal, plain);
  assert.ok(distinct(penal) >= distinct(plain));
  model.dispose();
});
