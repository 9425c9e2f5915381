// softplus_forward.wgsl: mirrors softplus_forward (src/ops/ssm.c): x = softplus(x) in place,
// softplus(v) = v for v > 20 (PyTorch's threshold), else log(1 + exp(v)).
struct Dims { n: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> dims: Dims;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i >= dims.n) {
    return;
  }
  let v = x[i];
  if (v <= 20.0) {
    // log1p(exp(v)) without losing small values: log1p(q) = q - q^2/2 + ... for tiny q
    let q = exp(v);
    if (q < 1e-4) {
      x[i] = q - 0.5 * q * q;
    } else {
      x[i] = log(1.0 + q);
    }
  }
}
