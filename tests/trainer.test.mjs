// trainer.test.mjs: fine-tuning through the public API: golden gradients (memba-tiny-paper: mask,
// mean; -stream: triangle, first, all four targets) and AdamW trajectories; fit halves the loss;
// resume reproduces the uninterrupted run exactly; NaN/Inf batches are rejected with nothing
// changed; gradient accumulation equals the full batch; schedules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Mamba, MembaError } from '../bindings/index.js';
import { scheduleLr } from '../bindings/trainer.js';
import { writeSafetensors } from '../bindings/safetensors.js';
import { fixture, readCase, readExpected, maxDiff, maxAbs, TOL } from './helpers.mjs';

for (const name of ['memba-tiny-paper', 'memba-tiny-stream']) {
  test(`${name}: loss and gradients of every LoRA tensor, then the AdamW trajectory, match golden`, async () => {
    const c = readCase(name);
    const exp = readExpected(name);
    const model = await Mamba.load(fixture(name));
    const adapter = await model.loadAdapter(fixture(name));
    const { lr, betas, eps, weight_decay: weightDecay, steps, clip } = c.adamw;
    const trainer = model.createTrainer({ lr, betas, eps, weightDecay, clipNorm: clip ?? 0 });
    const first = await trainer.step({ ids: c.ids, labels: c.labels });
    assert.ok(Math.abs(first.loss - exp.get('loss')[0]) <= TOL.adamw_loss_abs, `loss ${first.loss} vs ${exp.get('loss')[0]}`);
    let worst = 0;
    for (const [k, g] of Object.entries(trainer.gradients())) {
      const want = exp.get(`grad.${k}`);
      assert.ok(want, `no golden gradient for ${k}`);
      const ratio = maxDiff(g, want) / (TOL.grad_rel_to_max * maxAbs(want));
      worst = Math.max(worst, ratio);
      assert.ok(ratio <= 1, `${k}: gradient differs (maxdiff/limit ${ratio})`);
    }
    console.log(`${name}: ${Object.keys(trainer.gradients()).length} gradients, worst maxdiff/limit ${worst.toFixed(4)}`);
    // the AdamW trajectory from the same start: restart with a fresh adapter
    adapter.dispose();
    await model.loadAdapter(fixture(name));
    const tr = model.createTrainer({ lr, betas, eps, weightDecay, clipNorm: clip ?? 0 });
    const losses = exp.get('adamw.losses');
    for (let k = 0; k < steps; k++) {
      const r = await tr.step({ ids: c.ids, labels: c.labels });
      assert.ok(Math.abs(r.loss - losses[k]) <= TOL.adamw_loss_abs, `AdamW loss ${k}: ${r.loss} vs ${losses[k]}`);
      assert.ok(r.gradNorm > 0);
    }
    for (const [k, v] of Object.entries(tr.adapter.tensors())) {
      const want = exp.get(`adamw.final.${k}`);
      assert.ok(maxDiff(v, want) <= TOL.adamw_final_rel * Math.max(1, maxAbs(want)), `final ${k}`);
    }
    model.dispose();
  });
}

/** A repeated id pattern: learnable by a tiny model. */
const pattern = Array.from({ length: 96 }, (_, i) => [5, 17, 42, 8, 33, 60, 21, 9][i % 8]);

test('fit on a short sequence at least halves its loss on a tiny model', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  model.createAdapter({ lora: { r: 8, alpha: 16, targets: ['in_proj', 'out_proj'] }, lim: { chunk_size: 8, cross_layer: 'first' }, seed: 1 });
  const trainer = model.createTrainer({ lr: 1e-2, seed: 3 });
  const seen = [];
  const res = await trainer.fit([pattern], { epochs: 25, batchSize: 2, seqLen: 24, onProgress: (p) => seen.push(p) });
  const first = res.losses.slice(0, 3).reduce((a, b) => a + b) / 3;
  const last = res.losses.slice(-3).reduce((a, b) => a + b) / 3;
  console.log(`fit: ${res.steps} steps, loss ${first.toFixed(3)} -> ${last.toFixed(3)}, ${(res.tokens / res.seconds).toFixed(0)} tokens/s`);
  assert.ok(last <= first / 2, `loss did not halve: ${first} -> ${last}`);
  assert.equal(seen.length, res.losses.length);
  assert.ok(seen.every((p) => p.tokensPerSec > 0 && Number.isFinite(p.loss)));
  model.dispose();
});

