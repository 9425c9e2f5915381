// robust-api.test.mjs: the API under hostile input (issue 11, memory safety and robustness):
// sizes that would wrap at 32 bits fail as 'oom' / 'invalid_argument' before anything is
// allocated; every option is validated (a bad value is an invalid_argument, never a TypeError or
// RangeError; null options mean the defaults); training never leaves the adapter NaN or its
// state half-restored; generations keep their adapter and release their decode state; merge /
// unmerge restores the base weights exactly; non-finite adapter files are refused.
// Every check prints the figures it compares.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { Mamba, MembaError } from '../bindings/index.js';
import { writeSafetensors } from '../bindings/safetensors.js';
import { fixture, ROOT, rejectsCode, maxDiff } from './helpers.mjs';

const DEFAULT_MODEL = `${ROOT}/models/default`;
const PATTERN = Array.from({ length: 24 }, (_, i) => [5, 17, 42, 8, 33, 60, 21, 9][i % 8]);

/** The memba-tiny-paper adapter as in-memory files: LoRA only, or with its (non-causal) LIM. */
function paperAdapter({ lim = false } = {}) {
  const files = {};
  const names = ['adapter_config.json', 'adapter_model.safetensors', ...(lim ? ['memba_config.json'] : [])];
  for (const f of names) files[f] = new Uint8Array(fs.readFileSync(fixture(`memba-tiny-paper/${f}`)));
  return { files };
}

/** Runs fn (sync or async) and returns its error (or null): for checks that list many cases. */
async function errorOf(fn) {
  try {
    await fn();
    return null;
  } catch (err) {
    return err;
  }
}

/** Asserts that every case fails with a MembaError of `code` (never TypeError / RangeError). */
async function allFail(what, cases, code = 'invalid_argument') {
  for (const [label, fn] of cases) {
    const err = await errorOf(fn);
    assert.ok(err instanceof MembaError, `${what} ${label}: expected a MembaError, got ${err ? `${err.name}: ${err.message}` : 'success'}`);
    assert.equal(err.code, code, `${what} ${label}: ${err.message}`);
  }
  console.log(`${what}: ${cases.length} bad values, each a MembaError '${code}'`);
}

// ---- 1. sizes computed in float64 and checked before allocating ----

test('sizes that pass 4 GB fail as oom before allocating; nonsense sizes are invalid_argument', async () => {
  // 50k vocabulary: 21,400 tokens of logits are 21400 * 50280 * 4 = 4.3e9 bytes, which wraps
  // to 9 MB in a 32-bit size_t: C would then write 4 GB past the buffer
  const big = await Mamba.createRandom({ dModel: 8, nLayer: 1, vocabSize: 50280, dState: 4, expand: 1 });
  const L = 21400;
  console.log(`forward logits bytes: ${L} x 50280 x 4 = ${L * 50280 * 4} (>= 2^32 = ${2 ** 32})`);
  const t0 = performance.now();
  await rejectsCode(() => big.forward(new Int32Array(L).fill(1)), 'oom', /4 GB/);
  console.log(`refused in ${(performance.now() - t0).toFixed(0)} ms`);
  // a decode state's logits: 65536 x 50280 x 4 = 13.2e9 bytes (wraps to 295 MB)
  assert.throws(() => big.createState({ batch: 65536 }), (e) => e.code === 'oom');
  const ok = await big.forward([1, 2, 3]);
  assert.deepEqual(ok.dims, [1, 3, 50280], 'still usable');
  big.dispose();

  const model = await Mamba.load(DEFAULT_MODEL);
  const { nLayer, dInner, dState, dConv } = model.config;
  const perSeq = nLayer * ((dConv - 1) * dInner + dInner * dState) * 4;
  console.log(`decode state: ${perSeq} bytes per sequence; batch 49057 -> ${(perSeq * 49057 / 2 ** 30).toFixed(1)} GB`);
  assert.throws(() => model.createState({ batch: 49057 }), (e) => e instanceof MembaError && e.code === 'oom');
  for (const batch of [65537, 2 ** 32 + 1, 0, -1, 1.5, NaN, Infinity, '2'])
    assert.throws(() => model.createState({ batch }), (e) => e instanceof MembaError && e.code === 'invalid_argument', `batch ${batch}`);
  const st = model.createState({ batch: 2 });
  assert.equal(st.batch, 2, 'a valid batch still works');
  st.dispose();
  // LIM chunk settings are C int32: 2^32 + 3 would arrive as 3
  for (const lim of [{ chunk_size: 2 ** 32 + 3, cross_layer: 'first' }, { chunks: 2 ** 32 + 3 }, { chunk_size: 2 ** 31 }, { chunks: -(2 ** 32) + 1 }])
    assert.throws(() => model.createAdapter({ lora: null, lim }), (e) => e.code === 'invalid_argument', JSON.stringify(lim));
  // the largest int32 chunk_size is a valid setting; its membrane does not fit a decode state
  const huge = model.createAdapter({ lora: null, lim: { chunk_size: 2 ** 31 - 1, cross_layer: 'first' } });
  assert.throws(() => model.createState(), (e) => e.code === 'oom');
  await rejectsCode(() => model.inspect([1, 2, 3]), 'oom');
  huge.dispose();
  // more tokens than one call takes, and array-likes whose length would throw a RangeError
  await rejectsCode(() => model.forward({ length: 2 ** 40 }), 'invalid_argument');
  await rejectsCode(() => model.forward({ length: -1 }), 'invalid_argument');
  await rejectsCode(() => model.forward([{ length: 2 ** 29 }, { length: 2 ** 29 }]), 'invalid_argument');
  model.dispose();
});

