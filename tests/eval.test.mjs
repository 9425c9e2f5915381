// eval.test.mjs: model.perplexity (sliding windows) against expected values computed here from
// model.scoreTokens window by window, the counted tokens with and without overlap, the
// single-window case exactly; model.evaluate (multiple choice, lm-eval scoring) against argmaxes
// computed here from model.loglikelihood, UTF-8 byte normalisation, ties, JSONL parsing and its
// errors; bad arguments, aborts, both through a worker, perplexity on the WebGPU backend.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Mamba } from '../bindings/index.js';
import { requestDevice } from '../web/webgpu.js';
import { ROOT, fixture, readCase, rejectsCode, assertClose, TOL } from './helpers.mjs';

const DEFAULT = path.join(ROOT, 'models', 'default');
const TEXT =
  'The jury said it did not find any evidence that the election was conducted in a fair manner. ' +
  'The city council met on Monday to discuss the new budget for the schools, and the mayor said ' +
  'that the plan would be ready by the end of the year.';

let shared;
const defaultModel = () => (shared ??= Mamba.load(DEFAULT));

/** Expected result of the recipe, computed from scoreTokens: one call per window. */
async function expectedPpl(model, ids, seqLen, stride) {
  const N = ids.length;
  const S = Math.min(seqLen, N);
  let sum = 0;
  let tokens = 0;
  const perWindow = [];
  let prevEnd = 0;
  for (let begin = 0; ; begin += stride) {
    const end = Math.min(begin + S, N);
    // tokens past the previous window's end; a window's own first token has no context in it
    const from = Math.max(1, prevEnd - begin);
    if (end - begin > from) {
      const { data } = await model.scoreTokens(ids.slice(begin, end), from);
      for (let t = from; t < end - begin; t++) sum += -data[t];
      tokens += end - begin - from;
      perWindow.push(end - begin - from);
    }
    prevEnd = end;
    if (end === N) break;
  }
  return { nll: sum / tokens, tokens, perWindow };
}

test('perplexity with stride = seqLen equals the mean of -log p over scoreTokens windows', async () => {
  const model = await defaultModel();
  const ids = model.encode(TEXT);
  const N = ids.length;
  const S = 16;
  assert.ok(N > 3 * S, `the text spans several windows (${N} tokens)`);
  const seen = [];
  const got = await model.perplexity(TEXT, { seqLen: S, stride: S, onProgress: (p) => seen.push(p) });
  const want = await expectedPpl(model, ids, S, S);
  console.log(`N ${N}, seqLen ${S}: nll ${got.nll} (expected ${want.nll}, diff ${Math.abs(got.nll - want.nll)}), ppl ${got.perplexity}, tokens ${got.tokens}`);
  assertClose('nll vs scoreTokens windows', [got.nll], [want.nll], 'ppl_vs_score_windows_rel');
  assertClose('perplexity vs exp(nll)', [got.perplexity], [Math.exp(want.nll)], 'ppl_vs_score_windows_rel');
  const windows = Math.ceil(N / S);
  assert.equal(got.tokens, want.tokens);
  assert.equal(got.tokens, N - windows, 'non-overlapping: each window scores all but its first token');
  assert.deepEqual(seen.map((p) => p.window), Array.from({ length: windows }, (_, i) => i + 1));
  assert.ok(seen.every((p) => p.windows === windows));
  assert.equal(seen.at(-1).tokens, got.tokens);
  // the default stride is seqLen; ids give the same as the text
  assert.deepEqual(await model.perplexity(ids, { seqLen: S }), got);
  assert.deepEqual(await model.perplexity(Int32Array.from(ids), { seqLen: S }), got);
});

