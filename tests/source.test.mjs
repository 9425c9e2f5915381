// Tests for bindings/source.js: directory, in-memory, URL and hub sources (a local node:http server on
// 127.0.0.1 serves tests/fixtures), sharded checkpoints, HTTP errors, progress, abort and injected cache.
// Not covered here: safetensors parsing details and config validation (the other two test files).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { readFile, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { openSource } from '../bindings/source.js';
import { readCheckpoint } from '../bindings/checkpoint.js';
import { parseSafetensors, writeSafetensors } from '../bindings/safetensors.js';
import { MembaError } from '../bindings/errors.js';
import { rejectsCode } from './helpers.mjs';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const TINY = path.join(FIXTURES, 'mamba-tiny');
const disk = async (p) => new Uint8Array(await readFile(p));

let server;
let origin;
let requests = [];
let slowClosed = 0;
let tmpDir;
const repos = {}; // "owner/name" -> { file: absolute path | Uint8Array }

async function serveFile(res, repo, file, { length = true } = {}) {
  const entry = repos[repo]?.[file];
  if (entry === undefined) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    return;
  }
  const bytes = entry instanceof Uint8Array ? entry : await disk(entry);
  if (!length) { // chunked transfer: no Content-Length
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const third = Math.ceil(bytes.length / 3);
    for (let i = 0; i < bytes.length; i += third) {
      res.write(bytes.subarray(i, i + third));
      await new Promise((r) => setTimeout(r, 5));
    }
    res.end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length });
  res.end(bytes);
}

async function handle(req, res) {
  requests.push(req.url);
  const parts = new URL(req.url, 'http://x').pathname.split('/').filter(Boolean).map(decodeURIComponent);
  const [route, ...rest] = parts;
  if (route === 'plain' || route === 'chunked') {
    return serveFile(res, `${rest[0]}/${rest[1]}`, rest.slice(2).join('/'), { length: route === 'plain' });
  }
  if (route === 'hub' && rest[2] === 'resolve') return serveFile(res, `${rest[0]}/${rest[1]}`, rest.slice(4).join('/'));
  if (route === 'fail') return res.writeHead(Number(rest[0]), { 'content-type': 'text/plain' }).end('boom');
  if (route === 'short') { // announces 1000 bytes, sends 10, then drops the connection
    res.writeHead(200, { 'content-length': 1000 });
    res.write(new Uint8Array(10));
    setTimeout(() => res.destroy(), 20);
    return;
  }
  if (route === 'slow') { // 10 MB announced, 16 KiB every 20 ms
    res.writeHead(200, { 'content-length': 10_000_000 });
    const timer = setInterval(() => res.write(new Uint8Array(16384)), 20);
    res.on('close', () => { clearInterval(timer); slowClosed++; });
    return;
  }
  res.writeHead(404).end();
}

