// selective_scan_forward.wgsl: mirrors selective_scan_forward (src/ops/ssm.c) for B sequences:
//   s_t = exp(delta_t * A) * s_{t-1} + delta_t * B_t * u_t ;  y_t = s_t . C_t + D * u_t
// over tokens [t0, t0 + nt) of sequences of length L, from the state s [B, E, N] (in/out), so the
// host runs long sequences in time chunks (one dispatch each) and the decode step is nt = 1.
// Parallel over channels and states: a workgroup holds WG_E channels x N states; y sums over N in
// workgroup memory. Bindings in the C argument order: outputs, inputs, weights, dims.
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

var<workgroup> part: array<f32, 256>;                              // WG_E * N <= 256

@compute @workgroup_size(WG_E * N)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let le = li / N;
  let n = li % N;
  let e = wg.x * WG_E + le;
  let b = wg.y;
  let live = e < dims.E;
  var st = 0.0;
  var a = 0.0;
  let si = (b * dims.E + e) * N + n;
  if (live) {
    st = s[si];
    a = A[e * N + n];
  }
  for (var t = dims.t0; t < dims.t0 + dims.nt; t++) {
    let row = b * dims.L + t;
    var contrib = 0.0;
    var ut = 0.0;
    if (live) {
      let dt = delta[row * dims.E + e];
      ut = u[row * dims.E + e];
      let r = row * dims.bc_stride + dims.bc_offset;
      st = exp(dt * a) * st + dt * bc[r + n] * ut;
      contrib = st * bc[r + N + n];
    }
    part[li] = contrib;
    workgroupBarrier();
    if (live && n == 0u) {
      var acc = 0.0;
      for (var k = 0u; k < N; k++) {
        acc += part[le * N + k];
      }
      y[row * dims.E + e] = acc + D[e] * ut;
    }
    workgroupBarrier();
  }
  if (live) {
    s[si] = st;
  }
}
