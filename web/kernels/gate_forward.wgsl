// gate_forward.wgsl: mirrors gate_forward (src/ops/ssm.c): y[t, e] *= silu(g[t, e]), with g rows of
// stride g_stride starting at column g_offset (z inside in_proj's output, or the LIM values).
struct Dims { T: u32, E: u32, g_stride: u32, g_offset: u32 }

@group(0) @binding(0) var<storage, read_write> y: array<f32>;   // [T, E]
@group(0) @binding(1) var<storage, read> g: array<f32>;         // rows [T, g_stride]
@group(0) @binding(2) var<uniform> dims: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x;
  let t = gid.y;
  if (e >= dims.E || t >= dims.T) {
    return;
  }
  let v = g[t * dims.g_stride + dims.g_offset + e];
  y[t * dims.E + e] *= v / (1.0 + exp(-v));
}
