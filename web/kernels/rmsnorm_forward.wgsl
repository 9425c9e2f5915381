// rmsnorm_forward.wgsl: mirrors rmsnorm_forward (src/ops/rmsnorm.c):
//   out[t] = inp[t] / sqrt(mean(inp[t]^2) + eps) * weight
// one workgroup per token row (rows of stride ldi from ioff in inp, ldo from ooff in out), its
// sum of squares reduced in workgroup memory (a different order from the C loop: the tests use a
// tolerance).
struct Dims { T: u32, C: u32, ldi: u32, ldo: u32, ioff: u32, ooff: u32, eps: f32, pad: u32 }

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<uniform> dims: Dims;

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let t = wid.x + wid.y * nwg.x;
  if (t >= dims.T) { // uniform in the workgroup: no barrier is skipped by part of it
    return;
  }
  let x0 = dims.ioff + t * dims.ldi;
  var s = 0.0;
  for (var c = li; c < dims.C; c += 256u) {
    let v = inp[x0 + c];
    s += v * v;
  }
  part[li] = s;
  workgroupBarrier();
  for (var step = 128u; step > 0u; step /= 2u) {
    if (li < step) {
      part[li] += part[li + step];
    }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(part[0] / f32(dims.C) + dims.eps);
  let y0 = dims.ooff + t * dims.ldo;
  for (var c = li; c < dims.C; c += 256u) {
    out[y0 + c] = inp[x0 + c] * inv * weight[c];
  }
}
