// embedding_forward.wgsl: mirrors the embedding gather (src/core/weights.c, the rows of the
// embedding slot decoded to float32): out[i, c] = W[ids[i], c] for i < n, c < C. W is float32
// [V, C], or with F16 halves packed two to a u32 word, rows of ceil(C / 2) words (as
// matmul_forward.wgsl). Ids are checked on the CPU before they reach the GPU; one past the
// table gives zeros here rather than reading another buffer.
override F16: bool = false;

struct Dims { n: u32, C: u32, V: u32, pad: u32 }

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<uniform> dims: Dims;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  let i = gid.y + gid.z * 65535u;
  if (c >= dims.C || i >= dims.n) {
    return;
  }
  let id = ids[i];
  var v = 0.0;
  if (id < dims.V) {
    if (F16) {
      let p = unpack2x16float(w[id * ((dims.C + 1u) / 2u) + c / 2u]);
      v = select(p.x, p.y, (c & 1u) == 1u);
    } else {
      v = bitcast<f32>(w[id * dims.C + c]);
    }
  }
  out[i * dims.C + c] = v;
}
