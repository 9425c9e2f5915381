// resident.js: the whole Mamba forward on WebGPU with every weight resident in GPU buffers (issue
// 15): embedding, per layer rmsnorm, in_proj, conv+SiLU, x_proj, dt_proj, the scan (with softplus
// and the gate inside), out_proj added into the residual stream, then the final norm and the
// head, recorded into one compute pass with no readback until the logits. Each step is a kernel
// of web/kernels/ mirroring a C op (web/webgpu.js GpuKernels), in the order of src/core/block.c.
//
// Weights come from a WeightSource (below), tensor by tensor: float32 tensors stay float32, f16
// matrices are uploaded as halves packed two to a u32 (webgpu.js packF16Rows) and converted in
// the kernels. The source is the WASM model's tensors or the checkpoint itself (bindings/gpu.js;
// the latter for residency 'gpu', with no weights in WASM). Decode: a state of per-layer conv
// histories (double-buffered) and SSM states on the GPU (createState), prefilled by forward and
// advanced by steps recorded once and replayed (one-token matmuls with the rmsnorm fused in,
// dt_proj inside the scan: its weights and, per layer, D and dt_proj's bias in one buffer, Dbias);
// greedy steps chain on the GPU through a token log and come back once per chain
// (decodeGreedy). Not here yet: adapters (LoRA, LIM), q8 weights, sampling other than greedy.
import { GpuKernels, ScratchPool, DispatchList, packF16Rows, matmulTakesNorm } from './webgpu.js';

/** The most greedy steps one decodeGreedy call runs with no readback (the token log's length). */
export const DECODE_CHUNK = 64;

