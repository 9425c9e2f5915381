// eval.js: measuring a model (with its active adapter, or none) on text and on tasks:
// perplexity by the standard sliding-window recipe (Hugging Face, "Perplexity of fixed-length
// models") and multiple-choice accuracy as lm-evaluation-harness scores it (acc, acc_norm).
// Both score through the model's scoreTokens machinery (mb_score, or the WebGPU split forward),
// one window or one choice per call, pinned to the adapter active when the call started; they
// yield to the event loop between windows / items so an AbortSignal (also across a Worker) lands
// there. Mamba.perplexity / Mamba.evaluate (mamba.js) are thin wrappers around these functions.
// Deliberately not here: generation-based tasks, few-shot prompt building, dataset downloads.
import { MembaError, ErrorCodes, throwIfAborted } from './errors.js';
import { toIdBatch, invalid, yieldToEventLoop, options, checkInt, checkFunction, checkSignal } from './ids.js';

/** Window length of perplexity() when none is given (capped to the text). */
export const DEFAULT_PPL_SEQ_LEN = 1024;

/** The options object (null / undefined: the defaults) with its signal and onProgress checked. */
function checkCommon(opts, what) {
  opts = options(opts, what);
  checkFunction(opts.onProgress, `${what}: onProgress`);
  checkSignal(opts.signal, `${what}: signal`);
  return opts;
}

function needTokenizer(model, what) {
  if (!model.hasTokenizer) throw new MembaError(ErrorCodes.UNSUPPORTED, `${what} of text needs a model with a tokenizer.json (pass token ids instead)`);
}

function checkAdapter(adapter) {
  if (adapter && (adapter._disposed || !adapter._handle)) throw new MembaError(ErrorCodes.DISPOSED, 'the adapter was disposed during the evaluation');
}

/**
 * The windows of the sliding-window recipe over `total` tokens: each [begin, end) is at most
 * seqLen tokens, begins advance by stride, and a window scores positions from..end-1 (window
 * coordinates from = first scored position - begin): the first window scores tokens 1..end-1;
 * a later one the tokens past the previous window's end, conditioned on the overlap. Without an
 * overlap (stride = seqLen) a window's first token has no context inside it and is not scored
 * (as in the Hugging Face guide), so tokens = total - windows; with stride < seqLen every token
 * but the first is scored exactly once (tokens = total - 1).
 * @returns {{ begin: number, end: number, from: number }[]}
 */
export function perplexityWindows(total, seqLen, stride) {
  return Array.from(eachWindow(total, seqLen, stride));
}

/** perplexityWindows one at a time: a long text with a small stride has millions of windows. */
function* eachWindow(total, seqLen, stride) {
  const S = Math.min(seqLen, total);
  let prevEnd = 0;
  for (let begin = 0; ; begin += stride) {
    const end = Math.min(begin + S, total);
    const from = Math.max(1, prevEnd - begin);
    if (end - begin > from) yield { begin, end, from }; // (a last window of 1 token scores nothing)
    prevEnd = end;
    if (end === total) return;
  }
}

function countWindows(total, seqLen, stride) {
  let n = 0;
  for (const _ of eachWindow(total, seqLen, stride)) n++;
  return n;
}

/**
 * Perplexity of a text (or token ids) by the sliding-window recipe: see perplexityWindows.
 * nll = mean negative log-likelihood per scored token (natural log), perplexity = exp(nll).
 * @returns {Promise<{ perplexity: number, nll: number, tokens: number }>}
 */
export async function perplexity(model, input, opts) {
  model._alive();
  const { seqLen = DEFAULT_PPL_SEQ_LEN, stride, signal, onProgress } = checkCommon(opts, 'perplexity');
  checkInt(seqLen, 'perplexity: seqLen', 2);
  const step = checkInt(stride ?? seqLen, 'perplexity: stride', 1, seqLen);
  let flat;
  if (typeof input === 'string') {
    needTokenizer(model, 'perplexity');
    flat = model._encodeIds(input); // one Int32Array, however long the text
  } else {
    if (input != null && typeof input === 'object' && input.length > 0 && typeof input[0] === 'object')
      throw invalid('perplexity takes one text or one sequence of token ids');
    ({ flat } = toIdBatch(input, model.config.vocabSize, 'ids'));
  }
  const N = flat.length;
  if (N < 2) throw invalid(`perplexity needs at least 2 tokens, got ${N}`);
  throwIfAborted(signal);
  const adapter = model._adapter; // the whole run uses the adapter active at its start
  const windows = countWindows(N, seqLen, step);
  let sum = 0;
  let tokens = 0;
  let w = 0;
  for (const { begin, end, from } of eachWindow(N, seqLen, step)) {
    if (w > 0) {
      await yieldToEventLoop();
      throwIfAborted(signal);
    }
    model._alive();
    checkAdapter(adapter);
    const { data } = await model._score(flat.subarray(begin, end), 1, end - begin, from, adapter);
    for (let t = from; t < end - begin; t++) sum -= data[t];
    tokens += end - begin - from;
    onProgress?.({ window: ++w, windows, tokens });
  }
  const nll = sum / tokens;
  return { perplexity: Math.exp(nll), nll, tokens };
}