test('perplexity with stride < seqLen scores every token but the first once, conditioned on the overlap', async () => {
  const model = await defaultModel();
  const ids = model.encode(TEXT);
  const N = ids.length;
  const S = 16;
  const flat = await model.perplexity(TEXT, { seqLen: S });
  for (const stride of [5, 8, 15, 1]) {
    const seen = [];
    const got = await model.perplexity(TEXT, { seqLen: S, stride, onProgress: (p) => seen.push(p.tokens) });
    const want = await expectedPpl(model, ids, S, stride);
    assert.equal(got.tokens, N - 1, `stride ${stride}: tokens = total - 1`);
    const perWindow = seen.map((t, i) => t - (seen[i - 1] ?? 0));
    assert.deepEqual(perWindow, want.perWindow, `stride ${stride}: scored tokens per window`);
    assert.equal(perWindow[0], S - 1, 'the first window scores tokens 1..end');
    if (stride > 1) assert.ok(perWindow.slice(1, -1).every((n) => n === stride), 'a middle window scores stride new tokens');
    assertClose(`stride ${stride}: nll vs scoreTokens windows`, [got.nll], [want.nll], 'ppl_vs_score_windows_rel');
    const change = Math.abs(got.nll - flat.nll);
    console.log(`stride ${stride}: ${seen.length} windows, nll ${got.nll.toFixed(6)} vs non-overlapping ${flat.nll.toFixed(6)} (|diff| ${change.toExponential(3)})`);
    assert.ok(change > TOL.ppl_stride_min_change_abs, `stride ${stride}: the overlap changes the result`);
    assert.ok(got.nll < flat.nll, 'more context per token gives a lower nll');
  }
});

test('perplexity with seqLen >= the text is exactly the single-forward value', async () => {
  const model = await defaultModel();
  const ids = model.encode(TEXT);
  const N = ids.length;
  const { data } = await model.scoreTokens(ids, 1);
  let sum = 0;
  for (let t = 1; t < N; t++) sum += -data[t];
  const nll = sum / (N - 1);
  const want = { perplexity: Math.exp(nll), nll, tokens: N - 1 };
  console.log(`single window: ${JSON.stringify(want)}`);
  assert.deepEqual(await model.perplexity(TEXT), want, 'default seqLen 1024 > N');
  assert.deepEqual(await model.perplexity(TEXT, { seqLen: N }), want);
  assert.deepEqual(await model.perplexity(TEXT, { seqLen: N + 7, stride: 3 }), want);
  const sentence = 'The jury said it did not find any evidence that the election was conducted in a fair manner.';
  console.log(`default model on "${sentence}": ${JSON.stringify(await model.perplexity(sentence))}`);
});

test('perplexity of token ids on a fixture model; bad arguments are invalid_argument; text needs a tokenizer', async () => {
  const model = await Mamba.load(fixture('mamba-tiny'));
  const ids = readCase('mamba-tiny').ids.flat();
  const got = await model.perplexity(ids, { seqLen: 6, stride: 4 });
  const want = await expectedPpl(model, ids, 6, 4);
  assertClose('tiny model nll', [got.nll], [want.nll], 'ppl_vs_score_windows_rel');
  assert.equal(got.tokens, ids.length - 1);
  const V = model.config.vocabSize;
  const bad = [
    [ids, { seqLen: 1 }], [ids, { seqLen: 0 }], [ids, { seqLen: 2.5 }], [ids, { seqLen: '8' }],
    [ids, { seqLen: 8, stride: 0 }], [ids, { seqLen: 8, stride: 9 }], [ids, { stride: 1.5 }],
    [ids, 5], [ids, { onProgress: 1 }], [ids, { signal: {} }],
    [[3], {}], [[], {}], [[[1, 2], [3, 4]], {}], [[1, V], {}], [[1, -1], {}], [null, {}], [42, {}],
  ];
  for (const [input, opts] of bad) await rejectsCode(() => model.perplexity(input, opts), 'invalid_argument');
  await rejectsCode(() => model.perplexity('some text'), 'unsupported', /tokenizer/);
  await rejectsCode(() => model.evaluate([{ context: 'a', choices: [' b', ' c'], gold: 0 }]), 'unsupported', /tokenizer/);
  assert.deepEqual(await model.perplexity(ids, { seqLen: 6, stride: 4 }), got, 'still usable, same numbers');
  model.dispose();
  await rejectsCode(() => model.perplexity(ids), 'disposed');
});

