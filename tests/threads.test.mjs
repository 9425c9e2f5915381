// threads.test.mjs: the threaded build (dist/memba-threads.*) in Node. This process's engine is
// made by the first load below with 2 threads; a worker-mode load with threads: 1 runs the
// single-threaded build (memba.wasm) in its own worker thread, the oracle here. Forward logits,
// scores, greedy tokens and training (losses and the trained adapter) must be bitwise equal across
// 1 and 2 threads and across the two builds (the C pool splits only independent rows, channels and
// tokens: tests/c/test_threads.c checks 2-4 threads natively). Also: the option's checks, the
// pool's size cap, and what model.info says.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Mamba } from '../bindings/index.js';
import { getEngine } from '../bindings/engine.js';
import { maxDiff, rejectsCode } from './helpers.mjs';

const PROMPT = 'The jury said that the city';
const models = [];
after(async () => {
  for (const m of models) await m.dispose();
});

async function load(opts) {
  const m = await Mamba.load('default', opts);
  models.push(m);
  return m;
}

/** What a model computes: logits, scores, greedy tokens, and a short Memba fine-tune. */
async function outputs(m) {
  const ids = await m.encode(PROMPT);
  const logits = (await m.forward(ids)).data;
  const scores = (await m.scoreTokens(ids, 1)).data;
  const tokens = await m.generate(ids, { maxTokens: 12, temperature: 0 });
  await m.createAdapter({ lora: { r: 4, alpha: 8, targets: ['in_proj', 'out_proj'] }, lim: { chunk_size: 8, cross_layer: 'mean' }, seed: 1 });
  const trainer = await m.createTrainer({ lr: 1e-2, seed: 3 });
  const text = 'The jury said the city had no evidence. The grand jury commented on the election. '.repeat(4);
  const fit = await trainer.fit(text, { epochs: 1, batchSize: 2, seqLen: 16 });
  const after = (await m.forward(ids)).data;
  await m.setAdapter(null);
  return { logits, scores, tokens: [...tokens], losses: fit.losses, after };
}

function same(a, b, what) {
  assert.equal(a.logits.length, b.logits.length, `${what}: logits length`);
  console.log(`${what}: logits maxdiff ${maxDiff(a.logits, b.logits)}, scores ${maxDiff(a.scores, b.scores)}, trained logits ${maxDiff(a.after, b.after)}, losses ${a.losses.map((l) => l.toFixed(4)).join(' ')}`);
  assert.equal(maxDiff(a.logits, b.logits), 0, `${what}: logits`);
  assert.equal(maxDiff(a.scores, b.scores), 0, `${what}: scores`);
  assert.deepEqual(a.tokens, b.tokens, `${what}: greedy tokens`);
  assert.deepEqual(a.losses, b.losses, `${what}: training losses`);
  assert.equal(maxDiff(a.after, b.after), 0, `${what}: logits after training`);
}

let two;
test('Node runs the threaded build: 2 threads; model.info says so', async () => {
  const m = await load({ threads: 2 });
  assert.equal(m.info.threads, 2);
  assert.match(m.info.threadsNote, /^2 threads \(the threaded build\)$/);
  two = await outputs(m);
});

test('2 threads equal 1 thread of the same build, and the single-threaded build (worker: true, threads: 1), bit for bit', async () => {
  const one = await load({ threads: 1 });
  assert.equal(one.info.threads, 1);
  assert.match(one.info.threadsNote, /threaded build/);
  same(await outputs(one), two, 'threaded build, 1 thread vs 2');
  const single = await load({ worker: true, threads: 1 });
  assert.equal(single.info.threads, 1);
  assert.match(single.info.threadsNote, /^1 thread: threads: 1 was asked for$/);
  same(await outputs(single), two, 'single-threaded build (worker) vs threaded, 2 threads');
});

test('worker mode runs the threaded build in its worker: 2 threads there equal this thread', async () => {
  const w = await load({ worker: true, threads: 2 });
  assert.equal(w.info.threads, 2);
  same(await outputs(w), two, 'worker, 2 threads vs this thread, 2 threads');
});

test('threads: an integer 1..16; more than the first load made is capped at that, saying so', async () => {
  for (const bad of [0, 17, 1.5, '2', -1, NaN]) await rejectsCode(() => Mamba.load('default', { threads: bad }), 'invalid_argument', /threads must be an integer from 1 to 16/);
  const m = await load({ threads: 3 });
  assert.equal(m.info.threads, 2);
  assert.match(m.info.threadsNote, /^2 threads: the pool the first load made has 2$/);
  const r = await Mamba.createRandom({ dModel: 16, nLayer: 1, vocabSize: 50 }, { threads: 2 });
  assert.equal(r.info.threads, 2);
  r.dispose();
});

test('a worker thread that crashes is a MembaError (not a hang); the engine is then done and the next load makes a new one', async () => {
  const e = await getEngine();
  assert.equal(e.mb_pool_selftest(0), 2, 'the pool runs a chunk on each thread');
  assert.throws(() => e.mb_pool_selftest(1), (err) => err.code === 'internal' && /a worker thread of the engine crashed/.test(err.message));
  assert.throws(() => e.mb_get_threads(), /cannot be used again: load the model again/);
  await rejectsCode(() => models[0].forward([1, 2, 3]), 'internal', /cannot be used again/);
  const m = await load({ threads: 2 });
  assert.equal(m.info.threads, 2);
  const ids = await m.encode(PROMPT);
  assert.equal(maxDiff((await m.forward(ids)).data, two.logits), 0, 'a new engine computes the same');
});
