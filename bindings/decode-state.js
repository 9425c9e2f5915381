// decode-state.js: the explicit recurrent decode state of a Mamba model (conv + SSM state of
// every layer, and the membrane of a causal LIM adapter): prefill, O(1) steps, clone, save,
// restore, reset. Synchronous and WASM-side (a lost GPU never takes it away).
// Deliberately not here: sampling and generation loops (mamba.js).
import { MembaError, ErrorCodes } from './errors.js';
import { Logits } from './abi.js';
import { toIdBatch, invalid } from './ids.js';

/**
 * Explicit recurrent state of `batch` sequences (conv + SSM state of every layer): prefill it
 * with a prompt, step it one token at a time (O(1) per token), clone, save, restore, reset.
 */
export class DecodeState {
  constructor(model, batch, adapter = null) {
    const e = model._engine;
    this._model = model;
    this._engine = e;
    this._adapter = adapter;
    this.batch = batch;
    model._bind(adapter);
    const h = e.mb_state_new(model._handle, batch, { what: 'cannot create decode state' });
    this._handle = h;
    try {
      this._logits = e.malloc(batch * model.config.vocabSize * 4);
      this._ids = e.malloc(batch * 4); // one step's ids: no allocation per token
    } catch (err) {
      e.free(this._logits);
      e.mb_state_free(h);
      throw err;
    }
    model._states.add(this);
  }

  _alive() {
    if (!this._handle) throw new MembaError(ErrorCodes.DISPOSED, 'this decode state has been disposed');
    this._model._alive();
    this._model._checkNotBusy();
    if (this._adapter && !this._adapter._handle) throw new MembaError(ErrorCodes.DISPOSED, "this decode state's adapter has been disposed");
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
    const row = typeof ids === 'number' ? [ids] : Array.from(ids ?? []);
    const { flat } = toIdBatch(row.map((v) => [v]), this._model.config.vocabSize);
    return this._run(flat, row.length, 1);
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

  /** Restores a snapshot from save(). */
  restore(snapshot) {
    this._alive();
    const e = this._engine;
    if (!snapshot || !(snapshot.data instanceof Float32Array) || !Number.isInteger(snapshot.position) || snapshot.position < 0)
      throw invalid('restore takes a snapshot from DecodeState.save()');
    const { ptr, numel: n } = e.mb_state_data(this._handle);
    if (snapshot.data.length !== n || snapshot.batch !== this.batch)
      throw new MembaError(ErrorCodes.SHAPE_MISMATCH, `snapshot holds ${snapshot.data.length} values, this state ${n}`);
    e.f32(ptr, n).set(snapshot.data);
    e.mb_state_set_pos(this._handle, snapshot.position);
  }

  /** Back to the empty state (position 0). */
  reset() {
    this._alive();
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
