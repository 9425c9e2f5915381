// load.test.mjs: Mamba.load end to end from every kind of source (directory, base URL and hub id
// served by a local HTTP server, in-memory files, a sharded checkpoint): the same numbers each
// time, one aggregate progress, abort during a download, and the browser cache path (injected).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Mamba } from '../bindings/index.js';
import { parseSafetensors, writeSafetensors, tensorToFloat32 } from '../bindings/safetensors.js';
import { fixture, readCase, maxDiff, TOL } from './helpers.mjs';

let server;
let origin;
let requests = 0;
let slow = false;

before(async () => {
  server = http.createServer((req, res) => {
    requests++;
    // /base/<case>/<file>  or hub layout /<owner>/<case>/resolve/main/<file>
    const parts = new URL(req.url, 'http://x').pathname.split('/').filter(Boolean);
    const [kase, file] = parts[0] === 'base' ? [parts[1], parts[2]] : [parts[1], parts[4]];
    const p = kase && file ? fixture(path.join(kase, file)) : null;
    if (!p || !fs.existsSync(p)) return res.writeHead(404).end();
    const bytes = fs.readFileSync(p);
    res.writeHead(200, { 'content-length': bytes.length });
    if (!slow) return res.end(bytes);
    let i = 0; // dribble 1 KiB every 20 ms
    const timer = setInterval(() => {
      if (i >= bytes.length || res.destroyed) {
        clearInterval(timer);
        return res.end();
      }
      res.write(bytes.subarray(i, (i += 1024)));
    }, 20);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${server.address().port}`;
});

after(() => server.close());

test('directory, base URL, hub id, in-memory files and shards all give the same logits', async () => {
  const ids = readCase('mamba-tiny').ids;
  const ref = await Mamba.load(fixture('mamba-tiny'));
  const want = (await ref.forward(ids)).data;
  ref.dispose();
  const events = [];
  const sources = {
    url: [`${origin}/base/mamba-tiny/`, { onProgress: (p) => events.push(p) }],
    hub: ['someone/mamba-tiny', { hubBase: origin }],
    files: [{ files: { 'config.json': fs.readFileSync(fixture('mamba-tiny/config.json'), 'utf8'), 'model.safetensors': fs.readFileSync(fixture('mamba-tiny/model.safetensors')) } }, {}],
  };
  // two shards + index in a temp dir
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-shards-'));
  const { tensors } = parseSafetensors(new Uint8Array(fs.readFileSync(fixture('mamba-tiny/model.safetensors'))));
  const shards = [{}, {}];
  const weightMap = {};
  [...tensors.keys()].forEach((k, i) => {
    const t = tensors.get(k);
    shards[i % 2][k] = { dtype: 'F32', shape: t.shape, data: tensorToFloat32(t) };
    weightMap[k] = `model-0000${(i % 2) + 1}-of-00002.safetensors`;
  });
  shards.forEach((s, i) => fs.writeFileSync(path.join(dir, `model-0000${i + 1}-of-00002.safetensors`), writeSafetensors(s)));
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  fs.copyFileSync(fixture('mamba-tiny/config.json'), path.join(dir, 'config.json'));
  sources.shards = [dir, {}];
  for (const [kind, [src, opts]] of Object.entries(sources)) {
    const m = await Mamba.load(src, opts);
    const got = (await m.forward(ids)).data;
    assert.equal(maxDiff(got, want), 0, `${kind} source gives different logits`);
    m.dispose();
  }
  fs.rmSync(dir, { recursive: true });
  const bytes = events.filter((e) => e.status === 'download');
  assert.ok(bytes.length > 0, 'download progress events');
  for (let i = 1; i < bytes.length; i++) assert.ok(bytes[i].loaded >= bytes[i - 1].loaded, 'aggregate loaded is monotonic');
  assert.equal(events.at(-1).status, 'ready');
  const done = events.filter((e) => e.status === 'done').at(-1);
  assert.equal(done.loaded, done.total);
});

test('adapters load from a base URL and a hub id too', async () => {
  const c = readCase('memba-tiny-paper');
  const model = await Mamba.load(`${origin}/base/memba-tiny-paper/`);
  await model.loadAdapter(fixture('memba-tiny-paper'));
  const want = (await model.forward(c.ids)).data;
  for (const src of [[`${origin}/base/memba-tiny-paper/`, {}], ['someone/memba-tiny-paper', { hubBase: origin }]]) {
    const a = await model.loadAdapter(...src);
    assert.equal(maxDiff((await model.forward(c.ids)).data, want), 0, `adapter from ${src[0]}`);
    assert.ok(a.config.lim && a.config.lora);
  }
  await assert.rejects(model.loadAdapter(`${origin}/base/nothing-here/`), (e) => e.code === 'not_found');
  model.dispose();
});

test('a separate lm_head is loaded as its own tensor; a byte-for-byte copy of the embedding is used tied', async () => {
  const { tensors } = parseSafetensors(new Uint8Array(fs.readFileSync(fixture('mamba-tiny/model.safetensors'))));
  const entries = {};
  for (const [k, t] of tensors) entries[k] = { dtype: 'F32', shape: t.shape, data: tensorToFloat32(t) };
  const emb = entries['backbone.embeddings.weight'];
  const cfg = fs.readFileSync(fixture('mamba-tiny/config.json'), 'utf8');
  const ids = readCase('mamba-tiny').ids;
  const ref = await Mamba.load(fixture('mamba-tiny'));
  const want = (await ref.forward(ids)).data;
  const copy = await Mamba.load({ files: { 'config.json': cfg, 'model.safetensors': writeSafetensors({ ...entries, 'lm_head.weight': emb }) } });
  assert.equal(copy.memory().weights, ref.memory().weights, 'no second [V, d] block');
  assert.equal(maxDiff((await copy.forward(ids)).data, want), 0);
  const other = { ...emb, data: emb.data.map((v) => v * 2) };
  const untied = await Mamba.load({ files: { 'config.json': cfg, 'model.safetensors': writeSafetensors({ ...entries, 'lm_head.weight': other }) } });
  assert.ok(untied.memory().weights > ref.memory().weights);
  assert.ok(maxDiff((await untied.forward(ids)).data, want) > TOL.untied_head_min_change_abs, 'a different head gives different logits');
  for (const m of [ref, copy, untied]) m.dispose();
});

test('abort during a slow download rejects with AbortError quickly', async () => {
  slow = true;
  try {
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 150);
    const t0 = Date.now();
    await assert.rejects(Mamba.load(`${origin}/base/mamba-tiny/`, { signal: ctl.signal }), (e) => e.name === 'AbortError' && e.code === 'aborted');
    assert.ok(Date.now() - t0 < 2000, 'abort took too long');
  } finally {
    slow = false;
  }
});

test('with a cache (the browser Cache API, injected here) a second load downloads nothing', async () => {
  const store = new Map();
  const cache = {
    match: async (url) => (store.has(url) ? new Response(store.get(url)) : undefined),
    put: async (url, res) => void store.set(url, new Uint8Array(await res.arrayBuffer())),
  };
  const a = await Mamba.load(`${origin}/base/mamba-tiny/`, { cache });
  const before = requests;
  const b = await Mamba.load(`${origin}/base/mamba-tiny/`, { cache });
  const ids = readCase('mamba-tiny').ids[0];
  assert.equal(maxDiff((await a.forward(ids)).data, (await b.forward(ids)).data), 0);
  // only optional files that do not exist (404s are not cached) may be asked again
  assert.ok(requests - before <= 3, `second load made ${requests - before} requests`);
  assert.ok(store.size >= 2);
  a.dispose();
  b.dispose();
});