test('createRandom computes the weight bytes in JS: a shape that wraps wasm32 size_t is oom, not a model that traps', async () => {
  // 2 * E * d = 2^33 floats of in_proj wrap to 0 in C's 32-bit size_t: the model came back with
  // 6.5 MB of weights and its forward ran out of bounds
  const shape = { dModel: 65536, nLayer: 1, vocabSize: 10, expand: 1, dtRank: 1, dState: 1 };
  const bytes = 4 * (2 * 65536 * 65536 + 65536 * 65536);
  console.log(`in_proj + out_proj alone: ${bytes} bytes (2^32 = ${2 ** 32})`);
  await rejectsCode(() => Mamba.createRandom(shape), 'oom');
  await rejectsCode(() => Mamba.createRandom({ dModel: 65536, nLayer: 1, vocabSize: 100 }), 'oom');
  await allFail('createRandom shape', [
    ['null', () => Mamba.createRandom(null)],
    ['dModel 2^32 + 8', () => Mamba.createRandom({ dModel: 2 ** 32 + 8, nLayer: 1, vocabSize: 10 })],
    ['dModel 0', () => Mamba.createRandom({ dModel: 0, nLayer: 1, vocabSize: 10 })],
    ['nLayer 1.5', () => Mamba.createRandom({ dModel: 8, nLayer: 1.5, vocabSize: 10 })],
    ['vocabSize NaN', () => Mamba.createRandom({ dModel: 8, nLayer: 1, vocabSize: NaN })],
    ['dConv 65', () => Mamba.createRandom({ dModel: 8, nLayer: 1, vocabSize: 10, dConv: 65 })],
    ['expand * dModel > 2^24', () => Mamba.createRandom({ dModel: 2 ** 23, nLayer: 1, vocabSize: 1, expand: 4 })],
    ['seed 1.5', () => Mamba.createRandom({ dModel: 8, nLayer: 1, vocabSize: 10 }, { seed: 1.5 })],
    ['options 5', () => Mamba.createRandom({ dModel: 8, nLayer: 1, vocabSize: 10 }, 5)],
  ]);
  const m = await Mamba.createRandom({ dModel: 8, nLayer: 1, vocabSize: 10 }, null);
  assert.equal(m.config.dModel, 8, 'null options = the defaults');
  m.dispose();
});

