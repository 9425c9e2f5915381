// decode-state.js: the explicit recurrent decode state of a Mamba model (conv + SSM state of
// every layer, and the membrane of a causal LIM adapter): prefill, O(1) steps, clone, save,
// restore, reset. Synchronous and WASM-side (a lost GPU never takes it away).
// Deliberately not here: sampling and generation loops (mamba.js).
import { MembaError, ErrorCodes } from './errors.js';
import { Logits } from './abi.js';
import { toIdBatch, invalid, heapBytes, checkInt, describe, firstNonFinite } from './ids.js';

/**
 * Explicit recurrent state of `batch` sequences (conv + SSM state of every layer): prefill it
 * with a prompt, step it one token at a time (O(1) per token), clone, save, restore, reset.
 */
export class DecodeState {
  /**
   * @param {boolean} [internal] a generation's own state: its adapter is pinned by the
   *   generation, so a dispose() of the adapter meanwhile does not stop it (mamba.js stream)
   */
  constructor(model, batch, adapter = null, { internal = false } = {}) {
    const e = model._engine;
    const { nLayer, dInner: E, dState: N, dConv: K, vocabSize: V } = model.config;
    // sizes in float64 before any allocation: the state block (per layer and sequence the conv
    // history, the SSM state and a causal LIM membrane), the logits and one step's ids
    const lim = adapter?.config.lim;
    const c = lim && adapter.causal ? lim.chunk_size : 0;
    const stateBytes = heapBytes(`a decode state for batch ${batch}`, nLayer, batch, (K - 1) * E + E * N + c * E, 4);
    const logitsBytes = heapBytes(`the logits of a decode state for batch ${batch}`, batch, V, 4);
    this._model = model;
    this._engine = e;
    this._adapter = adapter;
    this._internal = internal;
    this.batch = batch;
    model._bind(adapter);
    const h = e.mb_state_new(model._handle, batch, { what: 'cannot create decode state' });
    this._handle = h;
    this._logits = 0;
    this._ids = 0;
    try {
      this._logits = e.malloc(logitsBytes);
      this._ids = e.malloc(batch * 4); // one step's ids: no allocation per token
    } catch (err) {
      e.free(this._logits);
      e.mb_state_free(h);
      this._handle = 0;
      throw err;
    }
    /** Bytes of the WASM heap this state holds (model.memory().states adds them up). */
    this._bytes = stateBytes + logitsBytes + batch * 4;
    model._states.add(this);
  }

  _alive() {
    if (!this._handle) throw new MembaError(ErrorCodes.DISPOSED, 'this decode state has been disposed');
    this._model._alive();
    this._model._checkNotBusy();
    if (this._adapter && !this._internal && this._adapter._disposed)
      throw new MembaError(ErrorCodes.DISPOSED, "this decode state's adapter has been disposed");
  }

  /** Positions consumed so far. */
  get position() {
    this._alive();
    return Number(this._engine.mb_state_pos(this._handle));
  }

  _run(flat, B, L) {
    if (B !== this.batch) throw invalid(`this state holds ${this.batch} sequence(s), got ${B}`);
    const e = this._engine;
    const step = flat.length <= this.batch;
    const idp = step ? this._ids : e.putIds(flat);
    if (step) e.i32(idp, flat.length).set(flat);
    try {
      this._model._bind(this._adapter);
      e.mb_forward(this._model._handle, idp, B, L, Logits.LAST, this._logits, 0, this._handle, { what: 'decode' });
      return e.f32(this._logits, B * this._model.config.vocabSize).slice();
    } finally {
      if (!step) e.free(idp);
    }
  }

  /** Feeds a prompt ([L] or [B][L]) and returns the logits after its last position ([B * V]). */
  prefill(ids) {
    this._alive();
    const { flat, B, L } = toIdBatch(ids, this._model.config.vocabSize);
    return this._run(flat, B, L);
  }

  /** Feeds one token per sequence (a number, or an array of B ids); returns logits [B * V]. */
  step(ids) {
    this._alive();
    const { flat, B, L } = toIdBatch(typeof ids === 'number' ? [ids] : ids, this._model.config.vocabSize);
    if (B !== 1) throw invalid('step takes one id per sequence: a number or a flat array of ids');
    return this._run(flat, L, 1);
  }

  /** An independent copy of this state. */
  clone() {
    this._alive();
    const c = new DecodeState(this._model, this.batch, this._adapter);
    this._engine.mb_state_copy(c._handle, this._handle, { what: 'clone' });
    return c;
  }

  /** A snapshot ({ position, data }) that restore() accepts, here or in another state of the same shape. */
  save() {
    this._alive();
    const e = this._engine;
    const { ptr, numel } = e.mb_state_data(this._handle);
    return { batch: this.batch, position: this.position, data: e.f32(ptr, numel).slice() };
  }

  /**
   * Restores a snapshot from save(). Every field is checked before anything is written: an
   * object with batch (an integer), position (a safe integer >= 0: the C side would silently
   * ignore a position of 2^53 or more) and data (a Float32Array of finite values) is required
   * (else 'invalid_argument'); a batch or length of another state shape is 'shape_mismatch'.
   */
  restore(snapshot) {
    this._alive();
    const e = this._engine;
    if (snapshot === null || typeof snapshot !== 'object') throw invalid(`restore takes a snapshot from DecodeState.save(), got ${describe(snapshot)}`);
    const { batch, position, data } = snapshot;
    checkInt(batch, 'snapshot.batch', 1);
    checkInt(position, 'snapshot.position', 0);
    if (!(data instanceof Float32Array)) throw invalid(`snapshot.data must be a Float32Array, got ${describe(data)}`);
    const { ptr, numel: n } = e.mb_state_data(this._handle);
    if (data.length !== n || batch !== this.batch)
      throw new MembaError(ErrorCodes.SHAPE_MISMATCH, `the snapshot holds ${batch} sequence(s), ${data.length} values; this state ${this.batch}, ${n}`);
    const bad = firstNonFinite(data);
    if (bad >= 0) throw invalid(`snapshot.data[${bad}] = ${data[bad]} is not finite`);
    e.f32(ptr, n).set(data);
    e.mb_state_set_pos(this._handle, position);
  }

  /** Back to the empty state (position 0). */
  reset() {
    this._alive();
    this._reset();
  }

  _reset() {
    this._engine.mb_state_reset(this._handle);
  }

  dispose() {
    if (!this._handle) return;
    this._engine.mb_state_free(this._handle);
    this._engine.free(this._logits);
    this._engine.free(this._ids);
    this._handle = 0;
    this._model._states.delete(this);
  }

  [Symbol.dispose]() {
    this.dispose();
  }
}
