// ids.js: small helpers shared by the API classes: token-id batches validated into flat
// Int32Arrays, option checks that turn every bad value into an invalid_argument (never a
// TypeError or RangeError), heap sizes computed and checked in JS before anything is allocated
// (wasm32 sizes are 32-bit: a larger size would wrap in C), a growable Int32Array for long token
// streams, the pieces long texts are tokenised in, and a yield to the event loop between tokens.
// Deliberately not here: anything that touches the engine.
import { MembaError, ErrorCodes } from './errors.js';

/** Bytes a single WASM heap buffer must stay below: wasm32 pointers and size_t are 32 bits and
 * the module's memory is capped at 4 GB (build.sh -sMAXIMUM_MEMORY), so a size at or past this
 * would wrap when passed to C. */
export const MAX_HEAP_BYTES = 2 ** 32;
/** The most tokens (B * L) one forward, score or inspect call takes (src/models/lm.c refuses more). */
export const MAX_TOKENS = 2 ** 28;
/** The most sequences a decode state holds (src/core/state.c refuses more). */
export const MAX_BATCH = 65536;
/** The largest value of a C int32 setting (LIM chunks / chunk_size). */
export const INT32_MAX = 2 ** 31 - 1;

/** Lets timers, I/O and abort signals run between tokens. */
export const yieldToEventLoop =
  typeof setImmediate === 'function'
    ? () => new Promise((resolve) => setImmediate(resolve))
    : () =>
        new Promise((resolve) => {
          const ch = new MessageChannel();
          ch.port1.onmessage = () => {
            ch.port1.close();
            resolve();
          };
          ch.port2.postMessage(0);
        });

export function invalid(msg) {
  return new MembaError(ErrorCodes.INVALID_ARGUMENT, msg);
}

export function oom(msg) {
  return new MembaError(ErrorCodes.OOM, msg);
}

/** A user value for an error message that never throws itself (a Symbol or an object whose
 * toString throws would turn the invalid_argument into a TypeError). */
export function describe(v) {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v);
  if (typeof v === 'symbol' || typeof v === 'function') return `a ${typeof v}`;
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null || typeof v !== 'object') return String(v);
  return Array.isArray(v) ? 'an array' : ArrayBuffer.isView(v) ? `a ${v.constructor.name}` : 'an object';
}

/** An options argument: undefined and null mean "the defaults" ({}); anything but a plain
 * object (a number, a string, an array) is invalid_argument. */
export function options(opts, what) {
  if (opts === undefined || opts === null) return {};
  if (typeof opts !== 'object' || Array.isArray(opts) || ArrayBuffer.isView(opts))
    throw invalid(`${what}: options must be an object, got ${describe(opts)}`);
  return opts;
}

/** An integer in [min, max] (both safe integers), else invalid_argument. */
export function checkInt(v, name, min, max = Number.MAX_SAFE_INTEGER) {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw invalid(`${name} must be an integer in [${min}, ${max === Number.MAX_SAFE_INTEGER ? '2^53 - 1' : max}], got ${describe(v)}`);
  return v;
}

/**
 * A finite number within bounds, else invalid_argument. Bounds: min / max (inclusive), or
 * above / below (exclusive).
 */
export function checkNumber(v, name, { min = -Infinity, max = Infinity, above = -Infinity, below = Infinity } = {}) {
  const ok = typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max && v > above && v < below;
  if (!ok) {
    const lo = above > -Infinity ? `> ${above}` : min > -Infinity ? `>= ${min}` : '';
    const hi = below < Infinity ? `< ${below}` : max < Infinity ? `<= ${max}` : '';
    throw invalid(`${name} must be a finite number${lo || hi ? ` ${[lo, hi].filter(Boolean).join(' and ')}` : ''}, got ${describe(v)}`);
  }
  return v;
}