test('Mamba.load options: a signal that is not an AbortSignal and other bad values are invalid_argument; null is the defaults', async () => {
  await allFail('Mamba.load options', [
    ['signal "x"', () => Mamba.load(fixture('mamba-tiny'), { signal: 'x' })],
    ['signal 5', () => Mamba.load(fixture('mamba-tiny'), { signal: 5 })],
    ['signal {}', () => Mamba.load(fixture('mamba-tiny'), { signal: {} })],
    ['options 5', () => Mamba.load(fixture('mamba-tiny'), 5)],
    ['dtype "fp64"', () => Mamba.load(fixture('mamba-tiny'), { dtype: 'fp64' })],
  ]);
  const a = await Mamba.load(fixture('mamba-tiny'), null);
  const b = await Mamba.load(fixture('mamba-tiny'));
  const d = maxDiff((await a.forward([1, 2, 3])).data, (await b.forward([1, 2, 3])).data);
  console.log(`Mamba.load(src, null) vs Mamba.load(src): max logit difference ${d}`);
  assert.equal(d, 0);
  a.dispose(), b.dispose();
});

// ---- 2. options validated at the API boundary ----

const BAD_NUMBERS = [NaN, Infinity, -Infinity, '1', {}, [], true, Symbol('x'), 10n];

test('every sampling and generation option is validated: invalid_argument, never TypeError', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  const V = model.config.vocabSize;
  const gen = (opts) => model.generate([1, 2, 3], { maxNewTokens: 2, ...opts });
  const perKey = {
    temperature: [-1, -0.5],
    topK: [-1, 1.5, 2 ** 60],
    topP: [0, 1.5, -0.1],
    minP: [-0.1, 1.1],
    repetitionPenalty: [0, -1],
    noRepeatNgramSize: [-1, 0.5],
    maxNewTokens: [-1, 2.5, 2 ** 53],
    seed: [1.5, 2 ** 60],
  };
  const cases = [];
  for (const [key, extra] of Object.entries(perKey))
    for (const v of [...BAD_NUMBERS, null, ...extra]) cases.push([`${key}=${typeof v === 'symbol' ? 'symbol' : String(v)}`, () => gen({ temperature: 1, [key]: v })]);
  for (const s of [5, 'a', [1.5], [-1], [V], [{}], true, {}]) cases.push([`stopTokens=${JSON.stringify(s)}`, () => gen({ stopTokens: s })]);
  for (const s of [5, {}, 'x', true]) cases.push([`signal=${JSON.stringify(s)}`, () => gen({ signal: s })]);
  for (const o of [5, 'x', [1], true]) cases.push([`options ${JSON.stringify(o)}`, () => model.generate([1, 2, 3], o)]);
  for (const o of [5, 'x', [1]]) cases.push([`stream options ${JSON.stringify(o)}`, () => model.stream([1, 2], o).next()]);
  for (const o of [5, { outputHidden: 'yes' }, { outputHidden: 1 }]) cases.push([`forward ${JSON.stringify(o)}`, () => model.forward([1, 2], o)]);
  for (const f of [0, 4, 1.5, NaN, '1', null]) cases.push([`scoreTokens from ${f}`, () => model.scoreTokens([1, 2, 3], f)]);
  await allFail('generation options', cases);
  // null options mean the defaults
  const want = await model.generate([1, 2, 3]);
  assert.deepEqual(await model.generate([1, 2, 3], null), want, 'generate(ids, null) = generate(ids)');
  const viaStream = [];
  for await (const id of model.stream([1, 2, 3], null)) viaStream.push(id);
  assert.deepEqual(viaStream, want, 'stream(ids, null) = generate(ids)');
  assert.equal(maxDiff((await model.forward([1, 2, 3], null)).data, (await model.forward([1, 2, 3])).data), 0, 'forward(ids, null)');
  assert.deepEqual(await model.generate([1, 2, 3], { stopTokens: new Set([want[0]]), maxNewTokens: 5 }), [want[0]], 'a Set of stop tokens');
  const st = model.createState(null);
  assert.equal(st.batch, 1, 'createState(null)');
  st.dispose();
  assert.equal(maxDiff((await model.perplexity([1, 2, 3, 4], null)).nll, (await model.perplexity([1, 2, 3, 4])).nll), 0, 'perplexity(ids, null)');
  model.dispose();
});

