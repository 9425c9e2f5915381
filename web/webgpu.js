// webgpu.js: the WebGPU side of memba-wasm: finds a device (navigator.gpu in browsers, the npm
// package `webgpu` (Dawn) in Node), loads the WGSL kernels of web/kernels/ (one per op, mirroring
// a C function of src/ops/ with the same argument order), and runs them on GPU buffers.
// Deliberately not here: deciding when the GPU pays (the backend choice) and the model loop.
import { IS_NODE, IS_BROWSER, NAVIGATOR_GPU } from '../bindings/env.js';
import { nodeImport } from '../bindings/node-import.js';
import { filesBesideCode } from '../bindings/assets.js';

/* Each kernel's URL written out literally, so bundlers (Vite, webpack) copy the .wgsl file and
 * rewrite the URL; a template with a variable would not be followed by every bundler. */
const KERNEL_URLS = {
  selective_scan_forward: () => new URL('./kernels/selective_scan_forward.wgsl', import.meta.url),
  conv1d_silu_forward: () => new URL('./kernels/conv1d_silu_forward.wgsl', import.meta.url),
  softplus_forward: () => new URL('./kernels/softplus_forward.wgsl', import.meta.url),
  gate_forward: () => new URL('./kernels/gate_forward.wgsl', import.meta.url),
  lim_forward: () => new URL('./kernels/lim_forward.wgsl', import.meta.url),
  matmul_forward: () => new URL('./kernels/matmul_forward.wgsl', import.meta.url),
  rmsnorm_forward: () => new URL('./kernels/rmsnorm_forward.wgsl', import.meta.url),
  embedding_forward: () => new URL('./kernels/embedding_forward.wgsl', import.meta.url),
  argmax_forward: () => new URL('./kernels/argmax_forward.wgsl', import.meta.url),
};
const KERNELS = Object.keys(KERNEL_URLS);
/* Kernels with several entry points get an explicit layout (an 'auto' layout would drop the
 * bindings an entry point does not use); the others use 'auto'. */