test('saveState / restoreState: a resumed run reproduces the uninterrupted run exactly (dropout, shuffling, moments)', async () => {
  const run = async (split) => {
    const model = await Mamba.load(fixture('mamba-tiny'));
    model.createAdapter({ lora: { r: 4, alpha: 8, targets: ['in_proj', 'x_proj', 'out_proj'], dropout: 0.2 }, seed: 5 });
    const opts = { lr: 5e-3, clipNorm: 1, accumulate: 2, weightDecay: 0.01, schedule: { type: 'cosine', warmupSteps: 2, totalSteps: 8 }, seed: 9 };
    let trainer = model.createTrainer(opts);
    const losses = [];
    const fitOpts = { epochs: 1, batchSize: 1, seqLen: 16 };
    for (let e = 0; e < 4; e++) {
      if (split && e === 2) {
        const state = structuredClone(trainer.saveState()); // as if stored and read back
        model.dispose();
        const again = await Mamba.load(fixture('mamba-tiny'));
        again.createAdapter({ lora: { r: 4, alpha: 8, targets: ['in_proj', 'x_proj', 'out_proj'], dropout: 0.2 }, seed: 77 });
        trainer = again.createTrainer(opts);
        trainer.restoreState(state);
      }
      losses.push(...(await trainer.fit([pattern], fitOpts)).losses);
    }
    const t = trainer.adapter.tensors();
    trainer._model.dispose();
    return { losses, t };
  };
  const a = await run(false);
  const b = await run(true);
  assert.deepEqual(b.losses, a.losses, 'losses after resume');
  for (const k of Object.keys(a.t)) assert.equal(maxDiff(a.t[k], b.t[k]), 0, k);
  console.log(`resume: ${a.losses.length} identical losses`);
});

test('a batch that produces NaN/Inf is rejected with a clear error and leaves the adapter unchanged', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  const a = model.createAdapter({ lora: { r: 2, alpha: 2, targets: ['out_proj'] } });
  const files = a.save();
  const entries = {};
  for (const [k, v] of Object.entries(a.tensors())) entries[k] = { dtype: 'F32', shape: k.includes('lora_A') ? [2, 64] : [32, 2], data: k.includes('lora_B') ? v.map(() => Infinity) : v };
  const bad = await model.loadAdapter({ files: { ...files, 'adapter_model.safetensors': writeSafetensors(entries) } });
  const before = bad.tensors();
  const trainer = model.createTrainer({ lr: 0.1 });
  await assert.rejects(trainer.step({ ids: [pattern.slice(0, 12)] }), (e) => e instanceof MembaError && e.code === 'non_finite' && /rejected/.test(e.message));
  for (const [k, v] of Object.entries(bad.tensors())) assert.deepEqual(Array.from(v), Array.from(before[k]), `${k} changed`);
  assert.equal(trainer.stepCount, 0);
  // the model and other adapters still work
  model.setAdapter(a);
  const ok = await model.createTrainer({ lr: 1e-3 }).step({ ids: pattern.slice(0, 12) });
  assert.ok(Number.isFinite(ok.loss));
  model.dispose();
});

test('gradient accumulation over two halves equals one step on the whole batch', async () => {
  const rows = [pattern.slice(0, 16), pattern.slice(3, 19)];
  const once = async (accumulate) => {
    const model = await Mamba.load(fixture('mamba-tiny'));
    model.createAdapter({ lora: { r: 4, alpha: 8, targets: ['in_proj', 'out_proj'] }, seed: 2 });
    const tr = model.createTrainer({ lr: 1e-2, accumulate });
    if (accumulate === 1) await tr.step({ ids: rows });
    else for (const r of rows) await tr.step({ ids: [r] });
    const t = tr.adapter.tensors();
    model.dispose();
    return t;
  };
  const a = await once(1);
  const b = await once(2);
  let worst = 0;
  for (const k of Object.keys(a)) worst = Math.max(worst, maxDiff(a[k], b[k]));
  console.log(`accumulate 2 x 1 row vs 1 x 2 rows: maxdiff ${worst}`);
  assert.ok(worst <= TOL.accumulate_vs_batch_abs);
});

test('schedules and bad trainer options', async () => {
  assert.equal(scheduleLr(1, 'constant', 5), 1);
  assert.equal(scheduleLr(1, { type: 'constant', warmupSteps: 4 }, 2), 0.5);
  const cos = { type: 'cosine', warmupSteps: 10, totalSteps: 110, minLr: 0.1 };
  assert.equal(scheduleLr(1, cos, 5), 0.5);
  assert.ok(Math.abs(scheduleLr(1, cos, 10) - 1) < TOL.schedule_lr_abs);
  assert.ok(Math.abs(scheduleLr(1, cos, 60) - 0.55) < TOL.schedule_lr_abs);
  assert.ok(Math.abs(scheduleLr(1, cos, 110) - 0.1) < TOL.schedule_lr_abs);
  const model = await Mamba.load(fixture('mamba-tiny'));
  assert.throws(() => model.createTrainer(), (e) => e.code === 'unsupported'); // no adapter yet
  model.createAdapter({ lora: { r: 2 } });
  for (const o of [{ lr: -1 }, { betas: [1, 0.9] }, { eps: 0 }, { clipNorm: -1 }, { accumulate: 0 }, { schedule: { type: 'cosine' } }, { schedule: 'linear' }])
    assert.throws(() => model.createTrainer(o), (e) => e instanceof MembaError && e.code === 'invalid_argument', JSON.stringify(o));
  const tr = model.createTrainer();
  await assert.rejects(tr.step({ ids: [1, 2, 3], labels: [1, 2] }), (e) => e.code === 'invalid_argument');
  await assert.rejects(tr.step({ ids: [1, 2, 3], labels: [-100, -100, -100] }), (e) => e.code === 'invalid_argument' && /no labels/.test(e.message));
  await assert.rejects(tr.fit('text needs a tokenizer'), (e) => e.code === 'unsupported');
  model.dispose();
});
