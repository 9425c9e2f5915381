// Tests for bindings/safetensors.js: parsing the golden files, write/parse round trips, exact F16/BF16
// conversions, strict rejection of malformed files, and a seeded fuzz test of parse + planWeights.
// Not covered here: file access and Mamba config handling (source.test.mjs, checkpoint.test.mjs).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import {
  parseSafetensors, tensorToFloat32, writeSafetensors, float32ToFloat16Bits, float32ToBFloat16Bits, DTYPE_SIZES,
} from '../bindings/safetensors.js';
import { MembaError } from '../bindings/errors.js';
import { TOL } from './helpers.mjs';
import { normalizeConfig, canonicalizeTensors, planWeights } from '../bindings/checkpoint.js';

const fixture = (p) => fileURLToPath(new URL(`./fixtures/${p}`, import.meta.url));
const HF = await readFile(fixture('mamba-tiny/model.safetensors'));
const ORIG = await readFile(fixture('mamba-tiny-original-layout/model.safetensors'));
const HF_CONFIG = JSON.parse(await readFile(fixture('mamba-tiny/config.json'), 'utf8'));
const bytesOf = (buf) => new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);

function rejects(fn, code, pattern) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof MembaError, `expected MembaError, got ${e?.name}: ${e?.message}`);
    assert.equal(e.code, code, `code for: ${e.message}`);
    if (pattern) assert.match(e.message, pattern);
    return true;
  });
}

