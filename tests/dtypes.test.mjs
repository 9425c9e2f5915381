// dtypes.test.mjs: weights held as fp16 or q8 in the WASM engine (issue "16-bit and 8-bit
// weights"): the JS size accounting equals the C block byte for byte; the embedded model's
// held-out Brown perplexity in fp16 and q8 against fp32 (within 0.2% and 1%), its greedy tokens;
// the golden cases (F32 files) in fp16 and q8 against their float64 logits and greedy tokens;
// training over a frozen fp16 / q8 base; the options' errors. Tolerances: tests/tolerances.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Mamba } from '../bindings/index.js';
import { weightBlockBytes } from '../bindings/checkpoint.js';
import { ROOT, TOL, fixture, readCase, readExpected, maxDiff, maxAbs } from './helpers.mjs';

const MODEL = path.join(ROOT, 'models', 'default');
const HAS_MODEL = fs.existsSync(path.join(MODEL, 'model.safetensors'));
const DTYPES = ['fp32', 'fp16', 'q8'];

test('the JS weight-block size equals the C block for every dtype and shape', async () => {
  const shapes = [
    { dModel: 16, nLayer: 2, vocabSize: 40 },
    { dModel: 48, nLayer: 3, vocabSize: 101, dState: 5, dConv: 3, expand: 3, dtRank: 7 },
    { dModel: 100, nLayer: 1, vocabSize: 33, dtRank: 1 },
  ];
  for (const shape of shapes)
    for (const dtype of DTYPES) {
      const m = await Mamba.createRandom(shape, { dtype });
      const c = { ...m.config, tieEmbeddings: true, useBias: false, useConvBias: true };
      const js = Number(weightBlockBytes(c, dtype));
      assert.equal(m.info.dtype, dtype);
      assert.equal(js, m.info.weightBytes, `${JSON.stringify(shape)} ${dtype}: JS ${js}, C ${m.info.weightBytes}`);
      m.dispose();
    }
});

test('the embedded model in fp16 and q8: held-out Brown perplexity within 0.2% and 1% of fp32, greedy tokens', { skip: HAS_MODEL ? false : 'no embedded model', timeout: 240_000 }, async () => {
  const text = fs.readFileSync(path.join(ROOT, 'examples', 'data', 'brown-valid.txt'), 'utf8').slice(0, 30_000);
  const out = {};
  for (const dtype of DTYPES) {
    const m = await Mamba.load(MODEL, { dtype });
    const { perplexity, tokens } = await m.perplexity(text, { seqLen: 256 });
    const greedy = await m.generate(m.encode('The jury said'), { maxNewTokens: 32, stopTokens: [] });
    out[dtype] = { perplexity, tokens, greedy, bytes: m.info.weightBytes };
    m.dispose();
  }
  for (const dtype of DTYPES) {
    const r = out[dtype];
    const rel = r.perplexity / out.fp32.perplexity - 1;
    const same = r.greedy.findIndex((t, i) => t !== out.fp32.greedy[i]);
    console.log(`${dtype}: ${(r.bytes / 2 ** 20).toFixed(1)} MB of weights, held-out perplexity ${r.perplexity.toFixed(4)} over ${r.tokens} tokens (${(100 * rel).toFixed(4)}% vs fp32), greedy ${same < 0 ? 'equal to fp32 for all 32 tokens' : `first differs from fp32 at token ${same}`}`);
  }
  assert.ok(Math.abs(out.fp16.perplexity / out.fp32.perplexity - 1) <= TOL.fp16_ppl_rel, 'fp16 perplexity within 0.2%');
  assert.ok(Math.abs(out.q8.perplexity / out.fp32.perplexity - 1) <= TOL.q8_ppl_rel, 'q8 perplexity within 1%');
  // the file is F16: fp16 holds exactly its values, so it computes exactly what fp32 does
  assert.deepEqual(out.fp16.greedy, out.fp32.greedy, 'fp16 greedy tokens equal fp32 (the same values)');
  assert.ok(out.fp16.bytes < 0.55 * out.fp32.bytes && out.q8.bytes < 0.32 * out.fp32.bytes, 'smaller blocks');
});

