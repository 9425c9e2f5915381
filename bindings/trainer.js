// trainer.js: fine-tuning the active Memba adapter on the client: one step at a time (loss,
// gradients, AdamW with PyTorch semantics, global-norm clipping, gradient accumulation, constant or
// warmup + cosine schedule, seeded dropout), a `fit` loop over text, and save/restore of the whole
// training state so a resumed run reproduces the uninterrupted one exactly.
// Deliberately not here: the math (src/train/, src/core/block.c) and the Worker transport (worker.js).
import { MembaError, ErrorCodes, throwIfAborted } from './errors.js';
import { createRng } from './sampler.js';
import { peftName } from './adapter.js';
import { TARGET_NAMES, LoraMatrix, AdapterBlock } from './abi.js';
import { invalid, options, checkInt, checkNumber, checkFunction, checkSignal, describe, GrowableArray } from './ids.js';

/** The largest learning rate a trainer takes: AdamW moves each value by about lr per step, so
 * more than 1 only destroys a LoRA adapter (lr 1e30 leaves its values near 1e30). */
export const MAX_LR = 1;

/** Learning rate at optimizer step k (1-based) for a schedule. */
export function scheduleLr(lr, schedule, k) {
  if (!schedule || schedule === 'constant' || schedule.type === 'constant') {
    const warm = schedule?.warmupSteps ?? 0;
    return warm > 0 && k <= warm ? (lr * k) / warm : lr;
  }
  const { warmupSteps = 0, totalSteps, minLr = 0 } = schedule;
  if (k <= warmupSteps) return (lr * k) / warmupSteps;
  const p = Math.min(1, (k - warmupSteps) / Math.max(1, totalSteps - warmupSteps));
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * p));
}

function checkSchedule(s, lr) {
  if (s === undefined || s === null || s === 'constant') return 'constant';
  if (typeof s !== 'object' || Array.isArray(s)) throw invalid(`schedule must be 'constant' or { type: 'constant' | 'cosine', ... }, got ${describe(s)}`);
  if (s.type !== 'constant' && s.type !== 'cosine') throw invalid(`schedule.type must be 'constant' or 'cosine', got ${describe(s.type)}`);
  checkInt(s.warmupSteps ?? 0, 'schedule.warmupSteps', 0);
  if (s.type === 'cosine') {
    if (s.totalSteps === undefined) throw invalid('a cosine schedule needs totalSteps (an integer >= 1)');
    checkInt(s.totalSteps, 'schedule.totalSteps', 1);
  } else if (s.totalSteps !== undefined) checkInt(s.totalSteps, 'schedule.totalSteps', 1);
  if (s.minLr !== undefined) checkNumber(s.minLr, 'schedule.minLr', { min: 0, max: lr });
  return Object.freeze({ ...s });
}

/** The trainer's options, validated (finite, in ranges that cannot destroy the adapter), with defaults. */
function trainerOptions(opts) {
  const { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0, clipNorm = 0, accumulate = 1, schedule = 'constant', seed = 0, memoryBudget = 256 * 2 ** 20 } = options(opts, 'createTrainer');
  checkNumber(lr, 'lr', { above: 0, max: MAX_LR });
  if (!Array.isArray(betas) || betas.length !== 2) throw invalid(`betas must be two numbers in [0, 1), got ${describe(betas)}`);
  // betas are float32 in C: 0.99999999 would round to 1 there (no averaging, a bias correction of 0)
  for (let i = 0; i < 2; i++) {
    checkNumber(betas[i], `betas[${i}]`, { min: 0, below: 1 });
    if (Math.fround(betas[i]) >= 1) throw invalid(`betas[${i}] = ${betas[i]} is 1 as a float32`);
  }
  checkNumber(eps, 'eps', { above: 0, max: 1 });
  if (!(Math.fround(eps) > 0)) throw invalid(`eps ${eps} is 0 as a float32`);
  // decoupled weight decay multiplies each value by (1 - lr * weightDecay) every step: past 1 it
  // flips signs and grows without bound
  checkNumber(weightDecay, 'weightDecay', { min: 0 });
  if (lr * weightDecay > 1) throw invalid(`lr * weightDecay must be <= 1 (each step scales the adapter by 1 - lr * weightDecay), got ${lr} * ${weightDecay}`);
  checkNumber(clipNorm, 'clipNorm (0 = no clipping)', { min: 0, max: 3e38 });
  checkInt(accumulate, 'accumulate', 1);
  checkInt(seed, 'seed', Number.MIN_SAFE_INTEGER);
  checkNumber(memoryBudget, 'memoryBudget (bytes)', { min: 0 });
  return Object.freeze({ lr, betas: [betas[0], betas[1]], eps, weightDecay, clipNorm, accumulate, schedule: checkSchedule(schedule, lr), seed, memoryBudget });
}