/** Builds a file from a header object and a data section of `dataLen` bytes (or given bytes). */
function rawFile(header, data = 0) {
  const json = header instanceof Uint8Array ? header
    : new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const body = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + body.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

const f32 = (x) => Math.fround(x);
const halfToF32 = (bits) => {
  const t = { name: 't', dtype: 'F16', shape: [1], numel: 1, data: new Uint8Array(new Uint16Array([bits]).buffer) };
  return tensorToFloat32(t)[0];
};
const bf16ToF32 = (bits) => new Float32Array(new Uint32Array([bits << 16]).buffer)[0];

test('parses both golden model files', () => {
  for (const [bytes, emb] of [[HF, 'backbone.embeddings.weight'], [ORIG, 'backbone.embedding.weight']]) {
    const u8 = bytesOf(bytes);
    const { tensors, metadata } = parseSafetensors(u8);
    assert.deepEqual(metadata, { format: 'pt' });
    assert.equal(tensors.size, 22);
    const e = tensors.get(emb);
    assert.deepEqual(e.shape, [64, 32]);
    assert.equal(e.numel, 2048);
    assert.equal(e.dtype, 'F32');
    assert.equal(e.data.buffer, u8.buffer, 'data is a view, not a copy');
    assert.equal(e.data.length, 2048 * 4);
    assert.deepEqual(tensors.get('backbone.layers.1.mixer.conv1d.weight').shape, [64, 1, 4]);
    const normF = tensors.get('backbone.norm_f.weight');
    const f = tensorToFloat32(normF);
    const dv = new DataView(normF.data.buffer, normF.data.byteOffset, normF.data.byteLength);
    for (let i = 0; i < 32; i++) assert.equal(f[i], dv.getFloat32(i * 4, true));
  }
});

test('write -> parse round trip keeps names, dtypes, shapes, bytes and metadata', () => {
  const entries = {
    'b.f16': { dtype: 'F16', shape: [3], data: float32ToFloat16Bits(new Float32Array([1, -2, 0.5])) },
    'a.f32': { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
    'c.i64': { dtype: 'I64', shape: [2], data: new BigInt64Array([5n, -7n]) },
    'd.empty': { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
    'e.scalar': { dtype: 'F64', shape: [], data: new Float64Array([Math.PI]) },
    'f.u8': { dtype: 'U8', shape: [5], data: new Uint8Array([1, 2, 3, 4, 5]) },
  };
  const file = writeSafetensors(entries, { format: 'pt', note: 'x' });
  const headerLen = new DataView(file.buffer).getUint32(0, true);
  assert.equal((8 + headerLen) % 8, 0, 'header padded to 8 bytes');
  const { tensors, metadata } = parseSafetensors(file, 'roundtrip.safetensors');
  assert.deepEqual(metadata, { format: 'pt', note: 'x' });
  assert.deepEqual([...tensors.keys()], Object.keys(entries).sort());
  let expectedBegin = 0;
  for (const name of [...tensors.keys()]) {
    const t = tensors.get(name);
    assert.equal(t.dtype, entries[name].dtype);
    assert.deepEqual(t.shape, entries[name].shape);
    const src = entries[name].data;
    assert.deepEqual(t.data, new Uint8Array(src.buffer, src.byteOffset, src.byteLength));
    assert.equal(t.data.byteOffset - (8 + headerLen) - file.byteOffset, expectedBegin, 'contiguous, sorted');
    expectedBegin += t.data.length;
  }
  assert.equal(tensors.get('e.scalar').numel, 1);
  assert.equal(tensorToFloat32(tensors.get('e.scalar'))[0], f32(Math.PI));
  assert.deepEqual([...tensorToFloat32(tensors.get('b.f16'))], [1, -2, 0.5]);

  // the golden file survives a rewrite bit for bit
  const golden = parseSafetensors(bytesOf(HF)).tensors;
  const again = parseSafetensors(writeSafetensors(new Map([...golden].map(([n, t]) => [n, t])))).tensors;
  for (const [n, t] of golden) assert.deepEqual(again.get(n).data, t.data, n);
});

test('writeSafetensors rejects inconsistent entries', () => {
  rejects(() => writeSafetensors({ x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }), 'shape_mismatch');
  rejects(() => writeSafetensors({ x: { dtype: 'F16', shape: [2], data: new Float32Array(2) } }), 'invalid_argument');
  rejects(() => writeSafetensors({ x: { dtype: 'Q4', shape: [2], data: new Uint8Array(2) } }), 'unsupported');
  rejects(() => writeSafetensors({}, { n: 1 }), 'invalid_argument');
});

test('F16 conversion: exact special values both ways', () => {
  const cases = [ // [float32 input, expected half bits]
    [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65519, 0x7bff], [65520, 0x7c00],
    [1e6, 0x7c00], [-1e6, 0xfc00], [2 ** -24, 0x0001], [2 ** -14, 0x0400], [2 ** -14 - 2 ** -24, 0x03ff],
    [2 ** -25, 0x0000], [f32(2 ** -25 * 1.0001), 0x0001], [3 * 2 ** -25, 0x0002], [2 ** -26, 0x0000],
    [Infinity, 0x7c00], [-Infinity, 0xfc00], [1 / 3, 0x3555], [f32(1 + 2 ** -11), 0x3c00],
    [f32(1 + 3 * 2 ** -11), 0x3c02], [0.1, 0x2e66], [-65504, 0xfbff], [1.401298464324817e-45, 0x0000],
  ];
  const bits = float32ToFloat16Bits(new Float32Array(cases.map((c) => c[0])));
  cases.forEach(([x, h], i) => assert.equal(bits[i], h, `f16(${x}) = 0x${bits[i].toString(16)}, want 0x${h.toString(16)}`));
  const nan = float32ToFloat16Bits(new Float32Array([NaN]))[0];
  assert.equal(nan & 0x7c00, 0x7c00);
  assert.notEqual(nan & 0x3ff, 0);

  const decode = [[0x0000, 0], [0x3c00, 1], [0x7bff, 65504], [0x0001, 2 ** -24], [0x0200, 2 ** -15], [0x03ff, 2 ** -14 - 2 ** -24],
    [0x3555, 0.333251953125], [0x7c00, Infinity], [0xfc00, -Infinity], [0xc000, -2], [0x2e66, 0.0999755859375]];
  for (const [h, v] of decode) assert.equal(halfToF32(h), v, `0x${h.toString(16)}`);
  assert.ok(Object.is(halfToF32(0x8000), -0));
  assert.ok(Number.isNaN(halfToF32(0x7e00)) && Number.isNaN(halfToF32(0xfc01)));
});

test('F16 conversion: every half value round-trips; random floats round to nearest even', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const file = writeSafetensors({ h: { dtype: 'F16', shape: [65536], data: all } });
  const values = tensorToFloat32(parseSafetensors(file).tensors.get('h'));
  const back = float32ToFloat16Bits(values);
  for (let h = 0; h < 65536; h++) {
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff);
    if (isNaN) assert.ok(Number.isNaN(values[h]));
    else assert.equal(back[h], h, `0x${h.toString(16)}`);
  }
  // random magnitudes from 2^-27 to 2^17: the chosen half is the nearest, ties to even
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const xs = new Float32Array(20000).map(() => (rnd() < 0.5 ? -1 : 1) * 2 ** (rnd() * 44 - 27));
  const hs = float32ToFloat16Bits(xs);
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i], h = hs[i];
    const v = values[h];
    if (!Number.isFinite(v)) { assert.ok(Math.abs(x) >= 65520, `${x}`); continue; }
    const mag = h & 0x7fff, sign = h & 0x8000;
    const err = Math.abs(x - v);
    for (const m of [mag - 1, mag + 1]) {
      if (m < 0 || m > 0x7bff) continue;
      const other = Math.abs(x - values[sign | m]);
      assert.ok(err < other || (err === other && (h & 1) === 0), `x=${x} h=0x${h.toString(16)}`);
    }
    if (Math.abs(x) >= 2 ** -14) assert.ok(err <= Math.abs(x) * TOL.f16_round_rel);
  }
});

