// robust-long-text.test.mjs: texts of a million and ten million tokens, and id arrays of ten million (issue 11):
// encode, fit, perplexity, scoreTokens and inspect neither blow the stack nor copy the text
// several times; what cannot fit the 4 GB WASM heap fails as 'oom' before allocating. Long texts
// are tokenised in pieces, and the pieces give exactly the whole text's ids.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Mamba } from '../bindings/index.js';
import { fixture, ROOT, rejectsCode, assertClose, TOL } from './helpers.mjs';
import path from 'node:path';

const DEFAULT_MODEL = `${ROOT}/models/default`;
const TEXTS = ['kjv-genesis.txt', 'brown-scifi.txt'].map((f) => fs.readFileSync(`${ROOT}/examples/data/${f}`, 'utf8'));

/** The mamba-tiny model with the golden byte-level BPE tokenizer (NFC normalizer). */
function goldenTokenizerModel() {
  return Mamba.load({
    files: {
      'config.json': fs.readFileSync(fixture('mamba-tiny/config.json'), 'utf8'),
      'model.safetensors': new Uint8Array(fs.readFileSync(fixture('mamba-tiny/model.safetensors'))),
      'tokenizer.json': fs.readFileSync(fixture('tokenizer/tokenizer.json'), 'utf8'),
    },
  });
}

test('tokenising in pieces gives exactly the ids of the whole text (two byte-level BPE tokenizers)', async () => {
  for (const [name, model] of [['default', await Mamba.load(DEFAULT_MODEL)], ['golden', await goldenTokenizerModel()]]) {
    // odd texts too: runs of spaces and newlines, digits, punctuation, non-ASCII
    const texts = [...TEXTS, `${TEXTS[0].slice(0, 3000)}  \n\n  x 12 345 ,. ;  naïve café 東京 ${'ab '.repeat(400)}`];
    for (const text of texts) {
      const whole = Array.from(model._tokenizer.encode(text, { add_special_tokens: false }).ids);
      const pieces = model._encodeIds(text, 300); // a cut about every 300 characters
      let same = whole.length === pieces.length;
      for (let i = 0; same && i < whole.length; i++) same = whole[i] === pieces[i];
      console.log(`${name} tokenizer: ${text.length} chars, ${whole.length} ids whole, ${pieces.length} in pieces of ~300 chars: ${same ? 'identical' : 'DIFFERENT'}`);
      assert.ok(same);
    }
    model.dispose();
  }
});