test('adapter, LIM, trainer and fit options: bad values are invalid_argument; null options are the defaults', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  const lim = (o) => () => model.createAdapter({ lora: null, lim: { chunk_size: 4, cross_layer: 'first', ...o } });
  const limCases = [];
  for (const [k, extra] of Object.entries({ tau: [0, 1.5, -1], v_th: [1e39, -1e39], surrogate_width: [0, -1, 1e-50], chunk_size: [0, 1.5, 2 ** 32 + 3] }))
    for (const v of [...BAD_NUMBERS, ...extra]) limCases.push([`${k}=${typeof v === 'symbol' ? 'symbol' : String(v)}`, lim({ [k]: v })]);
  for (const v of ['sometimes', 5, null, Symbol('x')]) limCases.push([`output=${String(v)}`, lim({ output: v === null ? 'null' : v })]);
  await allFail('LIM options', limCases);
  await allFail('createAdapter / loadAdapter options', [
    ['options 5', () => model.createAdapter(5)],
    ['seed 1.5', () => model.createAdapter({ seed: 1.5 })],
    ['seed NaN', () => model.createAdapter({ seed: NaN })],
    ['name 5', () => model.createAdapter({ name: 5 })],
    ['lora 5', () => model.createAdapter({ lora: 5 })],
    ['lora.r 1.5', () => model.createAdapter({ lora: { r: 1.5 } })],
    ['lora.alpha 1e39', () => model.createAdapter({ lora: { alpha: 1e39 } })],
    ['lora.dropout NaN', () => model.createAdapter({ lora: { dropout: NaN } })],
    ['lora.rslora "yes"', () => model.createAdapter({ lora: { rslora: 'yes' } })],
    ['loadAdapter options 5', () => model.loadAdapter(paperAdapter(), 5)],
    ['loadAdapter allowNonFinite 1', () => model.loadAdapter(paperAdapter(), { allowNonFinite: 1 })],
    ['loadAdapter onProgress 1', () => model.loadAdapter(paperAdapter(), { onProgress: 1 })],
  ]);
  const a = model.createAdapter(null);
  assert.deepEqual(a.config.lora.targets, ['in_proj', 'out_proj'], 'createAdapter(null) = the defaults');
  const b = await model.loadAdapter(paperAdapter(), null);
  assert.equal(b.config.lora.r, 4, 'loadAdapter(files, null)');
  model.setAdapter(a);
  const tr = (o) => () => model.createTrainer(o);
  const trainerCases = [];
  const perKey = {
    lr: [0, -1, 1e30, 2], weightDecay: [-1, 1e30], eps: [0, -1, 2], clipNorm: [-1, 1e39],
    accumulate: [0, 1.5], seed: [1.5, 2 ** 60], memoryBudget: [-1],
  };
  for (const [k, extra] of Object.entries(perKey))
    for (const v of [...BAD_NUMBERS, null, ...extra]) trainerCases.push([`${k}=${typeof v === 'symbol' ? 'symbol' : String(v)}`, tr({ [k]: v })]);
  for (const betas of [[1, 0.9], [0.9], [NaN, 0.9], [0.9, Infinity], 'x', [0.9, 0.99999999], [-0.1, 0.9]]) trainerCases.push([`betas=${JSON.stringify(betas)}`, tr({ betas })]);
  for (const schedule of [5, [], 'linear', { type: 'cosine' }, { type: 'cosine', totalSteps: Infinity }, { type: 'constant', warmupSteps: -1 }, { type: 'cosine', totalSteps: 10, minLr: NaN }, { type: 'cosine', totalSteps: 10, minLr: 1 }])
    trainerCases.push([`schedule=${JSON.stringify(schedule)}`, tr({ schedule })]);
  trainerCases.push(['options 5', tr(5)]);
  await allFail('trainer options', trainerCases);
  const trainer = model.createTrainer(null);
  assert.equal(trainer.options.lr, 1e-3, 'createTrainer(null) = the defaults');
  const fit = (o) => () => trainer.fit([PATTERN], o);
  await allFail('trainer.step / fit', [
    ['step(null)', () => trainer.step(null)],
    ['step(5)', () => trainer.step(5)],
    ['step({})', () => trainer.step({})],
    ['step labels 5', () => trainer.step({ ids: [1, 2, 3], labels: 5 })],
    ['step labels [null]', () => trainer.step({ ids: [[1, 2, 3]], labels: [null] })],
    ['fit options 5', fit(5)],
    ...[0, NaN, Infinity, 1.5, '1'].map((v) => [`epochs ${String(v)}`, fit({ epochs: v })]),
    ...[0, Infinity].map((v) => [`seqLen ${v}`, fit({ seqLen: v })]),
    ...[NaN, 1, -0.1].map((v) => [`validationSplit ${v}`, fit({ validationSplit: v })]),
    ['earlyStopping 5', fit({ validationSplit: 0.5, earlyStopping: 5 })],
    ['earlyStopping.patience 0', fit({ validationSplit: 0.5, earlyStopping: { patience: 0 } })],
    ['keepBest "yes"', fit({ validationSplit: 0.5, keepBest: 'yes' })],
    ['signal 5', fit({ signal: 5 })],
  ]);
  const r = await trainer.fit([PATTERN], null);
  assert.equal(r.steps, 1, 'fit(data, null) = the defaults');
  model.dispose();
});

