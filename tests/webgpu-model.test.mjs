// webgpu-model.test.mjs: whole models with backend 'webgpu' (each layer's softplus, scan and gate
// on WebGPU) against the golden vectors and against WASM: logits, greedy tokens, log-likelihoods,
// Memba adapters; a lost device falls back to WASM without losing the model or a decode state;
// 'auto' keeps WASM on a software adapter. Skips, saying why, only where WebGPU has no adapter.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Mamba } from '../bindings/index.js';
import { requestDevice } from '../web/webgpu.js';
import { fixture, readCase, readExpected, assertClose, maxDiff } from './helpers.mjs';

let why = null;
before(async () => {
  const r = await requestDevice();
  if (!r.device) why = `no WebGPU adapter: ${r.reason}`;
  else r.device.destroy();
});

for (const name of ['mamba-tiny', 'mamba-tiny-original-layout', 'memba-tiny-paper', 'memba-tiny-stream', 'memba-tiny-short']) {
  test(`${name} on WebGPU: logits, greedy tokens, log-likelihoods match golden and WASM`, async (t) => {
    if (why) return t.skip(why);
    const c = readCase(name);
    const exp = readExpected(name);
    const gpu = await Mamba.load(fixture(name), { backend: 'webgpu' });
    const cpu = await Mamba.load(fixture(name), { backend: 'wasm' });
    assert.equal(gpu.info.backend, 'webgpu');
    if (name.startsWith('memba')) {
      await gpu.loadAdapter(fixture(name));
      await cpu.loadAdapter(fixture(name));
    }
    const out = await gpu.forward(c.ids);
    assertClose(`${name} webgpu logits vs golden`, out.data, exp.get('logits'), 'logits_rel');
    assertClose(`${name} webgpu vs wasm logits`, out.data, (await cpu.forward(c.ids)).data, 'logits_rel');
    const greedy = exp.get('greedy');
    const [, G] = greedy.shape;
    const P = c.greedy_prompt_len;
    for (let b = 0; b < c.ids.length; b++) {
      const got = await gpu.generate(c.ids[b].slice(0, P), { maxNewTokens: G, stopTokens: [] });
      assert.deepEqual(got, Array.from(greedy.subarray(b * G, (b + 1) * G)), `greedy row ${b}`);
      const ll = await gpu.loglikelihood(c.ids[b].slice(0, P), c.ids[b].slice(P));
      assertClose(`${name} webgpu loglik row ${b}`, [ll], [exp.get('loglik_after_prompt')[b]], 'loglik_rel');
    }
    assert.equal(gpu.info.backend, 'webgpu', 'no silent fallback happened');
    gpu.dispose();
    cpu.dispose();
  });
}

test('a lost WebGPU device falls back to WASM without losing the model or a decode state', async (t) => {
  if (why) return t.skip(why);
  const c = readCase('mamba-tiny');
  const model = await Mamba.load(fixture('mamba-tiny'), { backend: 'webgpu' });
  const want = (await model.forward(c.ids)).data;
  const st = model.createState();
  st.prefill(c.ids[0].slice(0, 8));
  model._gpu.device.destroy(); // what a driver reset or a lost context does
  const after = await model.forward(c.ids);
  assert.equal(model.info.backend, 'wasm');
  assert.match(model.info.fallbackReason, /WebGPU/);
  assertClose('logits after the device was lost', after.data, want, 'logits_rel');
  const cpu = await Mamba.load(fixture('mamba-tiny'), { backend: 'wasm' });
  const ref = cpu.createState();
  ref.prefill(c.ids[0].slice(0, 8));
  assert.equal(maxDiff(st.step(c.ids[0][8]), ref.step(c.ids[0][8])), 0, 'the decode state carried on');
  assert.deepEqual(await model.generate(c.ids[0].slice(0, 5), { maxNewTokens: 10, stopTokens: [] }), await cpu.generate(c.ids[0].slice(0, 5), { maxNewTokens: 10, stopTokens: [] }));
  model.dispose();
  cpu.dispose();
});

test("backend 'auto' keeps WASM for small models and on software adapters", async (t) => {
  if (why) return t.skip(why);
  const m = await Mamba.load(fixture('mamba-tiny'));
  assert.equal(m.info.backend, 'wasm');
  m.dispose();
  // large enough, but this adapter is a CPU implementation of WebGPU (lavapipe on CI)
  const { randomCheckpoint } = await import('../bench/random-checkpoint.mjs');
  const { isSoftwareAdapter } = await import('../web/backend.js');
  const r = await requestDevice();
  const software = isSoftwareAdapter(r.description);
  r.device.destroy();
  const big = await Mamba.load(randomCheckpoint({ dModel: 768, nLayer: 1, vocabSize: 512 }, 5), { dtype: 'fp16' });
  assert.equal(big.info.backend, software ? 'wasm' : 'webgpu', r.description);
  big.dispose();
});

