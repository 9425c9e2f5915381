// hub-cache.test.mjs: Node's hub cache (bindings/hub-cache.js) against a local server that answers
// as the Hugging Face hub does (HEAD with X-Repo-Commit and ETag; LFS files as a 302 to a CDN with
// X-Linked-Etag and X-Linked-Size; 404 with X-Repo-Commit for a missing file), and against a cache
// folder laid out as Python's huggingface_hub lays it out (Python itself is not run here). Also
// offline mode, a moved branch, an unreachable hub, the cache folder's environment variables,
// Mamba.cache in Node, and the storage-full error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { Mamba } from '../bindings/index.js';
import { openSource } from '../bindings/source.js';
import { hubCacheDir, repoFolder } from '../bindings/hub-cache.js';
import { cachePutFailed } from '../bindings/storage-full.js';
import { fixture, maxDiff, rejectsCode } from './helpers.mjs';

const C1 = 'a'.repeat(40);
const C2 = 'b'.repeat(40);
const IDS = [1, 2, 3, 4, 5];
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');
const gitSha1 = (b) => crypto.createHash('sha1').update(Buffer.concat([Buffer.from(`blob ${b.length}\0`), b])).digest('hex');

const FILES = {
  'config.json': fs.readFileSync(fixture('mamba-tiny/config.json')),
  'model.safetensors': fs.readFileSync(fixture('mamba-tiny/model.safetensors')),
  'tokenizer.json': fs.readFileSync(fixture('tokenizer/tokenizer.json')),
};
// commit -> files; main points at C1 until a test moves it
const commits = { [C1]: FILES, [C2]: { ...FILES, 'config.json': Buffer.from(JSON.stringify({ ...JSON.parse(FILES['config.json']), note: 'moved' })) } };
let main = C1;
let server;
let hubBase;
let requests = [];
let tmp;
let want;

function handler(req, res) {
  const url = new URL(req.url, 'http://x');
  requests.push(`${req.method} ${url.pathname}`);
  const cdn = /^\/cdn\/([0-9a-f]{64})$/.exec(url.pathname);
  if (cdn) {
    const body = Object.values(commits).flatMap(Object.values).find((b) => sha256(b) === cdn[1]);
    if (!body) return res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.length });
    return res.end(req.method === 'HEAD' ? undefined : body);
  }
  const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
  if (!m || m[1] !== 'org/tiny') return res.writeHead(404, { 'x-error-code': 'RepoNotFound' }).end();
  const rev = decodeURIComponent(m[2]);
  const commit = rev === 'main' ? main : commits[rev] ? rev : null;
  if (!commit) return res.writeHead(404, { 'x-error-code': 'RevisionNotFound' }).end();
  const body = commits[commit][decodeURIComponent(m[3])];
  if (!body) return res.writeHead(404, { 'x-error-code': 'EntryNotFound', 'x-repo-commit': commit }).end();
  if (m[3].endsWith('.safetensors')) { // an LFS file: the hub redirects to its CDN
    return res.writeHead(302, { location: `${hubBase}/cdn/${sha256(body)}`, 'x-linked-etag': `"${sha256(body)}"`, 'x-linked-size': body.length, 'x-repo-commit': commit }).end();
  }
  res.writeHead(200, { etag: `"${gitSha1(body)}"`, 'x-repo-commit': commit, 'content-length': body.length });
  res.end(req.method === 'HEAD' ? undefined : body);
}