test('BF16 conversion: exact special values, nearest-even rounding, precision', () => {
  const cases = [[0, 0x0000], [-0, 0x8000], [1, 0x3f80], [-2, 0xc000], [1 / 3, 0x3eab], [65504, 0x4780],
    [Infinity, 0x7f80], [-Infinity, 0xff80], [3.4028234663852886e38, 0x7f80], [2 ** -24, 0x3380], [1.401298464324817e-45, 0x0000]];
  const bits = float32ToBFloat16Bits(new Float32Array(cases.map((c) => c[0])));
  cases.forEach(([x, h], i) => assert.equal(bits[i], h, `bf16(${x}) = 0x${bits[i].toString(16)}`));
  const ties = new Float32Array(new Uint32Array([0x3f808000, 0x3f818000, 0x3f808001]).buffer);
  assert.deepEqual([...float32ToBFloat16Bits(ties)], [0x3f80, 0x3f82, 0x3f81]);
  const nan = float32ToBFloat16Bits(new Float32Array(new Uint32Array([0x7f800001]).buffer))[0];
  assert.ok(Number.isNaN(bf16ToF32(nan)));

  const all = new Uint16Array(65536).map((_, i) => i);
  const t = parseSafetensors(writeSafetensors({ b: { dtype: 'BF16', shape: [65536], data: all } })).tensors.get('b');
  const values = tensorToFloat32(t);
  const back = float32ToBFloat16Bits(values);
  for (let h = 0; h < 65536; h++) {
    if (Number.isNaN(values[h])) continue;
    assert.equal(back[h], h);
    assert.ok(Object.is(values[h], bf16ToF32(h)));
  }
  const xs = new Float32Array(5000).map((_, i) => Math.sin(i * 12.9898) * 10 ** ((i % 13) - 6));
  const ys = tensorToFloat32({ name: 'x', dtype: 'BF16', shape: [xs.length], numel: xs.length,
    data: new Uint8Array(float32ToBFloat16Bits(xs).buffer) });
  for (let i = 0; i < xs.length; i++) assert.ok(Math.abs(xs[i] - ys[i]) <= Math.abs(xs[i]) * TOL.bf16_round_rel, `${xs[i]}`);
});

test('tensorToFloat32 handles unaligned data, F64, out arrays and wrong dtypes', () => {
  const src = new Float32Array([1.5, -2.25, 3e-8, 65504, -0.1, 7]);
  const f16 = new Uint8Array(float32ToFloat16Bits(src).buffer);
  const bf16 = new Uint8Array(float32ToBFloat16Bits(src).buffer);
  const f64 = new Uint8Array(new Float64Array(src).buffer);
  const f32b = new Uint8Array(src.buffer);
  for (const [dtype, bytes] of [['F16', f16], ['BF16', bf16], ['F64', f64], ['F32', f32b]]) {
    const aligned = tensorToFloat32({ name: dtype, dtype, shape: [6], numel: 6, data: bytes });
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 1);
    const view = shifted.subarray(1, 1 + bytes.length);
    const out = new Float32Array(6);
    const got = tensorToFloat32({ name: dtype, dtype, shape: [6], numel: 6, data: view }, out);
    assert.equal(got, out);
    assert.deepEqual(out, aligned, dtype);
  }
  assert.deepEqual(tensorToFloat32({ name: 'x', dtype: 'F64', shape: [6], numel: 6, data: f64 }), src);
  rejects(() => tensorToFloat32({ name: 'x', dtype: 'F32', shape: [6], numel: 6, data: f32b }, new Float32Array(5)), 'shape_mismatch');
  rejects(() => tensorToFloat32({ name: 'ids', dtype: 'I64', shape: [1], numel: 1, data: new Uint8Array(8) }), 'unsupported',
    /tensor ids has dtype I64; weights must be F32, F16 or BF16/);
});

