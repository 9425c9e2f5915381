// selective_scan_forward.wgsl: mirrors selective_scan_forward (src/ops/ssm.c) for B sequences:
//   s_t = exp(delta_t * A) * s_{t-1} + delta_t * B_t * u_t ;  y_t = s_t . C_t + D * u_t
// over tokens [t0, t0 + nt) of sequences of length L, from the state s [B, E, N] (in/out), so the
// host runs long sequences in time chunks (one dispatch each) and the decode step is nt = 1.
// Parallel over channels and states: a workgroup holds WG_E channels x N states. Time goes in
// chunks of TC tokens: the workgroup loads the chunk's delta and u (its channels) and B and C
// into workgroup memory together, each invocation runs its state through the TC tokens from
// there, leaving s_t . C_t terms in workgroup memory, and then y of the chunk's TC x WG_E
// (token, channel) pairs is summed over N (in n order) by the workgroup in parallel: three
// barriers per chunk instead of two per token, and no global load inside the recurrence. Bindings in the C argument order: outputs, inputs, weights, dims.
// Fused neighbours (overrides), so that a decode step is one dispatch instead of three:
//   SOFTPLUS  delta is read before softplus and softplus_forward's function applied here;
//   GATE      y is multiplied by silu(g) (gate_forward: g rows of stride g_stride from column
//             g_offset) as it is written;
//   DT        delta is dt_proj's output, made here (the decode step's dt_proj dispatch): binding 3
//             holds dt_proj's weights [E, R] (float32, or with DT_F16 halves packed two to a u32,
//             rows of ceil(R / 2) words: webgpu.js packF16Rows) and binding 6 holds D then dt_proj's
//             bias ([2, E]); the input is columns [0, R) of the bc rows (x_proj's output). Each
//             (token, channel) dot is split over the channel's N invocations (columns r = n mod N)
//             and summed in workgroup memory in n order, then the bias is added.
override WG_E: u32 = 8u;
override N: u32 = 16u;
override TC: u32 = 16u;
override SOFTPLUS: bool = false;
override GATE: bool = false;
override DT: bool = false;
override DT_F16: bool = false;
override DT_K: u32 = 16u; // with DT: columns per invocation, at least ceil(R / N)

