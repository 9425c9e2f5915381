// webgpu-resident.test.mjs: the whole forward on WebGPU with the weights resident in GPU buffers
// (web/resident.js) against the WASM forward of the same model (the C kernels) and against the
// golden vectors: every position and last-position logits, one and several sequences, fp32 and
// fp16 weights (f16 packed two to a u32 on the GPU), a model with biases. Runs on whatever adapter
// WebGPU finds (Mesa lavapipe on the CI machine); skips, saying why, only where there is none.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Mamba } from '../bindings/index.js';
import { weightSource } from '../bindings/gpu.js';
import { requestDevice } from '../web/webgpu.js';
import { GpuResident } from '../web/resident.js';
import { fixture, readCase, readExpected, assertClose } from './helpers.mjs';

let device = null;
let why = 'not probed';
before(async () => {
  const r = await requestDevice();
  if (r.device) device = r.device;
  else why = `no WebGPU adapter: ${r.reason}`;
});

const ids = (B, L, V) => Int32Array.from({ length: B * L }, (_, i) => (i * 7919 + 13) % V);

for (const dtype of ['fp32', 'fp16'])
  test(`resident forward (${dtype} weights) == the WASM forward: all positions and last, B=1 and B=3`, async (t) => {
    if (!device) return t.skip(why);
    const model = await Mamba.createRandom({ dModel: 64, nLayer: 3, vocabSize: 300, dState: 8 }, { seed: 7, dtype });
    let uploaded = 0;
    const gpu = await GpuResident.create(device, weightSource(model), { onUpload: (n) => (uploaded += n) });
    assert.equal(uploaded, gpu.weightBytes);
    console.log(`${dtype}: ${gpu.weightBytes} weight bytes on the GPU (WASM: ${model.info.weightBytes})`);
    for (const [B, L] of [[1, 1], [1, 70], [3, 17]]) {
      const x = ids(B, L, 300);
      const want = await model.forward(Array.from({ length: B }, (_, b) => Array.from(x.subarray(b * L, (b + 1) * L))));
      const all = await gpu.forward(x, B, L);
      assertClose(`${dtype} B=${B} L=${L} every position`, all, want.data, 'logits_rel');
      const last = await gpu.forward(x, B, L, { last: true });
      const wantLast = new Float32Array(B * 300);
      for (let b = 0; b < B; b++) wantLast.set(want.data.subarray(((b + 1) * L - 1) * 300, (b + 1) * L * 300), b * 300);
      assertClose(`${dtype} B=${B} L=${L} last position`, last, wantLast, 'logits_rel');
    }
    gpu.destroy();
    model.dispose();
  });

for (const name of ['mamba-tiny', 'mamba-tiny-original-layout'])
  test(`resident forward of ${name} == golden logits`, async (t) => {
    if (!device) return t.skip(why);
    const c = readCase(name);
    const exp = readExpected(name);
    const model = await Mamba.load(fixture(name), { backend: 'wasm' });
    const gpu = await GpuResident.create(device, weightSource(model));
    const B = c.ids.length;
    const L = c.ids[0].length;
    const got = await gpu.forward(Int32Array.from(c.ids.flat()), B, L);
    assertClose(`${name} resident logits vs golden`, got, exp.get('logits'), 'logits_rel');
    gpu.destroy();
    model.dispose();
  });

test('resident weights refuse q8 by name (unsupported) before uploading anything', async (t) => {
  if (!device) return t.skip(why);
  const model = await Mamba.createRandom({ dModel: 32, nLayer: 1, vocabSize: 64 }, { dtype: 'q8' });
  await assert.rejects(GpuResident.create(device, weightSource(model)), (e) => e.code === 'unsupported' && /q8/.test(e.message));
  model.dispose();
});

