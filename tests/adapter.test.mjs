// adapter.test.mjs: Memba adapters through the public API against the golden vectors
// (memba-tiny-paper, -stream, -short): logits, LIM gate inputs, greedy tokens (exact),
// log-likelihoods; streaming decode with a causal LIM; fresh adapter == base bit for bit; merged
// vs unmerged; save -> load round trip; switching between adapters; every bad input typed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Mamba, MembaError } from '../bindings/index.js';
import { fixture, readCase, readExpected, assertClose, maxDiff, maxAbs, rejectsCode, TOL } from './helpers.mjs';

const CASES = ['memba-tiny-paper', 'memba-tiny-stream', 'memba-tiny-short'];
const read = (c, f) => fs.readFileSync(fixture(`${c}/${f}`));
const adapterFiles = (c) => ({
  'adapter_config.json': read(c, 'adapter_config.json').toString(),
  'adapter_model.safetensors': new Uint8Array(read(c, 'adapter_model.safetensors')),
  'memba_config.json': read(c, 'memba_config.json').toString(),
});

for (const name of CASES) {
  test(`${name}: logits, lim_v, greedy tokens and log-likelihoods match golden`, async () => {
    const c = readCase(name);
    const exp = readExpected(name);
    const model = await Mamba.load(fixture(name));
    const adapter = await model.loadAdapter(fixture(name));
    assert.equal(model.adapter, adapter);
    const out = await model.forward(c.ids);
    assertClose(`${name} logits`, out.data, exp.get('logits'), 'logits_rel');
    const ins = await model.inspect(c.ids);
    assert.equal(ins.layers.length, model.config.nLayer);
    ins.layers.forEach((layer, l) => assertClose(`${name} lim_v.${l}`, layer.limV.data, exp.get(`lim_v.${l}`), 'hidden_rel'));
    const greedy = exp.get('greedy');
    const [, G] = greedy.shape;
    const P = c.greedy_prompt_len;
    for (let b = 0; b < c.ids.length; b++) {
      const got = await model.generate(c.ids[b].slice(0, P), { maxNewTokens: G, stopTokens: [] });
      assert.deepEqual(got, Array.from(greedy.subarray(b * G, (b + 1) * G)), `greedy row ${b}`);
      const ll = await model.loglikelihood(c.ids[b].slice(0, P), c.ids[b].slice(P));
      assertClose(`${name} loglik row ${b}`, [ll], [exp.get('loglik_after_prompt')[b]], 'loglik_rel');
    }
    // merged == unmerged, and unmerge restores the adapter's own output
    adapter.merge();
    assert.equal(adapter.merged, true);
    assertClose(`${name} merged vs unmerged`, (await model.forward(c.ids)).data, out.data, 'merge_rel');
    adapter.unmerge();
    assert.equal(adapter.merged, false);
    model.dispose();
  });
}

test('causal LIM (chunk_size + first): streaming decode equals the full forward at every position', async () => {
  const name = 'memba-tiny-stream';
  const c = readCase(name);
  const model = await Mamba.load(fixture(name));
  const adapter = await model.loadAdapter({ files: adapterFiles(name) });
  assert.equal(adapter.causal, true);
  const full = await model.forward(c.ids);
  const V = model.config.vocabSize;
  const st = model.createState();
  let worst = 0;
  c.ids[0].forEach((id, t) => {
    worst = Math.max(worst, maxDiff(st.step(id), full.data.subarray(t * V, (t + 1) * V)));
  });
  console.log(`streaming decode vs full forward: maxdiff ${worst}`);
  assert.ok(worst <= TOL.decode_vs_forward_rel * Math.max(1, maxAbs(full.data)));
  // a snapshot carries the membrane too
  st.reset();
  st.prefill(c.ids[0].slice(0, 5));
  const snap = st.save();
  const a = st.step(c.ids[0][5]);
  st.restore(snap);
  assert.equal(maxDiff(st.step(c.ids[0][5]), a), 0);
  model.dispose();
});

test('non-causal LIM: no recurrent state (typed error); generation recomputes the full forward', async () => {
  const model = await Mamba.load(fixture('memba-tiny-paper'));
  const adapter = await model.loadAdapter(fixture('memba-tiny-paper'));
  assert.equal(adapter.causal, false);
  assert.throws(() => model.createState(), (e) => e instanceof MembaError && e.code === 'unsupported');
  model.dispose();
});

