// fluency.test.mjs: fine-tuning with the defaults visibly helps. The embedded default model
// (trained on Brown) gets a default adapter (LoRA only) and a default trainer, fits the bundled
// KJV excerpt (a domain it has not seen) with a held-out tenth, and then must (1) lower the
// held-out loss and (2) sample fluent text: over 200 tokens, with the sampling the CLI and the
// demo use (temperature 0.8, top-p 0.95), no token more than 3 times in a row and distinct-2
// (distinct token bigrams / bigrams) at least 0.5, for 3 seeds. Thresholds: tests/tolerances.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Mamba } from '../bindings/index.js';
import { ROOT, TOL } from './helpers.mjs';

const MODEL = path.join(ROOT, 'models', 'default');
const DATA = path.join(ROOT, 'examples', 'data', 'kjv-genesis.txt');

/** The longest run of one token, and distinct-2. */
export function repetition(ids) {
  let run = 1;
  let maxRun = ids.length ? 1 : 0;
  const bigrams = new Set();
  for (let i = 1; i < ids.length; i++) {
    run = ids[i] === ids[i - 1] ? run + 1 : 1;
    maxRun = Math.max(maxRun, run);
    bigrams.add(`${ids[i - 1]},${ids[i]}`);
  }
  return { maxRun, distinct2: ids.length > 1 ? bigrams.size / (ids.length - 1) : 0 };
}

test('repetition measures: runs and distinct-2 on known sequences', () => {
  assert.deepEqual(repetition([1, 1, 1, 2, 2, 1]), { maxRun: 3, distinct2: 4 / 5 });
  assert.deepEqual(repetition([5, 6, 5, 6, 5, 6]), { maxRun: 1, distinct2: 2 / 5 });
  assert.equal(repetition([7, 7, 7, 7]).maxRun, 4);
});

test('fine-tuning with the defaults on KJV: held-out loss falls, and 200 sampled tokens are fluent', { skip: fs.existsSync(path.join(MODEL, 'model.safetensors')) ? false : 'the embedded default model is not in this copy', timeout: 300_000 }, async () => {
  const model = await Mamba.load(MODEL);
  try {
    model.createAdapter(); // the defaults: LoRA r=8 on in_proj + out_proj, no LIM
    assert.equal(model.adapter.config.lim, null, 'the default adapter is LoRA only');
    const trainer = model.createTrainer(); // the defaults: AdamW, lr 1e-3, constant
    const text = fs.readFileSync(DATA, 'utf8');
    const r = await trainer.fit(text, { validationSplit: 0.1 });
    const evals = r.evaluations;
    assert.ok(evals.length >= 2, `fit evaluated ${evals.length} times (before and after)`);
    console.log(`fit: ${r.losses.length} steps, train loss ${r.losses[0].toFixed(3)} -> ${r.losses.at(-1).toFixed(3)}, held-out loss ${evals[0].valLoss.toFixed(3)} -> ${evals.at(-1).valLoss.toFixed(3)}`);
    assert.ok(evals.at(-1).valLoss < evals[0].valLoss - 0.3, 'the held-out loss fell by more than 0.3 nats');
    const prompt = model.encode('And it came to pass, when');
    for (const seed of [1, 2, 3]) {
      const ids = await model.generate(prompt, { maxNewTokens: 200, temperature: 0.8, topP: 0.95, seed, stopTokens: [] });
      const { maxRun, distinct2 } = repetition(ids);
      console.log(`seed ${seed}: longest run ${maxRun}, distinct-2 ${distinct2.toFixed(3)}: ${JSON.stringify(model.decode(ids).slice(0, 120))}...`);
      assert.equal(ids.length, 200);
      assert.ok(maxRun <= TOL.fluency_max_repeat_run, `a token repeats ${maxRun} times in a row`);
      assert.ok(distinct2 >= TOL.fluency_min_distinct2, `distinct-2 ${distinct2}`);
    }
  } finally {
    model.dispose();
  }
});