test('decode refuses what is not a list of ids; DecodeState.restore checks every field before writing', async () => {
  const model = await Mamba.load(DEFAULT_MODEL);
  const V = model.config.vocabSize;
  await allFail('decode', [
    ['null', () => model.decode(null)],
    ['5', () => model.decode(5)],
    ['"abc"', () => model.decode('abc')],
    [`[${V + 1000}]`, () => model.decode([V + 1000])],
    ['[1.5]', () => model.decode([1.5])],
    ['{length: 2^40}', () => model.decode({ length: 2 ** 40 })],
  ]);
  assert.equal(model.decode([]), '');
  const st = model.createState();
  st.prefill(model.encode('In the beginning'));
  const snap = st.save();
  const next = st.step(5);
  st.restore(snap);
  const bad = [
    ['null', null],
    ['5', 5],
    ['position 2^60', { ...snap, position: 2 ** 60 }],
    ['position -1', { ...snap, position: -1 }],
    ['position 1.5', { ...snap, position: 1.5 }],
    ['position "3"', { ...snap, position: '3' }],
    ['batch missing', { position: snap.position, data: snap.data }],
    ['data an Array', { ...snap, data: Array.from(snap.data) }],
    ['data with NaN', { ...snap, data: Object.assign(snap.data.slice(), { 7: NaN }) }],
    ['data with Inf', { ...snap, data: Object.assign(snap.data.slice(), { 0: Infinity }) }],
  ];
  await allFail('DecodeState.restore', bad.map(([label, s]) => [label, () => st.restore(s)]));
  assert.throws(() => st.restore({ ...snap, data: snap.data.subarray(1) }), (e) => e.code === 'shape_mismatch');
  assert.equal(st.position, snap.position, 'position unchanged by the refused snapshots');
  assert.equal(maxDiff(st.step(5), next), 0, 'state unchanged by the refused snapshots');
  model.dispose();
});

// ---- 3. training never silently destroys the adapter ----

