// assets.test.mjs: bindings/assets.js, the choice between the package's files and its inlined
// copies (the bundlers test runs both in Chromium). Here: unbundled Node finds its files, and the
// inlined wasm is dist/memba.wasm byte for byte (the copy build.sh writes, decoded as a browser does),
// and the inlined WGSL kernels are the files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { filesBesideCode, inlineWasm } from '../bindings/assets.js';
import { ROOT } from './helpers.mjs';

test('unbundled, the package finds memba.wasm beside dist/memba.mjs', () => {
  assert.equal(filesBesideCode(), true);
});

test('the inlined memba.wasm (dist/memba-wasm-inline.js) is dist/memba.wasm, through atob and fromBase64', async () => {
  const file = new Uint8Array(fs.readFileSync(path.join(ROOT, 'dist', 'memba.wasm')));
  const fromBase64 = Uint8Array.fromBase64;
  try {
    Uint8Array.fromBase64 = undefined; // the atob path (Chromium before 140, Node 20)
    const viaAtob = await inlineWasm();
    assert.equal(viaAtob.length, file.length);
    assert.ok(Buffer.from(viaAtob).equals(Buffer.from(file)), 'the atob decode differs from memba.wasm');
  } finally {
    Uint8Array.fromBase64 = fromBase64;
  }
  if (typeof fromBase64 === 'function') assert.ok(Buffer.from(await inlineWasm()).equals(Buffer.from(file)));
  console.log(`inlined memba.wasm: ${file.length} bytes, equal`);
});

test('the inlined WGSL kernels (dist/kernels-inline.js) are web/kernels/*.wgsl, each by name', async () => {
  const { default: sources } = await import('../dist/kernels-inline.js');
  const files = fs.readdirSync(path.join(ROOT, 'web', 'kernels')).filter((f) => f.endsWith('.wgsl'));
  assert.deepEqual(Object.keys(sources).sort(), files.map((f) => f.slice(0, -5)).sort());
  for (const f of files) assert.equal(sources[f.slice(0, -5)], fs.readFileSync(path.join(ROOT, 'web', 'kernels', f), 'utf8'), f);
  console.log(`inlined kernels: ${files.length}, equal`);
});

test('the inlined threaded build (dist/memba-threads-inline.js) is dist/memba-threads.*, the glue changed only where it would resolve a URL against blob:', async () => {
  const { default: t } = await import('../dist/memba-threads-inline.js');
  const glue = fs.readFileSync(path.join(ROOT, 'dist', 'memba-threads.mjs'), 'utf8');
  const W = 'new URL("memba-threads.wasm",import.meta.url).toString()';
  assert.equal(t.glue, glue.replace(W, '"memba-threads.wasm"'));
  assert.notEqual(t.glue, glue, 'the wasm URL line was replaced');
  assert.equal(t.worker, fs.readFileSync(path.join(ROOT, 'dist', 'memba-threads.worker.js'), 'utf8'));
  assert.ok(Buffer.from(t.wasm, 'base64').equals(fs.readFileSync(path.join(ROOT, 'dist', 'memba-threads.wasm'))));
  console.log(`inlined threaded build: glue ${t.glue.length} chars, worker ${t.worker.length}, wasm ${Buffer.from(t.wasm, 'base64').length} bytes`);
});
