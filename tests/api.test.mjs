// api.test.mjs: the public API's contract for bad input, cancellation and lifetime: every
// failure is a MembaError with a documented code, aborts reject with name 'AbortError', and the
// model stays usable (same numbers) after any error. Includes a fuzz test of Mamba.load.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Mamba, MembaError, ErrorCodes } from '../bindings/index.js';
import { fixture, readCase, rejectsCode, maxDiff } from './helpers.mjs';

const cfgText = fs.readFileSync(fixture('mamba-tiny/config.json'), 'utf8');
const modelBytes = new Uint8Array(fs.readFileSync(fixture('mamba-tiny/model.safetensors')));
const ids = readCase('mamba-tiny').ids;

test('package entry exports the contract names and the documented error codes', async () => {
  const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  const entry = await import(`memba-wasm`).catch(() => null); // self-reference through "exports"
  assert.ok(entry, `package self-import failed; exports = ${JSON.stringify(pkg.exports)}`);
  assert.equal(entry.Mamba, Mamba);
  assert.equal(entry.MembaError, MembaError);
  assert.deepEqual(Object.values(ErrorCodes).sort(), ['aborted', 'bad_format', 'busy', 'disposed', 'internal', 'invalid_argument', 'network', 'non_finite', 'not_found', 'oom', 'shape_mismatch', 'unsupported']);
});

test('bad inputs to forward / generate / loglikelihood are invalid_argument, and the model stays usable', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  const before = await model.forward(ids[0]);
  const V = model.config.vocabSize;
  const bad = [
    () => model.forward([]),
    () => model.forward([[]]),
    () => model.forward([1, V]),
    () => model.forward([1, -1]),
    () => model.forward([1, 2.5]),
    () => model.forward(['1', 2]),
    () => model.forward('hello'),
    () => model.forward(null),
    () => model.forward([[1, 2], [3]]),
    () => model.generate([], { maxNewTokens: 2 }),
    () => model.generate([1, 2], { maxNewTokens: -1 }),
    () => model.generate([1, 2], { temperature: -1 }),
    () => model.generate([1, 2], { temperature: 1, topP: 0 }),
    () => model.generate([1, 2], { temperature: 1, topK: 1.5 }),
    () => model.generate([1, 2], { seed: 'x' }),
    () => model.generate([[1, 2], [3, 4]]),
    () => model.generate([1, V + 5]),
    () => model.loglikelihood([], [1]),
    () => model.loglikelihood([1], []),
    () => model.loglikelihood([1], [V]),
    () => model.scoreTokens([1, 2, 3], 0),
  ];
  for (const f of bad) await rejectsCode(f, 'invalid_argument');
  assert.throws(() => model.createState({ batch: 0 }), (e) => e.code === 'invalid_argument');
  await rejectsCode(() => model.generate([1, V]), 'invalid_argument', /out of range/);
  const after = await model.forward(ids[0]);
  assert.equal(maxDiff(after.data, before.data), 0, 'same logits after errors');
  assert.throws(() => model.encode('x'), (e) => e.code === 'unsupported'); // no tokenizer.json here
  model.dispose();
  model.dispose(); // twice is fine
  await rejectsCode(() => model.forward(ids[0]), 'disposed');
  await rejectsCode(() => model.generate([1, 2]), 'disposed');
  // disposed in the middle of a stream: the next step says so
  const m2 = await Mamba.load(fixture('mamba-tiny'));
  let n = 0;
  await rejectsCode(async () => {
    for await (const id of m2.stream([1, 2, 3], { maxNewTokens: 20, stopTokens: [] })) if (++n === 3) m2.dispose();
  }, 'disposed');
  assert.equal(n, 3);
});