test('training: weightDecay Infinity and lr 1e30 are refused; an update that overflows is rolled back (non_finite)', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  model.createAdapter({ lora: { r: 2, alpha: 2, targets: ['out_proj'] } });
  // before: the first step returned normally and left every value NaN (or near 1e30)
  for (const o of [{ weightDecay: Infinity }, { lr: 1e30 }, { lr: 1e-3, weightDecay: 1e4 }])
    assert.throws(() => model.createTrainer(o), (e) => e instanceof MembaError && e.code === 'invalid_argument', JSON.stringify(o));
  // lora_A of 1e26 with lora_B = 0: the forward is the base model's (finite loss), the gradient
  // of lora_B is about 1e25 (finite), but its square overflows float32 in the second moment
  const a = model.createAdapter({ lora: { r: 2, alpha: 2, targets: ['out_proj'] } });
  const entries = {};
  for (const [k, v] of Object.entries(a.tensors()))
    entries[k] = { dtype: 'F32', shape: k.includes('lora_A') ? [2, 64] : [32, 2], data: k.includes('lora_A') ? v.map((x) => x * 1e26) : v };
  const big = await model.loadAdapter({ files: { ...a.save(), 'adapter_model.safetensors': writeSafetensors(entries) } });
  const trainer = model.createTrainer({ lr: 1e-3 });
  const before = trainer.saveState();
  const err = await errorOf(() => trainer.step({ ids: PATTERN }));
  console.log(`overflowing step: ${err?.code}: ${err?.message}`);
  assert.equal(err?.code, 'non_finite');
  const after = trainer.saveState();
  assert.equal(trainer.stepCount, 0, 'no step counted');
  assert.equal(maxDiff(after.tensors, before.tensors), 0, 'tensors unchanged');
  const m2 = trainer._block(3);
  let nonFinite = 0;
  for (const v of m2 ?? []) if (!Number.isFinite(v)) nonFinite++;
  console.log(`second moments after the refused step: ${nonFinite} non-finite of ${m2?.length ?? 0}`);
  assert.equal(nonFinite, 0, 'moments rolled back');
  // the trainer goes on with a sane adapter
  model.setAdapter(a);
  const ok = await model.createTrainer({ lr: 1e-3 }).step({ ids: PATTERN });
  assert.ok(Number.isFinite(ok.loss) && ok.step === 1);
  big.dispose();
  model.dispose();
});

test('restoreState validates everything before writing: a bad state is invalid_argument and changes nothing', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  model.createAdapter({ lora: { r: 2, alpha: 4, targets: ['in_proj', 'out_proj'] }, seed: 3 });
  const trainer = model.createTrainer({ lr: 1e-2, accumulate: 2 });
  await trainer.step({ ids: PATTERN });
  await trainer.step({ ids: PATTERN });
  await trainer.step({ ids: PATTERN }); // half of the next step accumulated: grad is saved too
  const good = trainer.saveState();
  assert.ok(good.grad && good.m1 && good.m2 && good.micro === 1 && good.stepCount === 1);
  const n = good.tensors.length;
  const poke = (arr, i, v) => Object.assign(arr.slice(), { [i]: v });
  const bad = [
    ['null', null],
    ['format', { ...good, format: 'x' }],
    ['stepCount -1', { ...good, stepCount: -1 }],
    ['stepCount 1.5', { ...good, stepCount: 1.5 }],
    ['stepCount 2^60', { ...good, stepCount: 2 ** 60 }],
    ['stepCount "1"', { ...good, stepCount: '1' }],
    ['micro 2 (accumulate 2)', { ...good, micro: 2 }],
    ['calls NaN', { ...good, calls: NaN }],
    ['dataRng 2^32', { ...good, dataRng: 2 ** 32 }],
    ['tensors an Array', { ...good, tensors: Array.from(good.tensors) }],
    ['tensors with NaN', { ...good, tensors: poke(good.tensors, n - 1, NaN) }],
    ['tensors too short', { ...good, tensors: good.tensors.subarray(1) }],
    ['grad with Inf', { ...good, grad: poke(good.grad, 0, Infinity) }],
    ['grad too long', { ...good, grad: new Float32Array(n + 1) }],
    ['grad null while micro 1', { ...good, grad: null }],
    ['m1 too short (written after the tensors before)', { ...good, m1: good.m1.subarray(3) }],
    ['m2 negative', { ...good, m2: poke(good.m2, 5, -1) }],
    ['m2 NaN', { ...good, m2: poke(good.m2, 5, NaN) }],
    ['m1 without m2', { ...good, m2: null }],
    ['stepCount 1 without moments', { ...good, m1: null, m2: null }],
  ];
  // a state to compare against: the trainer moved on from `good`
  await trainer.step({ ids: PATTERN });
  const now = trainer.saveState();
  const tensorsNow = model.adapter.tensors();
  await allFail('restoreState', bad.map(([label, s]) => [label, () => trainer.restoreState(s)]));
  const still = trainer.saveState();
  for (const k of ['tensors', 'grad', 'm1', 'm2']) assert.equal(still[k] === null ? 0 : maxDiff(still[k], now[k]), 0, `${k} unchanged`);
  for (const k of ['stepCount', 'micro', 'calls', 'dataRng']) assert.equal(still[k], now[k], `${k} unchanged`);
  for (const [k, v] of Object.entries(model.adapter.tensors())) assert.equal(maxDiff(v, tensorsNow[k]), 0, `${k} unchanged`);
  trainer.restoreState(good);
  assert.equal(trainer.stepCount, 1, 'a good state still restores');
  model.dispose();
});

