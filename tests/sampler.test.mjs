// sampler.test.mjs: the sampling math on hand-made logits: top-k selection against a full sort,
// greedy ties, seeded reproducibility, and sampled frequencies against the exact distribution
// (softmax with temperature, truncated by top-k / top-p and renormalised).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSampler, topIndices, argmax, createRng, processLogits } from '../bindings/sampler.js';
import { TOL } from './helpers.mjs';

test('topIndices equals a full sort; argmax takes the first of ties', () => {
  const rng = createRng(7);
  for (const n of [1, 5, 100, 1000]) {
    const row = Float32Array.from({ length: n }, () => Math.round(rng() * 50) / 10);
    const full = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
    for (const k of [1, 3, 10, n]) assert.deepEqual(topIndices(row, k), full.slice(0, k));
  }
  assert.equal(argmax(Float32Array.from([1, 3, 3, 2])), 1);
});

/** Exact sampling distribution for logits under (temperature, topK, topP). */
function expected(row, temperature, topK, topP) {
  const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
  let keep = topK > 0 ? order.slice(0, topK) : order;
  const w = keep.map((i) => Math.exp(row[i] / temperature));
  const z = w.reduce((a, b) => a + b, 0);
  if (topP < 1) {
    let acc = 0;
    let n = 0;
    while (n < keep.length && acc < topP * z) acc += w[n++];
    keep = keep.slice(0, n);
  }
  const wk = keep.map((i) => Math.exp(row[i] / temperature));
  const zk = wk.reduce((a, b) => a + b, 0);
  const p = new Map();
  keep.forEach((i, j) => p.set(i, wk[j] / zk));
  return p;
}

test('sampled frequencies follow the exact truncated distribution', () => {
  const row = Float32Array.from([2.0, 1.0, 0.5, 0.0, -1.0, 1.5, -3.0, 0.2]);
  for (const [temperature, topK, topP] of [[1, 0, 1], [0.7, 3, 1], [1.5, 0, 0.8], [1, 4, 0.9]]) {
    const want = expected(row, temperature, topK, topP);
    const sample = createSampler({ temperature, topK, topP, seed: 42 });
    const n = 40000;
    const counts = new Map();
    for (let i = 0; i < n; i++) {
      const id = sample(row);
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    let worst = 0;
    for (const [id, c] of counts) assert.ok(want.has(id), `token ${id} outside the allowed set`);
    for (const [id, p] of want) worst = Math.max(worst, Math.abs((counts.get(id) ?? 0) / n - p));
    console.log(`T=${temperature} topK=${topK} topP=${topP}: max |freq - p| = ${worst.toFixed(4)}`);
    assert.ok(worst < TOL.sampler_freq_abs, `frequencies off by ${worst}`);
  }
});

test('top-p alone on a large vocabulary widens its candidate set until it covers p', () => {
  const V = 5000;
  const row = new Float32Array(V).fill(0); // flat: the nucleus for p=0.5 is 2500 tokens
  const sample = createSampler({ temperature: 1, topP: 0.5, seed: 3 });
  const seen = new Set();
  for (let i = 0; i < 3000; i++) seen.add(sample(row)); // ~1750 distinct expected
  for (const id of seen) assert.ok(id < 2500, `token ${id} is outside the nucleus`);
  assert.ok(seen.size > 1400, `only ${seen.size} distinct tokens drawn`);
});

test('same seed, same tokens; greedy ignores the seed', () => {
  const row = Float32Array.from([0.1, 0.3, 0.2, 0.25]);
  const a = createSampler({ temperature: 1, seed: 9 });
  const b = createSampler({ temperature: 1, seed: 9 });
  for (let i = 0; i < 100; i++) assert.equal(a(row), b(row));
  assert.equal(createSampler({ temperature: 0, seed: 1 })(row), 1);
});

test('repetitionPenalty and noRepeatNgramSize as Hugging Face defines them; minP truncation', () => {
  const row = Float32Array.from([2, -1, 0.5, 3, -2]);
  // CTRL: seen ids divided by p when positive, multiplied when negative; unseen unchanged
  assert.deepEqual(Array.from(processLogits(row, [0, 1, 1], 2, 0)), [1, -2, 0.5, 3, -2]);
  assert.equal(processLogits(row, [0], 1, 0), row, 'off: the row itself');
  // no-repeat 2-grams: history 3 0 ... 3 -> 0 is banned after 3
  const h = [3, 0, 2, 3];
  const out = processLogits(row, h, 1, 2);
  assert.equal(out[0], -Infinity);
  assert.deepEqual(Array.from(out).filter((v) => v === -Infinity).length, 1);
  // 3-grams: prefix (2, 3) never seen before: nothing banned
  assert.ok(Array.from(processLogits(row, h, 1, 3)).every(Number.isFinite));
  // greedy with the ban picks the next best
  assert.equal(createSampler({ noRepeatNgramSize: 2 })(Float32Array.from([5, 0, 0, 1, 0]), h), 3);
  // min-p keeps p >= minP * p_max: with logits [0, -0.5, -3] at T=1 and minP 0.5 only the first two
  const s = createSampler({ temperature: 1, minP: 0.5, seed: 3 });
  const seen = new Set();
  for (let i = 0; i < 300; i++) seen.add(s(Float32Array.from([0, -0.5, -3])));
  assert.deepEqual([...seen].sort(), [0, 1]);
  for (const o of [{ repetitionPenalty: 0 }, { repetitionPenalty: -1 }, { noRepeatNgramSize: 1.5 }, { minP: 2 }])
    assert.throws(() => createSampler(o), (e) => e.code === 'invalid_argument', JSON.stringify(o));
});