const utf8 = new TextEncoder();

/** UTF-8 byte length of a string (what acc_norm divides by). */
export function utf8Length(s) {
  return utf8.encode(s).length;
}

/**
 * A task as items { context, choices, gold } (other fields dropped): an array of such objects,
 * or a JSONL string of them, one per line (blank lines skipped). Errors name the item
 * (task[i], invalid_argument) or the 1-based line (task line N, bad_format).
 * @returns {{ context: string, choices: string[], gold: number }[]}
 */
export function parseTask(task) {
  let entries; // [where, value, code]
  if (typeof task === 'string') {
    entries = [];
    const lines = task.replace(/^\uFEFF/, '').split(/\r?\n/);
    lines.forEach((line, i) => {
      if (line.trim() === '') return;
      let v;
      try {
        v = JSON.parse(line);
      } catch (err) {
        throw new MembaError(ErrorCodes.BAD_FORMAT, `task line ${i + 1}: not valid JSON (${err.message})`);
      }
      entries.push([`task line ${i + 1}`, v, ErrorCodes.BAD_FORMAT]);
    });
  } else if (Array.isArray(task)) {
    entries = task.map((v, i) => [`task[${i}]`, v, ErrorCodes.INVALID_ARGUMENT]);
  } else throw invalid('evaluate: task must be an array of { context, choices, gold } items or a JSONL string of them');
  if (entries.length === 0) throw invalid('evaluate: the task has no items');
  return entries.map(([where, v, code]) => {
    const bad = (msg) => new MembaError(code, `${where}: ${msg}`);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad('expected an object { context, choices, gold }');
    const { context, choices, gold } = v;
    if (typeof context !== 'string' || context.length === 0) throw bad('context must be a non-empty string');
    if (!Array.isArray(choices) || choices.length < 2) throw bad('choices must be an array of at least 2 strings');
    choices.forEach((c, j) => {
      if (typeof c !== 'string' || c.length === 0) throw bad(`choices[${j}] must be a non-empty string`);
    });
    if (!Number.isInteger(gold) || gold < 0 || gold >= choices.length)
      throw bad(`gold must be an integer index into choices, in [0, ${choices.length}), got ${JSON.stringify(gold)}`);
    return { context, choices: [...choices], gold };
  });
}

/** Index of the largest value; the lowest index wins ties (numpy argmax). */
function argmax(xs) {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/**
 * Multiple-choice accuracy as lm-evaluation-harness scores it: per item and choice, the
 * log-likelihood of the choice (tokenised as given, so it carries its own separator: " answer")
 * after the context (tokenised separately); acc = fraction of items whose argmax is gold;
 * acc_norm = the same with each log-likelihood divided by the choice's UTF-8 byte length.
 * @returns {Promise<{ acc: number, acc_norm: number, n: number }>}
 */
export async function evaluate(model, task, opts) {
  model._alive();
  const { signal, onProgress, limit } = checkCommon(opts, 'evaluate');
  if (limit !== undefined) checkInt(limit, 'evaluate: limit', 1);
  const items = parseTask(task);
  needTokenizer(model, 'evaluate');
  throwIfAborted(signal);
  const n = Math.min(items.length, limit ?? Infinity);
  const adapter = model._adapter;
  let correct = 0;
  let correctNorm = 0;
  for (let i = 0; i < n; i++) {
    if (i > 0) {
      await yieldToEventLoop();
      throwIfAborted(signal);
    }
    const { context, choices, gold } = items[i];
    const ctx = model._encodeIds(context);
    const lls = [];
    for (const choice of choices) {
      model._alive();
      checkAdapter(adapter);
      const cont = model._encodeIds(choice);
      const ids = new Int32Array(ctx.length + cont.length);
      ids.set(ctx);
      ids.set(cont, ctx.length);
      const { data } = await model._score(ids, 1, ids.length, ctx.length, adapter);
      let ll = 0;
      for (let t = ctx.length; t < ids.length; t++) ll += data[t];
      lls.push(ll);
    }
    if (argmax(lls) === gold) correct++;
    if (argmax(lls.map((ll, j) => ll / utf8Length(choices[j]))) === gold) correctNorm++;
    onProgress?.({ item: i + 1, items: n, acc: correct / (i + 1), acc_norm: correctNorm / (i + 1) });
  }
  return { acc: correct / n, acc_norm: correctNorm / n, n };
}
