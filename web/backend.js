// backend.js: the WebGPU backend of a Mamba model. The C core runs the split forward (src/memba.h
// mb_split_*): per layer it computes u, dbc, the pre-softplus delta and the gate input; this moves
// them to the GPU, runs softplus, the selective scan (chunked in time, from and into the decode
// state) and the gate there (web/kernels/), and hands the gated y back for out_proj: one round trip
// per layer. Weights stay in WASM memory and decode states stay WASM-side, so a lost device costs
// nothing: the model falls back to WASM and redoes the call.
// Deliberately not here: matmuls on the GPU (later), one-token decode steps (too small to pay).
import { requestDevice, GpuKernels } from './webgpu.js';

import { SplitBuf as BUF, Param } from '../bindings/abi.js';

/** Adapter descriptions of CPU implementations of WebGPU (correct, never faster than WASM). */
export function isSoftwareAdapter(description) {
  return /llvmpipe|lavapipe|swiftshader|software|microsoft basic render/i.test(description ?? '');
}

export class GpuBackend {
  /** A backend for `model` (a Mamba), or { backend: null, reason }. */
  static async create(model, opts = {}) {
    const r = await requestDevice(opts);
    if (!r.device) return { backend: null, reason: r.reason };
    const b = new GpuBackend(model, r.device, r.description);
    b.kernels = await GpuKernels.create(r.device);
    b._uploadWeights();
    return { backend: b };
  }

  constructor(model, device, description) {
    this.model = model;
    this.engine = model._engine;
    this.device = device;
    this.description = description;
    this.software = isSoftwareAdapter(description);
    this.lost = false;
    this.lostReason = null;
    this.buffers = {};
    this.sizes = {};
    device.lost.then((info) => {
      this.lost = true;
      this.lostReason = info?.message || info?.reason || 'device lost';
    });
  }

  _uploadWeights() {
    const { nLayer, dInner: E, dState: N } = this.model.config;
    const e = this.engine;
    this.A = [];
    this.D = [];
    for (let l = 0; l < nLayer; l++) {
      this.A.push(this.kernels.buffer(e.f32(e.mb_layer_A(this.model._handle, l), E * N).slice()));
      const dp = e.mb_model_param(this.model._handle, Param.D, l).ptr;
      this.D.push(this.kernels.buffer(e.f32(dp, E).slice()));
    }
  }

  /** A reusable GPU buffer of at least n floats. */
  _buf(name, n) {
    if (!this.buffers[name] || this.sizes[name] < n) {
      this.buffers[name]?.destroy();
      this.buffers[name] = this.kernels.buffer(n);
      this.sizes[name] = n;
    }
    return this.buffers[name];
  }

  /** Layer l's middle stage on the GPU, from and into the WASM activations (and state). */
  async _mid(l, B, L, statePtr, lim) {
    const { dInner: E, dState: N, dtRank: R } = this.model.config;
    const DBC = R + 2 * N;
    const BT = B * L;
    const e = this.engine;
    const h = this.model._handle;
    const k = this.kernels;
    const heap = (which, n) => e.f32(e.mb_split_buffer(h, which), n);
    const u = this._buf('u', BT * E);
    const delta = this._buf('delta', BT * E);
    const dbc = this._buf('dbc', BT * DBC);
    const y = this._buf('y', BT * E);
    const s = this._buf('s', B * E * N);
    const g = this._buf('g', BT * (lim ? E : 2 * E));
    k.write(u, heap(BUF.U, BT * E));
    k.write(delta, heap(BUF.DELTA, BT * E));
    k.write(dbc, heap(BUF.DBC, BT * DBC));
    k.write(g, lim ? heap(BUF.LIM_V, BT * E) : heap(BUF.XZ, BT * 2 * E));
    const ssm = [];
    for (let b = 0; b < B; b++) {
      const p = statePtr ? e.mb_state_ssm_ptr(statePtr, l, b) : 0;
      ssm.push(p);
      k.write(s, p ? e.f32(p, E * N) : new Float32Array(E * N), b * E * N);
    }
    const enc = this.device.createCommandEncoder();
    k.softplus({ x: delta }, { n: BT * E }, enc);
    k.selectiveScan({ y, s, u, delta, bc: dbc, A: this.A[l], D: this.D[l] }, { B, L, E, N, bcStride: DBC, bcOffset: R }, enc);
    k.gate({ y, g }, { T: BT, E, gStride: lim ? E : 2 * E, gOffset: lim ? 0 : E }, enc);
    this.device.queue.submit([enc.finish()]);
    const [yv, sv] = await Promise.all([k.read(y, BT * E), statePtr ? k.read(s, B * E * N) : null]);
    if (this.lost) throw new Error(`WebGPU device lost: ${this.lostReason}`);
    heap(BUF.Y, BT * E).set(yv);
    if (sv) for (let b = 0; b < B; b++) e.f32(ssm[b], E * N).set(sv.subarray(b * E * N, (b + 1) * E * N));
  }

  /** Runs every layer with its middle stage here; the caller began and will end the split forward.
   * `adapter` is re-bound before each layer: synchronous calls may run between our awaits. */
  async layers(B, L, statePtr, adapter) {
    const e = this.engine;
    const h = this.model._handle;
    const lim = !!adapter?.config?.lim;
    for (let l = 0; l < this.model.config.nLayer; l++) {
      this.model._bind(adapter);
      e.mb_split_pre(h, l, { what: 'split pre' });
      await this._mid(l, B, L, statePtr, lim);
      this.model._bind(adapter);
      e.mb_split_post(h, l, { what: 'split post' });
    }
  }

  destroy() {
    for (const b of Object.values(this.buffers)) b.destroy();
    for (const b of [...(this.A ?? []), ...(this.D ?? [])]) b.destroy();
    this.buffers = {};
  }
}
