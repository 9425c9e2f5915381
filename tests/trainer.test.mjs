// trainer.test.mjs: fine-tuning through the public API: golden gradients (memba-tiny-paper: mask,
// mean; -stream: triangle, first, all four targets) and AdamW trajectories; fit halves the loss;
// resume reproduces the uninterrupted run exactly; NaN/Inf batches are rejected with nothing
// changed; gradient accumulation equals the full batch; schedules; packing covers every target;
// validation loss, early stopping and keeping the best adapter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Mamba, MembaError } from '../bindings/index.js';
import path from 'node:path';
import { scheduleLr, packWindows, instructionPrompt } from '../bindings/trainer.js';
import { writeSafetensors } from '../bindings/safetensors.js';
import { fixture, readCase, readExpected, maxDiff, maxAbs, TOL, ROOT } from './helpers.mjs';

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
  const bad = await model.loadAdapter({ files: { ...files, 'adapter_model.safetensors': writeSafetensors(entries) } }, { allowNonFinite: true });
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

test('packWindows: every target of the text is in exactly one window, every window full length', () => {
  for (const n of [2, 3, 17, 33, 51, 64, 65, 100]) {
    for (const L of [1, 4, 16, 32]) {
      const Lw = Math.min(L, n - 1);
      const hits = new Array(n).fill(0);
      for (const { start, from } of packWindows(n, Lw)) {
        assert.ok(start >= 0 && start + Lw <= n - 1 && from >= 1 && from <= Lw, `n=${n} L=${Lw}: window ${start}/${from}`);
        for (let t = from; t <= Lw; t++) hits[start + t]++;
      }
      assert.equal(hits[0], 0);
      for (let t = 1; t < n; t++) assert.equal(hits[t], 1, `n=${n} L=${Lw}: target ${t} trained ${hits[t]} times`);
    }
  }
});

test('fit trains every target: 51 tokens at seqLen 32 count 50 targets per epoch', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  model.createAdapter({ lora: { r: 2, alpha: 4, targets: ['out_proj'] }, seed: 1 });
  const tr = model.createTrainer({ lr: 1e-3 });
  const res = await tr.fit([pattern.slice(0, 51)], { epochs: 2, seqLen: 32 });
  assert.equal(res.windows, 2);
  assert.equal(res.tokens, 100, `targets trained in 2 epochs: ${res.tokens}`);
  model.dispose();
});

/** mean -log p over targets 1..n-1 of one window, from scoreTokens (the reference for validation) */
async function windowNll(model, ids) {
  const { data } = await model.scoreTokens(ids, 1);
  let s = 0;
  for (let t = 1; t < ids.length; t++) s -= data[t];
  return s / (ids.length - 1);
}

test('fit with validation: held-out loss and perplexity before and after every epoch, early stopping keeps the best adapter', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  model.createAdapter({ lora: { r: 4, alpha: 8, targets: ['in_proj', 'out_proj'] }, seed: 2 });
  const held = Array.from({ length: 24 }, (_, i) => [3, 50, 12, 44][i % 4]);
  const fresh = await windowNll(model, held);
  const events = [];
  const tr = model.createTrainer({ lr: 3e-2, seed: 1 });
  const res = await tr.fit([pattern], { epochs: 6, seqLen: 24, validation: [held], onProgress: (p) => events.push(p) });
  const evals = events.filter((p) => p.phase === 'eval');
  assert.equal(evals.length, 7, 'one evaluation before training and one per epoch');
  assert.equal(res.evaluations.length, 7);
  assert.ok(Math.abs(evals[0].valLoss - fresh) <= TOL.val_loss_abs, `initial validation loss ${evals[0].valLoss} vs scoreTokens ${fresh}`);
  assert.ok(Math.abs(evals[0].valPpl - Math.exp(fresh)) <= TOL.val_loss_abs * Math.exp(fresh));
  assert.ok(evals.slice(1).every((e) => e.trainLoss > 0 && Number.isFinite(e.valLoss) && e.valTokens === held.length - 1));
  assert.equal(res.trainLoss, evals.at(-1).trainLoss, 'the result carries the last epoch\'s train loss');
  assert.equal(res.trainPpl, Math.exp(res.trainLoss));
  assert.ok(events.filter((p) => p.phase === 'train').every((p) => p.secondsLeft >= 0));
  // the adapter left behind is the best evaluation's
  const after = await windowNll(model, held);
  console.log(`validation: fresh ${fresh.toFixed(4)}, per epoch ${res.evaluations.map((e) => e.valLoss.toFixed(3)).join(' ')}, best ${res.best.valLoss.toFixed(4)} (step ${res.best.step}), after fit ${after.toFixed(4)}`);
  assert.ok(res.keptBest);
  assert.ok(Math.abs(after - res.best.valLoss) <= TOL.val_loss_abs, `kept adapter scores ${after}, best was ${res.best.valLoss}`);
  assert.equal(res.best.valLoss, Math.min(...res.evaluations.map((e) => e.valLoss)));
  // early stopping: patience 1 stops at the first evaluation that does not improve
  const tr2 = model.createTrainer({ lr: 3e-2, seed: 1 });
  const res2 = await tr2.fit([pattern], { epochs: 40, seqLen: 24, validation: [held], earlyStopping: { patience: 1 } });
  const v = res2.evaluations.map((e) => e.valLoss);
  const firstWorse = v.findIndex((x, i) => i > 0 && x >= Math.min(...v.slice(0, i)));
  assert.ok(res2.stoppedEarly, `did not stop: ${v.map((x) => x.toFixed(3)).join(' ')}`);
  assert.equal(v.length - 1, firstWorse, 'stopped at the first evaluation without improvement');
  model.dispose();
});