test('a fresh adapter without LIM equals the base model bit for bit; several adapters switch without reload', async () => {
  const ids = readCase('mamba-tiny').ids;
  const model = await Mamba.load(fixture('mamba-tiny'));
  const base = (await model.forward(ids)).data;
  const fresh = model.createAdapter({ lora: { r: 4, alpha: 8, targets: ['in_proj', 'out_proj', 'x_proj', 'dt_proj'] }, seed: 3 });
  assert.equal(maxDiff((await model.forward(ids)).data, base), 0, 'fresh LoRA (B = 0) must be an exact no-op');
  const t = fresh.tensors();
  const aName = 'base_model.model.backbone.layers.0.mixer.in_proj.lora_A.weight';
  assert.ok(maxAbs(t[aName]) > 0 && maxAbs(t[aName]) <= 1 / Math.sqrt(32), 'kaiming-uniform lora_A');
  // a second adapter (loaded: the paper case's adapter has mamba-tiny's shapes) and a LIM-only one
  const loaded = await model.loadAdapter({ files: adapterFiles('memba-tiny-paper') });
  const withLoaded = (await model.forward(ids)).data;
  assert.ok(maxDiff(withLoaded, base) > TOL.loaded_adapter_min_change_abs);
  const limOnly = model.createAdapter({ lora: null, lim: { chunk_size: 4, cross_layer: 'none' } });
  const withLim = (await model.forward(ids)).data;
  assert.ok(maxDiff(withLim, base) > 0, 'LIM changes the gate');
  model.setAdapter(fresh);
  assert.equal(maxDiff((await model.forward(ids)).data, base), 0);
  model.setAdapter(limOnly);
  assert.equal(maxDiff((await model.forward(ids)).data, withLim), 0, 'switching back gives the same numbers');
  model.setAdapter(loaded);
  assert.equal(maxDiff((await model.forward(ids)).data, withLoaded), 0);
  loaded.merge();
  assertClose('merged loaded adapter', (await model.forward(ids)).data, withLoaded, 'merge_rel');
  model.setAdapter(null); // switching away unmerges
  assert.equal(loaded.merged, false);
  assertClose('base after merge and switch', (await model.forward(ids)).data, base, 'merge_rel');
  limOnly.dispose();
  assert.throws(() => model.setAdapter(limOnly), (e) => e.code === 'invalid_argument');
  assert.throws(() => limOnly.save(), (e) => e.code === 'disposed');
  model.dispose();
});

test('save -> load round trip gives identical logits (LoRA on every target kind, rsLoRA, LIM)', async () => {
  const ids = readCase('mamba-tiny').ids;
  const model = await Mamba.load(fixture('mamba-tiny'));
  for (const targets of [['in_proj', 'out_proj', 'x_proj', 'dt_proj'], ['in_proj.x', 'in_proj.z']]) {
    const a = model.createAdapter({ lora: { r: 3, alpha: 5, targets, rslora: true }, lim: { chunk_size: 5, cross_layer: 'first', output: 'pre_reset' }, seed: 11 });
    // give lora_B values so the adapter is not a no-op (as after training)
    const src = a.save();
    const t = a.tensors();
    const { writeSafetensors } = await import('../bindings/safetensors.js');
    const entries = {};
    for (const [k, v] of Object.entries(t)) {
      const shape = k.endsWith('lora_A.weight') ? [3, v.length / 3] : [v.length / 3, 3];
      entries[k] = { dtype: 'F32', shape, data: k.endsWith('lora_B.weight') ? v.map((_, i) => Math.sin(i) * 0.05) : v };
    }
    const trained = await model.loadAdapter({ files: { ...src, 'adapter_model.safetensors': writeSafetensors(entries) } });
    const want = (await model.forward(ids)).data;
    assert.ok(maxDiff(want, (await Mamba.load(fixture('mamba-tiny')).then(async (m) => { const r = (await m.forward(ids)).data; m.dispose(); return r; }))) > TOL.saved_adapter_min_change_abs);
    const files = trained.save();
    assert.deepEqual(Object.keys(files).sort(), ['adapter_config.json', 'adapter_model.safetensors', 'memba_config.json']);
    const cfg = JSON.parse(files['adapter_config.json']);
    assert.equal(cfg.peft_type, 'LORA');
    assert.equal(cfg.use_rslora, true);
    assert.deepEqual(cfg.target_modules, targets);
    const again = await model.loadAdapter({ files });
    assert.equal(maxDiff((await model.forward(ids)).data, want), 0, `round trip ${targets}`);
    assert.deepEqual(again.config, trained.config);
    a.dispose();
    trained.dispose();
    again.dispose();
  }
  model.dispose();
});