/** ids [B][L] (or [L]) and labels of the same shape; labels default to ids shifted left, -100 last. */
function batchOf(batch, vocabSize, toIdBatch) {
  if (batch === null || typeof batch !== 'object' || Array.isArray(batch))
    throw invalid(`step takes a batch { ids, labels? }, got ${describe(batch)}`);
  const { ids, labels } = batch;
  const x = toIdBatch(ids, vocabSize, 'ids');
  let y;
  if (labels === undefined) {
    y = new Int32Array(x.flat.length);
    for (let b = 0; b < x.B; b++)
      for (let t = 0; t < x.L; t++) y[b * x.L + t] = t + 1 < x.L ? x.flat[b * x.L + t + 1] : -100;
  } else {
    if (labels === null || typeof labels !== 'object' || typeof labels.length !== 'number')
      throw invalid(`labels must be an array of token ids / -100 (or an array of such), got ${describe(labels)}`);
    const rows = x.B === 1 && !(typeof labels[0] === 'object' && labels[0] !== null) ? [labels] : labels;
    if (rows.length !== x.B) throw invalid(`labels has ${rows.length} rows, ids ${x.B}`);
    y = new Int32Array(x.flat.length);
    for (let b = 0; b < x.B; b++) {
      const row = rows[b];
      if (!row || typeof row !== 'object' || row.length !== x.L) throw invalid(`labels[${b}] must have length ${x.L}`);
      for (let t = 0; t < x.L; t++) {
        const v = row[t];
        if (!Number.isInteger(v) || (v !== -100 && (v < 0 || v >= vocabSize))) throw invalid(`label ${describe(v)} at [${b}][${t}] is not a token id or -100`);
        y[b * x.L + t] = v;
      }
    }
  }
  return { ...x, labels: y };
}

/**
 * Packs a stream of n tokens into windows of L inputs (L targets each) so that every target
 * (tokens 1..n-1) is trained exactly once: windows start at 0, L, 2L, ...; the last one is moved
 * back to end at the last token, and its targets that the window before already covered are
 * masked. `from` is the first counted target of a window, as an index into its L + 1 tokens
 * (ids[start .. start + L]); 1 for every window but possibly the last.
 * @returns {{ start: number, from: number }[]}
 */
export function packWindows(n, L) {
  const out = [];
  let covered = 0; // targets 1..covered are in a window
  for (let s = 0; covered < n - 1; s += L) {
    const start = s + L > n - 1 ? Math.max(0, n - 1 - L) : s;
    out.push({ start, from: covered - start + 1 });
    covered = start + L;
  }
  return out;
}

/** The Alpaca prompt template (as LLM-Adapters' commonsense_170k fine-tuning uses it). */
export const ALPACA_PROMPT = {
  withInput: 'Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n',
  noInput: 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n',
};

/** An instruction example's prompt (the template filled in) and output; example i for errors. */
export function instructionPrompt(ex, i = 0) {
  const { instruction, input = '', output } = ex;
  if (typeof instruction !== 'string' || typeof output !== 'string' || typeof input !== 'string')
    throw invalid(`example ${i}: an instruction example needs string fields instruction and output (and optionally input)`);
  const t = input ? ALPACA_PROMPT.withInput : ALPACA_PROMPT.noInput;
  return { prompt: t.replace('{instruction}', instruction).replace('{input}', input), output };
}

/** tokens [from, to) of a stream, with their mask */
function sliceStream(st, from, to) {
  return { ids: st.ids.subarray(from, to), mask: st.mask ? st.mask.subarray(from, to) : null };
}

/** packWindows of a stream with each window's counted targets; windows with nothing to count
 * (an instruction prompt only) are left out. Labels are made per batch (windowLabels), so a
 * long text is held once, as its Int32Array of ids. */
