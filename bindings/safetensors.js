// safetensors.js: strict parser and writer for the safetensors format, plus float conversions
// (F16/BF16/F64 -> float32 for loading; float32 -> F16/BF16 bits for writing test files).
// It deliberately does no I/O and knows nothing about Mamba: see source.js and checkpoint.js.
// Parsed tensors are zero-copy views into the caller's bytes; every malformed input is a MembaError.

import { MembaError, ErrorCodes } from './errors.js';

/** Largest header accepted, as in the reference implementation (100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

/** Bytes per element of each known dtype. */
export const DTYPE_SIZES = Object.freeze({
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
});

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function badFormat(message) {
  return new MembaError(ErrorCodes.BAD_FORMAT, message);
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function fmtShape(shape) {
  return `[${shape.join(', ')}]`;
}

/**
 * @typedef {object} SafetensorsTensor
 * @property {string} name       name as stored in the file
 * @property {string} dtype      safetensors dtype string (F32, F16, BF16, ...)
 * @property {number[]} shape
 * @property {number} numel      product of shape (1 for a scalar)
 * @property {Uint8Array} data   view into the file's bytes (no copy), numel * dtype size bytes
 */

/**
 * Bytes at the start of a safetensors file that hold its header (8 + the header length), read
 * from its first 8 bytes; null while fewer than 8 bytes are there.
 * @param {Uint8Array} prefix the first bytes of the file (at least 8 for an answer)
 * @param {string} [fileName] used in error messages
 * @returns {number|null}
 * @throws {MembaError} bad_format for a header length over MAX_HEADER_BYTES
 */
export function safetensorsHeaderSize(prefix, fileName = 'model.safetensors') {
  if (!(prefix instanceof Uint8Array) || prefix.length < 8) return null;
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  if (hi !== 0 || lo > MAX_HEADER_BYTES) {
    throw badFormat(`${fileName}: header length ${hi * 2 ** 32 + lo} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  return 8 + lo;
}

/**
 * Parses and validates the JSON header of a safetensors file, from a prefix of the file that
 * holds at least the header: every tensor's name, dtype, shape, element count and byte range in
 * the data section (no data is touched). `dataLen`, when known, bounds the ranges.
 * @param {Uint8Array} bytes the file, or its first safetensorsHeaderSize() bytes or more
 * @param {string} [fileName] used in error messages
 * @param {number} [dataLen] bytes of the data section (Infinity: not known yet)
 * @returns {{ headerBytes: number, entries: {name: string, dtype: string, shape: number[], numel: number, begin: number, end: number}[], metadata: Record<string, string> }}
 * @throws {MembaError} bad_format for any malformed header, unsupported for an unknown dtype
 */
export function parseSafetensorsHeader(bytes, fileName = 'model.safetensors', dataLen = Infinity) {
  if (bytes instanceof ArrayBuffer) bytes = new Uint8Array(bytes);
  if (!(bytes instanceof Uint8Array)) {
    throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `${fileName}: expected a Uint8Array of file bytes`);
  }
  if (bytes.length < 8) throw badFormat(`${fileName}: file is ${bytes.length} bytes, too short for a safetensors header`);
  const headerBytes = safetensorsHeaderSize(bytes, fileName);
  const headerLen = headerBytes - 8;
  if (headerBytes > bytes.length) {
    throw badFormat(`${fileName}: header length ${headerLen} runs past the end of the file (${bytes.length} bytes)`);
  }
  let header;
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, headerBytes));
    header = JSON.parse(text);
  } catch (e) {
    throw new MembaError(ErrorCodes.BAD_FORMAT, `${fileName}: header is not valid UTF-8 JSON (${e.message})`, { cause: e });
  }
  if (!isPlainObject(header)) throw badFormat(`${fileName}: header is not a JSON object`);

  const entries = [];
  let metadata = {};
  for (const name of Object.keys(header)) {
    const entry = header[name];
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) throw badFormat(`${fileName}: __metadata__ is not an object`);
      for (const k of Object.keys(entry)) {
        if (typeof entry[k] !== 'string') throw badFormat(`${fileName}: __metadata__ value for ${JSON.stringify(k)} is not a string`);
      }
      metadata = entry;
      continue;
    }
    const where = `${fileName}: tensor ${JSON.stringify(name)}`;
    if (!isPlainObject(entry)) throw badFormat(`${where}: entry is not an object`);
    for (const key of ['dtype', 'shape', 'data_offsets']) {
      if (!Object.hasOwn(entry, key)) throw badFormat(`${where}: missing ${key}`);
    }
    const { dtype, shape, data_offsets: offsets } = entry;
    if (typeof dtype !== 'string') throw badFormat(`${where}: dtype is not a string`);
    if (!Array.isArray(shape)) throw badFormat(`${where}: shape is not an array`);
    let numel = 1;
    for (const dim of shape) {
      if (!Number.isSafeInteger(dim) || dim < 0) throw badFormat(`${where}: shape ${JSON.stringify(shape)} has a dimension that is not a non-negative integer`);
      numel *= dim;
      if (numel > Number.MAX_SAFE_INTEGER) throw badFormat(`${where}: shape ${JSON.stringify(shape)} has too many elements`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(Number.isSafeInteger)) {
      throw badFormat(`${where}: data_offsets must be two integers`);
    }
    const [begin, end] = offsets;
    if (!(begin >= 0 && begin <= end && end <= dataLen)) {
      throw badFormat(`${where}: data_offsets [${begin}, ${end}] out of range (data section is ${dataLen} bytes)`);
    }
    if (!Object.hasOwn(DTYPE_SIZES, dtype)) {
      throw new MembaError(ErrorCodes.UNSUPPORTED, `${where}: unknown dtype ${JSON.stringify(dtype)}`);
    }
    const byteSize = numel * DTYPE_SIZES[dtype];
    if (end - begin !== byteSize) {
      throw badFormat(`${where}: ${end - begin} bytes of data but dtype ${dtype} and shape ${fmtShape(shape)} need ${byteSize}`);
    }
    entries.push({ name, dtype, shape: shape.slice(), numel, begin, end });
  }
  const ranges = entries.filter((e) => e.end > e.begin).sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i].begin < ranges[i - 1].end) {
      throw badFormat(`${fileName}: tensors ${JSON.stringify(ranges[i - 1].name)} and ${JSON.stringify(ranges[i].name)} have overlapping data`);
    }
  }
  return { headerBytes, entries, metadata };
}

/**
 * Parses a safetensors file held in memory, validating it strictly.
 * @param {Uint8Array} bytes the whole file
 * @param {string} [fileName] used in error messages
 * @returns {{ tensors: Map<string, SafetensorsTensor>, metadata: Record<string, string> }}
 * @throws {MembaError} bad_format for any malformed input, unsupported for an unknown dtype
 */
export function parseSafetensors(bytes, fileName = 'model.safetensors') {
  if (bytes instanceof ArrayBuffer) bytes = new Uint8Array(bytes);
  if (!(bytes instanceof Uint8Array)) {
    throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `${fileName}: expected a Uint8Array of file bytes`);
  }
  const headerBytes = bytes.length >= 8 ? safetensorsHeaderSize(bytes, fileName) : 8;
  const data = bytes.subarray(Math.min(headerBytes, bytes.length));
  const { entries, metadata } = parseSafetensorsHeader(bytes, fileName, data.length);
  /** @type {Map<string, SafetensorsTensor>} */
  const tensors = new Map();
  for (const { name, dtype, shape, numel, begin, end } of entries) tensors.set(name, { name, dtype, shape, numel, data: data.subarray(begin, end) });
  return { tensors, metadata };
}

let halfTable = null;

/** 65536-entry table: F16 bit pattern -> float32 value (exact, keeps NaN payloads and signs). */
function getHalfTable() {
  if (halfTable) return halfTable;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      const v = mant * 2 ** -24; // zero or subnormal, exact in float32
      table[h] = sign ? -v : v;
    } else if (exp === 31) {
      bits[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0;
    } else {
      bits[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
    }
  }
  halfTable = table;
  return table;
}

/**
 * Converts a floating-point tensor (F32, F16, BF16 or F64) to float32.
 * @param {SafetensorsTensor} tensor
 * @param {Float32Array} [out] destination of exactly `tensor.numel` elements; allocated when omitted
 * @returns {Float32Array} `out` (or the new array)
 * @throws {MembaError} unsupported for other dtypes, shape_mismatch when `out` has the wrong length
 */
export function tensorToFloat32(tensor, out) {
  if (!tensor || !(tensor.data instanceof Uint8Array) || !Number.isSafeInteger(tensor.numel)) {
    throw new MembaError(ErrorCodes.INVALID_ARGUMENT, 'tensorToFloat32: expected a parsed safetensors tensor');
  }
  const { name, dtype, numel: n, data } = tensor;
  if (!FLOAT_DTYPES.has(dtype)) {
    throw new MembaError(ErrorCodes.UNSUPPORTED, `tensor ${name} has dtype ${dtype}; weights must be F32, F16 or BF16`);
  }
  if (data.length !== n * DTYPE_SIZES[dtype]) {
    throw badFormat(`tensor ${name}: ${data.length} bytes of data for ${n} elements of ${dtype}`);
  }
  if (out === undefined) {
    try {
      out = new Float32Array(n);
    } catch (e) {
      throw new MembaError(ErrorCodes.OOM, `cannot allocate ${n} floats for tensor ${name}`, { cause: e });
    }
  } else if (!(out instanceof Float32Array)) {
    throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `tensor ${name}: out must be a Float32Array`);
  } else if (out.length !== n) {
    throw new MembaError(ErrorCodes.SHAPE_MISMATCH, `tensor ${name} has ${n} elements but out has ${out.length}`);
  }
  if (n === 0) return out;
  const off = data.byteOffset;
  if (dtype === 'F32') {
    if (LITTLE_ENDIAN) {
      new Uint8Array(out.buffer, out.byteOffset, n * 4).set(data);
    } else {
      const dv = new DataView(data.buffer, off, data.length);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
    }
  } else if (dtype === 'F16') {
    const table = getHalfTable();
    if (LITTLE_ENDIAN && (off & 1) === 0) {
      const src = new Uint16Array(data.buffer, off, n);
      for (let i = 0; i < n; i++) out[i] = table[src[i]];
    } else {
      for (let i = 0, j = 0; i < n; i++, j += 2) out[i] = table[data[j] | (data[j + 1] << 8)];
    }
  } else if (dtype === 'BF16') {
    const dst = new Uint32Array(out.buffer, out.byteOffset, n);
    if (LITTLE_ENDIAN && (off & 1) === 0) {
      const src = new Uint16Array(data.buffer, off, n);
      for (let i = 0; i < n; i++) dst[i] = src[i] << 16;
    } else {
      // Byte-wise: correct whatever the alignment; on a big-endian host go through DataView.
      if (LITTLE_ENDIAN) {
        for (let i = 0, j = 0; i < n; i++, j += 2) dst[i] = (data[j] << 16) | (data[j + 1] << 24);
      } else {
        const dv = new DataView(data.buffer, off, data.length);
        for (let i = 0; i < n; i++) out[i] = bf16Value(dv.getUint16(i * 2, true));
      }
    }
  } else {
    if (LITTLE_ENDIAN && (off & 7) === 0) {
      const src = new Float64Array(data.buffer, off, n);
      for (let i = 0; i < n; i++) out[i] = src[i];
    } else {
      const dv = new DataView(data.buffer, off, data.length);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
    }
  }
  return out;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function bf16Value(bits) {
  scratchU32[0] = bits << 16;
  return scratchF32[0];
}

function f32BitsToHalf(x) {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return mant ? sign | 0x7e00 | (mant >>> 13) : sign | 0x7c00; // NaN stays NaN (quiet)
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    if (e < -10) return sign; // below half the smallest subnormal -> signed zero
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++; // may carry into the smallest normal: correct
    return sign | h;
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++; // carry may reach inf: correct
  return h;
}

/**
 * Converts float32 values to IEEE half-precision bit patterns, rounding to nearest even
 * (overflow gives inf, tiny values give subnormals or signed zero, NaN stays NaN).
 * @param {Float32Array} values
 * @returns {Uint16Array}
 */
export function float32ToFloat16Bits(values) {
  const src = values instanceof Float32Array ? values : Float32Array.from(values);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToHalf(bits[i]);
  return out;
}

/**
 * Converts float32 values to bfloat16 bit patterns, rounding to nearest even (NaN stays NaN).
 * @param {Float32Array} values
 * @returns {Uint16Array}
 */
export function float32ToBFloat16Bits(values) {
  const src = values instanceof Float32Array ? values : Float32Array.from(values);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    const x = bits[i];
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
      out[i] = (x >>> 16) | 0x40; // quiet NaN, never rounds to inf
    } else {
      out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
    }
  }
  return out;
}

function toBytes(data, where) {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `${where}: data must be a TypedArray or ArrayBuffer`);
}

/**
 * Serialises tensors to the standard safetensors format: header JSON padded with spaces to a
 * multiple of 8 bytes, tensors stored contiguously in sorted name order.
 * @param {Record<string, {dtype: string, shape: number[], data: ArrayBufferView | ArrayBuffer}> | Map<string, {dtype: string, shape: number[], data: ArrayBufferView | ArrayBuffer}>} entries
 *   `data` holds the raw little-endian element bytes (e.g. a Float32Array for F32, the Uint16Array
 *   from float32ToFloat16Bits for F16)
 * @param {Record<string, string>} [metadata] stored as `__metadata__`
 * @returns {Uint8Array} the file bytes
 */
export function writeSafetensors(entries, metadata) {
  const list = entries instanceof Map ? [...entries] : Object.entries(entries ?? {});
  list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const header = {};
  if (metadata !== undefined) {
    if (!isPlainObject(metadata) || Object.values(metadata).some((v) => typeof v !== 'string')) {
      throw new MembaError(ErrorCodes.INVALID_ARGUMENT, 'writeSafetensors: metadata must be an object of strings');
    }
    header.__metadata__ = metadata;
  }
  const parts = [];
  let offset = 0;
  for (const [name, entry] of list) {
    const where = `writeSafetensors: tensor ${JSON.stringify(name)}`;
    if (typeof name !== 'string' || name === '' || name === '__metadata__') {
      throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `${where}: invalid name`);
    }
    const { dtype, shape, data } = entry ?? {};
    if (!Object.hasOwn(DTYPE_SIZES, dtype)) throw new MembaError(ErrorCodes.UNSUPPORTED, `${where}: unknown dtype ${dtype}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `${where}: shape must be an array of non-negative integers`);
    }
    if ((data instanceof Float32Array && dtype !== 'F32') || (data instanceof Float64Array && dtype !== 'F64')) {
      throw new MembaError(ErrorCodes.INVALID_ARGUMENT, `${where}: ${data.constructor.name} data given for dtype ${dtype}; convert it first`);
    }
    const bytes = toBytes(data, where);
    const numel = shape.reduce((a, b) => a * b, 1);
    if (bytes.length !== numel * DTYPE_SIZES[dtype]) {
      throw new MembaError(ErrorCodes.SHAPE_MISMATCH, `${where}: ${bytes.length} bytes but dtype ${dtype} and shape ${fmtShape(shape)} need ${numel * DTYPE_SIZES[dtype]}`);
    }
    header[name] = { dtype, shape: shape.slice(), data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, padded, true);
  dv.setUint32(4, 0, true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  let pos = 8 + padded;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}