struct Dims { B: u32, L: u32, E: u32, bc_stride: u32, bc_offset: u32, t0: u32, nt: u32, g_stride: u32, g_offset: u32, R: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read_write> y: array<f32>;      // [B, L, E]
@group(0) @binding(1) var<storage, read_write> s: array<f32>;      // [B, E, N]
@group(0) @binding(2) var<storage, read> u: array<f32>;            // [B, L, E]
@group(0) @binding(3) var<storage, read> delta: array<u32>;        // [B, L, E] float32 bits (with DT: dt_proj's weights)
@group(0) @binding(4) var<storage, read> bc: array<f32>;           // rows [B*L, bc_stride]: B at bc_offset, C at bc_offset + N
@group(0) @binding(5) var<storage, read> A: array<f32>;            // [E, N] (= -exp(A_log))
@group(0) @binding(6) var<storage, read> D: array<f32>;            // [E] (with DT: [2, E], D then dt_proj's bias)
@group(0) @binding(7) var<uniform> dims: Dims;
@group(0) @binding(8) var<storage, read> g: array<f32>;            // the gate input (with GATE; rows [B*L, g_stride])

// softplus_forward.wgsl's function (PyTorch's threshold 20; log1p's series for tiny exp(v))
fn softplus(v: f32) -> f32 {
  if (v > 20.0) {
    return v;
  }
  let q = exp(v);
  return select(log(1.0 + q), q - 0.5 * q * q, q < 1e-4);
}

// dt_proj's weight [e, r] (with DT)
fn wdt(e: u32, r: u32) -> f32 {
  if (DT_F16) {
    return unpack2x16float(delta[e * ((dims.R + 1u) / 2u) + r / 2u])[r & 1u];
  }
  return bitcast<f32>(delta[e * dims.R + r]);
}

var<workgroup> part: array<f32, TC * WG_E * N>; // s_t . C_t terms: [token][channel][state]
var<workgroup> dts: array<f32, TC * WG_E>;      // [token][channel]
var<workgroup> us: array<f32, TC * WG_E>;
var<workgroup> bs: array<f32, TC * N>;          // [token][state]
var<workgroup> cs: array<f32, TC * N>;

@compute @workgroup_size(WG_E * N)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let WG = WG_E * N;
  let le = li / N;
  let n = li % N;
  let e0 = wg.x * WG_E;
  let e = e0 + le;
  let b = wg.y;
  let live = e < dims.E;
  var st = 0.0;
  var a = 0.0;
  let si = (b * dims.E + e) * N + n;
  if (live) {
    st = s[si];
    a = A[e * N + n];
  }
  let end = dims.t0 + dims.nt;
  for (var c0 = dims.t0; c0 < end; c0 += TC) {
    let tc = min(TC, end - c0);
    if (DT) { // this invocation's share of dt_proj's dot for channel e, every token of the chunk
      for (var tt = 0u; tt < tc; tt++) {
        var p = 0.0;
        if (live) {
          let r0 = (b * dims.L + c0 + tt) * dims.bc_stride;
          // a constant trip count (R <= DT_K * N, checked by the host), so that the loads are
          // issued together rather than one after the other
          for (var j = 0u; j < DT_K; j++) {
            let r = n + j * N;
            if (r < dims.R) {
              p += wdt(e, r) * bc[r0 + r];
            }
          }
        }
        part[tt * WG + li] = p;
      }
      workgroupBarrier();
    }
    for (var i = li; i < TC * WG_E; i += WG) {
      let tt = i / WG_E;
      let ee = e0 + i % WG_E;
      var dv = 0.0;
      var uv = 0.0;
      if (tt < tc && ee < dims.E) {
        let row = b * dims.L + c0 + tt;
        if (DT) {
          var acc = 0.0;
          for (var k = 0u; k < N; k++) {
            acc += part[tt * WG + (i % WG_E) * N + k];
          }
          dv = acc + D[dims.E + ee];
        } else {
          dv = bitcast<f32>(delta[row * dims.E + ee]);
        }
        if (SOFTPLUS) {
          dv = softplus(dv);
        }
        uv = u[row * dims.E + ee];
      }
      dts[i] = dv;
      us[i] = uv;
    }
    for (var i = li; i < TC * N; i += WG) {
      let tt = i / N;
      let nn = i % N;
      var bv = 0.0;
      var cv = 0.0;
      if (tt < tc) {
        let r = (b * dims.L + c0 + tt) * dims.bc_stride + dims.bc_offset;
        bv = bc[r + nn];
        cv = bc[r + N + nn];
      }
      bs[i] = bv;
      cs[i] = cv;
    }
    workgroupBarrier();
    for (var tt = 0u; tt < tc; tt++) {
      let dt = dts[tt * WG_E + le];
      st = exp(dt * a) * st + dt * bs[tt * N + n] * us[tt * WG_E + le];
      part[tt * WG + li] = st * cs[tt * N + n];
    }
    workgroupBarrier();
    for (var i = li; i < tc * WG_E; i += WG) {
      let tt = i / WG_E;
      let l2 = i % WG_E;
      let ee = e0 + l2;
      if (ee < dims.E) {
        var acc = 0.0;
        for (var k = 0u; k < N; k++) {
          acc += part[tt * WG + l2 * N + k];
        }
        let row = b * dims.L + c0 + tt;
        var yv = acc + D[ee] * us[tt * WG_E + l2];
        if (GATE) {
          let gv = g[row * dims.g_stride + dims.g_offset + ee];
          yv *= gv / (1.0 + exp(-gv));
        }
        y[row * dims.E + ee] = yv;
      }
    }
    workgroupBarrier(); // the next chunk overwrites workgroup memory
  }
  if (live) {
    s[si] = st;
  }
}