test('load errors: missing directory, bad JSON, missing/wrong tensors, unknown backend, WebGPU without an adapter', async () => {
  await rejectsCode(() => Mamba.load('/nonexistent/dir/for/memba'), 'not_found');
  await rejectsCode(() => Mamba.load(42), 'invalid_argument');
  await rejectsCode(() => Mamba.load(fixture('mamba-tiny'), { backend: 'cuda' }), 'invalid_argument');
  const noAdapter = { requestAdapter: async () => null }; // a WebGPU without any adapter
  await rejectsCode(() => Mamba.load(fixture('mamba-tiny'), { backend: 'webgpu', gpu: noAdapter }), 'unsupported', /no adapter/);
  await rejectsCode(() => Mamba.load({ files: { 'config.json': '{not json', 'model.safetensors': modelBytes } }), 'bad_format');
  await rejectsCode(() => Mamba.load({ files: { 'config.json': cfgText } }), 'not_found');
  const cfg = JSON.parse(cfgText);
  await rejectsCode(() => Mamba.load({ files: { 'config.json': { ...cfg, hidden_size: 48 }, 'model.safetensors': modelBytes } }), 'shape_mismatch');
  await rejectsCode(() => Mamba.load({ files: { 'config.json': { ...cfg, num_hidden_layers: 3 }, 'model.safetensors': modelBytes } }), 'bad_format');
  await rejectsCode(() => Mamba.load({ files: { 'config.json': cfgText, 'model.safetensors': modelBytes.subarray(0, 5000) } }), 'bad_format');
  const pre = new AbortController();
  pre.abort();
  await rejectsCode(() => Mamba.load(fixture('mamba-tiny'), { signal: pre.signal }), 'aborted');
});

test('abort: a generation cancelled mid-way rejects with AbortError; the model still works', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  const ctl = new AbortController();
  const seen = [];
  await assert.rejects(
    (async () => {
      for await (const id of model.stream(ids[0].slice(0, 4), { maxNewTokens: 1000, signal: ctl.signal, stopTokens: [] })) {
        seen.push(id);
        if (seen.length === 3) ctl.abort();
      }
    })(),
    (err) => err.name === 'AbortError' && err instanceof MembaError && err.code === 'aborted',
  );
  assert.equal(seen.length, 3);
  // an abort from a timer (not from inside the loop) also lands between tokens
  const ctl2 = new AbortController();
  setTimeout(() => ctl2.abort(new Error('user cancelled')), 5);
  await assert.rejects(model.generate(ids[0].slice(0, 4), { maxNewTokens: 1e6, signal: ctl2.signal, stopTokens: [] }), (e) => e.name === 'AbortError' && /user cancelled/.test(e.message));
  const g = await model.generate(ids[0].slice(0, 5), { maxNewTokens: 10, stopTokens: [] });
  assert.equal(g.length, 10);
  model.dispose();
});

test('fuzz: 1000 random mutations of a valid safetensors file through Mamba.load give a model or a MembaError', async () => {
  let seed = 0xc0ffee;
  const rand = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 2 ** 32;
  };
  const headerLen = Number(new DataView(modelBytes.buffer, modelBytes.byteOffset).getBigUint64(0, true));
  const counts = { loaded: 0, rejected: {} };
  for (let i = 0; i < 1000; i++) {
    let b = modelBytes.slice();
    const kind = i % 5;
    if (kind === 0) {
      for (let j = 0, n = 1 + Math.floor(rand() * 8); j < n; j++) b[Math.floor(rand() * (8 + headerLen))] = Math.floor(rand() * 256);
    } else if (kind === 1) {
      b = b.subarray(0, Math.floor(rand() * b.length));
    } else if (kind === 2) {
      new DataView(b.buffer).setUint32(Math.floor(rand() * 2) * 4, Math.floor(rand() * 2 ** 32), true);
    } else if (kind === 3) {
      const at = 8 + Math.floor(rand() * headerLen);
      const digits = '0123456789';
      for (let j = at; j < Math.min(at + 4, 8 + headerLen); j++) if (digits.includes(String.fromCharCode(b[j]))) b[j] = digits.charCodeAt(Math.floor(rand() * 10));
    } else {
      const a = Math.floor(rand() * b.length);
      const c = Math.floor(rand() * b.length);
      b.copyWithin(a, c, c + Math.floor(rand() * 64));
    }
    try {
      const m = await Mamba.load({ files: { 'config.json': cfgText, 'model.safetensors': b } });
      await m.forward([1, 2, 3]);
      m.dispose();
      counts.loaded++;
    } catch (err) {
      assert.ok(err instanceof MembaError, `mutation ${i} (kind ${kind}) threw a non-MembaError: ${err?.stack ?? err}`);
      counts.rejected[err.code] = (counts.rejected[err.code] ?? 0) + 1;
    }
  }
  console.log(`fuzz: ${counts.loaded} loaded, rejected by code: ${JSON.stringify(counts.rejected)}`);
  assert.ok(Object.values(counts.rejected).reduce((a, b) => a + b, 0) > 300, 'most mutations should be rejected');
});