test("Mamba.load with backend 'webgpu': forward() without an adapter runs resident, the upload progress counts every byte, an adapter still works", async (t) => {
  if (!device) return t.skip(why);
  const { gpuUploadBytes } = await import('../bindings/gpu.js');
  for (const dtype of ['fp32', 'fp16']) {
    const events = [];
    const gpu = await Mamba.load(fixture('mamba-tiny'), { backend: 'webgpu', dtype, onProgress: (e) => events.push(e) });
    const cpu = await Mamba.load(fixture('mamba-tiny'), { backend: 'wasm', dtype });
    assert.equal(gpu.info.backend, 'webgpu');
    assert.ok(gpu._gpu.resident, 'the resident model exists');
    const uploaded = events.filter((e) => e.status === 'upload').length;
    const { nLayer, dInner, dState } = gpu.config;
    assert.equal(gpu.info.gpuWeightBytes + nLayer * dInner * (dState + 1) * 4, gpuUploadBytes(gpu.config, dtype), 'planned upload == uploaded');
    const done = events.find((e) => e.status === 'done');
    assert.equal(done.loaded, done.total);
    assert.ok(uploaded > 10, `${uploaded} upload events`);
    const c = readCase('mamba-tiny');
    let calls = 0;
    const orig = gpu._gpu.resident.forward.bind(gpu._gpu.resident);
    gpu._gpu.resident.forward = (...a) => (calls++, orig(...a));
    const got = await gpu.forward(c.ids);
    assert.equal(calls, 1, 'forward ran on the resident model');
    assertClose(`mamba-tiny ${dtype} Mamba.forward resident vs wasm`, got.data, (await cpu.forward(c.ids)).data, 'logits_rel');
    gpu.createAdapter({ r: 4, targets: ['in_proj'], seed: 3 }); // active once made: the split path
    cpu.createAdapter({ r: 4, targets: ['in_proj'], seed: 3 });
    const withAdapter = await gpu.forward(c.ids);
    assert.equal(calls, 1, 'an adapter is not run by the resident model');
    assertClose(`mamba-tiny ${dtype} with an adapter (split path) vs wasm`, withAdapter.data, (await cpu.forward(c.ids)).data, 'logits_rel');
    gpu.dispose();
    cpu.dispose();
  }
});

test('resident decode: prefill into a GPU state, then steps, equal the WASM decode state; greedy ids taken on the GPU equal argmax', async (t) => {
  if (!device) return t.skip(why);
  const { argmax } = await import('../bindings/sampler.js');
  for (const dtype of ['fp32', 'fp16']) {
    const model = await Mamba.createRandom({ dModel: 64, nLayer: 3, vocabSize: 300, dState: 8 }, { seed: 11, dtype });
    const gpu = await GpuResident.create(device, weightSource(model));
    const V = 300;
    const B = 2;
    const P = 9;
    const prompts = [ids(1, P, V), Int32Array.from(ids(1, P, V), (v) => (v * 3 + 1) % V)];
    const st = gpu.createState(B);
    const flat = new Int32Array(B * P);
    prompts.forEach((p, b) => flat.set(p, b * P));
    const first = await gpu.forward(flat, B, P, { last: true, state: st });
    const cpu = prompts.map((p) => model.createState());
    const cpuLogits = prompts.map((p, b) => cpu[b].prefill(p));
    assertClose(`${dtype} prefill into a state, last logits`, first, Float32Array.from([...cpuLogits[0], ...cpuLogits[1]]), 'logits_rel');
    let next = Uint32Array.from(cpuLogits.map((l) => argmax(l)));
    for (let i = 0; i < 6; i++) {
      const greedy = i % 2 === 1;
      const got = await gpu.step(st, next, { greedy });
      const want = next.length && Array.from(next).map((id, b) => cpu[b].step(id));
      const wantIds = Uint32Array.from(want.map((l) => argmax(l)));
      if (greedy) assert.deepEqual(Array.from(got), Array.from(wantIds), `${dtype} step ${i}: GPU argmax ids`);
      else assertClose(`${dtype} step ${i} logits`, got, Float32Array.from([...want[0], ...want[1]]), 'logits_rel');
      next = wantIds;
    }
    assert.equal(st.pos, P + 6);
    // chained greedy steps (no readback between them), 5 then, after a forward that grows the
    // scratch buffers the recorded steps use (so they are recorded again), 4 more
    for (const n of [5, 4]) {
      const got = await gpu.decodeGreedy(st, next, n);
      const want = [];
      let cur = Array.from(next);
      for (let i = 0; i < n; i++) {
        cur = cur.map((id, b) => argmax(cpu[b].step(id)));
        want.push(...cur);
      }
      console.log(`${dtype} decodeGreedy x${n}: GPU ${Array.from(got).join(' ')} | WASM ${want.join(' ')}`);
      assert.deepEqual(Array.from(got), want, `${dtype}: ${n} chained greedy steps`);
      next = Uint32Array.from(want.slice(-B));
      const gen = gpu.scratch.generation;
      await gpu.forward(ids(B, 40, V), B, 40);
      assert.ok(gpu.scratch.generation > gen || n === 4, 'the long forward grew the scratch buffers');
    }
    assert.equal(st.pos, P + 6 + 9);
    gpu.destroyState(st);
    cpu.forEach((s) => s.dispose());
    gpu.destroy();
    model.dispose();
  }
});