const LAYOUTS = {
  selective_scan_forward: ['storage', 'storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'uniform', 'read-only-storage'],
  conv1d_silu_forward: ['storage', 'storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'uniform'],
  matmul_forward: ['storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'uniform', 'read-only-storage', 'read-only-storage'],
  embedding_forward: ['storage', 'read-only-storage', 'read-only-storage', 'uniform'],
};

/**
 * selective_scan_forward.wgsl's tiles for d_state N: WG_E channels per workgroup (WG_E x N <= 128
 * invocations, at most 16 channels) and TC tokens per chunk, as many (up to 16) as its workgroup
 * memory, 4 * TC * (WG_E * N + 2 * WG_E + 2 * N) bytes, allows within `maxBytes`.
 */
export function scanTiles(N, maxBytes = 16384) {
  const wgE = Math.max(1, Math.min(16, Math.floor(128 / N)));
  const perToken = 4 * (wgE * N + 2 * wgE + 2 * N);
  const tc = Math.max(1, Math.min(16, Math.floor(maxBytes / perToken)));
  return { wgE, tc };
}

/** Whether matmul_forward.wgsl's gemv1v (and so a fused rmsnorm) takes one token of this shape. */
export function matmulTakesNorm(C, f16, ioff = 0) {
  return C % (f16 ? 8 : 4) === 0 && ioff % 4 === 0;
}

/**
 * gemv1v's tiles for a matrix of OC rows of C values: { lanes (invocations per row, 8 to 256),
 * unroll4 }. Measured on an H200 (bench/results.md 2026-12-03 16:08 and 18:40, bench-resident
 * --tune-gemv): tall matrices (in_proj, lm_head: OC >= 8192) ran best with 16 lanes and four loads
 * in flight (3.5-3.9 TB/s), short ones (out_proj) with 64 lanes, x_proj (192 rows) with 128-256.
 * Never more lanes than vec4s in a row.
 */
export function gemvTiles(C, OC, f16) {
  const q = C / (f16 ? 8 : 4); // vec4s of words per row
  let cap = 8;
  while (cap < 64 && cap * 2 <= q) cap *= 2;
  if (OC >= 8192) return { lanes: Math.min(16, cap), unroll4: q >= 64 };
  // few rows (x_proj): more lanes per row, up to a workgroup a row, while there are fewer than 128
  // workgroups, so that each lane has fewer loads one after the other (2.8b x_proj: 5.1 us with 64
  // lanes, 4.3 with 128 or 256; 1.4b out_proj, 512 workgroups of 64 lanes, slower with 128:
  // bench/results.md 2026-12-03 18:40)
  let lanes = cap;
  while (lanes < 256 && lanes * 2 <= q && (OC * lanes) / 256 < 128) lanes *= 2;
  return { lanes, unroll4: false };
}

/** Token counts up to this run matmul_forward.wgsl's gemv (decode), more its tiled gemm. */
export const GEMV_MAX_TOKENS = 8;

/**
 * IEEE halves (a Uint16Array of rows x cols, row-major) packed two to a u32 word for the f16
 * kernels: each row ceil(cols / 2) words, column 2k in the low half of word k; an odd row's last
 * word has a zero high half.
 */
export function packF16Rows(halves, rows, cols) {
  const words = Math.ceil(cols / 2);
  if (halves.length !== rows * cols) throw new Error(`packF16Rows: ${halves.length} halves for ${rows} x ${cols}`);
  if (cols % 2 === 0) // the same bytes: a view where they are 4-byte aligned, else a copy
    return halves.byteOffset % 4 === 0
      ? new Uint32Array(halves.buffer, halves.byteOffset, halves.length / 2)
      : new Uint32Array(halves.buffer.slice(halves.byteOffset, halves.byteOffset + halves.byteLength));
  const out = new Uint32Array(rows * words);
  for (let r = 0; r < rows; r++)
    for (let k = 0; k < words; k++) {
      const c = 2 * k;
      out[r * words + k] = halves[r * cols + c] | (c + 1 < cols ? halves[r * cols + c + 1] << 16 : 0);
    }
  return out;
}
const NODE_ONLY = IS_NODE && !IS_BROWSER; // Node proper: WebGPU comes from the npm package, kernels from disk
let nodeGpu = null; // Dawn's instance must outlive its devices: keep it for the process

/**
 * A WebGPU device, or { device: null, reason } when there is none.
 * @param {{ gpu?: GPU, powerPreference?: string }} [opts]
 */
export async function requestDevice(opts = {}) {
  let gpu = opts.gpu ?? NAVIGATOR_GPU;
  if (!gpu && NODE_ONLY) {
    try {
      const webgpu = await nodeImport('webgpu'); // Node only: kept out of browser bundles
      for (const [k, v] of Object.entries(webgpu.globals ?? {})) if (!(k in globalThis)) globalThis[k] = v;
      nodeGpu ??= webgpu.create([]);
      gpu = nodeGpu;
    } catch (err) {
      return { device: null, reason: `the npm package 'webgpu' is not installed (${err.code ?? err.message})` };
    }
  }
  if (!gpu) return { device: null, reason: 'this environment has no WebGPU (navigator.gpu is missing)' };
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) return { device: null, reason: 'WebGPU found no adapter (no GPU, or no Vulkan/Metal/D3D driver)' };
  const limits = adapter.limits;
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
      maxBufferSize: limits.maxBufferSize,
      maxStorageBuffersPerShaderStage: Math.min(limits.maxStorageBuffersPerShaderStage, 10),
    },
  });
  const info = adapter.info ?? {};
  return { device, adapter, description: [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ') || 'unknown adapter' };
}

async function kernelSource(name) {
  if (!filesBesideCode()) { // a bundle that copied no .wgsl (esbuild, Rollup, the inlined worker)
    const { default: sources } = await import('../dist/kernels-inline.js');
    return sources[name];
  }
  const url = KERNEL_URLS[name]();
  if (NODE_ONLY) {
    const fs = await nodeImport('node:fs/promises');
    return fs.readFile(url, 'utf8');
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot load ${url}: HTTP ${res.status}`);
  return res.text();
}

const STORAGE = 0x80 | 0x4 | 0x8; // STORAGE | COPY_SRC | COPY_DST
const UNIFORM_CACHE = 4096; // distinct uniform contents kept (then all are dropped and made again)
const BIND_GROUP_CACHE = 8192;

/** A buffer the device cannot hold: the call does not fit this GPU, which is not a GPU failure. */
export class GpuSizeError extends Error {
  constructor(message) {
    super(message);
    this.name = 'GpuSizeError';
  }
}

/**
 * Dispatches recorded once and replayed many times (GpuKernels.replay): what a decode step
 * records is the same every token, so its pipelines, bind groups and uniforms are looked up once.
 * Pass one as the `enc` of any GpuKernels op to record into it.
 */
export class DispatchList {
  constructor() {
    this.ops = []; // pipeline, bind group, workgroup counts, for each dispatch
  }

  get length() {
    return this.ops.length / 3;
  }
}

/** Named activation buffers reused across calls, each grown (made again) when a call needs more. */
export class ScratchPool {
  constructor(kernels) {
    this.kernels = kernels;
    this.buffers = {};
    this.sizes = {};
    this.generation = 0; // grows whenever a buffer is made again: what recorded the old one is stale
  }

  /** The buffer `name` of at least n 4-byte words. */
  get(name, n) {
    if (!this.buffers[name] || this.sizes[name] < n) {
      this.buffers[name]?.destroy();
      this.buffers[name] = null; // a failed make leaves no destroyed buffer behind
      this.buffers[name] = this.kernels.buffer(n);
      this.sizes[name] = n;
      this.generation++;
    }
    return this.buffers[name];
  }

  destroy() {
    for (const b of Object.values(this.buffers)) b?.destroy();
    this.buffers = {};
    this.sizes = {};
  }
}

/** The WGSL kernels on one device, with buffer helpers. */
export class GpuKernels {
  static async create(device) {
    const k = new GpuKernels(device);
    for (const name of KERNELS) {
      k.sources[name] = await kernelSource(name);
      // surface WGSL errors here, as exceptions, rather than as invalid pipelines later
      device.pushErrorScope('validation');
      device.createShaderModule({ code: k.sources[name], label: name });
      const err = await device.popErrorScope();
      if (err) throw new Error(`${name}.wgsl: ${err.message}`);
    }
    return k;
  }

  constructor(device) {
    this.device = device;
    this.sources = {};
    this.pipelines = new Map();
    this.uniforms = new Map(); // content -> buffer
    this.bindGroups = new Map(); // pipeline and buffer ids -> bind group
    this.ids = new WeakMap();
    this.nextId = 1;
    this.gemvTuning = null; // (C, OC, f16) => { lanes, unroll4 }: a benchmark's override of gemvTiles
  }

  pipeline(name, entryPoint = 'main', constants = {}) {
    const key = `${name}:${entryPoint}:${JSON.stringify(constants)}`;
    let p = this.pipelines.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ code: this.sources[name], label: name });
      let layout = 'auto';
      if (LAYOUTS[name]) {
        const bgl = this.device.createBindGroupLayout({
          entries: LAYOUTS[name].map((type, binding) => ({ binding, visibility: 4 /* COMPUTE */, buffer: { type } })),
        });
        layout = this.device.createPipelineLayout({ bindGroupLayouts: [bgl] });
      }
      p = this.device.createComputePipeline({ layout, compute: { module, entryPoint, constants }, label: key });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /**
   * A storage buffer holding `data` (a Float32Array, or a Uint32Array / Int32Array of words), or
   * `n` zeros (4-byte words). A size past the device's buffer or binding limit throws a
   * GpuSizeError (createBuffer would give an invalid buffer, and the kernels garbage).
   */
  buffer(dataOrN) {
    const n = typeof dataOrN === 'number' ? dataOrN : dataOrN.length;
    const size = Math.max(16, Math.ceil((n * 4) / 16) * 16);
    const { maxBufferSize, maxStorageBufferBindingSize } = this.device.limits;
    if (!Number.isSafeInteger(size) || size > Math.min(maxBufferSize, maxStorageBufferBindingSize))
      throw new GpuSizeError(`a GPU buffer of ${size} bytes is past this device's limit (${Math.min(maxBufferSize, maxStorageBufferBindingSize)} bytes)`);
    const buf = this.device.createBuffer({ size, usage: STORAGE });
    if (typeof dataOrN !== 'number') this.write(buf, dataOrN);
    return buf;
  }

  write(buf, data, offsetFloats = 0) {
    // the threaded build's heap is a SharedArrayBuffer, which writeBuffer does not take everywhere
    // (Dawn's Node binding refuses it): such views are copied first
    if (typeof SharedArrayBuffer !== 'undefined' && data.buffer instanceof SharedArrayBuffer) data = data.slice();
    this.device.queue.writeBuffer(buf, offsetFloats * 4, data.buffer, data.byteOffset, data.byteLength);
  }

  /**
   * A uniform buffer holding `words` (u32, or { f } for an f32), made once per distinct content
   * and reused after (a decode step records the same dims every token; at most UNIFORM_CACHE).
   */
  uniform(words) {
    const data = new ArrayBuffer(Math.ceil((words.length * 4) / 16) * 16);
    const i = new Uint32Array(data);
    const f = new Float32Array(data);
    words.forEach((w, k) => (typeof w === 'object' ? (f[k] = w.f) : (i[k] = w)));
    const key = i.join(',');
    let buf = this.uniforms.get(key);
    if (!buf) {
      if (this.uniforms.size >= UNIFORM_CACHE) this._dropCaches();
      buf = this.device.createBuffer({ size: data.byteLength, usage: 0x40 | 0x8 }); // UNIFORM | COPY_DST
      this.device.queue.writeBuffer(buf, 0, data);
      this.uniforms.set(key, buf);
    }
    return buf;
  }

  /** A small integer naming a buffer, for the bind group cache's keys. */
  _id(buf) {
    let id = this.ids.get(buf);
    if (id === undefined) this.ids.set(buf, (id = this.nextId++));
    return id;
  }

  _dropCaches() {
    // not destroyed: a command buffer being recorded may still use them (the GC frees them)
    this.uniforms.clear();
    this.bindGroups.clear();
  }

  /** Copies n floats of a buffer back. */
  async read(buf, n) {
    const staging = this.device.createBuffer({ size: Math.max(16, Math.ceil((n * 4) / 16) * 16), usage: 0x1 | 0x8 }); // MAP_READ | COPY_DST
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(buf, 0, staging, 0, staging.size);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(1); // GPUMapMode.READ
    const out = new Float32Array(staging.getMappedRange().slice(0, n * 4));
    staging.unmap();
    staging.destroy();
    return out;
  }

  /**
   * Records one dispatch: into `enc` when it is an open compute pass, else in a pass of its own on
   * the command encoder `enc` (or on a new one, submitted). The bind group is made once per
   * pipeline and buffers.
   */
  dispatch(pipeline, buffers, groups, enc) {
    const key = `${this._id(pipeline)}:${buffers.map((b) => this._id(b)).join(',')}`;
    let bind = this.bindGroups.get(key);
    if (!bind) {
      if (this.bindGroups.size >= BIND_GROUP_CACHE) this.bindGroups.clear();
      bind = this.device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      this.bindGroups.set(key, bind);
    }
    if (enc instanceof DispatchList) {
      enc.ops.push(pipeline, bind, groups);
      return;
    }
    if (enc && typeof enc.dispatchWorkgroups === 'function') { // an open compute pass: one more dispatch in it
      enc.setPipeline(pipeline);
      enc.setBindGroup(0, bind);
      enc.dispatchWorkgroups(...groups);
      return;
    }
    const own = !enc;
    enc ??= this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bind);
    pass.dispatchWorkgroups(...groups);
    pass.end();
    if (own) this.device.queue.submit([enc.finish()]);
  }

  /** Records the dispatches of a DispatchList into an open compute pass. */
  replay(pass, list) {
    const ops = list.ops;
    let last = null;
    for (let i = 0; i < ops.length; i += 3) {
      if (ops[i] !== last) pass.setPipeline((last = ops[i]));
      pass.setBindGroup(0, ops[i + 1]);
      const g = ops[i + 2];
      pass.dispatchWorkgroups(g[0], g[1], g[2]);
    }
  }

  /**
   * selective_scan_forward over tokens [t0, t0 + nt), in time chunks of `chunk` tokens. With
   * softplus, delta is taken before softplus (applied in the kernel); with g, y is gated by
   * silu(g) (rows of stride gStride from column gOffset), as gate_forward would. With dt
   * ({ w, f16, R }: dt_proj's weights, float32 or packF16Rows words, and its rank), delta is made
   * in the kernel as dt_proj of columns [0, R) of the bc rows plus its bias (`delta` is not read),
   * and D must hold D then dt_proj's bias ([2, E]).
   */
  selectiveScan({ y, s, u, delta, bc, A, D, g = null }, { B, L, E, N, bcStride, bcOffset, t0 = 0, nt = L, chunk = 256, softplus = false, gStride = 0, gOffset = 0, dt = null }, enc) {
    if (N > 256) throw new Error(`selective_scan_forward.wgsl holds at most 256 states per channel, got d_state ${N}`);
    const { wgE, tc } = scanTiles(N, this.device.limits.maxComputeWorkgroupStorageSize);
    const c = { WG_E: wgE, N, TC: tc, SOFTPLUS: softplus ? 1 : 0, GATE: g ? 1 : 0 };
    if (dt) Object.assign(c, { DT: 1, DT_F16: dt.f16 ? 1 : 0, DT_K: Math.ceil(dt.R / N) });
    const p = this.pipeline('selective_scan_forward', 'main', c);
    for (let c0 = t0; c0 < t0 + nt; c0 += chunk) {
      const n = Math.min(chunk, t0 + nt - c0);
      const dims = this.uniform([B, L, E, bcStride, bcOffset, c0, n, gStride, gOffset, dt ? dt.R : 0, 0, 0]);
      this.dispatch(p, [y, s, u, dt ? dt.w : delta, bc, A, D, dims, g ?? u], [Math.ceil(E / wgE), B, 1], enc);
    }
  }

  /** conv1d_silu_forward: u from x (and hist); hist_out gets the next history when asked. */
  conv1dSilu({ u, histOut, hist, x, w, bias }, { B, L, E, K, xStride, xOffset = 0, updateHist = false }, enc) {
    const dims = this.uniform([B, L, E, xStride, xOffset, bias ? 1 : 0, 0, 0]);
    const bufs = [u, histOut, hist, x, w, bias ?? w, dims];
    this.dispatch(this.pipeline('conv1d_silu_forward', 'main', { K, UPDATE_HIST: updateHist ? 1 : 0 }), bufs, [Math.ceil(E / 64), L, B], enc);
  }

  softplus({ x }, { n }, enc) {
    const groups = Math.ceil(n / 256);
    const gx = Math.min(groups, 65535);
    this.dispatch(this.pipeline('softplus_forward'), [x, this.uniform([n, 0, 0, 0])], [gx, Math.ceil(groups / gx), 1], enc);
  }

  gate({ y, g }, { T, E, gStride, gOffset = 0 }, enc) {
    this.dispatch(this.pipeline('gate_forward'), [y, g, this.uniform([T, E, gStride, gOffset])], [Math.ceil(E / 64), T, 1], enc);
  }

  /**
   * matmul_forward: out[t, o] (+)= sum_c inp[t, c] * w[o, c] (+ bias[o]); w float32 [OC, C], or
   * with f16 the words of packF16Rows. Rows of inp / out have strides ldi / ldo (default C / OC)
   * from element offsets ioff / ooff; acc adds into out (the residual add). norm (a buffer of C
   * floats, with eps): the rmsnorm of inp in front, inp / sqrt(mean(inp^2) + eps) * norm, for
   * one token whose shape gemv1v takes (matmulTakesNorm).
   */
  matmul({ out, inp, w, bias, norm = null }, { T, C, OC, f16 = false, acc = false, ldi = C, ldo = OC, ioff = 0, ooff = 0, eps = 0 }, enc) {
    const vec = T === 1 && matmulTakesNorm(C, f16, ioff);
    if (norm && !vec) throw new Error(`matmul_forward.wgsl: a fused norm needs one token, C % ${f16 ? 8 : 4} == 0 and ioff % 4 == 0 (T ${T}, C ${C}, ioff ${ioff})`);
    const dims = this.uniform([T, C, OC, ldi, ldo, ioff, ooff, { f: eps }]);
    const constants = { F16: f16 ? 1 : 0, ACC: acc ? 1 : 0, HAS_BIAS: bias ? 1 : 0 };
    if (vec) constants.NORM = norm ? 1 : 0;
    const bufs = [out, inp, w, bias ?? inp, dims, inp, norm ?? inp];
    if (vec) {
      const tiles = this.gemvTuning?.(C, OC, f16) ?? gemvTiles(C, OC, f16);
      constants.V_LANES = tiles.lanes;
      constants.V_UNROLL4 = tiles.unroll4 ? 1 : 0;
      const groups = Math.ceil(OC / (256 / constants.V_LANES));
      const gx = Math.min(groups, 65535);
      this.dispatch(this.pipeline('matmul_forward', 'gemv1v', constants), bufs, [gx, Math.ceil(groups / gx), 1], enc);
    } else if (T <= GEMV_MAX_TOKENS) {
      const groups = Math.ceil(OC / 8);
      const gx = Math.min(groups, 65535);
      this.dispatch(this.pipeline('matmul_forward', T === 1 ? 'gemv1' : 'gemv', constants), bufs, [gx, Math.ceil(groups / gx), 1], enc);
    } else {
      if (Math.ceil(T / 64) > 65535) throw new Error(`matmul_forward.wgsl: ${T} tokens in one call (at most ${65535 * 64})`);
      this.dispatch(this.pipeline('matmul_forward', 'gemm', constants), bufs, [Math.ceil(OC / 64), Math.ceil(T / 64), 1], enc);
    }
  }

  /** rmsnorm_forward: out[t] = inp[t] / sqrt(mean(inp[t]^2) + eps) * weight, rows of stride ldi / ldo from ioff / ooff. */
  rmsnorm({ out, inp, weight }, { T, C, eps, ldi = C, ldo = C, ioff = 0, ooff = 0 }, enc) {
    const gx = Math.min(T, 65535);
    const dims = this.uniform([T, C, ldi, ldo, ioff, ooff, { f: eps }, 0]);
    this.dispatch(this.pipeline('rmsnorm_forward'), [out, inp, weight, dims], [gx, Math.ceil(T / gx), 1], enc);
  }

  /** embedding_forward: out[i] = w[ids[i]] for n ids (u32), rows of C values; w float32 [V, C] or packF16Rows words. */
  embedding({ out, ids, w }, { n, C, V, f16 = false }, enc) {
    const dims = this.uniform([n, C, V, 0]);
    const gy = Math.min(n, 65535);
    this.dispatch(this.pipeline('embedding_forward', 'main', { F16: f16 ? 1 : 0 }), [out, ids, w, dims], [Math.ceil(C / 64), gy, Math.ceil(n / gy)], enc);
  }

  /** argmax_forward: out[r] (u32) = the first index of the largest of n values of row r (rows of stride ld). */
  argmax({ out, x }, { R, n, ld = n }, enc) {
    this.dispatch(this.pipeline('argmax_forward'), [out, x, this.uniform([R, n, ld, 0])], [R, 1, 1], enc);
  }

  /** argmax_forward's append: the R ids (u32) of `ids` appended to the token log `log` ([count, ids...]). */
  argmaxAppend({ log, ids }, { R }, enc) {
    this.dispatch(this.pipeline('argmax_forward', 'append'), [log, ids, this.uniform([R, 0, 0, 0])], [1, 1, 1], enc);
  }

  /** Copies n u32 words of a buffer back. */
  async readU32(buf, n) {
    return new Uint32Array((await this.read(buf, n)).buffer);
  }

  lim({ v, post, U, z, prevPost }, { B, L, E, c, zStride, zOffset = 0, pos0 = 0, preReset = false, tau, vTh }, enc) {
    const dims = this.uniform([B, L, E, c, zStride, zOffset, pos0, preReset ? 1 : 0, prevPost ? 1 : 0, { f: tau }, { f: vTh }, 0]);
    this.dispatch(this.pipeline('lim_forward'), [v, post, U, z, prevPost ?? z, dims], [Math.ceil(E / 64), c, B], enc);
  }
}
