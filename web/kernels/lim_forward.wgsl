// lim_forward.wgsl: mirrors lim_forward (src/ops/lim.c) for B sequences: Memba's leaky integrate
// membrane. One invocation per (sequence, slot j, channel e) walks its chunks in order (slots are
// independent): A = tau * U[j] + z_t ; S = A > v_th ; U[j] = A * (1 - S) ; v_t = U[j] or A.
// With has_prev, slot j starts from the previous layer's post value of the same token while
// pos0 + t < c (the causal `first` transfer). Writes v and post [B, L, E]; U [B, c, E] in/out.
struct Dims { B: u32, L: u32, E: u32, c: u32, z_stride: u32, z_offset: u32, pos0: u32, pre_reset: u32, has_prev: u32, tau: f32, v_th: f32, pad: u32 }

@group(0) @binding(0) var<storage, read_write> v: array<f32>;      // [B, L, E]
@group(0) @binding(1) var<storage, read_write> post: array<f32>;   // [B, L, E]
@group(0) @binding(2) var<storage, read_write> U: array<f32>;      // [B, c, E]
@group(0) @binding(3) var<storage, read> z: array<f32>;            // rows [B*L, z_stride]
@group(0) @binding(4) var<storage, read> prev_post: array<f32>;    // [B, L, E] (unused without has_prev)
@group(0) @binding(5) var<uniform> dims: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x;
  let j = gid.y;
  let b = gid.z;
  if (e >= dims.E || j >= dims.c) {
    return;
  }
  let ui = (b * dims.c + j) * dims.E + e;
  var m = U[ui];
  // tokens of this slot: absolute positions p = pos0 + t with p % c == j
  let first_t = (j + dims.c - dims.pos0 % dims.c) % dims.c;
  for (var t = first_t; t < dims.L; t += dims.c) {
    let row = b * dims.L + t;
    var base = m;
    if (dims.has_prev != 0u && dims.pos0 + t < dims.c) {
      base = prev_post[row * dims.E + e];
    }
    let a = dims.tau * base + z[row * dims.z_stride + dims.z_offset + e];
    var un = a;
    if (a > dims.v_th) {
      un = 0.0;
    }
    m = un;
    post[row * dims.E + e] = un;
    if (dims.pre_reset != 0u) {
      v[row * dims.E + e] = a;
    } else {
      v[row * dims.E + e] = un;
    }
  }
  U[ui] = m;
}