test('argmax_forward.wgsl == argmax (the greedy sampler): ties take the first index, NaN never wins except at index 0', async (t) => {
  if (!device) return t.skip(why);
  const { argmax } = await import('../bindings/sampler.js');
  const { GpuKernels } = await import('../web/webgpu.js');
  const k = await GpuKernels.create(device);
  const n = 1000;
  const rowsIn = [];
  let seed = 5;
  const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  for (let r = 0; r < 7; r++) rowsIn.push(Float32Array.from({ length: n }, () => Math.round(rnd() * 20) - 10)); // many ties
  rowsIn[1][0] = NaN; // argmax: 0
  rowsIn[2][500] = NaN;
  rowsIn[3].fill(-Infinity);
  rowsIn[4].fill(NaN);
  rowsIn[5][999] = 1e30;
  const x = new Float32Array(7 * n);
  rowsIn.forEach((row, r) => x.set(row, r * n));
  const out = k.buffer(7);
  k.argmax({ out, x: k.buffer(x) }, { R: 7, n });
  const got = Array.from(await k.readU32(out, 7));
  const want = rowsIn.map((row) => argmax(row));
  console.log(`argmax rows: GPU ${got.join(' ')}, sampler ${want.join(' ')}`);
  assert.deepEqual(got, want);
});

test("generate on a 'webgpu' model decodes on the GPU (greedy and sampled) and equals WASM; a device lost mid-generation goes on in WASM with the same tokens", async (t) => {
  if (!device) return t.skip(why);
  // the embedded default model (a trained 7.4M model): its tokens vary, unlike the golden tiny ones
  const src = new URL('../models/default/', import.meta.url).pathname;
  const gpu = await Mamba.load(src, { backend: 'webgpu' });
  const cpu = await Mamba.load(src, { backend: 'wasm' });
  const res = gpu._gpu.resident;
  let steps = 0; // decode steps run on the GPU
  let calls = 0; // readbacks they took
  const step = res.step.bind(res);
  const chain = res.submitGreedy.bind(res);
  res.step = (st, ids, o) => (o?.greedy ? step(st, ids, o) : (steps++, calls++, step(st, ids, o)));
  res.submitGreedy = (st, n, ids) => ((steps += n), calls++, chain(st, n, ids));
  const prompt = gpu.encode('And the LORD said unto');
  for (const o of [{ maxNewTokens: 12, stopTokens: [] }, { maxNewTokens: 12, stopTokens: [], temperature: 0.8, topK: 20, seed: 5 }, { maxNewTokens: 8, stopTokens: [], repetitionPenalty: 1.3 }]) {
    const before = [steps, calls];
    const got = await gpu.generate(prompt, o);
    const want = await cpu.generate(prompt, o);
    console.log(`generate ${JSON.stringify(o)}: webgpu ${got.join(' ')} | wasm ${want.join(' ')} (${steps - before[0]} GPU steps, ${calls - before[1]} readbacks)`);
    assert.deepEqual(got, want);
    assert.ok(new Set(got).size > 2, 'the tokens vary');
    assert.equal(steps - before[0], o.maxNewTokens - 1, 'every step ran on the GPU, none past maxNewTokens');
    // greedy runs chains of 1, 2, 4, then 4 (capped by the tokens left): 11 steps in 4 readbacks
    if (!o.temperature && !o.repetitionPenalty) assert.equal(calls - before[1], 4, 'greedy steps are chained');
  }
  // a stop token inside a chain ends the generation there, with the next chain in flight and then
  // dropped (its state freed): the same tokens as WASM, and the model goes on working
  {
    const o = { maxNewTokens: 30, stopTokens: [1718] };
    const got = await gpu.generate(prompt, o);
    assert.deepEqual(got, await cpu.generate(prompt, o));
    assert.equal(got.at(-1), 1718);
    assert.deepEqual(await gpu.generate(prompt, { maxNewTokens: 5, stopTokens: [] }), await cpu.generate(prompt, { maxNewTokens: 5, stopTokens: [] }));
  }
  // the device is lost at the third readback: the rest comes from WASM, from the history
  let n = 0;
  res.submitGreedy = (...a) => {
    if (++n === 3) gpu._gpu.device.destroy();
    return chain(...a);
  };
  const got = await gpu.generate(prompt, { maxNewTokens: 10, stopTokens: [] });
  assert.equal(gpu.info.backend, 'wasm');
  assert.deepEqual(got, await cpu.generate(prompt, { maxNewTokens: 10, stopTokens: [] }));
  gpu.dispose();
  cpu.dispose();
});