test('bad adapters and settings are typed errors; the model is unchanged after them', async () => {
  const ids = readCase('mamba-tiny').ids;
  const model = await Mamba.load(fixture('mamba-tiny'));
  const base = (await model.forward(ids)).data;
  const files = adapterFiles('memba-tiny-stream'); // 3 layers: made for another base model
  await rejectsCode(model.loadAdapter({ files }), 'shape_mismatch');
  const pc = JSON.parse(files['adapter_config.json']);
  const paper = adapterFiles('memba-tiny-paper');
  const withCfg = (patch) => ({ files: { ...paper, 'adapter_config.json': JSON.stringify({ ...JSON.parse(paper['adapter_config.json']), ...patch }) } });
  await rejectsCode(model.loadAdapter(withCfg({ target_modules: ['in_proj', 'embeddings'] })), 'unsupported', /unknown target/);
  await rejectsCode(model.loadAdapter(withCfg({ use_dora: true })), 'unsupported', /DoRA/);
  await rejectsCode(model.loadAdapter(withCfg({ bias: 'all' })), 'unsupported');
  await rejectsCode(model.loadAdapter(withCfg({ rank_pattern: { 'layers.0.mixer.in_proj': 8 } })), 'unsupported');
  await rejectsCode(model.loadAdapter(withCfg({ alpha_pattern: { out_proj: 1 } })), 'unsupported');
  await rejectsCode(model.loadAdapter(withCfg({ r: 8 })), 'shape_mismatch');
  await rejectsCode(model.loadAdapter(withCfg({ target_modules: ['in_proj'] })), 'bad_format');
  await rejectsCode(model.loadAdapter({ files: { ...paper, 'memba_config.json': '{"lim": {"chunks": 4, "chunk_size": 3}}' } }), 'bad_format');
  await rejectsCode(model.loadAdapter({ files: { ...paper, 'memba_config.json': '{"lim": {"tau": 1.5}}' } }), 'bad_format');
  await rejectsCode(model.loadAdapter({ files: { ...paper, 'adapter_config.json': '{oops' } }), 'bad_format');
  await rejectsCode(model.loadAdapter({ files: { 'adapter_config.json': paper['adapter_config.json'] } }), 'not_found');
  await rejectsCode(model.loadAdapter({ files: {} }), 'not_found');
  await rejectsCode(model.loadAdapter({ files: { ...paper, 'adapter_model.safetensors': paper['adapter_model.safetensors'].subarray(0, 100) } }), 'bad_format');
  const badLim = [{ tau: 0 }, { tau: 1.01 }, { chunks: 0 }, { chunks: 2.5 }, { chunks: 2, chunk_size: 2 }, { output: 'both' }, { cross_layer: 'last' }, { reset_grad: 'ste' }, { surrogate_width: 0 }, { v_th: NaN }, { bogus: 1 }];
  for (const lim of badLim) assert.throws(() => model.createAdapter({ lim }), (e) => e instanceof MembaError && e.code === 'invalid_argument', JSON.stringify(lim));
  const badLora = [{ r: 0 }, { r: 2.5 }, { alpha: 'x' }, { targets: [] }, { targets: ['mlp'] }, { targets: ['in_proj', 'in_proj.z'] }, { dropout: 1 }];
  for (const lora of badLora) assert.throws(() => model.createAdapter({ lora }), (e) => e instanceof MembaError && e.code === 'invalid_argument', JSON.stringify(lora));
  assert.throws(() => model.createAdapter({ lora: null, lim: null }), (e) => e.code === 'invalid_argument');
  assert.equal(model.adapter, null, 'no adapter became active');
  assert.equal(maxDiff((await model.forward(ids)).data, base), 0, 'unchanged after errors');
  void pc;
  model.dispose();
});

test('a causal LIM chunk_size longer than the sequence: forward equals the recurrent prefill; an impossible one is oom', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  const ids = [3, 14, 15, 9, 26, 5];
  model.createAdapter({ lora: null, lim: { chunk_size: 100000, cross_layer: 'first' } });
  const full = (await model.forward(ids)).data;
  const st = model.createState();
  const last = st.prefill(ids);
  st.dispose();
  const V = model.config.vocabSize;
  const d = assertClose('chunk 100000 > L: prefill vs full forward (last position)', last, full.subarray((ids.length - 1) * V), 'decode_vs_forward_rel');
  assert.ok(d >= 0);
  model.createAdapter({ lora: null, lim: { chunk_size: 2 ** 30, cross_layer: 'first' } });
  await assert.rejects(model.forward(ids), (e) => e instanceof MembaError && e.code === 'oom', 'sizes that wrap at 32 bits fail as oom');
  model.setAdapter(null);
  assert.equal((await model.forward(ids)).data.length, ids.length * V, 'the model is still usable');
  model.dispose();
});
