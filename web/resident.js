// resident.js: the whole Mamba forward on WebGPU with every weight resident in GPU buffers (issue
// 15): embedding, per layer rmsnorm, in_proj, conv+SiLU, x_proj, dt_proj, softplus, the scan, the
// gate and out_proj added into the residual stream, then the final norm and the head, recorded
// into one command encoder with no readback until the logits. Each step is a kernel of
// web/kernels/ mirroring a C op (web/webgpu.js GpuKernels), in the order of src/core/block.c.
//
// Weights come from a WeightSource (below), tensor by tensor: float32 tensors stay float32, f16
// matrices are uploaded as halves packed two to a u32 (webgpu.js packF16Rows) and converted in
// the kernels. The whole forward is one compute pass. Decode: a state of per-layer conv histories
// (double-buffered) and SSM states on the GPU
// (createState), prefilled by forward and advanced by step, which can take the greedy argmax on
// the GPU so that only the token ids come back. Not here yet: adapters (LoRA, LIM), q8 weights,
// loading straight from the file (the source today reads the WASM model's weights), sampling
// other than greedy.
import { GpuKernels, ScratchPool, packF16Rows } from './webgpu.js';

/**
 * What GpuResident.create reads the model through.
 * @typedef {object} WeightSource
 * @property {Readonly<object>} config the normalised config (dModel, nLayer, vocabSize, dInner,
 *   dState, dConv, dtRank, eps, useBias, useConvBias)
 * @property {(name: string, layer?: number) => ({ dtype: 'f32', data: Float32Array } |
 *   { dtype: 'f16', data: Uint16Array }) & { rows: number, cols: number } | null} tensor a copy of
 *   one tensor (null for one the model does not have: a bias, or lm_head when tied). Names:
 *   embedding, norm_f, lm_head, and per layer norm, in_proj, in_proj_b, conv, conv_b, x_proj,
 *   dt_proj, dt_proj_b, A (= -exp(A_log), [E, N]), D, out_proj, out_proj_b.
 */

const MATRICES = new Set(['embedding', 'lm_head', 'in_proj', 'x_proj', 'dt_proj', 'out_proj']);
const LAYER_TENSORS = ['norm', 'in_proj', 'in_proj_b', 'conv', 'conv_b', 'x_proj', 'dt_proj', 'dt_proj_b', 'A', 'D', 'out_proj', 'out_proj_b'];

export class GpuResident {
  /**
   * Uploads every weight of `src` to `device`, one tensor at a time (the copy of one tensor is
   * the most CPU memory held at once). onUpload(bytes) is called after each tensor; kernels: a
   * GpuKernels of the device to use (compiled once) instead of a new one.
   * @param {GPUDevice} device
   * @param {WeightSource} src
   */
  static async create(device, src, { onUpload, kernels } = {}) {
    const r = new GpuResident(device, src.config);
    r.kernels = kernels ?? (await GpuKernels.create(device)); // a GpuKernels of this device may be shared
    r.scratch = new ScratchPool(r.kernels);
    const up = (name, layer) => {
      const t = src.tensor(name, layer);
      if (!t) return null;
      if (t.dtype === 'f16' && !MATRICES.has(name)) throw new Error(`resident.js: ${name} in f16 (only the matrices may be)`);
      const data = t.dtype === 'f16' ? packF16Rows(t.data, t.rows, t.cols) : t.data;
      const buf = r.kernels.buffer(data);
      r.weightBytes += data.byteLength;
      onUpload?.(data.byteLength);
      return { buf, f16: t.dtype === 'f16', rows: t.rows, cols: t.cols };
    };
    r.w.embedding = up('embedding');
    r.w.norm_f = up('norm_f');
    r.w.lm_head = up('lm_head') ?? r.w.embedding; // tied
    for (let l = 0; l < src.config.nLayer; l++) r.layers.push(Object.fromEntries(LAYER_TENSORS.map((n) => [n, up(n, l)])));
    return r;
  }