test('a call past the device\'s buffer limit is a GpuSizeError: that call runs on WASM and the model keeps WebGPU', async (t) => {
  if (!device) return t.skip(why);
  const { GpuKernels, GpuSizeError } = await import('../web/webgpu.js');
  const { residentCall } = await import('../bindings/gpu.js');
  const k = await GpuKernels.create(device);
  const limit = Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize);
  assert.throws(() => k.buffer(limit / 4 + 16), (e) => e instanceof GpuSizeError && /limit/.test(e.message));
  const model = await Mamba.load(fixture('mamba-tiny'), { backend: 'webgpu' });
  const got = await residentCall(model, () => model._gpu.resident.kernels.buffer(limit / 4 + 16));
  assert.equal(got, undefined);
  assert.equal(model.info.backend, 'webgpu', 'a size error does not give up the GPU');
  assert.ok(model._gpu.resident, 'the resident model is still there');
  model.dispose();
});

test("residency 'gpu': weights go from the file to the GPU only (none in WASM); forward, scoring and generation equal a WASM load; what needs WASM weights is unsupported, a lost device too", async (t) => {
  if (!device) return t.skip(why);
  const fs = await import('node:fs');
  const { parseSafetensors, writeSafetensors, tensorToFloat32, float32ToFloat16Bits } = await import('../bindings/safetensors.js');
  const { gpuUploadBytes } = await import('../bindings/gpu.js');
  const dir = new URL('../models/default/', import.meta.url).pathname;
  const files = (name) => fs.readFileSync(dir + name);
  // the default model as an F16 file (in memory): its halves go to the GPU as they are
  const f16 = new Map();
  for (const [name, x] of parseSafetensors(files('model.safetensors')).tensors)
    f16.set(name, { dtype: 'F16', shape: x.shape, data: float32ToFloat16Bits(tensorToFloat32(x)) });
  const f16Files = { files: { 'config.json': files('config.json'), 'tokenizer.json': files('tokenizer.json'), 'model.safetensors': writeSafetensors(f16) } };
  for (const [what, src, dtype] of [['F32 file, fp32', dir, 'fp32'], ['F16 file, fp16', f16Files, 'fp16']]) {
    const events = [];
    const gpu = await Mamba.load(src, { backend: 'webgpu', residency: 'gpu', dtype: dtype === 'fp16' ? 'auto' : dtype, onProgress: (e) => events.push(e) });
    const cpu = await Mamba.load(src, { backend: 'wasm', dtype });
    assert.equal(gpu.info.residency, 'gpu');
    assert.equal(gpu.info.backend, 'webgpu');
    assert.equal(gpu.info.dtype, dtype);
    assert.equal(cpu.info.residency, 'wasm');
    assert.equal(gpu.info.weightBytes, 0, 'no weight in WASM');
    assert.deepEqual(gpu.memory(), { weights: 0, activations: 0, states: 0 });
    assert.equal(gpu.info.gpuWeightBytes, gpuUploadBytes(gpu.config, dtype, { split: false }), 'planned upload == uploaded');
    const done = events.find((e) => e.status === 'done');
    assert.equal(done.loaded, done.total);
    assert.ok(!events.some((e) => e.phase === 'convert'), 'nothing is converted into WASM');
    const prompt = gpu.encode('And the LORD said unto Moses');
    const got = await gpu.forward([prompt, prompt.map((x) => (x * 7) % gpu.config.vocabSize)]);
    const want = await cpu.forward([prompt, prompt.map((x) => (x * 7) % gpu.config.vocabSize)]);
    assertClose(`${what}: forward, residency gpu vs wasm`, got.data, want.data, 'logits_rel');
    const sg = await gpu.scoreTokens(prompt, 2);
    const sc = await cpu.scoreTokens(prompt, 2);
    assertClose(`${what}: scoreTokens, residency gpu vs wasm`, sg.data, sc.data, 'logits_rel');
    // an abort between chunks of a long score is the caller's, not a GPU failure: the GPU stays
    const long = Int32Array.from({ length: 5000 }, (_, i) => (i * 7919 + 3) % gpu.config.vocabSize);
    const ac = new AbortController();
    const scoring = gpu.scoreTokens(long, 1, { signal: ac.signal });
    ac.abort();
    await assert.rejects(scoring, (e) => e.code === 'aborted');
    assert.equal(gpu.info.backend, 'webgpu', 'an abort keeps the GPU');
    const o = { maxNewTokens: 10, stopTokens: [] };
    const gen = await gpu.generate(prompt, o);
    console.log(`${what}: generate ${gen.join(' ')}`);
    assert.deepEqual(gen, await cpu.generate(prompt, o));
    for (const [call, fn] of [['createAdapter', () => gpu.createAdapter({ r: 4 })], ['createState', () => gpu.createState()], ['outputHidden', () => gpu.forward(prompt, { outputHidden: true })]])
      await assert.rejects(async () => fn(), (e) => e.code === 'unsupported' && /GPU only/.test(e.message), call);
    if (dtype === 'fp16') {
      gpu._gpu.device.destroy(); // lost: nothing to fall back to
      await assert.rejects(() => gpu.forward(prompt), (e) => e.code === 'unsupported' && /GPU only/.test(e.message) && /load it again/.test(e.message));
      await assert.rejects(() => gpu.generate(prompt, o), (e) => e.code === 'unsupported');
    }
    gpu.dispose();
    gpu.dispose();
    cpu.dispose();
  }
  // residency 'auto': on the GPU only where the weights would not fit the WASM heap
  const { gpuResidency } = await import('../bindings/load.js');
  const shape = (d, n) => ({ d_model: d, n_layer: n, vocab_size: 50280 });
  assert.equal(gpuResidency(shape(768, 24), 'auto', 'webgpu', 'auto'), false, '130m fits');
  assert.equal(gpuResidency(shape(2048, 48), 'auto', 'webgpu', 'auto'), false, '1.4b fits in fp16');
  assert.equal(gpuResidency(shape(2048, 48), 'auto', 'webgpu', 'fp32'), true, '1.4b does not fit in fp32');
  assert.equal(gpuResidency(shape(2560, 64), 'auto', 'webgpu', 'auto'), true, '2.8b does not fit in fp16');
  assert.equal(gpuResidency(shape(2560, 64), 'auto', 'webgpu', 'q8'), false, 'q8 stays in WASM');
  assert.equal(gpuResidency(shape(2560, 64), 'wasm', 'webgpu', 'auto'), false);
  assert.equal(gpuResidency(shape(2560, 64), 'auto', 'wasm', 'auto'), false);
  await assert.rejects(() => Mamba.load(dir, { backend: 'wasm', residency: 'gpu' }), (e) => e.code === 'invalid_argument' && /needs backend 'webgpu'/.test(e.message));
  await assert.rejects(() => Mamba.load(dir, { backend: 'webgpu', residency: 'gpu', dtype: 'q8' }), (e) => e.code === 'unsupported' && /q8/.test(e.message));
  await assert.rejects(() => Mamba.load(dir, { backend: 'webgpu', residency: 'vram' }), (e) => e.code === 'invalid_argument');
});