const toU32 = (ids) => (ids instanceof Uint32Array ? ids : Uint32Array.from(ids));

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
    const kept = {}; // D and dt_proj's bias of the layer being uploaded (for Dbias)
    const up = (name, layer) => {
      const t = src.tensor(name, layer);
      if (!t) return null;
      if (t.dtype === 'f16' && !MATRICES.has(name)) throw new Error(`resident.js: ${name} in f16 (only the matrices may be)`);
      const data = t.dtype === 'f16' ? packF16Rows(t.data, t.rows, t.cols) : t.data;
      if (name === 'D' || name === 'dt_proj_b') kept[name] = data;
      const buf = r.kernels.buffer(data);
      r.weightBytes += data.byteLength;
      onUpload?.(data.byteLength);
      return { buf, f16: t.dtype === 'f16', rows: t.rows, cols: t.cols };
    };
    r.w.embedding = up('embedding');
    r.w.norm_f = up('norm_f');
    r.w.lm_head = up('lm_head') ?? r.w.embedding; // tied
    const E = src.config.dInner;
    for (let l = 0; l < src.config.nLayer; l++) {
      kept.D = kept.dt_proj_b = null;
      const lw = Object.fromEntries(LAYER_TENSORS.map((n) => [n, up(n, l)]));
      // D then dt_proj's bias, [2, E]: the decode step's scan makes delta itself (its DT override)
      const db = new Float32Array(2 * E);
      db.set(kept.D);
      if (kept.dt_proj_b) db.set(kept.dt_proj_b, E);
      lw.Dbias = { buf: r.kernels.buffer(db), f16: false, rows: 2, cols: E };
      r.weightBytes += db.byteLength;
      onUpload?.(db.byteLength);
      r.layers.push(lw);
    }
    return r;
  }

  constructor(device, config) {
    this.device = device;
    this.config = config;
    this.w = {};
    this.layers = [];
    this.weightBytes = 0;
    this.decodeChunk = DECODE_CHUNK; // the most steps of one decodeGreedy
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
    this.kernels.matmul({ out: io.out, inp: io.inp, w: w.buf, bias: bias?.buf ?? null, norm: io.norm ?? null }, { ...io.dims, C: w.cols, OC: w.rows, f16: w.f16 }, enc);
  }

  /**
   * A decode state on the GPU for B sequences: per layer the conv history [B, K-1, E] (two of
   * them, read and written in turn: hists[parity] is the current one) and the SSM state
   * [B, E, N], zeros (a fresh sequence), plus the step's input ids and a token log for greedy
   * decoding several tokens with no readback between them (decodeGreedy). Free it with destroyState.
   */
  createState(B) {
    const { dInner: E, dState: N, dConv: K, nLayer } = this.config;
    const k = this.kernels;
    const st = { B, pos: 0, parity: 0, hists: [[], []], s: [], plans: {}, planGen: -1 };
    for (let l = 0; l < nLayer; l++) {
      st.hists[0].push(k.buffer(B * (K - 1) * E));
      st.hists[1].push(k.buffer(B * (K - 1) * E));
      st.s.push(k.buffer(B * E * N));
    }
    st.cur = k.buffer(B); // the ids the next step reads (u32): written by the host, or by the step's argmax
    // two token logs [count, ids...] (argmax_forward.wgsl append), used in turn, so that a chain
    // can run while the one before it is read back
    st.logs = [k.buffer(1 + DECODE_CHUNK * B), k.buffer(1 + DECODE_CHUNK * B)];
    st.logTurn = 0;
    return st;
  }

  destroyState(st) {
    for (const b of [...st.hists[0], ...st.hists[1], ...st.s, st.cur, ...st.logs]) b?.destroy();
    st.hists = [[], []];
    st.s = [];
    st.cur = null;
    st.logs = [];
    st.plans = {};
  }

  /**
   * Records the forward of B sequences of L tokens into enc (ids: B * L token ids, each < V),
   * from zero states or from `state` (which it leaves advanced by L tokens). Returns the logits
   * buffer: every position [B * L, V], or with last the last position of each sequence [B, V].
   * With argmaxInto, the argmax of each row of logits goes into that buffer (u32) as well.
   */
  _record(enc, ids, B, L, { last = false, state = null, argmaxInto = null } = {}) {
    const { dInner: E, dConv: K } = this.config;
    if (state && state.B !== B) throw new Error(`resident.js: a state of ${state.B} sequences for ${B}`);
    const T = B * L;
    const idb = this._buf('ids', T);
    this.kernels.write(idb, ids instanceof Uint32Array ? ids : new Uint32Array(ids.buffer, ids.byteOffset, ids.length));
    let st = null;
    if (state) {
      st = { hist: state.hists[state.parity], next: state.hists[state.parity ^ 1], s: state.s };
    } else { // fresh states, cleared before the pass; a fresh sequence keeps no history
      const hist = this._buf('hist', B * (K - 1) * E);
      st = { hist: this.layers.map(() => hist), next: null, s: this.layers.map((_, l) => this._buf(`s${l}`, B * this.config.dInner * this.config.dState)) };
      enc.clearBuffer(hist);
      for (const b of st.s) enc.clearBuffer(b);
    }
    // every op in one compute pass: no per-op pass, no copies (the conv history is double-buffered)
    const pass = enc.beginComputePass();
    const out = this._encode(pass, idb, B, L, { last, st, argmaxInto });
    pass.end();
    if (state) {
      state.parity ^= 1;
      state.pos += L;
    }
    return out;
  }

  /**
   * The dispatches of one forward into `pass` (an open compute pass, or a DispatchList): ids
   * from the buffer idb (u32), per layer the conv history st.hist[l] (and st.next[l] to write the
   * next one, or null) and the SSM state st.s[l]. After the logits: their argmax into argmaxInto,
   * and with logInto that argmax appended to a token log.
   */
  _encode(pass, idb, B, L, { last, st, argmaxInto = null, logInto = null }) {
    const { dModel: d, dInner: E, dState: N, dtRank: R, dConv: K, eps, vocabSize: V } = this.config;
    const T = B * L;
    const DBC = R + 2 * N;
    const k = this.kernels;
    const h = this._buf('h', T * d);
    const a = this._buf('a', T * d);
    const xz = this._buf('xz', T * 2 * E);
    const u = this._buf('u', T * E);
    const dbc = this._buf('dbc', T * DBC);
    const delta = L === 1 ? null : this._buf('delta', T * E); // a decode step's scan makes its own
    const y = this._buf('y', T * E);
    const histOut = st.next ? null : this._buf('hist_out', B * (K - 1) * E); // bound, unwritten
    const rows = last ? B : T;
    const logits = this._buf('logits', rows * V);
    k.embedding({ out: h, ids: idb, w: this.w.embedding.buf }, { n: T, C: d, V, f16: this.w.embedding.f16 }, pass);
    // one token (a decode step): each rmsnorm runs inside the matmul after it (gemv1v)
    const fuseNorm = (w) => T === 1 && matmulTakesNorm(d, w.f16);
    this.layers.forEach((lw, l) => {
      if (fuseNorm(lw.in_proj)) {
        this._matmul(pass, lw.in_proj, lw.in_proj_b, { out: xz, inp: h, norm: lw.norm.buf, dims: { T, eps } });
      } else {
        k.rmsnorm({ out: a, inp: h, weight: lw.norm.buf }, { T, C: d, eps }, pass);
        this._matmul(pass, lw.in_proj, lw.in_proj_b, { out: xz, inp: a, dims: { T } });
      }
      const bufs = { u, histOut: st.next ? st.next[l] : histOut, hist: st.hist[l], x: xz, w: lw.conv.buf, bias: lw.conv_b?.buf };
      k.conv1dSilu(bufs, { B, L, E, K, xStride: 2 * E, xOffset: 0, updateHist: !!st.next }, pass);
      this._matmul(pass, lw.x_proj, null, { out: dbc, inp: u, dims: { T } });
      // softplus of delta and the gate y * silu(z) run inside the scan (one dispatch, not three);
      // a decode step's dt_proj too (L = 1: a dot of R per channel; longer runs take the GEMM)
      const scanIo = { B, L, E, N, bcStride: DBC, bcOffset: R, softplus: true, gStride: 2 * E, gOffset: E };
      if (L === 1) {
        k.selectiveScan({ y, s: st.s[l], u, bc: dbc, A: lw.A.buf, D: lw.Dbias.buf, g: xz }, { ...scanIo, dt: { w: lw.dt_proj.buf, f16: lw.dt_proj.f16, R } }, pass);
      } else {
        this._matmul(pass, lw.dt_proj, lw.dt_proj_b, { out: delta, inp: dbc, dims: { T, ldi: DBC } });
        k.selectiveScan({ y, s: st.s[l], u, delta, bc: dbc, A: lw.A.buf, D: lw.D.buf, g: xz }, scanIo, pass);
      }
      this._matmul(pass, lw.out_proj, lw.out_proj_b, { out: h, inp: y, dims: { T, acc: true } });
    });
    // the last position of sequence b is row b * L + L - 1: rows of stride L * d from (L - 1) * d
    const norm = last ? { ldi: L * d, ioff: (L - 1) * d } : {};
    if (rows === 1 && matmulTakesNorm(d, this.w.lm_head.f16, norm.ioff ?? 0)) {
      this._matmul(pass, this.w.lm_head, null, { out: logits, inp: h, norm: this.w.norm_f.buf, dims: { T: 1, eps, ioff: norm.ioff ?? 0 } });
    } else {
      k.rmsnorm({ out: a, inp: h, weight: this.w.norm_f.buf }, { T: rows, C: d, eps, ...norm }, pass);
      this._matmul(pass, this.w.lm_head, null, { out: logits, inp: a, dims: { T: rows } });
    }
    if (argmaxInto) k.argmax({ out: argmaxInto, x: logits }, { R: rows, n: V }, pass);
    if (logInto) k.argmaxAppend({ log: logInto, ids: argmaxInto }, { R: rows }, pass);
    return { logits, rows };
  }

  /**
   * The recorded dispatches of one decode step of `state` (kind 'greedy': the argmax into
   * state.cur and appended to token log state.logs[log]; 'logits': the logits only), for the state's current
   * parity. Made once and replayed every token; made again when a scratch buffer was (a larger
   * call grew it).
   */
  _stepPlan(state, kind, log = 0) {
    if (state.planGen !== this.scratch.generation) {
      state.plans = {};
      state.planGen = this.scratch.generation;
    }
    const key = `${kind}${state.parity}${kind === 'greedy' ? log : ''}`;
    if (!state.plans[key]) {
      const list = new DispatchList();
      const st = { hist: state.hists[state.parity], next: state.hists[state.parity ^ 1], s: state.s };
      const greedy = kind === 'greedy';
      this._encode(list, state.cur, state.B, 1, { last: true, st, argmaxInto: greedy ? state.cur : null, logInto: greedy ? state.logs[log] : null });
      // _encode may have grown a scratch buffer (the first step after a smaller call): then the
      // plans made before are stale, this one is not
      if (state.planGen !== this.scratch.generation) {
        state.plans = {};
        state.planGen = this.scratch.generation;
      }
      state.plans[key] = list;
    }
    return state.plans[key];
  }

  /**
   * Submits one decode step of `state` from the ids in state.cur (its own command buffer).
   * passDesc: the compute pass descriptor (a benchmark's timestampWrites); after(enc): more
   * commands for the same command buffer (resolving those timestamps).
   */
  _submitStep(state, kind, passDesc = undefined, after = null, log = 0) {
    const plan = this._stepPlan(state, kind, log);
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass(passDesc);
    this.kernels.replay(pass, plan);
    pass.end();
    after?.(enc);
    this.device.queue.submit([enc.finish()]);
    state.parity ^= 1;
    state.pos += 1;
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
    if (greedy) return this.decodeGreedy(state, ids, 1);
    this.kernels.write(state.cur, toU32(ids));
    this._submitStep(state, 'logits');
    const out = await this.kernels.read(this._buf('logits', state.B * this.config.vocabSize), state.B * this.config.vocabSize);
    this._check();
    return out;
  }

  /**
   * n greedy decode steps of every sequence of `state` from the ids `ids` (B of them), with no
   * readback between steps: each step reads the ids the previous one's argmax wrote, and every
   * step is submitted as soon as it is recorded; the n * B ids (step-major) come back at the end.
   * n is at most DECODE_CHUNK.
   */
  decodeGreedy(state, ids, n) {
    return this.submitGreedy(state, n, ids);
  }

  /**
   * Submits n greedy steps (as decodeGreedy) and returns a promise of their n * B ids, without
   * waiting: from `ids`, or, when null, from the ids the last step already submitted left on the
   * GPU. So the next chain can be submitted before this one's ids are awaited, and the GPU does
   * not wait for the host between chains (the two token logs are used in turn: at most two chains
   * may be in flight).
   */
  submitGreedy(state, n, ids = null) {
    const B = state.B;
    if (!(n >= 1 && n <= DECODE_CHUNK)) throw new Error(`resident.js: a chain of ${n} greedy steps (1 to ${DECODE_CHUNK})`);
    if (ids) this.kernels.write(state.cur, toU32(ids));
    const li = state.logTurn;
    state.logTurn ^= 1;
    this.kernels.write(state.logs[li], new Uint32Array(1)); // count = 0
    for (let i = 0; i < n; i++) this._submitStep(state, 'greedy', undefined, null, li);
    return this.kernels.readU32(state.logs[li], 1 + n * B).then((log) => {
      this._check();
      if (log[0] !== n) throw new Error(`resident.js: the token log holds ${log[0]} steps, not ${n}`);
      return log.subarray(1);
    });
  }

  destroy() {
    this.scratch?.destroy();
    const seen = new Set();
    for (const t of [this.w.embedding, this.w.norm_f, this.w.lm_head, ...this.layers.flatMap((lw) => Object.values(lw))])
      if (t && !seen.has(t.buf)) seen.add(t.buf), t.buf.destroy();
  }
}
