// named-sources.test.mjs: the 'default' and { urls } sources (bindings/named-sources.js) in Node:
// 'default', defaultModel (memba-wasm/default-model) and its inlined form are the embedded model,
// in a worker too;
// { urls } over HTTP reads exactly the names it lists; bad maps are invalid_argument.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { Mamba } from '../bindings/index.js';
import { openSource } from '../bindings/source.js';
import { defaultModel } from '../models/default/model.js';
import { ROOT, fixture, maxDiff, rejectsCode } from './helpers.mjs';

const IDS = [5, 6, 7, 8];
let server;
let origin;
before(async () => {
  server = http.createServer((req, res) => {
    const p = path.join(ROOT, 'tests', 'fixtures', decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (!p.startsWith(path.join(ROOT, 'tests', 'fixtures')) || !fs.existsSync(p) || fs.statSync(p).isDirectory()) return res.writeHead(404).end();
    res.writeHead(200).end(fs.readFileSync(p));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${server.address().port}`;
});
after(() => server?.close());

test("'default' and defaultModel are the embedded model, in the page's thread and in a worker", async () => {
  const dir = await Mamba.load(path.join(ROOT, 'models', 'default'));
  const want = (await dir.forward(IDS)).data;
  dir.dispose();
  for (const [what, src] of [['default', 'default'], ['defaultModel', defaultModel]]) {
    const m = await Mamba.load(src);
    assert.equal(maxDiff((await m.forward(IDS)).data, want), 0, what);
    assert.match(m.info.source, /models[/\\]default$/);
    m.dispose();
    const r = await Mamba.load(src, { worker: true });
    assert.equal(maxDiff((await r.forward(IDS)).data, want), 0, `${what} in a worker`);
    await r.dispose();
  }
});

test('defaultModel inlined (memba-wasm/default-model/inline): data: URLs of the same bytes, the same model, in a worker too', async () => {
  const { defaultModel: inline } = await import('../models/default/model-inline.js');
  for (const [name, url] of Object.entries(inline.urls)) {
    assert.match(url, /^data:application\/(json|octet-stream);base64,/, name);
    assert.ok(Buffer.from(url.slice(url.indexOf(',') + 1), 'base64').equals(fs.readFileSync(path.join(ROOT, 'models', 'default', name))), `${name}: the inlined bytes differ from the file`);
  }
  const want = (await (await Mamba.load(defaultModel)).forward(IDS)).data;
  const m = await Mamba.load(inline);
  assert.equal(maxDiff((await m.forward(IDS)).data, want), 0);
  m.dispose();
  const r = await Mamba.load(inline, { worker: true });
  assert.equal(maxDiff((await r.forward(IDS)).data, want), 0, 'in a worker');
  await r.dispose();
});

test('{ urls }: files named one by one over HTTP; a name not listed is missing', async () => {
  const urls = { 'config.json': `${origin}/mamba-tiny/config.json`, 'model.safetensors': new URL(`${origin}/mamba-tiny/model.safetensors`) };
  const m = await Mamba.load({ urls }, { cache: false });
  const d = await Mamba.load(fixture('mamba-tiny'));
  assert.equal(maxDiff((await m.forward(IDS)).data, (await d.forward(IDS)).data), 0);
  m.dispose();
  d.dispose();
  const src = await openSource({ urls, description: 'two files' }, { cache: false });
  assert.equal(src.description, 'two files');
  assert.equal(await src.has('tokenizer.json'), false);
  assert.equal((await src.read(['tokenizer.json'], { optional: ['tokenizer.json'] })).get('tokenizer.json'), null);
  await rejectsCode(() => src.read(['tokenizer.json']), 'not_found', /tokenizer\.json not found in two files/);
  await rejectsCode(() => Mamba.load({ urls: { 'config.json': `${origin}/nothing.json` } }, { cache: false }), 'not_found');
});

test('{ urls }: bad maps are invalid_argument', async () => {
  for (const urls of [null, {}, 'x', { 'config.json': 5 }, new Map()]) await rejectsCode(() => openSource({ urls }), 'invalid_argument');
  const a = new URL('../models/default/config.json', import.meta.url).href;
  const b = new URL('./fixtures/mamba-tiny/model.safetensors', import.meta.url).href;
  await rejectsCode(() => openSource({ urls: { 'config.json': a, 'model.safetensors': b } }), 'invalid_argument', /one folder/);
});