test('perplexity: an abort lands between windows (AbortError) and the model stays usable', async () => {
  const model = await defaultModel();
  const before = await model.perplexity(TEXT, { seqLen: 8, stride: 4 });
  const pre = new AbortController();
  pre.abort();
  await rejectsCode(() => model.perplexity(TEXT, { signal: pre.signal }), 'aborted');
  const ctl = new AbortController();
  let calls = 0;
  const run = model.perplexity(TEXT, { seqLen: 8, stride: 4, signal: ctl.signal, onProgress: () => ++calls === 2 && ctl.abort('enough') });
  await assert.rejects(run, (e) => e.name === 'AbortError' && e.code === 'aborted' && e.message === 'enough');
  assert.equal(calls, 2, 'no window ran after the abort');
  assert.deepEqual(await model.perplexity(TEXT, { seqLen: 8, stride: 4 }), before);
});

test('perplexity uses the active adapter, the one active when the call starts', async () => {
  const model = await Mamba.load(fixture('memba-tiny-stream'));
  const ids = readCase('memba-tiny-stream').ids.flat();
  const base = await model.perplexity(ids, { seqLen: 8, stride: 4 });
  const a = await model.loadAdapter(fixture('memba-tiny-stream'));
  const adapted = await model.perplexity(ids, { seqLen: 8, stride: 4 });
  const want = await expectedPpl(model, ids, 8, 4);
  assertClose('adapter nll vs scoreTokens windows', [adapted.nll], [want.nll], 'ppl_vs_score_windows_rel');
  console.log(`base nll ${base.nll}, with adapter ${adapted.nll}`);
  assert.ok(Math.abs(adapted.nll - base.nll) > TOL.ppl_stride_min_change_abs, 'the adapter changes the result');
  const switched = await model.perplexity(ids, { seqLen: 8, stride: 4, onProgress: (p) => p.window === 1 && model.setAdapter(null) });
  assert.deepEqual(switched, adapted, 'switching adapters mid-run does not change the run');
  model.setAdapter(a);
  await rejectsCode(() => model.perplexity(ids, { seqLen: 8, stride: 4, onProgress: (p) => p.window === 1 && a.dispose() }), 'disposed');
  model.dispose();
});

test('perplexity on the WebGPU backend equals the WASM one (with an adapter)', async (t) => {
  const r = await requestDevice();
  if (!r.device) return t.skip(`no WebGPU adapter: ${r.reason}`);
  r.device.destroy();
  const ids = readCase('memba-tiny-stream').ids.flat();
  const gpu = await Mamba.load(fixture('memba-tiny-stream'), { backend: 'webgpu' });
  const cpu = await Mamba.load(fixture('memba-tiny-stream'), { backend: 'wasm' });
  await gpu.loadAdapter(fixture('memba-tiny-stream'));
  await cpu.loadAdapter(fixture('memba-tiny-stream'));
  const got = await gpu.perplexity(ids, { seqLen: 8, stride: 4 });
  const want = await cpu.perplexity(ids, { seqLen: 8, stride: 4 });
  assert.equal(gpu.info.backend, 'webgpu', 'no silent fallback happened');
  assert.equal(got.tokens, want.tokens);
  assertClose('webgpu vs wasm nll', [got.nll], [want.nll], 'loglik_rel');
  gpu.dispose();
  cpu.dispose();
});

/** acc / acc_norm expected from model.loglikelihood, with lengths given by `len`. */
async function expectedAcc(model, items, len = (s) => Buffer.byteLength(s, 'utf8')) {
  let acc = 0;
  let accNorm = 0;
  const argmaxes = [];
  for (const { context, choices, gold } of items) {
    const ctx = model.encode(context);
    const lls = [];
    for (const c of choices) lls.push(await model.loglikelihood(ctx, model.encode(c)));
    const am = (xs) => xs.reduce((best, x, i) => (x > xs[best] ? i : best), 0);
    const raw = am(lls);
    const norm = am(lls.map((ll, i) => ll / len(choices[i])));
    argmaxes.push([raw, norm]);
    acc += raw === gold;
    accNorm += norm === gold;
  }
  return { acc: acc / items.length, acc_norm: accNorm / items.length, n: items.length, argmaxes };
}