  constructor(device, config) {
    this.device = device;
    this.config = config;
    this.w = {};
    this.layers = [];
    this.weightBytes = 0;
    this.scratch = null; // a ScratchPool, made with the kernels
    this.lost = false;
    this.lostReason = null;
    device.lost.then((info) => {
      this.lost = true;
      this.lostReason = info?.message || info?.reason || 'device lost';
    });
  }

  /** A reusable activation buffer of at least n floats. */
  _buf(name, n) {
    return this.scratch.get(name, n);
  }

  _matmul(enc, w, bias, io) {
    this.kernels.matmul({ out: io.out, inp: io.inp, w: w.buf, bias: bias?.buf ?? null }, { ...io.dims, C: w.cols, OC: w.rows, f16: w.f16 }, enc);
  }

  /**
   * A decode state on the GPU for B sequences: per layer the conv history [B, K-1, E] and the
   * SSM state [B, E, N], zeros (a fresh sequence). Free it with destroyState.
   */
  createState(B) {
    const { dInner: E, dState: N, dConv: K, nLayer } = this.config;
    const k = this.kernels;
    // hist and next: the conv history read by a step and the one it writes (swapped after it)
    const st = { B, pos: 0, hist: [], next: [], s: [] };
    for (let l = 0; l < nLayer; l++) {
      st.hist.push(k.buffer(B * (K - 1) * E));
      st.next.push(k.buffer(B * (K - 1) * E));
      st.s.push(k.buffer(B * E * N));
    }
    return st;
  }

  destroyState(st) {
    for (const b of [...st.hist, ...st.next, ...st.s]) b.destroy();
    st.hist = st.next = st.s = [];
  }

  /**
   * Records the forward of B sequences of L tokens into enc (ids: B * L token ids, each < V),
   * from zero states or from `state` (which it leaves advanced by L tokens). Returns the logits
   * buffer: every position [B * L, V], or with last the last position of each sequence [B, V].
   * With argmaxInto, the argmax of each row of logits goes into that buffer (u32) as well.
   */
  _record(enc, ids, B, L, { last = false, state = null, argmaxInto = null } = {}) {
    const { dModel: d, dInner: E, dState: N, dtRank: R, dConv: K, eps, vocabSize: V } = this.config;
    if (state && state.B !== B) throw new Error(`resident.js: a state of ${state.B} sequences for ${B}`);
    const T = B * L;
    const DBC = R + 2 * N;
    const k = this.kernels;
    const h = this._buf('h', T * d);
    const a = this._buf('a', T * d);
    const xz = this._buf('xz', T * 2 * E);
    const u = this._buf('u', T * E);
    const dbc = this._buf('dbc', T * DBC);
    const delta = this._buf('delta', T * E);
    const y = this._buf('y', T * E);
    const hist0 = state ? null : this._buf('hist', B * (K - 1) * E);
    const histOut = state ? null : this._buf('hist_out', B * (K - 1) * E); // unread: a fresh sequence keeps no history
    const s0 = state ? null : this.layers.map((_, l) => this._buf(`s${l}`, B * E * N)); // fresh SSM states, one per layer
    const idb = this._buf('ids', T);
    k.write(idb, ids instanceof Uint32Array ? ids : new Uint32Array(ids.buffer, ids.byteOffset, ids.length));
    if (hist0) enc.clearBuffer(hist0);
    if (s0) for (const b of s0) enc.clearBuffer(b);
    // every op in one compute pass: no per-op pass, no copies (the conv history is double-buffered)
    const pass = enc.beginComputePass();
    k.embedding({ out: h, ids: idb, w: this.w.embedding.buf }, { n: T, C: d, V, f16: this.w.embedding.f16 }, pass);
    this.layers.forEach((lw, l) => {
      const hist = state ? state.hist[l] : hist0;
      const s = state ? state.s[l] : s0[l];
      k.rmsnorm({ out: a, inp: h, weight: lw.norm.buf }, { T, C: d, eps }, pass);
      this._matmul(pass, lw.in_proj, lw.in_proj_b, { out: xz, inp: a, dims: { T } });
      const bufs = { u, histOut: state ? state.next[l] : histOut, hist, x: xz, w: lw.conv.buf, bias: lw.conv_b?.buf };
      k.conv1dSilu(bufs, { B, L, E, K, xStride: 2 * E, xOffset: 0, updateHist: !!state }, pass);
      this._matmul(pass, lw.x_proj, null, { out: dbc, inp: u, dims: { T } });
      this._matmul(pass, lw.dt_proj, lw.dt_proj_b, { out: delta, inp: dbc, dims: { T, ldi: DBC } });
      k.softplus({ x: delta }, { n: T * E }, pass);
      k.selectiveScan({ y, s, u, delta, bc: dbc, A: lw.A.buf, D: lw.D.buf }, { B, L, E, N, bcStride: DBC, bcOffset: R }, pass);
      k.gate({ y, g: xz }, { T, E, gStride: 2 * E, gOffset: E }, pass);
      this._matmul(pass, lw.out_proj, lw.out_proj_b, { out: h, inp: y, dims: { T, acc: true } });
    });
    const rows = last ? B : T;
    // the last position of sequence b is row b * L + L - 1: rows of stride L * d from (L - 1) * d
    const norm = last ? { ldi: L * d, ioff: (L - 1) * d } : {};
    k.rmsnorm({ out: a, inp: h, weight: this.w.norm_f.buf }, { T: rows, C: d, eps, ...norm }, pass);
    const logits = this._buf('logits', rows * V);
    this._matmul(pass, this.w.lm_head, null, { out: logits, inp: a, dims: { T: rows } });
    if (argmaxInto) k.argmax({ out: argmaxInto, x: logits }, { R: rows, n: V }, pass);
    pass.end();
    if (state) {
      [state.hist, state.next] = [state.next, state.hist];
      state.pos += L;
    }
    return { logits, rows };
  }

