// cli-hub.test.mjs: the CLI's package options: --version, and --hub-base / --revision / --cache-dir
// against a local server that answers as the Hugging Face hub does (X-Repo-Commit, ETag), with
// HF_HUB_OFFLINE=1 reading the cache it filled.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { ROOT, fixture } from './helpers.mjs';

const COMMIT = 'c'.repeat(40);
const FILES = { 'config.json': fs.readFileSync(fixture('mamba-tiny/config.json')), 'model.safetensors': fs.readFileSync(fixture('mamba-tiny/model.safetensors')) };
let server;
let hubBase;
let tmp;
let gets = 0;

before(async () => {
  server = http.createServer((req, res) => {
    const m = /^\/org\/tiny\/resolve\/([^/]+)\/(.+)$/.exec(new URL(req.url, 'http://x').pathname);
    if (!m || (m[1] !== 'main' && m[1] !== COMMIT)) return res.writeHead(404).end();
    const body = FILES[m[2]];
    if (!body) return res.writeHead(404, { 'x-repo-commit': COMMIT }).end();
    if (req.method === 'GET') gets++;
    res.writeHead(200, { etag: `"${crypto.createHash('sha1').update(body).digest('hex')}"`, 'x-repo-commit': COMMIT, 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  hubBase = `http://127.0.0.1:${server.address().port}`;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-cli-hub-'));
});
after(() => {
  server?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Runs the CLI without blocking the event loop (the hub server above answers it). */
function cli(args, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bindings', 'cli.js'), ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

test('memba --version prints the package version', async () => {
  const r = await cli(['--version']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version);
});

test('memba generate --hub-base --revision --cache-dir fills the hub cache; HF_HUB_OFFLINE=1 reads it back', async () => {
  const args = ['generate', '--model', 'org/tiny', '--hub-base', hubBase, '--cache-dir', tmp, '--ids', '1,2,3', '--max-new-tokens', '3', '--temperature', '0', '--quiet'];
  const first = await cli([...args, '--revision', 'main']);
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stdout.trim(), /^\d+ \d+ \d+$/);
  assert.equal(gets, 2);
  assert.equal(fs.readFileSync(path.join(tmp, 'models--org--tiny', 'refs', 'main'), 'utf8'), COMMIT);
  const offline = await cli(args, { HF_HUB_OFFLINE: '1' });
  assert.equal(offline.status, 0, offline.stderr);
  assert.equal(offline.stdout, first.stdout);
  assert.equal(gets, 2, 'nothing downloaded again');
  const pinned = await cli([...args, '--revision', COMMIT]);
  assert.equal(pinned.stdout, first.stdout);
  const bad = await cli([...args, '--revision', 'v9']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /memba: (not_found|network): /);
});