const ITEMS = [
  { context: 'The President of the United', choices: [' States', ' Potatoes', ' Kitchen'], gold: 0 },
  { context: 'She drank a cup of hot', choices: [' stones', ' music', ' coffee'], gold: 2 },
  { context: 'Once upon a', choices: [' spoon', ' time'], gold: 1 },
  { context: 'The cat sat on the', choices: [' mat', ' extraordinarily long sofa'], gold: 1 },
  { context: 'He went to the', choices: [' store', ' moon', ' office'], gold: 2 },
  { context: 'She ordered a cup of coffee at the', choices: [' Qx', ' café'], gold: 1 },
];

test('evaluate: acc and acc_norm equal the argmaxes of model.loglikelihood', async () => {
  const model = await defaultModel();
  const want = await expectedAcc(model, ITEMS);
  const seen = [];
  const got = await model.evaluate(ITEMS, { onProgress: (p) => seen.push(p) });
  console.log(`handmade task: ${JSON.stringify(got)}; argmax (raw, norm) per item ${JSON.stringify(want.argmaxes)}`);
  assert.deepEqual(got, { acc: want.acc, acc_norm: want.acc_norm, n: ITEMS.length });
  assert.deepEqual(seen.map((p) => [p.item, p.items]), ITEMS.map((_, i) => [i + 1, ITEMS.length]));
  assert.equal(seen.at(-1).acc, got.acc);
  assert.equal(seen.at(-1).acc_norm, got.acc_norm);
  assert.ok(want.argmaxes.some(([raw, norm]) => raw !== norm), 'the task has an item where normalisation changes the answer');
  for (const limit of [1, 3, 100]) {
    const w = await expectedAcc(model, ITEMS.slice(0, limit));
    assert.deepEqual(await model.evaluate(ITEMS, { limit }), { acc: w.acc, acc_norm: w.acc_norm, n: Math.min(limit, ITEMS.length) });
  }
});

test('evaluate: acc_norm divides by UTF-8 bytes (a multi-byte choice), ties go to the lowest index', async () => {
  const model = await defaultModel();
  const item = ITEMS.at(-1); // ' café': 6 bytes, 5 characters
  assert.equal(Buffer.byteLength(item.choices[1]), 6);
  const bytes = await expectedAcc(model, [item]);
  const chars = await expectedAcc(model, [item], (s) => [...s].length);
  console.log(`"café" item: argmax by bytes ${bytes.argmaxes[0][1]}, by characters ${chars.argmaxes[0][1]}`);
  assert.notEqual(bytes.argmaxes[0][1], chars.argmaxes[0][1], 'the item tells bytes from characters');
  const got = await model.evaluate([item]);
  assert.equal(got.acc_norm, bytes.acc_norm);
  assert.notEqual(got.acc_norm, chars.acc_norm);
  const tie = { context: 'The cat sat on the', choices: [' mat', ' mat', ' mat'] };
  assert.deepEqual(await model.evaluate([{ ...tie, gold: 0 }]), { acc: 1, acc_norm: 1, n: 1 });
  assert.deepEqual(await model.evaluate([{ ...tie, gold: 1 }]), { acc: 0, acc_norm: 0, n: 1 });
});

