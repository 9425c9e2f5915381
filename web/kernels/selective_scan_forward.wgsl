// selective_scan_forward.wgsl: mirrors selective_scan_forward (src/ops/ssm.c) for B sequences:
//   s_t = exp(delta_t * A) * s_{t-1} + delta_t * B_t * u_t ;  y_t = s_t . C_t + D * u_t
// over tokens [t0, t0 + nt) of sequences of length L, from the state s [B, E, N] (in/out), so the
// host runs long sequences in time chunks (one dispatch each) and the decode step is nt = 1.
// Parallel over channels and states: a workgroup holds WG_E channels x N states (WG_E * N <= 64);
// y sums over N in workgroup memory, a tile of TT tokens at a time. Bindings in the C argument order: outputs, inputs, weights, dims.
override WG_E: u32 = 4u;
override N: u32 = 16u;

struct Dims { B: u32, L: u32, E: u32, bc_stride: u32, bc_offset: u32, t0: u32, nt: u32, pad: u32 }

@group(0) @binding(0) var<storage, read_write> y: array<f32>;      // [B, L, E]
@group(0) @binding(1) var<storage, read_write> s: array<f32>;      // [B, E, N]
@group(0) @binding(2) var<storage, read> u: array<f32>;            // [B, L, E]
@group(0) @binding(3) var<storage, read> delta: array<f32>;        // [B, L, E]
@group(0) @binding(4) var<storage, read> bc: array<f32>;           // rows [B*L, bc_stride]: B at bc_offset, C at bc_offset + N
@group(0) @binding(5) var<storage, read> A: array<f32>;            // [E, N] (= -exp(A_log))
@group(0) @binding(6) var<storage, read> D: array<f32>;            // [E]
@group(0) @binding(7) var<uniform> dims: Dims;

const TT: u32 = 32u;                                               // tokens per tile
var<workgroup> prod: array<f32, 2048>;                             // [TT, WG_E * N] s * C products (WG_E * N <= 64)

@compute @workgroup_size(WG_E * N)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let le = li / N;
  let n = li % N;
  let e = wg.x * WG_E + le;
  let b = wg.y;
  let live = e < dims.E;
  let W = WG_E * N;
  var st = 0.0;
  var a = 0.0;
  let si = (b * dims.E + e) * N + n;
  if (live) {
    st = s[si];
    a = A[e * N + n];
  }
  // time in tiles of TT tokens: each thread walks its (channel, state) through the tile and keeps
  // s * C; then the workgroup sums over N for every (token, channel) of the tile: two barriers a
  // tile instead of two a token
  for (var t0 = dims.t0; t0 < dims.t0 + dims.nt; t0 += TT) {
    let tn = min(TT, dims.t0 + dims.nt - t0);
    for (var k = 0u; k < tn; k++) {
      var contrib = 0.0;
      if (live) {
        let row = b * dims.L + t0 + k;
        let dt = delta[row * dims.E + e];
        let r = row * dims.bc_stride + dims.bc_offset;
        st = exp(dt * a) * st + dt * bc[r + n] * u[row * dims.E + e];
        contrib = st * bc[r + N + n];
      }
      prod[k * W + li] = contrib;
    }
    workgroupBarrier();
    for (var idx = li; idx < tn * WG_E; idx += W) {
      let k = idx / WG_E;
      let ce = idx % WG_E;
      let e2 = wg.x * WG_E + ce;
      if (e2 < dims.E) {
        var acc = 0.0;
        for (var j = 0u; j < N; j++) {
          acc += prod[k * W + ce * N + j];
        }
        let row = b * dims.L + t0 + k;
        y[row * dims.E + e2] = acc + D[e2] * u[row * dims.E + e2];
      }
    }
    workgroupBarrier();
  }
  if (live) {
    s[si] = st;
  }
}