/** undefined or a boolean, else invalid_argument. */
export function checkBool(v, name) {
  if (v !== undefined && typeof v !== 'boolean') throw invalid(`${name} must be true or false, got ${describe(v)}`);
  return v;
}

/** undefined / null or an AbortSignal (anything with a boolean `aborted`), else invalid_argument. */
export function checkSignal(v, name = 'signal') {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || typeof v.aborted !== 'boolean') throw invalid(`${name} must be an AbortSignal, got ${describe(v)}`);
  return v;
}

/** undefined or a function, else invalid_argument. */
export function checkFunction(v, name) {
  if (v !== undefined && typeof v !== 'function') throw invalid(`${name} must be a function, got ${describe(v)}`);
  return v;
}

function formatBytes(n) {
  if (!Number.isFinite(n)) return 'more bytes than a number holds';
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GB` : `${n} bytes`;
}

/**
 * Bytes of a heap buffer: the product of `factors` (non-negative safe integers), computed in
 * float64 (exact up to 2^53, and beyond that still larger than any heap). Fails with 'oom' when
 * the buffer cannot exist in the 4 GB WASM heap, before anything is allocated.
 */
export function heapBytes(what, ...factors) {
  let n = 1;
  for (const f of factors) {
    if (!Number.isSafeInteger(f) || f < 0) throw new MembaError(ErrorCodes.INTERNAL, `${what}: bad size factor ${describe(f)}`);
    n *= f;
  }
  if (!(n < MAX_HEAP_BYTES)) throw oom(`${what} needs ${formatBytes(n)}, more than the 4 GB WASM heap holds`);
  return n;
}

/** A copy of a heap view as a JS typed array; a copy too large for the JS engine is 'oom'. */
export function copyOut(view, what) {
  try {
    return view.slice();
  } catch (err) {
    if (err instanceof RangeError) throw new MembaError(ErrorCodes.OOM, `${what}: no memory for a copy of ${view.length} values`, { cause: err });
    throw err;
  }
}

/** The length of an array-like, checked (a safe integer >= 0), so that nothing sized from it
 * throws a RangeError; null when v is not array-like. */
function lengthOf(v) {
  if (v == null || typeof v !== 'object' || typeof v.length !== 'number') return null;
  return Number.isSafeInteger(v.length) && v.length >= 0 ? v.length : null;
}

/**
 * Normalises `ids` (one sequence, or an array of equal-length sequences) to a flat Int32Array.
 * At most MAX_TOKENS tokens in all (B * L).
 * @returns {{ flat: Int32Array, B: number, L: number }}
 */
export function toIdBatch(ids, vocabSize, what = 'ids') {
  const n = lengthOf(ids);
  if (n === null) throw invalid(`${what} must be an array or Int32Array of token ids (or an array of such)`);
  const nested = n > 0 && typeof ids[0] === 'object' && ids[0] !== null;
  const rows = nested ? ids : [ids];
  const B = nested ? n : 1;
  const L = nested ? lengthOf(rows[0]) ?? 0 : n;
  if (B === 0 || L === 0) throw invalid(`${what} is empty`);
  if (B * L > MAX_TOKENS) throw invalid(`${what} has ${B} x ${L} tokens, more than the ${MAX_TOKENS} one call takes`);
  const flat = new Int32Array(B * L);
  for (let b = 0; b < B; b++) {
    const row = rows[b];
    if (row == null || typeof row === 'string' || lengthOf(row) === null) throw invalid(`${what}[${b}] is not a sequence of token ids`);
    if (row.length !== L) throw invalid(`${what}: sequences must have equal length (${row.length} vs ${L})`);
    if (row instanceof Int32Array) {
      // the fast path of long texts: one range check per value, no conversions
      for (let t = 0; t < L; t++) {
        const v = row[t];
        if (v < 0 || v >= vocabSize) throw invalid(`token id ${v} at ${what}${nested ? `[${b}]` : ''}[${t}] is out of range [0, ${vocabSize})`);
      }
      flat.set(row, b * L);
      continue;
    }
    for (let t = 0; t < L; t++) {
      const v = row[t];
      if (typeof v !== 'number' || !Number.isInteger(v))
        throw invalid(`${what}${nested ? `[${b}]` : ''}[${t}] = ${describe(v)} is not an integer token id`);
      if (v < 0 || v >= vocabSize)
        throw invalid(`token id ${v} at ${what}${nested ? `[${b}]` : ''}[${t}] is out of range [0, ${vocabSize})`);
      flat[b * L + t] = v;
    }
  }
  return { flat, B, L };
}

/** Token ids of one call that takes a plain list (decode, stopTokens): an array-like of integer
 * ids in [0, vocabSize), checked without building anything first. */
export function toIdList(ids, vocabSize, what) {
  const n = lengthOf(ids);
  if (n === null || typeof ids === 'string') throw invalid(`${what} must be an array of token ids, got ${describe(ids)}`);
  if (n > MAX_TOKENS) throw invalid(`${what} has ${n} ids, more than the ${MAX_TOKENS} one call takes`);
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    const v = ids[i];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= vocabSize)
      throw invalid(`${what}[${i}] = ${describe(v)} is not a token id in [0, ${vocabSize})`);
    out[i] = v;
  }
  return out;
}

/** The index of the first NaN / Inf of a typed array, or -1. */
export function firstNonFinite(a) {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i])) return i;
  return -1;
}

/** A typed array (Int32Array by default) that grows, doubling, as values are appended: long
 * token streams are built without arrays of JS numbers and without copying them several times. */
export class GrowableArray {
  constructor(Type = Int32Array, capacity = 1024) {
    this.data = new Type(Math.max(16, capacity));
    this.length = 0;
  }

  _reserve(n) {
    if (this.length + n <= this.data.length) return;
    let cap = this.data.length;
    while (cap < this.length + n) cap *= 2;
    const grown = new this.data.constructor(cap);
    grown.set(this.data.subarray(0, this.length));
    this.data = grown;
  }

  push(v) {
    this._reserve(1);
    this.data[this.length++] = v;
  }

  /** Appends an array or typed array of values (a loop inside TypedArray.set: no spread). */
  append(values) {
    this._reserve(values.length);
    this.data.set(values, this.length);
    this.length += values.length;
  }

  /** Appends n copies of v. */
  fill(v, n) {
    this._reserve(n);
    this.data.fill(v, this.length, this.length + n);
    this.length += n;
  }

  last() {
    return this.length ? this.data[this.length - 1] : undefined;
  }

  /** The values: a view when little capacity is unused, else a trimmed copy. */
  result() {
    const view = this.data.subarray(0, this.length);
    return this.data.length - this.length > this.data.length / 8 ? view.slice() : view;
  }
}

/** Texts up to this many characters are tokenised in one call; longer ones in pieces of about it. */
export const TEXT_PIECE_CHARS = 1 << 16;

/**
 * Where a long text is cut for tokenising in pieces: before a space that follows a non-space
 * character and precedes an ASCII letter or digit. Byte-level BPE pre-tokenisers (GPT-2's regex,
 * which GPT-NeoX / Mamba tokenizers use) always start a token at such a space (" word"), and a
 * piece that starts with a space gets no added prefix space, so the pieces' tokens are exactly
 * the whole text's. A text without such a space in reach stays one piece.
 * @returns {Generator<string>}
 */
export function* textPieces(text, pieceChars = TEXT_PIECE_CHARS) {
  if (text.length <= 2 * pieceChars) {
    yield text;
    return;
  }
  const cut = /[^\s] [A-Za-z0-9]/g;
  let start = 0;
  while (text.length - start > pieceChars) {
    cut.lastIndex = start + pieceChars;
    const m = cut.exec(text);
    if (!m) break;
    const p = m.index + 1; // the space
    yield text.slice(start, p);
    start = p;
  }
  yield text.slice(start);
}