test('evaluate: a JSONL string gives what the array gives; bad items name the line or index', async () => {
  const model = await defaultModel();
  const lines = ITEMS.map((it, i) => JSON.stringify({ id: `q${i}`, note: 'ignored', ...it }));
  const jsonl = `\uFEFF${lines.slice(0, 2).join('\r\n')}\n\n   \n${lines.slice(2).join('\n')}\n`;
  assert.deepEqual(await model.evaluate(jsonl), await model.evaluate(ITEMS));
  const ok = JSON.stringify(ITEMS[0]);
  const badLines = [
    [`${ok}\n\n{"context": "x", "choices": [" a", " b"], "gold": 0`, /task line 3: not valid JSON/],
    [`${ok}\n{"context": "x", "choices": [" a", " b"], "gold": 2}`, /task line 2: gold must be an integer/],
    [`${ok}\n{"context": "x", "choices": [" a", " b"], "gold": "0"}`, /task line 2: gold/],
    [`{"context": "x", "choices": " a b", "gold": 0}`, /task line 1: choices must be an array/],
    [`{"context": "x", "choices": [" a"], "gold": 0}`, /task line 1: choices must be an array of at least 2/],
    [`{"context": "x", "choices": [" a", ""], "gold": 0}`, /task line 1: choices\[1\] must be a non-empty string/],
    [`{"context": "x", "choices": [" a", 3], "gold": 0}`, /task line 1: choices\[1\]/],
    [`${ok}\n${ok}\n{"choices": [" a", " b"], "gold": 0}`, /task line 3: context must be a non-empty string/],
    [`{"context": "", "choices": [" a", " b"], "gold": 0}`, /task line 1: context/],
    [`${ok}\n[1, 2]`, /task line 2: expected an object/],
    [`${ok}\nnull`, /task line 2: expected an object/],
  ];
  for (const [text, re] of badLines) await rejectsCode(() => model.evaluate(text), 'bad_format', re);
  await rejectsCode(() => model.evaluate([ITEMS[0], { context: 'x', choices: [' a', ' b'], gold: -1 }]), 'invalid_argument', /task\[1\]: gold/);
  await rejectsCode(() => model.evaluate([ITEMS[0], 'text']), 'invalid_argument', /task\[1\]: expected an object/);
  for (const task of [[], '', '\n  \n', 42, null, { context: 'x' }]) await rejectsCode(() => model.evaluate(task), 'invalid_argument');
  for (const opts of ['x', { limit: 0 }, { limit: 1.5 }, { onProgress: 'x' }, { signal: 1 }])
    await rejectsCode(() => model.evaluate(ITEMS, opts), 'invalid_argument');
});

test('evaluate: an abort lands between items', async () => {
  const model = await defaultModel();
  const pre = new AbortController();
  pre.abort();
  await rejectsCode(() => model.evaluate(ITEMS, { signal: pre.signal }), 'aborted');
  const ctl = new AbortController();
  let calls = 0;
  await rejectsCode(() => model.evaluate(ITEMS, { signal: ctl.signal, onProgress: () => ++calls === 2 && ctl.abort() }), 'aborted');
  assert.equal(calls, 2);
  const w = await expectedAcc(model, ITEMS);
  assert.deepEqual(await model.evaluate(ITEMS), { acc: w.acc, acc_norm: w.acc_norm, n: ITEMS.length }, 'still usable');
});

test('perplexity and evaluate through a worker give what the local model gives; abort crosses', async () => {
  const local = await defaultModel();
  const remote = await Mamba.load(DEFAULT, { worker: true });
  const seen = [];
  const ppl = await remote.perplexity(TEXT, { seqLen: 16, stride: 8, onProgress: (p) => seen.push(p.window) });
  assert.deepEqual(ppl, await local.perplexity(TEXT, { seqLen: 16, stride: 8 }));
  assert.ok(seen.length > 2 && seen.at(-1) === seen.length, 'progress crosses the boundary');
  assert.deepEqual(await remote.evaluate(ITEMS), await local.evaluate(ITEMS));
  const ctl = new AbortController();
  let calls = 0;
  const run = remote.perplexity(TEXT, { seqLen: 8, stride: 2, signal: ctl.signal, onProgress: () => ++calls === 1 && ctl.abort() });
  await assert.rejects(run, (e) => e.name === 'AbortError' && e.code === 'aborted');
  console.log(`worker: ${calls} progress events before the abort landed`);
  await assert.rejects(remote.evaluate('{"context": 1}'), (e) => e.code === 'bad_format' && /task line 1/.test(e.message));
  await remote.dispose();
  local.dispose();
});
