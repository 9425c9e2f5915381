// browser-cache.test.mjs: in headless Chromium, on the unbundled package (demo/serve.mjs serves the
// repository): Mamba.cache.list / delete / clear over the Cache API entries of URL and hub loads,
// a second load served from the cache, 'default' loading the embedded model from the package's
// own folder, and one progress in bytes that never moves backwards. Skips without Chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createServer } from '../demo/serve.mjs';
import { ROOT, CHROMIUM, CHROMIUM_FLAGS } from './helpers.mjs';

const FLAGS = CHROMIUM_FLAGS;
const SKIP = CHROMIUM ? false : 'no Chromium found (./build.sh deps installs Debian chromium as root)';
let server;
let origin;

before(async () => {
  server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${server.address().port}`;
});
after(() => server?.close());

test('Mamba.cache in Chromium: list, delete(base URL), delete(hub id, revision), clear; default model; monotonic byte progress', { skip: SKIP, timeout: 120_000 }, async () => {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  try {
    const page = await browser.newPage();
    // a hub on the same origin: /hub/<org>/<name>/resolve/<rev>/<file> answers with the tiny fixture
    const tiny = path.join(ROOT, 'tests', 'fixtures', 'mamba-tiny');
    await page.route('**/hub/**', (route) => {
      const m = /\/hub\/[^/]+\/[^/]+\/resolve\/[^/]+\/(.+)$/.exec(new URL(route.request().url()).pathname);
      const file = m && path.join(tiny, decodeURIComponent(m[1]));
      if (!file || !fs.existsSync(file)) return route.fulfill({ status: 404, body: 'not found' });
      return route.fulfill({ status: 200, body: fs.readFileSync(file), headers: { 'content-type': 'application/octet-stream' } });
    });
    let weightFetches = 0;
    page.on('request', (r) => r.url().endsWith('/mamba-tiny/model.safetensors') && weightFetches++);
    await page.goto(`${origin}/demo/`);
    const got = await page.evaluate(async (hubBase) => {
      const { Mamba } = await import('/bindings/index.js');
      await Mamba.cache.clear();
      const events = [];
      (await Mamba.load('/tests/fixtures/mamba-tiny/', { onProgress: (p) => events.push(p) })).dispose();
      (await Mamba.load('/tests/fixtures/mamba-tiny/')).dispose(); // from the cache
      (await Mamba.load('org/tiny', { hubBase, revision: 'v1' })).dispose();
      (await Mamba.load('org/tiny', { hubBase, revision: 'v2' })).dispose();
      const listed = await Mamba.cache.list();
      const delUrl = await Mamba.cache.delete('/tests/fixtures/mamba-tiny/');
      const delRev = await Mamba.cache.delete('org/tiny', { revision: 'v1' });
      const afterDeletes = (await Mamba.cache.list()).map((e) => `${e.repo}@${e.revision}:${e.file}`);
      const cleared = await Mamba.cache.clear();
      const empty = await Mamba.cache.list();
      const d = await Mamba.load('default');
      const text = d.decode(await d.generate(d.encode('The jury said'), { maxNewTokens: 4 }));
      const source = d.info.source;
      d.dispose();
      return { events, listed, delUrl, delRev, afterDeletes, cleared, empty, text, source };
    }, `${origin}/hub`);
    assert.equal(weightFetches, 1, 'the second URL load came from the Cache API');
    const urls = got.listed.map((e) => e.url.replace(origin, '')).sort();
    assert.deepEqual(urls, ['/hub/org/tiny/resolve/v1/config.json', '/hub/org/tiny/resolve/v1/model.safetensors',
      '/hub/org/tiny/resolve/v2/config.json', '/hub/org/tiny/resolve/v2/model.safetensors',
      '/tests/fixtures/mamba-tiny/config.json', '/tests/fixtures/mamba-tiny/model.safetensors']);
    const hubEntry = got.listed.find((e) => e.url.endsWith('/v2/model.safetensors'));
    assert.deepEqual({ repo: hubEntry.repo, revision: hubEntry.revision, file: hubEntry.file, size: hubEntry.size },
      { repo: 'org/tiny', revision: 'v2', file: 'model.safetensors', size: fs.statSync(path.join(tiny, 'model.safetensors')).size });
    assert.equal(got.delUrl, 2);
    assert.equal(got.delRev, 2);
    assert.deepEqual(got.afterDeletes.sort(), ['org/tiny@v2:config.json', 'org/tiny@v2:model.safetensors']);
    assert.equal(got.cleared, 2);
    assert.deepEqual(got.empty, []);
    assert.match(got.source, /models\/default\/ /, `'default' came from ${got.source}`);
    assert.ok(got.text.length > 0, 'the default model generated text');
    // progress: bytes, phases in order, loaded / total never backwards, ends done then ready
    let frac = 0;
    for (const e of got.events) {
      assert.equal(typeof e.phase, 'string');
      if (e.total) {
        assert.ok(e.loaded / e.total >= frac - 1e-12, `progress moved backwards at ${JSON.stringify(e)}`);
        frac = e.loaded / e.total;
      }
    }
    assert.deepEqual(got.events.slice(-2).map((e) => e.status), ['done', 'ready']);
    assert.equal(got.events.at(-1).loaded, got.events.at(-1).total);
    assert.ok(got.events.some((e) => e.phase === 'download') && got.events.some((e) => e.phase === 'convert'));
  } finally {
    await browser.close();
  }
});