function labelledWindows(st, L) {
  const out = [];
  for (const w of packWindows(st.ids.length, L)) {
    let counted = 0;
    for (let t = Math.max(0, w.from - 1); t < L; t++) if (!st.mask || st.mask[w.start + t + 1] === 1) counted++;
    if (counted > 0) out.push({ start: w.start, from: w.from, counted });
  }
  return out;
}

/** A window's labels [L]: the next token where it counts, -100 elsewhere. */
function windowLabels(st, w, L) {
  const labels = new Int32Array(L);
  for (let t = 0; t < L; t++) {
    const i = w.start + t + 1;
    labels[t] = t >= w.from - 1 && (!st.mask || st.mask[i] === 1) ? st.ids[i] : -100;
  }
  return labels;
}

/** A copy of `items` in a seeded random order (Fisher-Yates). */
function shuffled(items, seed) {
  const order = items.slice();
  const rng = createRng(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** fit's options, validated, with their defaults. */
function fitOptions(opts) {
  opts = options(opts, 'fit');
  const { epochs = 1, batchSize = 1, seqLen = 128, onProgress, signal, yieldEvery = 1, validation, validationSplit = 0, evalEvery = 0, earlyStopping = null } = opts;
  checkInt(epochs, 'epochs', 1);
  checkInt(batchSize, 'batchSize', 1);
  checkInt(seqLen, 'seqLen', 1);
  checkInt(yieldEvery, 'yieldEvery', 1);
  checkFunction(onProgress, 'onProgress');
  checkSignal(signal);
  checkNumber(validationSplit, 'validationSplit', { min: 0, below: 1 });
  if (validationSplit > 0 && validation !== undefined) throw invalid('give validation or validationSplit, not both');
  checkInt(evalEvery, 'evalEvery (0 = after every epoch)', 0);
  let patience = null;
  let minDelta = 0;
  if (earlyStopping !== null && earlyStopping !== undefined && earlyStopping !== false) {
    if (earlyStopping !== true && (typeof earlyStopping !== 'object' || Array.isArray(earlyStopping)))
      throw invalid(`earlyStopping must be true or { patience, minDelta }, got ${describe(earlyStopping)}`);
    const es = typeof earlyStopping === 'object' ? earlyStopping : {};
    patience = checkInt(es.patience ?? 1, 'earlyStopping.patience', 1);
    minDelta = checkNumber(es.minDelta ?? 0, 'earlyStopping.minDelta', { min: 0 });
  }
  const hasVal = validation !== undefined || validationSplit > 0;
  if (patience !== null && !hasVal) throw invalid('earlyStopping needs validation data or a validationSplit');
  if (opts.keepBest !== undefined && typeof opts.keepBest !== 'boolean') throw invalid(`keepBest must be true or false, got ${describe(opts.keepBest)}`);
  const keepBest = opts.keepBest ?? hasVal;
  if (keepBest && !hasVal) throw invalid('keepBest needs validation data or a validationSplit');
  return { epochs, batchSize, seqLen, onProgress, signal, yieldEvery, validation, validationSplit, evalEvery, patience, minDelta, keepBest: !!keepBest };
}

export class Trainer {
  /** @private use model.createTrainer */
  constructor(model, adapter, opts, toIdBatch) {
    const o = trainerOptions(opts);
    if (!adapter?.config.lora) throw new MembaError(ErrorCodes.UNSUPPORTED, 'the active adapter has no LoRA tensors to train');
    this._model = model;
    this._engine = model._engine;
    this.adapter = adapter;
    this.options = o;
    const { seed } = o;
    this._toIdBatch = toIdBatch;
    this.stepCount = 0; // optimizer steps done
    this._micro = 0; // micro-batches accumulated towards the next step
    this._calls = 0; // backward passes done (dropout seeds)
    this._dataRng = seed >>> 0; // the state of fit's shuffling RNG
    this._lastLoss = null;
  }

  _alive() {
    this._model._alive();
    if (this.adapter._disposed || !this.adapter._handle) throw new MembaError(ErrorCodes.DISPOSED, "the trainer's adapter has been disposed");
    if (this.adapter.merged) this.adapter.unmerge();
  }

  /** A whole block of the adapter (AdapterBlock: tensors, gradients, AdamW moments) as a heap view. */
  _block(which) {
    const e = this._engine;
    const { ptr, numel } = e.mb_adapter_block(this.adapter._handle, which);
    return ptr ? e.f32(ptr, numel) : null;
  }

  /**
   * One training step on a batch: forward, loss, gradients through the whole frozen model, and
   * (every `accumulate` calls) an AdamW update. Returns the loss before the update and the global
   * gradient norm (null while accumulating). A batch whose loss or gradient is NaN/Inf is rejected
   * (code 'non_finite') and the adapter is left unchanged; so is an update that would leave NaN/Inf
   * in the adapter tensors or the AdamW moments (the C core refuses it whole). `batch` is required: { ids, labels? }.
   */
  async step(batch) {
    this._alive();
    const parsed = batchOf(batch, this._model.config.vocabSize, this._toIdBatch);
    return this._model._exclusive(async () => this._step(parsed), this.adapter);
  }

  _step({ flat, labels, B, L }) {
    const e = this._engine;
    const h = this.adapter._handle;
    this._model._bind(this.adapter);
    e.mb_train_set_budget(this._model._handle, this.options.memoryBudget);
    if (this._micro === 0) e.mb_adapter_zero_grad(h, { what: 'zero grad' });
    const idp = e.putIds(flat);
    const lp = e.putIds(labels);
    let loss;
    try {
      loss = e.mb_train_backward(this._model._handle, idp, lp, B, L, this._calls >>> 0, { what: 'train step' });
    } finally {
      e.free(idp);
      e.free(lp);
    }
    this._calls++;
    const reject = (what) => {
      this._micro = 0;
      try {
        e.mb_adapter_zero_grad(h);
      } catch {} // the batch's error is the one to report
      return new MembaError(ErrorCodes.NON_FINITE, `${what} is not finite (NaN or Inf): the batch was rejected and the adapter left unchanged`);
    };
    if (!Number.isFinite(loss)) throw reject(`the loss (${loss})`);
    this._micro++;
    this._lastLoss = loss;
    if (this._micro < this.options.accumulate) return { loss, gradNorm: null, step: this.stepCount, lr: null };
    const { accumulate, lr, betas, eps, weightDecay, clipNorm, schedule } = this.options;
    if (accumulate > 1) {
      const g = this._block(AdapterBlock.GRADS);
      for (let i = 0; i < g.length; i++) g[i] /= accumulate;
    }
    const gradNorm = e.mb_adapter_grad_norm(h);
    if (!Number.isFinite(gradNorm)) throw reject(`the gradient norm (${gradNorm})`);
    const k = this.stepCount + 1;
    const lrk = scheduleLr(lr, schedule, k);
    const opt = { lr: lrk, beta1: betas[0], beta2: betas[1], eps, weight_decay: weightDecay, clip: clipNorm };
    // The C core refuses an update that would leave NaN/Inf in the tensors or the moments (a
    // finite gradient can still overflow float32 in g^2 or the update): MB_ERR_NON_FINITE, and
    // nothing was written.
    try {
      e.mb_adamw_step(h, opt, k, { what: 'AdamW step' });
    } catch (err) {
      if (err.code === ErrorCodes.NON_FINITE) throw reject('the update');
      throw err;
    }
    this.stepCount = k;
    this._micro = 0;
    return { loss, gradNorm, step: k, lr: lrk };
  }

  /** Memory of the last step: layers whose intermediates were kept (the rest were recomputed), bytes. */
  memory() {
    this._alive();
    const e = this._engine;
    return { storedLayers: e.mb_train_stored_layers(this._model._handle), activationBytes: e.mb_model_activation_bytes(this._model._handle), heapBytes: e.heapBytes };
  }

  /** Gradients of the last step (before its update), by PEFT tensor name. */
  gradients() {
    this._alive();
    const out = {};
    const lora = this.adapter.config.lora;
    const e = this._engine;
    for (let l = 0; l < this._model.config.nLayer; l++)
      for (const t of lora.targets)
        for (const w of ['A', 'B']) {
          const { ptr, numel } = e.mb_adapter_grad(this.adapter._handle, TARGET_NAMES[t], l, LoraMatrix[w]);
          out[peftName(l, t, w)] = e.f32(ptr, numel).slice();
        }
    return out;
  }

  /** The whole training state (adapter tensors, AdamW moments, step, RNG): structured-clonable. */
  saveState() {
    this._alive();
    const m1 = this.stepCount > 0 ? this._block(AdapterBlock.ADAM_M1) : null;
    return {
      format: 'memba-trainer-v1',
      options: { ...this.options, schedule: this.options.schedule },
      stepCount: this.stepCount,
      micro: this._micro,
      calls: this._calls,
      dataRng: this._dataRng,
      tensors: this._block(AdapterBlock.TENSORS).slice(),
      grad: this._micro > 0 ? this._block(AdapterBlock.GRADS).slice() : null,
      m1: m1 ? m1.slice() : null,
      m2: m1 ? this._block(AdapterBlock.ADAM_M2).slice() : null,
    };
  }

  /**
   * Restores a state from saveState() (same adapter shape). Everything is checked before
   * anything is written (types, counters, every array's length, finite values, second moments
   * >= 0), so a bad state is an 'invalid_argument' that leaves the trainer and the adapter as
   * they were.
   */
  restoreState(state) {
    this._alive();
    if (state === null || typeof state !== 'object' || state.format !== 'memba-trainer-v1')
      throw invalid('restoreState takes a state from trainer.saveState() (format memba-trainer-v1)');
    const { stepCount, micro, calls, dataRng, tensors, grad = null, m1 = null, m2 = null } = state;
    checkInt(stepCount, 'state.stepCount', 0);
    checkInt(micro, 'state.micro', 0, this.options.accumulate - 1);
    checkInt(calls, 'state.calls', 0);
    checkInt(dataRng, 'state.dataRng', 0, 2 ** 32 - 1);
    const n = this._block(AdapterBlock.TENSORS).length;
    const values = (v, name, { optional = false, nonNegative = false } = {}) => {
      if (v === null && optional) return;
      if (!(v instanceof Float32Array)) throw invalid(`state.${name} must be a Float32Array${optional ? ' or null' : ''}, got ${describe(v)}`);
      if (v.length !== n) throw invalid(`state.${name} holds ${v.length} values, this adapter ${n} (a state of another adapter shape?)`);
      for (let i = 0; i < n; i++)
        if (!Number.isFinite(v[i]) || (nonNegative && v[i] < 0)) throw invalid(`state.${name}[${i}] = ${v[i]} is not ${nonNegative ? 'a finite number >= 0' : 'finite'}`);
    };
    values(tensors, 'tensors');
    values(grad, 'grad', { optional: true });
    if (micro > 0 && grad === null) throw invalid('state.micro > 0 (a step half accumulated) needs state.grad');
    values(m1, 'm1', { optional: true });
    values(m2, 'm2', { optional: true, nonNegative: true });
    if ((m1 === null) !== (m2 === null)) throw invalid('state.m1 and state.m2 are both Float32Arrays or both null');
    if (stepCount > 0 && m1 === null) throw invalid('state.stepCount > 0 needs the AdamW moments m1 and m2');
    // checked: now write
    const e = this._engine;
    this._block(AdapterBlock.TENSORS).set(tensors);
    e.mb_adapter_zero_grad(this.adapter._handle, { what: 'zero grad' });
    if (grad) this._block(AdapterBlock.GRADS).set(grad);
    if (m1) {
      this._block(AdapterBlock.ADAM_M1).set(m1);
      this._block(AdapterBlock.ADAM_M2).set(m2);
    } else {
      e.mb_adapter_reset_optimizer(this.adapter._handle, { what: 'reset' });
    }
    this.stepCount = stepCount;
    this._micro = micro;
    this._calls = calls;
    this._dataRng = dataRng;
  }

  /**
   * Trains on text (a string, an array of strings, or an array of token-id arrays): tokenises,
   * packs the tokens into windows of seqLen (packWindows: every target of the text is trained
   * exactly once per epoch), shuffles the windows with a seeded RNG each epoch, and steps.
   * Validation: `validation` (the same kinds of data) or `validationSplit` (the last fraction of
   * the tokens, held out) is scored before training and after every epoch (or every `evalEvery`
   * steps), as the mean negative log-likelihood per target token and its perplexity.
   * `earlyStopping: { patience, minDelta }` stops after `patience` evaluations without an
   * improvement of more than minDelta; `keepBest` (default: on with validation) leaves the adapter
   * with the tensors of the best evaluation. onProgress gets { phase: 'train', step, epoch, loss,
   * gradNorm, lr, tokensPerSec, secondsLeft } after each step and { phase: 'eval', step, epoch,
   * trainLoss, trainPpl, valLoss, valPpl, best } after each evaluation.
   */
  async fit(data, opts) {
    this._alive();
    const o = fitOptions(opts);
    let train = this._stream(data);
    let val = o.validation !== undefined ? this._stream(o.validation) : null;
    if (o.validationSplit > 0) {
      const n = train.ids.length, nVal = Math.ceil(n * o.validationSplit);
      if (nVal < 2 || n - nVal < 2) throw invalid(`validationSplit ${o.validationSplit} leaves too few tokens (${n} in all)`);
      val = sliceStream(train, n - nVal, n);
      train = sliceStream(train, 0, n - nVal);
    }
    const tokens = train.ids;
    if (tokens.length < 2) throw invalid('not enough text to train on (need at least 2 tokens)');
    if (val && val.ids.length < 2) throw invalid('not enough validation text (need at least 2 tokens)');
    const L = Math.min(o.seqLen, tokens.length - 1);
    const windows = labelledWindows(train, L);
    if (windows.length === 0) throw invalid('nothing to train on: every target is masked (instruction examples need an output)');
    const valTokens = val?.ids ?? null;
    const valLabels = val ? (w) => windowLabels(val, w, valL) : null;
    const valL = val ? Math.min(o.seqLen, val.ids.length - 1) : 0;
    const valWindows = val ? labelledWindows(val, valL) : null;
    if (valWindows && valWindows.length === 0) throw invalid('nothing to validate on: every validation target is masked');
    const stepsPerEpoch = Math.ceil(windows.length / o.batchSize);
    const totalSteps = stepsPerEpoch * o.epochs;
    const losses = [];
    const evals = [];
    let seen = 0;
    let best = null;
    let bestTensors = null;
    let sinceBest = 0;
    let stoppedEarly = false;
    let epochLoss = 0;
    let epochTargets = 0;
    const t0 = performance.now();
    let evalSecs = 0; // time spent scoring held-out data: not in tokens/s, estimated apart in secondsLeft
    let evalCount = 0;
    const evaluate = async (ep) => {
      const te = performance.now();
      const { nll, tokens: n } = await this._validationNll(valTokens, valWindows, valLabels, valL, o.batchSize, o.signal);
      const trainLoss = epochTargets > 0 ? epochLoss / epochTargets : null;
      const e = { step: this.stepCount, epoch: ep, trainLoss, trainPpl: trainLoss === null ? null : Math.exp(trainLoss), valLoss: nll, valPpl: Math.exp(nll), valTokens: n };
      evals.push(e);
      evalSecs += (performance.now() - te) / 1000;
      evalCount++;
      if (!best || nll < best.valLoss - o.minDelta) {
        best = e;
        sinceBest = 0;
        if (o.keepBest) bestTensors = this._block(AdapterBlock.TENSORS).slice();
      } else sinceBest++;
      o.onProgress?.({ phase: 'eval', ...e, best: { step: best.step, valLoss: best.valLoss, valPpl: best.valPpl } });
      return o.patience !== null && sinceBest >= o.patience;
    };
    if (valTokens) await evaluate(-1);
    let k = 0;
    outer: for (let ep = 0; ep < o.epochs; ep++) {
      const order = shuffled(windows, this._dataRng);
      this._dataRng = (this._dataRng + 0x9e3779b9) >>> 0;
      epochLoss = 0;
      epochTargets = 0;
      for (let b = 0; b < order.length; b += o.batchSize) {
        throwIfAborted(o.signal);
        const batch = order.slice(b, b + o.batchSize);
        const ids = batch.map((w) => tokens.subarray(w.start, w.start + L));
        const labels = batch.map((w) => windowLabels(train, w, L));
        const counted = batch.reduce((n, w) => n + w.counted, 0);
        const r = await this.step({ ids, labels });
        losses.push(r.loss);
        seen += counted;
        epochLoss += r.loss * counted;
        epochTargets += counted;
        k++;
        const secs = (performance.now() - t0) / 1000 - evalSecs; // training time only
        const evalsLeft = !valTokens ? 0 : o.evalEvery > 0 ? Math.floor(totalSteps / o.evalEvery) - Math.floor(k / o.evalEvery) : o.epochs - ep;
        const secondsLeft = (secs / k) * (totalSteps - k) + (evalCount ? (evalSecs / evalCount) * evalsLeft : 0);
        o.onProgress?.({ phase: 'train', step: this.stepCount, epoch: ep, loss: r.loss, gradNorm: r.gradNorm, lr: r.lr, tokensPerSec: seen / secs, secondsLeft });
        if (valTokens && o.evalEvery > 0 && k % o.evalEvery === 0 && (await evaluate(ep))) {
          stoppedEarly = true;
          break outer;
        }
        if (losses.length % o.yieldEvery === 0) await new Promise((res) => setTimeout(res, 0));
      }
      if (valTokens && o.evalEvery === 0 && (await evaluate(ep))) {
        stoppedEarly = ep + 1 < o.epochs;
        break;
      }
    }
    if (bestTensors) this._block(AdapterBlock.TENSORS).set(bestTensors);
    const last = evals.at(-1) ?? null;
    const trainLoss = epochTargets > 0 ? epochLoss / epochTargets : null;
    return {
      steps: this.stepCount, losses, tokens: seen, seconds: (performance.now() - t0) / 1000, windows: windows.length,
      trainLoss, trainPpl: trainLoss === null ? null : Math.exp(trainLoss),
      valLoss: last?.valLoss ?? null, valPpl: last?.valPpl ?? null,
      evaluations: evals, best: best && { step: best.step, epoch: best.epoch, valLoss: best.valLoss, valPpl: best.valPpl },
      keptBest: !!bestTensors, stoppedEarly,
    };
  }

  /** Mean negative log-likelihood per counted target of labelled validation windows of L inputs
   * (forward only, with the adapter as it is now). */
  async _validationNll(tokens, windows, labelsOf, L, batchSize, signal) {
    let nll = 0;
    let n = 0;
    for (let b = 0; b < windows.length; b += batchSize) {
      throwIfAborted(signal);
      const batch = windows.slice(b, b + batchSize);
      const { data } = await this._model.scoreTokens(batch.map((w) => tokens.subarray(w.start, w.start + L + 1)), 1);
      batch.forEach((w, r) => {
        const labels = labelsOf(w);
        for (let t = 1; t <= L; t++) if (labels[t - 1] !== -100) nll -= data[r * (L + 1) + t];
        n += w.counted;
      });
    }
    return { nll: nll / n, tokens: n };
  }

  /**
   * Training data as one token stream and its target mask (null: every target counts). Parts:
   * text; token-id arrays; { text }; instruction examples { instruction, input?, output }
   * (commonsense_170k / Alpaca), formatted with the Alpaca template, with only the output (and the
   * EOS after it) as targets. Parts are joined by the EOS token when the model has one.
   */
  _stream(data) {
    const model = this._model;
    const eos = model.config.eosTokenId;
    const parts = typeof data === 'string' ? [data] : Array.isArray(data) ? data : null;
    if (!parts || parts.length === 0) throw invalid('fit takes a string, an array of strings, token-id arrays, { text } objects or instruction examples');
    if (typeof data === 'string') return { ids: model._encodeIds(data), mask: null }; // one text: its ids as they come
    const ids = new GrowableArray(Int32Array);
    let mask = null; // 1 per target token, 0 per prompt token: made at the first instruction example
    const push = (arr, on) => {
      if (!on && !mask) {
        mask = new GrowableArray(Uint8Array, ids.data.length);
        mask.fill(1, ids.length);
      }
      ids.append(arr);
      mask?.fill(on ? 1 : 0, arr.length);
    };
    parts.forEach((p, i) => {
      if (i > 0 && Number.isInteger(eos) && ids.last() !== eos) push([eos], true);
      if (typeof p === 'string') push(model._encodeIds(p), true);
      else if (p && typeof p === 'object' && !Array.isArray(p) && !ArrayBuffer.isView(p)) {
        if (typeof p.text === 'string' && p.output === undefined) return push(model._encodeIds(p.text), true);
        const { prompt, output } = instructionPrompt(p, i);
        push(model._encodeIds(prompt), false);
        push(model._encodeIds(output), true);
        if (Number.isInteger(eos)) push([eos], true);
      } else push(this._toIdBatch(p, model.config.vocabSize, 'data').flat, true);
    });
    return { ids: ids.result(), mask: mask ? mask.result() : null };
  }
}
