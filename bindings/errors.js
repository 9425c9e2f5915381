// errors.js: the one error class every memba-wasm API throws, its stable codes, and abort helpers.
// It is deliberately not a logging or reporting layer: nothing here prints, retries or recovers.
// Callers branch on `err.code` (a value of ErrorCodes), never on message text, which may change.

/**
 * Stable error codes. The message says what went wrong in words; the code says which kind it was.
 * - bad_format:       a file is malformed (safetensors header, JSON, missing tensor, bad index).
 * - shape_mismatch:   tensor shapes disagree with each other or with config.json.
 * - unsupported:      a valid input this engine does not handle (dtype, pickle checkpoint, Mamba-2...).
 * - not_found:        a required file or directory does not exist.
 * - network:          HTTP error status (other than 404) or a transport failure.
 * - invalid_argument: the caller passed a value of the wrong type, out of range, NaN or Infinity.
 * - oom:              memory for a buffer could not be allocated, or its size does not fit the 4 GB WASM heap.
 * - aborted:          an AbortSignal fired (such errors also have name 'AbortError').
 * - disposed:         an object was used after dispose().
 * - busy:             a synchronous call while the model runs an asynchronous WebGPU call (never on WASM).
 * - non_finite:       a training batch gave a NaN/Inf loss or gradient, or its update would leave NaN/Inf in
 *                     the adapter or its optimizer moments (rejected, nothing changed).
 * - internal:         a bug in memba-wasm.
 */
export const ErrorCodes = Object.freeze({
  BAD_FORMAT: 'bad_format',
  SHAPE_MISMATCH: 'shape_mismatch',
  UNSUPPORTED: 'unsupported',
  NOT_FOUND: 'not_found',
  NETWORK: 'network',
  INVALID_ARGUMENT: 'invalid_argument',
  OOM: 'oom',
  ABORTED: 'aborted',
  DISPOSED: 'disposed',
  NON_FINITE: 'non_finite',
  BUSY: 'busy',
  INTERNAL: 'internal',
});

/** The error class of memba-wasm: an Error with a stable `code` (one of ErrorCodes). */
export class MembaError extends Error {
  /**
   * @param {string} code one of the ErrorCodes values
   * @param {string} message human-readable description (names the file / tensor concerned)
   * @param {{cause?: unknown}} [options] standard Error options, e.g. the underlying cause
   */
  constructor(code, message, options) {
    super(message, options);
    this.name = 'MembaError';
    /** @type {string} */
    this.code = code;
  }
}

/**
 * Builds the error an aborted operation rejects with: a MembaError with code 'aborted' whose name is
 * 'AbortError', so that both `err instanceof MembaError` and `err.name === 'AbortError'` hold.
 * The message comes from `signal.reason` when it has one; the reason is kept as `cause`.
 * @param {AbortSignal} [signal]
 * @returns {MembaError}
 */
export function abortError(signal) {
  const reason = signal?.reason;
  let message = 'The operation was aborted';
  if (reason instanceof Error) {
    if (reason.message) message = reason.message;
  } else if (typeof reason === 'string') {
    if (reason) message = reason;
  } else if (reason !== undefined && reason !== null && typeof reason !== 'object') {
    message = String(reason);
  }
  const err = new MembaError(ErrorCodes.ABORTED, message, reason === undefined ? undefined : { cause: reason });
  err.name = 'AbortError';
  return err;
}

/**
 * Throws `abortError(signal)` when the signal has fired; does nothing for a missing signal.
 * @param {AbortSignal} [signal]
 */
export function throwIfAborted(signal) {
  if (signal?.aborted) throw abortError(signal);
}

/**
 * True for errors produced by an abort: ours (code 'aborted') and the platform's (name 'AbortError').
 * @param {unknown} err
 * @returns {boolean}
 */
export function isAbortError(err) {
  if (err === null || typeof err !== 'object') return false;
  return /** @type {any} */ (err).code === ErrorCodes.ABORTED || /** @type {any} */ (err).name === 'AbortError';
}
