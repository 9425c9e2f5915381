// conv1d_silu_forward.wgsl: mirrors conv1d_silu_forward (src/ops/conv1d.c) for B sequences: the
// causal depthwise conv of x (rows of stride x_stride, starting at column x_offset) plus bias, then
// SiLU; positions before t = 0 come from hist [B, K-1, E] (the decode state; zeros for a fresh
// sequence). It writes u, and with UPDATE_HIST the next history to hist_out (the last K-1 times,
// written by the invocations of the last position, which read them anyway: hist_out must not be
// hist, so the caller double-buffers it).
override K: u32 = 4u;
override UPDATE_HIST: bool = false;

struct Dims { B: u32, L: u32, E: u32, x_stride: u32, x_offset: u32, has_bias: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<storage, read_write> u: array<f32>;        // [B, L, E]
@group(0) @binding(1) var<storage, read_write> hist_out: array<f32>; // [B, K-1, E]
@group(0) @binding(2) var<storage, read> hist: array<f32>;           // [B, K-1, E]
@group(0) @binding(3) var<storage, read> x: array<f32>;              // rows [B*L, x_stride]
@group(0) @binding(4) var<storage, read> w: array<f32>;              // [E, K]
@group(0) @binding(5) var<storage, read> bias: array<f32>;           // [E]
@group(0) @binding(6) var<uniform> dims: Dims;

fn x_at(b: u32, s: i32, e: u32) -> f32 {
  if (s >= 0) {
    return x[(b * dims.L + u32(s)) * dims.x_stride + dims.x_offset + e];
  }
  return hist[(b * (K - 1u) + u32(i32(K) - 1 + s)) * dims.E + e];
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x;
  let t = gid.y;
  let b = gid.z;
  if (e >= dims.E || t >= dims.L) {
    return;
  }
  var acc = 0.0;
  if (dims.has_bias != 0u) {
    acc = bias[e];
  }
  for (var k = 0u; k < K; k++) {
    acc += w[e * K + k] * x_at(b, i32(t) - i32(K - 1u) + i32(k), e);
  }
  u[(b * dims.L + t) * dims.E + e] = acc / (1.0 + exp(-acc));
  if (UPDATE_HIST && t + 1u == dims.L) {
    // new row j holds time s = L - (K-1) + j
    for (var j = 0u; j + 1u < K; j++) {
      hist_out[(b * (K - 1u) + j) * dims.E + e] = x_at(b, i32(dims.L) - i32(K - 1u) + i32(j), e);
    }
  }
}