before(async () => {
  repos['test/mamba-tiny'] = {
    'config.json': path.join(TINY, 'config.json'),
    'model.safetensors': path.join(TINY, 'model.safetensors'),
    'tokenizer.json': path.join(FIXTURES, 'tokenizer', 'tokenizer.json'),
  };
  repos['test/pickle'] = { 'config.json': path.join(TINY, 'config.json'), 'pytorch_model.bin': new Uint8Array(4096) };
  // a two-shard copy of mamba-tiny + index.json in a temp dir, also served as hub repo test/sharded
  tmpDir = await mkdtemp(path.join(os.tmpdir(), 'memba-source-test-'));
  const { tensors } = parseSafetensors(await disk(path.join(TINY, 'model.safetensors')));
  const names = [...tensors.keys()].sort();
  const shards = [names.slice(0, 9), names.slice(9)];
  const weightMap = {};
  repos['test/sharded'] = { 'config.json': path.join(TINY, 'config.json') };
  for (let s = 0; s < 2; s++) {
    const file = `model-0000${s + 1}-of-00002.safetensors`;
    const entries = Object.fromEntries(shards[s].map((n) => [n, tensors.get(n)]));
    for (const n of shards[s]) weightMap[n] = file;
    await writeFile(path.join(tmpDir, file), writeSafetensors(entries, { format: 'pt' }));
    repos['test/sharded'][file] = path.join(tmpDir, file);
  }
  await writeFile(path.join(tmpDir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  await writeFile(path.join(tmpDir, 'config.json'), await readFile(path.join(TINY, 'config.json')));
  repos['test/sharded']['model.safetensors.index.json'] = path.join(tmpDir, 'model.safetensors.index.json');

  server = http.createServer((req, res) => { handle(req, res).catch(() => res.destroy()); });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${server.address().port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await rm(tmpDir, { recursive: true, force: true });
});

test('dir source: reads files, optional / missing files, rejects escapes and bad sources', async () => {
  const src = await openSource(TINY);
  assert.equal(src.kind, 'dir');
  assert.match(src.description, /mamba-tiny/);
  const got = await src.read(['config.json', 'model.safetensors', 'nope.json'], { optional: new Set(['nope.json']) });
  assert.deepEqual(got.get('config.json'), await disk(path.join(TINY, 'config.json')));
  assert.deepEqual(got.get('model.safetensors'), await disk(path.join(TINY, 'model.safetensors')));
  assert.equal(got.get('nope.json'), null);
  await rejectsCode(src.read(['nope.json']), 'not_found', /nope\.json.*mamba-tiny/);
  await rejectsCode(src.read(['../mamba-tiny-original-layout/config.json']), 'invalid_argument');
  await rejectsCode(src.read(['/etc/passwd']), 'invalid_argument');
  assert.equal(await src.has('config.json'), true);
  assert.equal(await src.has('pytorch_model.bin'), false);
  assert.equal((await openSource(pathToFileURL(TINY))).kind, 'dir');
  await rejectsCode(openSource(path.join(FIXTURES, 'does-not-exist')), 'not_found');
  await rejectsCode(openSource(path.join(TINY, 'config.json')), 'invalid_argument');
  await rejectsCode(openSource(42), 'invalid_argument');
  await rejectsCode(openSource(null), 'invalid_argument');
  await rejectsCode(openSource(TINY, { cache: 'yes' }), 'invalid_argument');
});

test('files source: Map and object, every value kind, progress with status read', async () => {
  const config = JSON.parse(await readFile(path.join(TINY, 'config.json'), 'utf8'));
  const model = await disk(path.join(TINY, 'model.safetensors'));
  const blobBytes = new Uint8Array([1, 2, 3, 4, 5]);
  const values = {
    'config.json': config, 'model.safetensors': model, 'a.txt': 'héllo',
    'b.bin': new Uint8Array([9, 8, 7]).buffer, 'c.blob': new Blob([blobBytes]), 'd.i16': new Int16Array([1, -1]),
  };
  for (const source of [{ files: values }, new Map(Object.entries(values))]) {
    const events = [];
    const src = await openSource(source, { onProgress: (e) => events.push(e) });
    assert.equal(src.kind, 'files');
    const got = await src.read([...Object.keys(values), 'missing.txt'], { optional: ['missing.txt'] });
    assert.deepEqual(JSON.parse(new TextDecoder().decode(got.get('config.json'))), config);
    assert.equal(got.get('model.safetensors'), model, 'in-memory bytes are not copied');
    assert.equal(new TextDecoder().decode(got.get('a.txt')), 'héllo');
    assert.deepEqual([...got.get('b.bin')], [9, 8, 7]);
    assert.deepEqual(got.get('c.blob'), blobBytes);
    assert.deepEqual([...got.get('d.i16')], [1, 0, 255, 255]);
    assert.equal(got.get('missing.txt'), null);
    const sum = [...got.values()].reduce((a, b) => a + (b ? b.length : 0), 0);
    checkEvents(events, sum, 'read');
    assert.ok(events.every((e) => e.total === sum), 'in-memory sizes are known up front');
    await rejectsCode(src.read(['missing.txt']), 'not_found', /missing\.txt/);
  }
  const bad = await openSource({ files: { 'x.bin': 12 } });
  await rejectsCode(bad.read(['x.bin']), 'invalid_argument');
});

/** Checks the progress contract: monotonic loaded, one final 'done' with loaded == total == expected. */
function checkEvents(events, expectedTotal, status) {
  assert.ok(events.length >= 2, 'at least one progress event and done');
  let last = -1;
  for (const e of events.slice(0, -1)) {
    assert.equal(e.status, status);
    assert.equal(typeof e.file, 'string');
    assert.ok(e.loaded >= last, 'loaded is monotonic');
    if (e.total !== undefined) assert.ok(e.loaded <= e.total);
    last = e.loaded;
  }
  const done = events.at(-1);
  assert.deepEqual(done, { status: 'done', file: null, loaded: expectedTotal, total: expectedTotal });
  assert.equal(events.filter((e) => e.status === 'done').length, 1);
}

test('URL source over HTTP: string and URL object, with and without trailing slash', async () => {
  const expected = await disk(path.join(TINY, 'model.safetensors'));
  for (const base of [`${origin}/plain/test/mamba-tiny`, `${origin}/plain/test/mamba-tiny/`, new URL(`${origin}/plain/test/mamba-tiny`)]) {
    requests = [];
    const src = await openSource(base, { cache: false });
    assert.equal(src.kind, 'url');
    const got = await src.read(['model.safetensors']);
    assert.deepEqual(got.get('model.safetensors'), expected);
    assert.deepEqual(requests, ['/plain/test/mamba-tiny/model.safetensors']);
  }
});

test('hub source: resolve URLs, revision, full checkpoint equals the directory one', async () => {
  requests = [];
  const src = await openSource('test/mamba-tiny', { hubBase: `${origin}/hub/`, cache: false });
  assert.equal(src.kind, 'hub');
  const ck = await readCheckpoint(src);
  assert.ok(requests.includes('/hub/test/mamba-tiny/resolve/main/config.json'));
  assert.ok(requests.includes('/hub/test/mamba-tiny/resolve/main/model.safetensors'));
  assert.ok(ck.tokenizerJson && ck.tokenizerJson.model, 'tokenizer.json parsed');
  const local = await readCheckpoint(await openSource(TINY));
  assert.deepEqual(ck.config, local.config);
  for (const [name, t] of local.tensors) assert.deepEqual(ck.tensors.get(name).data, t.data, name);

  requests = [];
  const v1 = await openSource('test/mamba-tiny', { hubBase: `${origin}/hub`, revision: 'v1.0', cache: false });
  await v1.read(['config.json']);
  assert.deepEqual(requests, ['/hub/test/mamba-tiny/resolve/v1.0/config.json']);
  await rejectsCode(openSource('not/a/hub/id'), 'not_found');
});

test('sharded checkpoint (index.json + 2 shards) from a directory and over HTTP', async () => {
  const single = await readCheckpoint(await openSource(TINY));
  const files = ['config.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  let expectedBytes = 0;
  for (const f of files) expectedBytes += (await disk(path.join(tmpDir, f))).length;
  for (const open of [() => openSource(tmpDir), () => openSource('test/sharded', { hubBase: `${origin}/hub`, cache: false })]) {
    const events = [];
    const ck = await readCheckpoint(await open(), { onProgress: (e) => events.push(e) });
    assert.deepEqual(ck.config, single.config);
    assert.deepEqual([...ck.tensors.keys()].sort(), [...single.tensors.keys()].sort());
    for (const [name, t] of single.tensors) assert.deepEqual(ck.tensors.get(name).data, t.data, name);
    assert.deepEqual(ck.plan.map((w) => w.name), single.plan.map((w) => w.name));
    checkEvents(events.map((e) => ({ ...e, status: e.status === 'done' ? 'done' : 'x' })), expectedBytes, 'x');
  }
});

test('HTTP errors: 404 is not_found / null, 500 and transport failures are network', async () => {
  const src = await openSource(`${origin}/plain/test/mamba-tiny/`, { cache: false });
  await rejectsCode(src.read(['missing.json']), 'not_found', /missing\.json/);
  assert.equal((await src.read(['missing.json'], { optional: ['missing.json'] })).get('missing.json'), null);
  assert.equal(await src.has('missing.json'), false);
  assert.equal(await src.has('config.json'), true);

  const failing = await openSource(`${origin}/fail/500/`, { cache: false });
  await assert.rejects(failing.read(['config.json'], { optional: ['config.json'] }), (e) => {
    assert.ok(e instanceof MembaError);
    assert.equal(e.code, 'network');
    assert.equal(e.status, 500);
    assert.match(e.message, /500/);
    return true;
  });
  await rejectsCode((await openSource(`${origin}/short/`, { cache: false })).read(['x.bin']), 'network');

  const closed = http.createServer();
  await new Promise((r) => closed.listen(0, '127.0.0.1', r));
  const port = closed.address().port;
  await new Promise((r) => closed.close(r));
  await rejectsCode((await openSource(`http://127.0.0.1:${port}/m/`, { cache: false })).read(['config.json']), 'network');
  const throwing = await openSource('https://example.invalid/m', { cache: false, fetch: () => { throw new TypeError('no network'); } });
  await rejectsCode(throwing.read(['config.json']), 'network', /no network/);
});

test('progress: aggregate over the files of one read, for HTTP (with and without Content-Length) and dirs', async () => {
  const names = ['config.json', 'model.safetensors', 'tokenizer.json'];
  let sum = 0;
  for (const n of names) sum += (await disk(repos['test/mamba-tiny'][n])).length;
  for (const [route, status] of [['plain', 'download'], ['chunked', 'download']]) {
    const events = [];
    const src = await openSource(`${origin}/${route}/test/mamba-tiny/`, { cache: false, onProgress: (e) => events.push(e) });
    await src.read(names);
    checkEvents(events, sum, status);
    assert.ok(events.some((e) => e.file === 'model.safetensors' && e.status === 'download'));
  }
  const events = [];
  const src = await openSource(TINY);
  await src.read(['config.json', 'model.safetensors'], { onProgress: (e) => events.push(e) });
  const dirSum = (await disk(path.join(TINY, 'config.json'))).length + (await disk(path.join(TINY, 'model.safetensors'))).length;
  checkEvents(events, dirSum, 'read');
});

test('abort: before starting and in the middle of a slow download', async () => {
  const early = new AbortController();
  early.abort(new Error('stop now'));
  await assert.rejects(openSource(TINY, { signal: early.signal }), (e) => {
    assert.ok(e instanceof MembaError);
    assert.equal(e.name, 'AbortError');
    assert.equal(e.code, 'aborted');
    assert.equal(e.message, 'stop now');
    return true;
  });
  const src = await openSource(TINY);
  await assert.rejects(src.read(['config.json'], { signal: early.signal }), { name: 'AbortError', code: 'aborted' });
  await assert.rejects(readCheckpoint(src, { signal: early.signal }), { name: 'AbortError' });

  for (const where of ['read', 'open']) {
    const controller = new AbortController();
    const closedBefore = slowClosed;
    const events = [];
    const slow = await openSource(`${origin}/slow/`, {
      cache: false, signal: where === 'open' ? controller.signal : undefined, onProgress: (e) => events.push(e),
    });
    const pending = slow.read(['big.bin', 'config.json'], { optional: ['config.json'], signal: where === 'read' ? controller.signal : undefined });
    await new Promise((r) => setTimeout(r, 150));
    const t0 = performance.now();
    controller.abort();
    await assert.rejects(pending, (e) => {
      assert.ok(e instanceof MembaError, String(e));
      assert.equal(e.name, 'AbortError');
      assert.equal(e.code, 'aborted');
      return true;
    });
    assert.ok(performance.now() - t0 < 1000, 'rejects promptly');
    assert.ok(events.some((e) => e.status === 'download' && e.loaded > 0), 'the downloads had started');
    assert.ok(!events.some((e) => e.status === 'done'));
    for (let i = 0; i < 50 && slowClosed < closedBefore + 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(slowClosed, closedBefore + 2, 'the server saw both connections go away');
  }
});

test('injected cache: the second load makes no HTTP request; cache failures never fail a load', async () => {
  const store = new Map();
  const cache = {
    async match(url) { return store.has(url) ? new Response(store.get(url), { headers: { 'content-length': String(store.get(url).length) } }) : undefined; },
    async put(url, response) { store.set(url, new Uint8Array(await response.arrayBuffer())); },
  };
  const opts = { hubBase: `${origin}/hub`, cache };
  requests = [];
  const first = await readCheckpoint(await openSource('test/mamba-tiny', opts));
  assert.ok(requests.length >= 3);
  assert.equal(store.size, 3);
  requests = [];
  const events = [];
  const second = await readCheckpoint(await openSource('test/mamba-tiny', opts), { onProgress: (e) => events.push(e) });
  assert.deepEqual(requests, [], 'no network on the second load');
  assert.ok(events.some((e) => e.status === 'cache'));
  assert.equal(events.at(-1).status, 'done');
  for (const [name, t] of first.tensors) assert.deepEqual(second.tensors.get(name).data, t.data, name);
  assert.deepEqual(second.tokenizerJson, first.tokenizerJson);

  const broken = { match: async () => { throw new Error('cache broken'); }, put: async () => { throw new Error('quota'); } };
  const ck = await readCheckpoint(await openSource('test/mamba-tiny', { hubBase: `${origin}/hub`, cache: broken }));
  assert.equal(ck.plan.length, first.plan.length);
  const garbage = { match: async () => new Response('garbage', { status: 500 }), put: () => Promise.reject(new Error('x')) };
  const ck2 = await readCheckpoint(await openSource('test/mamba-tiny', { hubBase: `${origin}/hub`, cache: garbage }));
  assert.equal(ck2.plan.length, first.plan.length);
  // a cache entry whose body fails half way: the file is downloaded instead, progress stays consistent
  const failingBody = () => new Response(new ReadableStream({
    start(c) { c.enqueue(new Uint8Array(100)); },
    pull(c) { c.error(new Error('disk gone')); },
  }), { headers: { 'content-length': '1000' } });
  const half = { match: async () => failingBody(), put: async () => {} };
  const halfEvents = [];
  const src = await openSource(`${origin}/plain/test/mamba-tiny/`, { cache: half, onProgress: (e) => halfEvents.push(e) });
  const got = await src.read(['config.json']);
  const size = (await disk(path.join(TINY, 'config.json'))).length;
  assert.deepEqual(got.get('config.json'), await disk(path.join(TINY, 'config.json')));
  assert.deepEqual(halfEvents.at(-1), { status: 'done', file: null, loaded: size + 100, total: size + 100 });
});

test('a throwing onProgress callback rejects the read with its own error', async () => {
  const boom = new Error('ui broke');
  const src = await openSource(`${origin}/plain/test/mamba-tiny/`, { cache: false, onProgress: () => { throw boom; } });
  await assert.rejects(src.read(['config.json', 'model.safetensors']), (e) => e === boom);
  const dir = await openSource(TINY, { onProgress: () => { throw boom; } });
  await assert.rejects(dir.read(['config.json']), (e) => e === boom);
});

test("cache 'auto' uses globalThis.caches (the browser Cache API) when it exists", async () => {
  const store = new Map();
  const opened = [];
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'caches');
  globalThis.caches = {
    async open(name) {
      opened.push(name);
      return {
        match: async (url) => (store.has(url) ? new Response(store.get(url)) : undefined),
        put: async (url, res) => { store.set(url, new Uint8Array(await res.arrayBuffer())); },
      };
    },
  };
  try {
    const base = `${origin}/plain/test/mamba-tiny/`;
    await (await openSource(base)).read(['config.json', 'model.safetensors']);
    assert.deepEqual(opened, ['memba-wasm-v1']);
    assert.equal(store.size, 2);
    requests = [];
    const events = [];
    const got = await (await openSource(base, { onProgress: (e) => events.push(e) })).read(['config.json', 'model.safetensors']);
    assert.deepEqual(requests, []);
    assert.deepEqual(got.get('model.safetensors'), await disk(path.join(TINY, 'model.safetensors')));
    checkEvents(events, got.get('config.json').length + got.get('model.safetensors').length, 'cache');
    requests = [];
    await (await openSource(base, { cache: false })).read(['config.json']);
    assert.equal(requests.length, 1, 'cache: false bypasses the cache');
    globalThis.caches = { open: async () => { throw new Error('SecurityError'); } };
    assert.equal((await (await openSource(base)).read(['config.json'])).get('config.json').length > 0, true);
  } finally {
    if (saved) Object.defineProperty(globalThis, 'caches', saved);
    else delete globalThis.caches;
  }
});

test('pytorch_model.bin-only repository is unsupported, not a crash', async () => {
  const src = await openSource('test/pickle', { hubBase: `${origin}/hub`, cache: false });
  await rejectsCode(readCheckpoint(src), 'unsupported', /pytorch_model\.bin \(pickle\) checkpoints are not supported; convert to safetensors/);
});
