// backend.js: the WebGPU backend of a Mamba model. The C core runs the split forward
// (src/memba_backend.h mb_split_*): per layer it computes u, dbc, the pre-softplus delta and the
// gate input; this moves them to the GPU, runs softplus, the selective scan (chunked in time, from
// and into the decode state) and the gate there (web/kernels/), and hands the gated y back for
// out_proj: one round trip per layer. Weights stay in WASM memory and decode states stay
// WASM-side, so a lost device costs nothing: the model falls back to WASM and redoes the call.
//
// The model is reached only through two objects bindings/gpu.js makes (JSDoc typedefs there):
//   GpuBackend.create(gpuModel, opts)  gpuModel: { config, layerA(l), layerD(l) }
//     config       the model's normalised config (nLayer, dInner, dState, dtRank)
//     layerA(l)    A = -exp(A_log) of layer l [E, N], a copy (uploaded once)
//     layerD(l)    D of layer l [E], a copy (uploaded once)
//   backend.layers(pass)  one split forward the model has begun and will end; pass:
//     B, L         batch and sequence length
//     lim          the gate input is buffer('lim_v') (a LIM adapter) rather than z of buffer('xz')
//     hasState     a decode state is prefilled: ssm(l, b) is read and must be written back
//     pre(l)       the C pre stage of layer l (binds the call's adapter; throws a MembaError)
//     post(l)      the C post stage of layer l
//     buffer(name) a heap view of a split buffer: 'xz' 'u' 'dbc' 'delta' 'y' 'lim_v'
//     ssm(l, b)    a heap view of the state's SSM state [E, N] of layer l, sequence b, or null
//   Heap views are valid until the next await: take fresh ones after it.
// Options read by create: gpu, powerPreference (see web/webgpu.js requestDevice).
// Deliberately not here: matmuls on the GPU (later), one-token decode steps (too small to pay).
import { requestDevice, GpuKernels, ScratchPool } from './webgpu.js';

/** Adapter descriptions of CPU implementations of WebGPU (correct, never faster than WASM). */
export function isSoftwareAdapter(description) {
  return /llvmpipe|lavapipe|swiftshader|software|microsoft basic render/i.test(description ?? '');
}

export class GpuBackend {
  /**
   * A backend for a model, or { backend: null, reason } where WebGPU has no device.
   * @param {import('../bindings/gpu.js').GpuModel} model
   * @param {{ gpu?: GPU, powerPreference?: string, split?: boolean }} [opts]
   */
  static async create(model, opts = {}) {
    const r = await requestDevice(opts);
    if (!r.device) return { backend: null, reason: r.reason };
    const b = new GpuBackend(model.config, r.device, r.description);
    b.kernels = await GpuKernels.create(r.device);
    b.split = opts.split !== false; // split: false: no split forward (a GPU-only model, or backend 'auto'), the resident one only
    if (b.split) b._uploadWeights(model);
    return { backend: b };
  }

  constructor(config, device, description) {
    this.config = config;
    this.device = device;
    this.description = description;
    this.software = isSoftwareAdapter(description);
    this.lost = false;
    this.lostReason = null;
    this.scratch = null; // a ScratchPool, made with the kernels
    device.lost.then((info) => {
      this.lost = true;
      this.lostReason = info?.message || info?.reason || 'device lost';
    });
  }

  _uploadWeights(model) {
    this.A = [];
    this.D = [];
    for (let l = 0; l < this.config.nLayer; l++) {
      this.A.push(this.kernels.buffer(model.layerA(l)));
      this.D.push(this.kernels.buffer(model.layerD(l)));
    }
  }

  /** A reusable GPU buffer of at least n floats. */
  _buf(name, n) {
    return (this.scratch ??= new ScratchPool(this.kernels)).get(name, n);
  }

  /** Layer l's middle stage on the GPU, from and into the WASM activations (and state). */
  async _mid(l, pass) {
    const { dInner: E, dState: N, dtRank: R } = this.config;
    const { B, L, lim } = pass;
    const DBC = R + 2 * N;
    const BT = B * L;
    const k = this.kernels;
    const u = this._buf('u', BT * E);
    const delta = this._buf('delta', BT * E);
    const dbc = this._buf('dbc', BT * DBC);
    const y = this._buf('y', BT * E);
    const s = this._buf('s', B * E * N);
    const g = this._buf('g', BT * (lim ? E : 2 * E));
    k.write(u, pass.buffer('u'));
    k.write(delta, pass.buffer('delta'));
    k.write(dbc, pass.buffer('dbc'));
    k.write(g, pass.buffer(lim ? 'lim_v' : 'xz'));
    for (let b = 0; b < B; b++) k.write(s, pass.ssm(l, b) ?? new Float32Array(E * N), b * E * N);
    const enc = this.device.createCommandEncoder();
    k.softplus({ x: delta }, { n: BT * E }, enc);
    k.selectiveScan({ y, s, u, delta, bc: dbc, A: this.A[l], D: this.D[l] }, { B, L, E, N, bcStride: DBC, bcOffset: R }, enc);
    k.gate({ y, g }, { T: BT, E, gStride: lim ? E : 2 * E, gOffset: lim ? 0 : E }, enc);
    this.device.queue.submit([enc.finish()]);
    const [yv, sv] = await Promise.all([k.read(y, BT * E), pass.hasState ? k.read(s, B * E * N) : null]);
    if (this.lost) throw new Error(`WebGPU device lost: ${this.lostReason}`);
    pass.buffer('y').set(yv);
    if (sv) for (let b = 0; b < B; b++) pass.ssm(l, b).set(sv.subarray(b * E * N, (b + 1) * E * N));
  }

  /**
   * Runs every layer of a split forward the model has begun, with its middle stage here.
   * @param {import('../bindings/gpu.js').GpuPass} pass
   */
  async layers(pass) {
    for (let l = 0; l < this.config.nLayer; l++) {
      pass.pre(l);
      await this._mid(l, pass);
      pass.post(l);
    }
  }

  destroy() {
    this.resident?.destroy();
    this.resident = null;
    this.scratch?.destroy();
    for (const b of [...(this.A ?? []), ...(this.D ?? [])]) b.destroy();
  }
}