  _check() {
    if (this.lost) throw new Error(`WebGPU device lost: ${this.lostReason}`);
  }

  /**
   * The forward of B sequences of L tokens (ids: Int32Array or Uint32Array of B * L, each < V),
   * from zero states, or from `state` (createState), which it advances (a prefill). Returns the
   * logits of every position [B * L, V], or with last the last position of each sequence [B, V].
   */
  async forward(ids, B, L, { last = false, state = null } = {}) {
    const enc = this.device.createCommandEncoder();
    const { logits, rows } = this._record(enc, ids, B, L, { last, state });
    this.device.queue.submit([enc.finish()]);
    const out = await this.kernels.read(logits, rows * this.config.vocabSize);
    this._check();
    return out;
  }

  /**
   * One decode step of every sequence of `state` (ids: B token ids): with greedy, the argmax of
   * each sequence's logits is taken on the GPU and only the B ids come back (a Uint32Array);
   * otherwise the logits [B, V].
   */
  async step(state, ids, { greedy = false } = {}) {
    const B = state.B;
    const enc = this.device.createCommandEncoder();
    const next = greedy ? this._buf('next', B) : null;
    const { logits } = this._record(enc, ids, B, 1, { state, argmaxInto: next });
    if (!greedy) {
      this.device.queue.submit([enc.finish()]);
      const out = await this.kernels.read(logits, B * this.config.vocabSize);
      this._check();
      return out;
    }
    this.device.queue.submit([enc.finish()]);
    const out = await this.kernels.readU32(next, B);
    this._check();
    return out;
  }

  destroy() {
    this.scratch?.destroy();
    const seen = new Set();
    for (const t of [this.w.embedding, this.w.norm_f, this.w.lm_head, ...this.layers.flatMap((lw) => Object.values(lw))])
      if (t && !seen.has(t.buf)) seen.add(t.buf), t.buf.destroy();
  }
}
