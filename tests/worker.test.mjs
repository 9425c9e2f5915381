// worker.test.mjs: the engine behind a worker (Node worker thread here; a Web Worker in browsers,
// same code): every call gives what the local engine gives, streams and progress cross the
// boundary, abort lands within one training step, errors keep their codes, dispose ends it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Mamba, MembaError } from '../bindings/index.js';
import { fixture, readCase, maxDiff } from './helpers.mjs';

const pattern = Array.from({ length: 200 }, (_, i) => [5, 17, 42, 8, 33, 60, 21, 9][i % 8]);

test('a worker-hosted model answers like the local one (forward, generate, stream, adapters, inspect)', async () => {
  const c = readCase('memba-tiny-stream');
  const local = await Mamba.load(fixture('memba-tiny-stream'));
  await local.loadAdapter(fixture('memba-tiny-stream'));
  const events = [];
  const remote = await Mamba.load(fixture('memba-tiny-stream'), { worker: true, onProgress: (p) => events.push(p.status) });
  assert.ok(events.includes('ready'), 'progress events cross the boundary');
  assert.deepEqual(remote.config, local.config);
  const ad = await remote.loadAdapter(fixture('memba-tiny-stream'));
  assert.equal(ad.causal, true);
  assert.deepEqual(ad.config, local.adapter.config);
  assert.equal(maxDiff((await remote.forward(c.ids)).data, (await local.forward(c.ids)).data), 0);
  const prompt = c.ids[0].slice(0, 4);
  assert.deepEqual(await remote.generate(prompt, { maxNewTokens: 6, stopTokens: [] }), await local.generate(prompt, { maxNewTokens: 6, stopTokens: [] }));
  const streamed = [];
  for await (const id of remote.stream(prompt, { maxNewTokens: 6, stopTokens: [] })) streamed.push(id);
  assert.deepEqual(streamed, await local.generate(prompt, { maxNewTokens: 6, stopTokens: [] }));
  const ins = await remote.inspect(c.ids);
  assert.equal(ins.layers.length, 3);
  const st = await remote.createState();
  await st.prefill(prompt);
  assert.equal(st.position, 4);
  await st.dispose();
  await assert.rejects(remote.forward([1, 99999]), (e) => e instanceof MembaError && e.code === 'invalid_argument');
  await remote.setAdapter(null);
  await remote.dispose();
  local.dispose();
});

test('training in the worker: steps, fit with progress, abort within one step, saveState', async () => {
  const remote = await Mamba.load(fixture('mamba-tiny'), { worker: true });
  await remote.createAdapter({ lora: { r: 4, alpha: 8, targets: ['in_proj', 'out_proj'] }, seed: 1 });
  const tr = await remote.createTrainer({ lr: 1e-2 });
  const r = await tr.step({ ids: pattern.slice(0, 16) });
  assert.ok(Number.isFinite(r.loss) && r.gradNorm > 0);
  assert.equal(tr.stepCount, 1);
  const seen = [];
  const res = await tr.fit([pattern], { epochs: 2, seqLen: 16, onProgress: (p) => seen.push(p.step) });
  assert.equal(seen.length, res.losses.length);
  assert.ok(res.losses.at(-1) < res.losses[0]);
  // abort mid-fit: rejects with AbortError after at most one more step
  const ctl = new AbortController();
  let after = 0;
  const run = tr.fit([pattern], {
    epochs: 50, seqLen: 16, signal: ctl.signal,
    onProgress: () => {
      if (++after === 3) ctl.abort();
    },
  });
  await assert.rejects(run, (e) => e.name === 'AbortError' && e.code === 'aborted');
  assert.ok(after <= 4, `${after} steps ran, abort should land within one step`);
  const state = await tr.saveState();
  assert.equal(state.format, 'memba-trainer-v1');
  assert.ok(state.tensors instanceof Float32Array);
  await remote.dispose();
});