// ---- 4. lifetimes of generations, streams and queued calls ----

test('a generation keeps its adapter (LoRA, causal LIM, non-causal LIM) when the adapter is disposed mid-way', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  const prompt = [5, 17, 42, 8];
  const opts = { maxNewTokens: 12, temperature: 3, seed: 7, stopTokens: [] }; // hot: the tiny model's samples vary
  const base = await model.generate(prompt, opts);
  const makers = {
    lora: () => model.loadAdapter(paperAdapter()),
    'causal LIM': () => model.loadAdapter({ files: { ...paperAdapter().files, 'memba_config.json': JSON.stringify({ lim: { chunk_size: 3, cross_layer: 'first' } }) } }),
    'non-causal LIM': () => model.loadAdapter(paperAdapter({ lim: true })),
  };
  for (const [kind, make] of Object.entries(makers)) {
    const a = await make();
    const want = await model.generate(prompt, opts);
    assert.notDeepEqual(want, base, `${kind}: the adapter changes the samples`);
    const it = model.stream(prompt, opts);
    const got = [(await it.next()).value, (await it.next()).value];
    a.dispose();
    assert.equal(model.adapter, null, `${kind}: disposed adapters are not active`);
    assert.throws(() => a.tensors(), (e) => e.code === 'disposed', `${kind}: unusable at once`);
    assert.throws(() => model.setAdapter(a), (e) => e.code === 'invalid_argument');
    assert.ok(a._handle, `${kind}: the C adapter lives while the generation runs`);
    for await (const id of it) got.push(id);
    console.log(`${kind}: with ${want.join(',')} | disposed after 2: ${got.join(',')} | base ${base.join(',')}`);
    assert.deepEqual(got, want, `${kind}: the generation finished with the adapter it started with`);
    assert.equal(a._handle, 0, `${kind}: freed when the generation ended`);
    assert.deepEqual(await model.generate(prompt, opts), base, `${kind}: later generations use the base model`);
  }
  model.dispose();
});

test('streams release their decode state at the last token, on return(), and when dropped (garbage-collected)', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  const opts = { maxNewTokens: 3, stopTokens: [] };
  const it = model.stream([1, 2, 3], opts);
  await it.next();
  const one = model.memory().states;
  await it.next();
  await it.next(); // the last token: the state is gone before the caller has it
  const afterLast = model.memory().states;
  const r = model.stream([1, 2, 3], { maxNewTokens: 10 });
  await r.next();
  await r.return();
  console.log(`decode-state bytes: ${one} while a stream runs, ${afterLast} after its last token, ${model.memory().states} after return()`);
  assert.ok(one > 0);
  assert.equal(afterLast, 0, 'read to exactly maxNewTokens with next(): nothing held');
  assert.equal(model.memory().states, 0, 'return(): nothing held');
  model.dispose();
  // dropped after one next(): only garbage collection can tell; a child process with --expose-gc
  const script = `
    const { Mamba } = await import(${JSON.stringify(new URL('../bindings/index.js', import.meta.url).href)});
    const model = await Mamba.load(${JSON.stringify(DEFAULT_MODEL)});
    const run = async () => { for (let i = 0; i < 200; i++) await model.stream([1, 2, 3], { maxNewTokens: 50 }).next(); };
    await run();
    const held = model.memory().states;
    for (let i = 0; i < 10 && model.memory().states > 0; i++) {
      globalThis.gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    console.log(JSON.stringify({ held, after: model.memory().states }));`;
  const child = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(child.status, 0, child.stderr);
  const { held, after } = JSON.parse(child.stdout.trim().split('\n').at(-1));
  console.log(`200 streams dropped after one token (default model): ${(held / 2 ** 20).toFixed(1)} MB of decode states held, ${after} bytes after gc`);
  assert.ok(held > 0);
  assert.equal(after, 0, 'dropped streams free their decode states when collected');
});