test('golden cases (F32 files) in fp16 and q8: logits against the float64 reference, greedy tokens', async () => {
  for (const name of ['mamba-tiny', 'mamba-tiny-original-layout']) {
    const c = readCase(name);
    const exp = readExpected(name);
    const want = exp.get('logits');
    const G = exp.get('greedy').shape[1];
    const golden = Array.from(exp.get('greedy').subarray(0, G));
    for (const dtype of ['fp16', 'q8']) {
      const m = await Mamba.load(fixture(name), { dtype });
      const got = await m.forward(c.ids);
      const d = maxDiff(got.data, want);
      const lim = TOL[`${dtype}_golden_logits_rel`] * Math.max(1, maxAbs(want));
      const greedy = await m.generate(c.ids[0].slice(0, c.greedy_prompt_len), { maxNewTokens: G, stopTokens: [] });
      const first = greedy.findIndex((t, i) => t !== golden[i]);
      console.log(`${name} ${dtype}: logits maxdiff ${d.toExponential(3)} (limit ${lim.toExponential(3)}); greedy ${first < 0 ? `equal to golden (${G} tokens)` : `first differs at ${first}`}`);
      assert.ok(d <= lim, `${name} ${dtype} logits`);
      if (dtype === 'fp16') assert.deepEqual(greedy, golden, `${name} fp16 greedy tokens`);
      m.dispose();
    }
  }
});

test('training over a frozen fp16 / q8 base: losses follow the fp32 base, the adapter stays float32', { skip: HAS_MODEL ? false : 'no embedded model', timeout: 240_000 }, async () => {
  const text = fs.readFileSync(path.join(ROOT, 'examples', 'data', 'kjv-genesis.txt'), 'utf8').slice(0, 6000);
  const losses = {};
  for (const dtype of DTYPES) {
    const m = await Mamba.load(MODEL, { dtype });
    m.createAdapter({ seed: 3 });
    const r = await m.createTrainer({ lr: 3e-3, seed: 1 }).fit(text, { seqLen: 64 });
    losses[dtype] = r.losses;
    assert.ok(Object.values(m.adapter.tensors()).every((t) => t instanceof Float32Array));
    m.dispose();
  }
  for (const dtype of ['fp16', 'q8']) {
    const d = maxDiff(losses[dtype], losses.fp32);
    console.log(`${dtype} base: ${losses[dtype].length} steps, loss ${losses[dtype][0].toFixed(4)} -> ${losses[dtype].at(-1).toFixed(4)} (fp32 ${losses.fp32[0].toFixed(4)} -> ${losses.fp32.at(-1).toFixed(4)}), max step difference ${d.toExponential(3)}`);
    assert.ok(d <= TOL[`${dtype}_train_loss_abs`], `${dtype} losses follow fp32`);
  }
  assert.ok(losses.q8.at(-1) < losses.q8[0] - 0.3, 'q8 base: the loss falls');
});

test('dtype options: bad values, merge, allowNonFinite, createRandom', async () => {
  const code = async (p, want) => {
    await assert.rejects(p, (e) => e.code === want);
  };
  await code(Mamba.load(fixture('mamba-tiny'), { dtype: 'int4' }), 'invalid_argument');
  await code(Mamba.load(fixture('mamba-tiny'), { dtype: 'q8', allowNonFinite: true }), 'invalid_argument');
  await code(Mamba.createRandom({ dModel: 8, nLayer: 1, vocabSize: 9 }, { dtype: 'auto' }), 'invalid_argument');
  const m = await Mamba.load(fixture('mamba-tiny'), { dtype: 'q8' });
  const a = m.createAdapter({ seed: 1 });
  assert.throws(() => a.merge(), (e) => e.code === 'unsupported' && /fp32/.test(e.message));
  const logits = await m.forward([1, 2, 3]); // still usable
  assert.equal(logits.dims[1], 3);
  m.dispose();
  const auto = await Mamba.load(fixture('mamba-tiny'));
  assert.equal(auto.info.dtype, 'fp32', "'auto' keeps fp32 where it fits");
  auto.dispose();
});