test('fit: validationSplit holds out the end of the text; bad validation options are rejected', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  model.createAdapter({ lora: { r: 2, alpha: 4, targets: ['out_proj'] }, seed: 1 });
  const tr = model.createTrainer({ lr: 1e-3 });
  const res = await tr.fit([pattern], { epochs: 1, seqLen: 16, validationSplit: 0.25 });
  assert.equal(res.evaluations[0].valTokens, 24 - 1, 'the last 24 of 96 tokens');
  assert.equal(res.tokens, 72 - 1, 'the first 72 tokens train');
  for (const o of [{ validationSplit: 1 }, { validationSplit: -0.1 }, { validationSplit: 0.5, validation: [pattern] }, { earlyStopping: { patience: 1 } }, { keepBest: true }, { evalEvery: -1 }, { validation: [[1]] }, { validationSplit: 0.999 }])
    await assert.rejects(tr.fit([pattern], o), (e) => e instanceof MembaError && e.code === 'invalid_argument', JSON.stringify(o));
  model.dispose();
});

test('instruction data: the Alpaca template, loss on the output tokens (and EOS) only', async () => {
  assert.equal(instructionPrompt({ instruction: 'Add.', input: '2 and 3', output: '5' }).prompt,
    'Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:\n');
  assert.equal(instructionPrompt({ instruction: 'Say hi.', output: 'hi' }).prompt,
    'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nSay hi.\n\n### Response:\n');
  const model = await Mamba.load(path.join(ROOT, 'models', 'default'));
  model.createAdapter({ lora: { r: 4, alpha: 8, targets: ['in_proj', 'out_proj'] }, seed: 1 });
  const tr = model.createTrainer({ lr: 1e-3 });
  const examples = [
    { instruction: 'Please choose the correct answer.', input: 'The sky is blue or green?', output: 'the correct answer is blue' },
    { instruction: 'Name a colour.', input: '', output: 'red' },
  ];
  const st = tr._stream(examples);
  const eos = model.config.eosTokenId;
  const kept = Array.from(st.ids).filter((_, i) => st.mask[i] === 1);
  const want = [...model.encode('the correct answer is blue'), eos, ...model.encode('red'), eos];
  assert.deepEqual(kept, want, 'the targets are exactly the outputs and their EOS');
  assert.equal(st.ids.length, kept.length + model.encode(instructionPrompt(examples[0]).prompt).length + model.encode(instructionPrompt(examples[1]).prompt).length);
  const res = await tr.fit(examples, { epochs: 1, seqLen: 512 });
  assert.equal(res.tokens, want.length, 'fit counts only the output targets');
  // validation given as instruction examples is scored on its outputs only, and as a text on every
  // token after the first
  const heldEx = [{ instruction: 'Name a fruit.', input: '', output: 'an apple' }];
  const v1 = await tr.fit(examples, { epochs: 1, seqLen: 512, validation: heldEx });
  assert.equal(v1.evaluations[0].valTokens, model.encode('an apple').length + 1, 'validation examples: output tokens and EOS');
  const heldText = 'In the beginning God created the heaven and the earth.';
  const v2 = await tr.fit(examples, { epochs: 1, seqLen: 512, validation: heldText });
  assert.equal(v2.evaluations[0].valTokens, model.encode(heldText).length - 1, 'validation text: every target');
  const ref = await model.perplexity(heldText);
  console.log(`validation text: fit's first evaluation ${v2.evaluations[0].valLoss.toFixed(5)}, model.perplexity nll ${ref.nll.toFixed(5)} (after fit, which keeps the best evaluation's adapter)`);
  assert.ok(Math.abs(v2.evaluations[0].valLoss - ref.nll) <= TOL.val_loss_abs, 'scored like model.perplexity');
  await assert.rejects(tr.fit([{ instruction: 'x' }]), (e) => e.code === 'invalid_argument' && /example 0/.test(e.message));
  await assert.rejects(tr.fit(['fine', { instruction: 5, output: 'x' }]), (e) => e.code === 'invalid_argument' && /example 1/.test(e.message));
  // { text } objects are plain documents
  const docs = tr._stream([{ text: 'The jury said' }, 'it did']);
  assert.equal(docs.mask, null);
  assert.deepEqual(Array.from(docs.ids), [...model.encode('The jury said'), eos, ...model.encode('it did')]);
  model.dispose();
});