test('malformed files are rejected with the right code and a message naming file and tensor', () => {
  const ok = { t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  assert.equal(parseSafetensors(rawFile(ok, 8)).tensors.size, 1);
  const cases = [
    ['empty file', new Uint8Array(0), 'bad_format', /too short/],
    ['7 bytes', new Uint8Array(7), 'bad_format', /too short/],
    ['truncated data', rawFile(ok, 8).subarray(0, rawFile(ok, 8).length - 4), 'bad_format', /"t".*out of range/],
    ['header length past end', (() => { const f = rawFile(ok, 8); new DataView(f.buffer).setUint32(0, 4000, true); return f; })(), 'bad_format', /past the end/],
    ['header length 2^53', (() => { const f = rawFile(ok, 8); new DataView(f.buffer).setUint32(4, 0x200000, true); return f; })(), 'bad_format', /limit/],
    ['header length 200 MB', (() => { const f = rawFile(ok, 8); new DataView(f.buffer).setUint32(0, 200e6, true); return f; })(), 'bad_format', /limit/],
    ['non-JSON header', rawFile('{"t": nope}', 8), 'bad_format', /not valid UTF-8 JSON/],
    ['invalid UTF-8', rawFile(new Uint8Array([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]), 0), 'bad_format', /JSON/],
    ['array header', rawFile('[1, 2]', 0), 'bad_format', /not a JSON object/],
    ['entry not object', rawFile({ t: 5 }, 0), 'bad_format', /"t".*not an object/],
    ['missing dtype', rawFile({ t: { shape: [2], data_offsets: [0, 8] } }, 8), 'bad_format', /"t".*missing dtype/],
    ['missing shape', rawFile({ t: { dtype: 'F32', data_offsets: [0, 8] } }, 8), 'bad_format', /missing shape/],
    ['missing offsets', rawFile({ t: { dtype: 'F32', shape: [2] } }, 8), 'bad_format', /missing data_offsets/],
    ['negative dim', rawFile({ t: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 8), 'bad_format', /non-negative/],
    ['fractional dim', rawFile({ t: { dtype: 'F32', shape: [1.5], data_offsets: [0, 8] } }, 8), 'bad_format', /non-negative/],
    ['string dim', rawFile({ t: { dtype: 'F32', shape: ['2'], data_offsets: [0, 8] } }, 8), 'bad_format'],
    ['huge shape', rawFile({ t: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }, 8), 'bad_format', /too many/],
    ['offsets out of range', rawFile({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 16] } }, 8), 'bad_format', /out of range/],
    ['offsets reversed', rawFile({ t: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, 8), 'bad_format', /out of range/],
    ['offsets negative', rawFile({ t: { dtype: 'F32', shape: [0], data_offsets: [-1, -1] } }, 8), 'bad_format', /out of range/],
    ['offsets three', rawFile({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8, 9] } }, 8), 'bad_format', /two integers/],
    ['offsets float', rawFile({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8.5] } }, 8), 'bad_format', /two integers/],
    ['size mismatch', rawFile({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), 'bad_format', /need 12/],
    ['overlap', rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12), 'bad_format', /overlapping/],
    ['unknown dtype', rawFile({ t: { dtype: 'F4', shape: [2], data_offsets: [0, 1] } }, 8), 'unsupported', /"t".*unknown dtype "F4"/],
    ['metadata not strings', rawFile({ __metadata__: { a: 1 }, ...ok }, 8), 'bad_format', /__metadata__/],
    ['metadata not object', rawFile({ __metadata__: 'x', ...ok }, 8), 'bad_format', /__metadata__/],
  ];
  for (const [label, bytes, code, pattern] of cases) {
    assert.throws(() => parseSafetensors(bytes, 'bad.safetensors'), (e) => {
      assert.ok(e instanceof MembaError, `${label}: ${e}`);
      assert.equal(e.code, code, `${label}: ${e.message}`);
      assert.match(e.message, /^bad\.safetensors/, label);
      if (pattern) assert.match(e.message, pattern, label);
      return true;
    }, label);
  }
  // zero-size tensors occupy no bytes, so they may sit anywhere
  const zero = rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, z: { dtype: 'F32', shape: [0], data_offsets: [4, 4] } }, 8);
  assert.equal(parseSafetensors(zero).tensors.get('z').numel, 0);
  rejects(() => parseSafetensors('not bytes'), 'invalid_argument');
  assert.deepEqual(Object.keys(DTYPE_SIZES).sort(), ['BF16', 'BOOL', 'F16', 'F32', 'F64', 'F8_E4M3', 'F8_E5M2', 'I16', 'I32', 'I64', 'I8', 'U8']);
});