test('a 1M-token text: encode, fit (one step) and perplexity (two windows) run without a stack overflow', async () => {
  const model = await Mamba.load(DEFAULT_MODEL);
  const text = TEXTS[0].repeat(100);
  let t0 = performance.now();
  const ids = model.encode(text);
  console.log(`encode: ${text.length} chars -> ${ids.length} ids in ${(performance.now() - t0).toFixed(0)} ms`);
  assert.ok(ids.length > 1e6);
  model.createAdapter();
  const trainer = model.createTrainer();
  const stopFit = new AbortController();
  t0 = performance.now();
  await rejectsCode(() => trainer.fit(text, { seqLen: 64, signal: stopFit.signal, onProgress: () => stopFit.abort() }), 'aborted');
  console.log(`fit: aborted after ${trainer.stepCount} step(s), ${(performance.now() - t0).toFixed(0)} ms (tokenising included)`);
  assert.equal(trainer.stepCount, 1);
  const stopPpl = new AbortController();
  let seen = null;
  t0 = performance.now();
  await rejectsCode(() => model.perplexity(text, { seqLen: 64, signal: stopPpl.signal, onProgress: (p) => {
    seen = p;
    if (p.window === 2) stopPpl.abort();
  } }), 'aborted');
  console.log(`perplexity: ${seen.window} of ${seen.windows} windows scored (${seen.tokens} tokens), ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal(seen.window, 2);
  assert.equal(seen.windows, Math.ceil(ids.length / 64));
  model.dispose();
});

test('10M token ids: fit, perplexity (stride 1: 10M windows) and scoreTokens start and abort; inspect (its output alone is 184 GB) fails as oom, fast', async () => {
  const model = await Mamba.load(DEFAULT_MODEL);
  const N = 10_000_000;
  const ids = new Int32Array(N);
  for (let i = 0; i < N; i++) ids[i] = (i * 7919) % 4000;
  let t0 = performance.now();
  // one sequence of 10M tokens is scored chunk by chunk through the recurrent state (its
  // activations would not fit at once): it starts, and an abort lands between chunks
  await rejectsCode(() => model.scoreTokens(ids, 1, { signal: AbortSignal.timeout(50) }), 'aborted');
  console.log(`scoreTokens of ${N} tokens: started chunk by chunk, aborted after ${(performance.now() - t0).toFixed(0)} ms`);
  model.createAdapter({ lim: { chunk_size: 16, cross_layer: 'first' } });
  t0 = performance.now();
  await rejectsCode(() => model.inspect(ids), 'oom', /GB/);
  console.log(`inspect of ${N} tokens: oom in ${(performance.now() - t0).toFixed(0)} ms`);
  const trainer = model.createTrainer();
  const stopFit = new AbortController();
  t0 = performance.now();
  await rejectsCode(() => trainer.fit([ids], { seqLen: 32, signal: stopFit.signal, onProgress: () => stopFit.abort() }), 'aborted');
  console.log(`fit on ${N} ids: aborted after ${trainer.stepCount} step, ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal(trainer.stepCount, 1);
  const stopPpl = new AbortController();
  let seen = null;
  t0 = performance.now();
  await rejectsCode(() => model.perplexity(ids, { seqLen: 16, stride: 1, signal: stopPpl.signal, onProgress: (p) => {
    seen = p;
    stopPpl.abort();
  } }), 'aborted');
  console.log(`perplexity, stride 1: window ${seen.window} of ${seen.windows}, ${(performance.now() - t0).toFixed(0)} ms`);
  assert.equal(seen.windows, N - 16 + 1);
  model.dispose();
});

test('scoreTokens of a long sequence, chunk by chunk through the state, equals the one-call score', async () => {
  const model = await Mamba.load(DEFAULT_MODEL);
  const ids = model.encode(fs.readFileSync(path.join(ROOT, 'examples', 'data', 'brown-valid.txt'), 'utf8').slice(0, 8000));
  const one = await model.scoreTokens(ids, 2);
  for (const chunk of [500, 3]) {
    model._scoreChunkOverride = chunk; // internal: the length above which scoring goes chunk by chunk
    const chunked = await model.scoreTokens(ids, 2);
    assertClose(`score of ${ids.length} tokens in chunks of ${chunk} vs one call`, chunked.data, one.data, 'decode_vs_forward_rel');
    assert.equal(chunked.data[1], 0, 'positions before from are 0');
  }
  model.dispose();
});

test('a 10M-token text: fit and perplexity tokenise it in pieces and start (then abort), with memory for about one copy of the ids', async () => {
  const model = await Mamba.load(DEFAULT_MODEL);
  const text = TEXTS[0].repeat(965); // 33.6M characters, about 10M tokens
  model.createAdapter();
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const sample = () => { peak = Math.max(peak, process.memoryUsage().rss); };
  const stopPpl = new AbortController();
  let seen = null;
  let t0 = performance.now();
  await rejectsCode(() => model.perplexity(text, { seqLen: 64, signal: stopPpl.signal, onProgress: (p) => {
    seen = p;
    sample();
    if (p.window === 2) stopPpl.abort();
  } }), 'aborted');
  const tokens = (seen.windows - 1) * 64 + 1; // at least this many targets + 1
  console.log(`perplexity: ${text.length} chars, ${seen.windows} windows of 64 (>= ${tokens} tokens), started in ${(performance.now() - t0).toFixed(0)} ms`);
  assert.ok(tokens > 9.9e6, 'about 10M tokens');
  const trainer = model.createTrainer();
  const stopFit = new AbortController();
  t0 = performance.now();
  await rejectsCode(() => trainer.fit(text, { seqLen: 64, signal: stopFit.signal, onProgress: () => { sample(); stopFit.abort(); } }), 'aborted');
  console.log(`fit: aborted after ${trainer.stepCount} step, ${(performance.now() - t0).toFixed(0)} ms (tokenising included)`);
  assert.equal(trainer.stepCount, 1);
  // the ids are 40 MB as an Int32Array, the text 67 MB as UTF-16; a few copies of the ids as JS
  // arrays of numbers (80 MB each) or of the text would pass the bound
  const growMb = (peak - rss0) / 2 ** 20;
  console.log(`peak RSS growth while both ran: ${growMb.toFixed(0)} MB (bound ${TOL.long_text_rss_growth_mb} MB)`);
  assert.ok(growMb < TOL.long_text_rss_growth_mb, `RSS grew by ${growMb.toFixed(0)} MB`);
  model.dispose();
});