before(async () => {
  server = http.createServer(handler);
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  hubBase = `http://127.0.0.1:${server.address().port}`;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-hub-cache-'));
  const m = await Mamba.load(fixture('mamba-tiny'));
  want = (await m.forward(IDS)).data;
  m.dispose();
});
after(() => {
  server?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function logits(source, opts) {
  const m = await Mamba.load(source, opts);
  try {
    return (await m.forward(IDS)).data;
  } finally {
    m.dispose();
  }
}

const count = (method) => requests.filter((r) => r.startsWith(`${method} `)).length;

test('first load fills the cache in huggingface_hub\'s layout; the second sends only HEADs; offline and a pinned commit send nothing', async () => {
  const cacheDir = path.join(tmp, 'a');
  requests = [];
  assert.equal(maxDiff(await logits('org/tiny', { hubBase, cacheDir }), want), 0);
  assert.deepEqual(requests.filter((r) => r.startsWith('GET ')).sort(), ['GET /cdn/' + sha256(FILES['model.safetensors']),
    ...['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => `GET /org/tiny/resolve/main/${f}`)], 'the LFS file through the CDN redirect');
  const repo = path.join(cacheDir, 'models--org--tiny');
  assert.equal(fs.readFileSync(path.join(repo, 'refs', 'main'), 'utf8'), C1, 'refs/main holds the commit, no newline');
  for (const [name, body] of Object.entries(FILES)) {
    const etag = name.endsWith('.safetensors') ? sha256(body) : gitSha1(body);
    const snap = path.join(repo, 'snapshots', C1, name);
    assert.ok(fs.lstatSync(snap).isSymbolicLink(), `${name} is a symlink`);
    assert.equal(fs.readlinkSync(snap), path.join('..', '..', 'blobs', etag), `${name} links to its blob by relative path`);
    assert.deepEqual(fs.readFileSync(path.join(repo, 'blobs', etag)), body);
  }
  assert.deepEqual(fs.readdirSync(path.join(repo, 'blobs')).filter((f) => f.endsWith('.incomplete')), []);

  requests = [];
  assert.equal(maxDiff(await logits('org/tiny', { hubBase, cacheDir }), want), 0);
  assert.deepEqual(requests.filter((r) => !r.startsWith('HEAD ')), [], 'a second load downloads nothing');
  assert.equal(count('HEAD'), 3, 'one HEAD per file revalidates');

  requests = [];
  assert.equal(maxDiff(await logits('org/tiny', { hubBase, cacheDir, offline: true }), want), 0);
  assert.equal(maxDiff(await logits('org/tiny', { hubBase, cacheDir, revision: C1 }), want), 0);
  process.env.HF_HUB_OFFLINE = '1';
  try {
    assert.equal(maxDiff(await logits('org/tiny', { hubBase, cacheDir }), want), 0);
  } finally {
    delete process.env.HF_HUB_OFFLINE;
  }
  assert.deepEqual(requests, [], 'offline, or a commit hash in the cache: no request');

  // offline without the files: not_found that says offline and where it looked
  await rejectsCode(() => Mamba.load('org/tiny', { hubBase, cacheDir: path.join(tmp, 'empty'), offline: true }), 'not_found', /offline: only cache .*models--org--tiny/);
  assert.deepEqual(requests, []);
});

test('a missing file is remembered in .no_exist/<commit>, and not asked again', async () => {
  const cacheDir = path.join(tmp, 'b');
  const src = await openSource('org/tiny', { hubBase, cacheDir });
  requests = [];
  assert.equal((await src.read(['nope.json'], { optional: ['nope.json'] })).get('nope.json'), null);
  assert.equal(requests.length, 1, `one HEAD: ${requests}`);
  assert.ok(fs.existsSync(path.join(cacheDir, 'models--org--tiny', '.no_exist', C1, 'nope.json')));
  requests = [];
  const off = await openSource('org/tiny', { hubBase, cacheDir, offline: true });
  assert.equal(await off.has('nope.json'), false);
  assert.deepEqual(requests, []);
});

test('a branch that moved: only the changed file is downloaded, the unchanged blobs are linked into the new snapshot', async () => {
  const cacheDir = path.join(tmp, 'c');
  await logits('org/tiny', { hubBase, cacheDir });
  main = C2;
  try {
    requests = [];
    await logits('org/tiny', { hubBase, cacheDir });
    assert.deepEqual(requests.filter((r) => r.startsWith('GET ')), ['GET /org/tiny/resolve/main/config.json'], `${requests}`);
    const repo = path.join(cacheDir, 'models--org--tiny');
    assert.equal(fs.readFileSync(path.join(repo, 'refs', 'main'), 'utf8'), C2);
    assert.deepEqual(fs.readdirSync(path.join(repo, 'snapshots')).sort(), [C1, C2]);
    assert.equal(JSON.parse(fs.readFileSync(path.join(repo, 'snapshots', C2, 'config.json'))).note, 'moved');
  } finally {
    main = C1;
  }
});

test('files laid out by Python\'s huggingface_hub are used as they are (offline and online), and an unreachable hub falls back to them', async () => {
  const cacheDir = path.join(tmp, 'py');
  const repo = path.join(cacheDir, repoFolder('org/tiny'));
  fs.mkdirSync(path.join(repo, 'blobs'), { recursive: true });
  fs.mkdirSync(path.join(repo, 'snapshots', C1), { recursive: true });
  fs.mkdirSync(path.join(repo, 'refs'));
  fs.writeFileSync(path.join(repo, 'refs', 'main'), C1);
  for (const [name, body] of Object.entries(FILES)) {
    const etag = name.endsWith('.safetensors') ? sha256(body) : gitSha1(body);
    fs.writeFileSync(path.join(repo, 'blobs', etag), body);
    fs.symlinkSync(path.join('..', '..', 'blobs', etag), path.join(repo, 'snapshots', C1, name));
  }
  requests = [];
  assert.equal(maxDiff(await logits('org/tiny', { hubBase, cacheDir, offline: true }), want), 0);
  assert.equal(maxDiff(await logits('org/tiny', { hubBase, cacheDir }), want), 0);
  assert.deepEqual(requests.filter((r) => !r.startsWith('HEAD ')), [], 'nothing downloaded');
  // the hub down: the snapshot refs/main names
  assert.equal(maxDiff(await logits('org/tiny', { hubBase: 'http://127.0.0.1:9', cacheDir }), want), 0);
});

test('the cache folder: cacheDir, HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME, ~/.cache/huggingface/hub', async () => {
  const saved = { ...process.env };
  try {
    for (const k of ['HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HOME', 'XDG_CACHE_HOME']) delete process.env[k];
    assert.equal(await hubCacheDir(), path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
    process.env.XDG_CACHE_HOME = '/x';
    assert.equal(await hubCacheDir(), '/x/huggingface/hub');
    process.env.HF_HOME = '/h';
    assert.equal(await hubCacheDir(), '/h/hub');
    process.env.HF_HUB_CACHE = '/c';
    assert.equal(await hubCacheDir(), '/c');
    assert.equal(await hubCacheDir('/given'), '/given');
  } finally {
    for (const k of ['HF_HUB_CACHE', 'HUGGINGFACE_HUB_CACHE', 'HF_HOME', 'XDG_CACHE_HOME']) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
  }
});

test('Mamba.cache in Node: list, delete(hubId); clear() only with an explicit cacheDir', async () => {
  const cacheDir = path.join(tmp, 'list');
  await logits('org/tiny', { hubBase, cacheDir });
  const list = await Mamba.cache.list({ cacheDir });
  assert.deepEqual(list.map((e) => `${e.repo}@${e.revision}:${e.file}:${e.refs}`).sort(),
    ['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => `org/tiny@${C1}:${f}:main`));
  assert.equal(list.find((e) => e.file === 'model.safetensors').size, FILES['model.safetensors'].length);
  assert.equal(await Mamba.cache.delete('org/tiny', { cacheDir }), 3);
  assert.deepEqual(await Mamba.cache.list({ cacheDir }), []);
  await logits('org/tiny', { hubBase, cacheDir });
  await rejectsCode(() => Mamba.cache.clear(), 'invalid_argument', /needs \{ cacheDir \}/);
  assert.equal(await Mamba.cache.clear({ cacheDir }), 3);
  assert.deepEqual(await Mamba.cache.list({ cacheDir }), []);
});

test('storage full while caching: oom saying what to do when the cache was asked for, else the load goes on', async () => {
  const quota = Object.assign(new Error('The quota has been exceeded.'), { name: 'QuotaExceededError' });
  const full = { match: async () => undefined, put: async () => { throw quota; }, keys: async () => [] };
  const saved = globalThis.caches;
  globalThis.caches = { open: async () => full }; // a browser's Cache API, full
  try {
    await rejectsCode(() => Mamba.load(`${hubBase}/org/tiny/resolve/main/`, { cache: true }), 'oom', /caching .* failed: the browser's storage quota is used up: free space with Mamba\.cache\.delete\(source\) or Mamba\.cache\.clear\(\).*cache: false/);
    assert.equal(maxDiff(await logits(`${hubBase}/org/tiny/resolve/main/`, {}), want), 0, "cache 'auto': the load goes on");
  } finally {
    globalThis.caches = saved;
  }
  const enospc = Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
  assert.throws(() => cachePutFailed(enospc, { required: true, name: 'model.safetensors', size: 2 ** 20 }), (e) => e.code === 'oom' && /1\.0 MB.*HF_HUB_CACHE/.test(e.message));
  assert.equal(cachePutFailed(enospc, { required: false, name: 'x', size: 1 }), undefined, "cache 'auto': not an error");
  assert.equal(cachePutFailed(new Error('other'), { required: true, name: 'x', size: 1 }), undefined);
});