test('WASM calls are never busy; a model disposed while a call is queued rejects that call with disposed', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  const st = model.createState();
  st.prefill([1, 2]);
  // a synchronous step in each microtask gap of an async call (before: every step at the
  // second microtask was 'busy', though WASM calls never interleave)
  const busy = [];
  for (let gap = 0; gap < 6; gap++) {
    let n = 0;
    for (let i = 0; i < 40; i++) {
      const p = model.forward([1, 2, 3]);
      for (let j = 0; j < gap; j++) await Promise.resolve();
      const err = await errorOf(() => st.step(1));
      if (err?.code === 'busy') n++;
      else if (err) throw err;
      await p;
    }
    busy.push(n);
  }
  console.log(`busy steps per microtask gap 0..5 (40 each): ${busy.join(', ')}`);
  assert.deepEqual(busy, [0, 0, 0, 0, 0, 0]);
  const calls = [model.forward([1, 2]), model.forward([3, 4]), model.scoreTokens([1, 2, 3]), model.generate([1, 2])];
  model.dispose();
  const codes = [];
  for (const p of calls) codes.push((await errorOf(() => p))?.code ?? 'ok');
  console.log(`queued calls after dispose: ${codes.join(', ')}`);
  assert.deepEqual(codes, ['disposed', 'disposed', 'disposed', 'disposed']);
});

// ---- 7, 8. merge / unmerge exact, non-finite adapter files ----

test('1000 merge / unmerge cycles (and switches away from a merged adapter) leave the base weights bit for bit', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  const ids = [5, 17, 42, 8, 33, 60];
  const base = (await model.forward(ids)).data;
  const a = await model.loadAdapter(paperAdapter());
  const adapted = (await model.forward(ids)).data;
  for (let i = 0; i < 1000; i++) {
    a.merge();
    if (i % 2) a.unmerge();
    else model.setAdapter(null); // the C core unmerges on a switch: restored exactly as well
    model.setAdapter(a);
  }
  a.merge();
  const merged = (await model.forward(ids)).data;
  a.dispose(); // disposing a merged adapter restores the weights too
  const after = (await model.forward(ids)).data;
  const drift = maxDiff(after, base);
  console.log(`after 1000 merge/unmerge cycles: base logits drift ${drift} (merged vs unmerged adapter ${maxDiff(merged, adapted).toExponential(2)})`);
  assert.equal(drift, 0);
  model.dispose();
});

test('adapter tensors with NaN / Inf are refused at load (bad_format, naming the tensor) unless allowNonFinite', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  const before = (await model.forward([1, 2, 3])).data;
  const src = paperAdapter();
  const { parseSafetensors, tensorToFloat32 } = await import('../bindings/safetensors.js');
  const { tensors } = parseSafetensors(src.files['adapter_model.safetensors']);
  const poisoned = (name, value) => {
    const entries = {};
    for (const [k, t] of tensors) {
      const data = tensorToFloat32(t);
      if (k === name) data[3] = value;
      entries[k] = { dtype: 'F32', shape: t.shape, data };
    }
    return { files: { ...src.files, 'adapter_model.safetensors': writeSafetensors(entries) } };
  };
  const name = 'base_model.model.backbone.layers.1.mixer.out_proj.lora_B.weight';
  for (const v of [NaN, Infinity, -Infinity]) {
    const err = await errorOf(() => model.loadAdapter(poisoned(name, v)));
    console.log(`lora_B[3] = ${v}: ${err?.code}: ${err?.message}`);
    assert.equal(err?.code, 'bad_format');
    assert.ok(err.message.includes(name), 'the message names the tensor');
  }
  assert.equal(model.adapter, null, 'nothing was activated');
  assert.equal(maxDiff((await model.forward([1, 2, 3])).data, before), 0, 'the model is unchanged');
  const allowed = await model.loadAdapter(poisoned(name, NaN), { allowNonFinite: true });
  assert.ok(Number.isNaN(allowed.tensors()[name][3]), 'allowNonFinite: true loads it as it is');
  model.dispose();
});