test("backend 'auto' on a hardware adapter: the resident model from d_inner 1536 (fp32 / fp16), never the split path (an adapter runs in WASM); smaller models and q8 stay WASM", async (t) => {
  if (why) return t.skip(why);
  const { autoWantsGpu } = await import('../bindings/gpu.js');
  assert.equal(autoWantsGpu({ dInner: 1536 }, 'fp16'), true);
  assert.equal(autoWantsGpu({ dInner: 1536 }, 'fp32'), true);
  assert.equal(autoWantsGpu({ dInner: 1536 }, 'q8'), false);
  assert.equal(autoWantsGpu({ dInner: 1535 }, 'fp16'), false);
  // lavapipe described as a hardware adapter: what 'auto' does on a real GPU
  const webgpu = await import('webgpu');
  const dawn = webgpu.create([]);
  const gpu = {
    async requestAdapter(o) {
      const a = await dawn.requestAdapter(o);
      return new Proxy(a, { get: (tg, k) => (k === 'info' ? { vendor: 'test', description: 'a hardware adapter (test)' } : typeof tg[k] === 'function' ? tg[k].bind(tg) : tg[k]) });
    },
  };
  const { randomCheckpoint } = await import('../bench/random-checkpoint.mjs');
  const big = randomCheckpoint({ dModel: 768, nLayer: 1, vocabSize: 512 }, 5);
  const events = [];
  const m = await Mamba.load(big, { gpu, dtype: 'fp16', onProgress: (e) => events.push(e) });
  const cpu = await Mamba.load(big, { backend: 'wasm', dtype: 'fp16' });
  assert.equal(m.info.backend, 'webgpu');
  assert.ok(m._gpu.resident && !m._gpu.split, 'resident, no split backend');
  const done = events.find((e) => e.status === 'done');
  assert.equal(done.loaded, done.total);
  const ids = [[1, 2, 3, 4, 5, 6, 7]];
  let calls = 0;
  const orig = m._gpu.resident.forward.bind(m._gpu.resident);
  m._gpu.resident.forward = (...a) => (calls++, orig(...a));
  assertClose("auto, resident forward vs wasm", (await m.forward(ids)).data, (await cpu.forward(ids)).data, 'logits_rel');
  assert.equal(calls, 1);
  m.createAdapter({ lora: { r: 2 }, lim: true, seed: 1 });
  cpu.createAdapter({ lora: { r: 2 }, lim: true, seed: 1 });
  assert.equal(maxDiff((await m.forward(ids)).data, (await cpu.forward(ids)).data), 0, 'an adapter runs in WASM: the same bits');
  assert.equal(calls, 1);
  m.dispose();
  cpu.dispose();
  for (const [what, src, dtype] of [['a small model', fixture('mamba-tiny'), 'fp32'], ['q8', big, 'q8']]) {
    const s = await Mamba.load(src, { gpu, dtype });
    assert.equal(s.info.backend, 'wasm', what);
    s.dispose();
  }
});

test('concurrent calls on a WebGPU model are serialised; a synchronous call during one is a busy error', async (t) => {
  if (why) return t.skip(why);
  const c = readCase('memba-tiny-paper');
  const model = await Mamba.load(fixture('memba-tiny-paper'), { backend: 'webgpu' });
  const a = await model.loadAdapter(fixture('memba-tiny-paper'));
  const base = (await Mamba.load(fixture('memba-tiny-paper'), { backend: 'wasm' }));
  const wantBase = (await base.forward(c.ids)).data;
  await base.loadAdapter(fixture('memba-tiny-paper'));
  const wantAdapted = (await base.forward(c.ids)).data;
  // two forwards in flight, the second started with the adapter switched off in between
  const p1 = model.forward(c.ids);
  model.setAdapter(null);
  const p2 = model.forward(c.ids);
  for (let i = 0; i < 1000 && !model._busy; i++) await new Promise((r) => setImmediate(r)); // until a GPU call awaits
  const busy = (() => {
    try {
      a.merge();
      return null;
    } catch (err) {
      return err;
    }
  })();
  const [r1, r2] = await Promise.all([p1, p2]);
  assertClose('first call keeps the adapter it started with', r1.data, wantAdapted, 'logits_rel');
  assertClose('second call runs without it', r2.data, wantBase, 'logits_rel');
  assert.equal(busy?.code, 'busy', 'merging while a GPU call is in flight is refused');
  model.dispose();
  base.dispose();
});
