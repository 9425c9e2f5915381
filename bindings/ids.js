// ids.js: small helpers shared by the API classes: token-id batches validated into flat
// Int32Arrays, the invalid-argument error, and a yield to the event loop between tokens.
// Deliberately not here: anything that touches the engine.
import { MembaError, ErrorCodes } from './errors.js';

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

/**
 * Normalises `ids` (one sequence, or an array of equal-length sequences) to a flat Int32Array.
 * @returns {{ flat: Int32Array, B: number, L: number }}
 */
export function toIdBatch(ids, vocabSize, what = 'ids') {
  if (ids == null || typeof ids !== 'object' || typeof ids.length !== 'number')
    throw invalid(`${what} must be an array or Int32Array of token ids (or an array of such)`);
  const nested = ids.length > 0 && typeof ids[0] === 'object' && ids[0] !== null;
  const rows = nested ? Array.from(ids) : [ids];
  const B = rows.length;
  const L = rows[0]?.length ?? 0;
  if (B === 0 || L === 0) throw invalid(`${what} is empty`);
  const flat = new Int32Array(B * L);
  rows.forEach((row, b) => {
    if (row == null || typeof row.length !== 'number' || typeof row === 'string')
      throw invalid(`${what}[${b}] is not a sequence of token ids`);
    if (row.length !== L) throw invalid(`${what}: sequences must have equal length (${row.length} vs ${L})`);
    for (let t = 0; t < L; t++) {
      const v = row[t];
      if (typeof v !== 'number' || !Number.isInteger(v))
        throw invalid(`${what}${nested ? `[${b}]` : ''}[${t}] = ${String(v)} is not an integer token id`);
      if (v < 0 || v >= vocabSize)
        throw invalid(`token id ${v} at ${what}${nested ? `[${b}]` : ''}[${t}] is out of range [0, ${vocabSize})`);
      flat[b * L + t] = v;
    }
  });
  return { flat, B, L };
}

