// tokenizer.test.mjs: model.encode / model.decode (HF tokenizer.json, GPT-NeoX byte-level BPE,
// through @huggingface/tokenizers) give exactly the golden ids and decoded texts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Mamba } from '../bindings/index.js';
import { fixture } from './helpers.mjs';

const cases = JSON.parse(fs.readFileSync(fixture('tokenizer/encodings-dev.json'), 'utf8'));

test('encode/decode equal golden/tokenizer/encodings-dev.json exactly', async () => {
  const model = await Mamba.load({
    files: {
      'config.json': fs.readFileSync(fixture('mamba-tiny/config.json'), 'utf8'),
      'model.safetensors': new Uint8Array(fs.readFileSync(fixture('mamba-tiny/model.safetensors'))),
      'tokenizer.json': fs.readFileSync(fixture('tokenizer/tokenizer.json'), 'utf8'),
    },
  });
  assert.ok(model.hasTokenizer);
  assert.ok(cases.length >= 10);
  for (const c of cases) {
    assert.deepEqual(model.encode(c.text), c.ids, `encode ${JSON.stringify(c.text)}`);
    assert.equal(model.decode(c.ids), c.decoded, `decode ${JSON.stringify(c.ids)}`);
  }
  console.log(`${cases.length} tokenizer cases exact`);
  assert.throws(() => model.encode(42), (e) => e.code === 'invalid_argument');
  assert.throws(() => model.decode([1, -3]), (e) => e.code === 'invalid_argument');
  model.dispose();
});

test('a corrupt tokenizer.json is bad_format', async () => {
  await assert.rejects(
    Mamba.load({
      files: {
        'config.json': fs.readFileSync(fixture('mamba-tiny/config.json'), 'utf8'),
        'model.safetensors': new Uint8Array(fs.readFileSync(fixture('mamba-tiny/model.safetensors'))),
        'tokenizer.json': '{"model": ',
      },
    }),
    (e) => e.code === 'bad_format',
  );
});

test('streamText yields the same text as decoding generate\'s ids, in pieces', async () => {
  const model = await Mamba.load(new URL('../models/default/', import.meta.url));
  const opts = { maxNewTokens: 30, temperature: 0.9, seed: 5 };
  const ids = await model.generate(model.encode('The jury said'), opts);
  const pieces = [];
  for await (const p of model.streamText('The jury said', opts)) pieces.push(p);
  assert.ok(pieces.length > 3);
  assert.equal(pieces.join(''), model.decode(ids));
  assert.ok(pieces.every((p) => !p.endsWith('\uFFFD')));
  model.dispose();
});