/** Seeded PRNG (mulberry32). */
function prng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('fuzz: 1500 seeded mutations of the golden file either load or throw MembaError', (t) => {
  const base = bytesOf(HF);
  const headerLen = new DataView(base.buffer, base.byteOffset).getUint32(0, true);
  const rnd = prng(20240601);
  const int = (n) => Math.floor(rnd() * n);
  const mutations = {
    flip(b) { const c = b.slice(); for (let k = 1 + int(8); k--;) { const p = rnd() < 0.7 ? int(8 + headerLen) : int(c.length); c[p] ^= 1 << int(8); } return c; },
    digit(b) { // keeps the JSON valid but changes a shape or an offset
      const c = b.slice();
      for (let tries = 0; tries < 50; tries++) { const p = 8 + int(headerLen); if (c[p] >= 0x30 && c[p] <= 0x39) { c[p] = 0x30 + int(10); break; } }
      return c;
    },
    truncate(b) { return b.slice(0, int(b.length)); },
    headerLength(b) {
      const c = b.slice(); const dv = new DataView(c.buffer);
      const pick = int(4);
      if (pick === 0) dv.setUint32(0, headerLen + int(64) - 32, true);
      else if (pick === 1) dv.setUint32(0, int(2 ** 32), true);
      else if (pick === 2) { dv.setUint32(0, int(2 ** 32), true); dv.setUint32(4, int(2 ** 32), true); }
      else dv.setUint32(4, 0x200000, true);
      return c;
    },
    splice(b) {
      const from = int(b.length), len = int(256), to = int(b.length);
      const piece = b.slice(from, from + len);
      const cut = rnd() < 0.5 ? int(256) : 0;
      const c = new Uint8Array(b.length - Math.min(cut, b.length - to) + piece.length);
      c.set(b.subarray(0, to)); c.set(piece, to); c.set(b.subarray(Math.min(b.length, to + cut)), to + piece.length);
      return c.subarray(0, to + piece.length + Math.max(0, b.length - to - cut));
    },
  };
  const kinds = Object.keys(mutations);
  const N = 1500;
  let rejected = 0;
  const codes = {};
  for (let i = 0; i < N; i++) {
    const kind = kinds[i % kinds.length];
    const bytes = mutations[kind](base);
    try {
      const { tensors } = parseSafetensors(bytes, 'fuzz.safetensors');
      const canonical = canonicalizeTensors(tensors);
      const config = normalizeConfig(HF_CONFIG, { embeddingShape: canonical.get('embeddings.weight')?.shape, tensorNames: canonical.keys() });
      for (const w of planWeights(config, canonical)) tensorToFloat32(w.tensor);
    } catch (e) {
      if (!(e instanceof MembaError)) assert.fail(`mutation #${i} (${kind}) threw ${e?.name}: ${e?.message}`);
      rejected++;
      codes[e.code] = (codes[e.code] ?? 0) + 1;
    }
  }
  t.diagnostic(`fuzz: ${rejected}/${N} mutations rejected (${JSON.stringify(codes)}), ${N - rejected} loaded`);
  assert.ok(rejected > N / 4, 'the mutations are effective');
});
