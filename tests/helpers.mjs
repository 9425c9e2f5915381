// helpers.mjs: shared test helpers: the tolerance table, golden fixture readers and a
// comparison that prints the max difference and fails beyond the tolerance.
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { parseSafetensors, tensorToFloat32 } from '../bindings/safetensors.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const FIXTURES = path.join(ROOT, 'tests', 'fixtures');
export const TOL = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'tolerances.json'), 'utf8'));

export function fixture(name) {
  return path.join(FIXTURES, name);
}

export function readCase(name) {
  return JSON.parse(fs.readFileSync(path.join(FIXTURES, name, 'case.json'), 'utf8'));
}

/** Map name -> Float32Array of a case's expected.safetensors. */
export function readExpected(name, file = 'expected.safetensors') {
  const { tensors } = parseSafetensors(new Uint8Array(fs.readFileSync(path.join(FIXTURES, name, file))));
  const out = new Map();
  for (const [k, t] of tensors) out.set(k, Object.assign(tensorToFloat32(t), { shape: t.shape }));
  return out;
}

export function maxAbs(a) {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

export function maxDiff(a, b) {
  assert.equal(a.length, b.length, 'length mismatch');
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = d; // NaN becomes the max and fails below
  }
  return m;
}

/** Asserts max|got - want| <= TOL[tolName] * max(1, max|want|); prints the figure. */
export function assertClose(what, got, want, tolName) {
  const d = maxDiff(got, want);
  const lim = TOL[tolName] * Math.max(1, maxAbs(want));
  assert.ok(tolName in TOL, `unknown tolerance ${tolName}`);
  console.log(`${what}: maxdiff ${d.toExponential(3)} (limit ${lim.toExponential(3)})`);
  assert.ok(d <= lim, `${what}: maxdiff ${d} > ${lim}`);
  return d;
}

/** Rejects with a MembaError of the given code. */
export async function rejectsCode(fnOrPromise, code, re) {
  await assert.rejects(typeof fnOrPromise === 'function' ? fnOrPromise() : fnOrPromise, (err) => {
    assert.equal(err.name === 'AbortError' ? 'aborted' : err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`);
    assert.equal(err.constructor.name === 'MembaError' || err.name === 'MembaError' || err.name === 'AbortError', true);
    if (re) assert.match(err.message, re);
    return true;
  });
}

/** Debian's Chromium for the browser tests (undefined when it is not installed), and its flags. */
export const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
export const CHROMIUM_FLAGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
