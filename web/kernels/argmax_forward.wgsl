// argmax_forward.wgsl: mirrors argmax (bindings/sampler.js, the greedy sampler): for each of R
// rows of n logits, the index of the largest value, the first one on ties (a NaN never wins, as
// `>` is false for it, except at index 0, where argmax starts). One workgroup per row: each invocation scans a strided part, then a tree
// reduction keeps (value, index) with the lower index on ties.
struct Dims { R: u32, n: u32, ld: u32, pad: u32 }

@group(0) @binding(0) var<storage, read_write> out: array<u32>;   // [R]
@group(0) @binding(1) var<storage, read> x: array<f32>;           // rows [R, ld]
@group(0) @binding(2) var<uniform> dims: Dims;

var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;

const NONE: u32 = 0xffffffffu;

// by its bits: WGSL lets a compiler assume there are no NaNs, so x != x may be folded to false
fn is_nan(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
  let r = wid.x;
  if (r >= dims.R) { // uniform in the workgroup
    return;
  }
  var v = 0.0;
  var idx = NONE;
  for (var i = li; i < dims.n; i += 256u) {
    let xi = x[r * dims.ld + i];
    if (is_nan(xi)) {
      continue;
    }
    if (idx == NONE || xi > v) {
      v = xi;
      idx = i;
    }
  }
  bv[li] = v;
  bi[li] = idx;
  workgroupBarrier();
  for (var step = 128u; step > 0u; step /= 2u) {
    if (li < step) {
      let oi = bi[li + step];
      let ov = bv[li + step];
      let mi = bi[li];
      if (oi != NONE && (mi == NONE || ov > bv[li] || (ov == bv[li] && oi < mi))) {
        bv[li] = ov;
        bi[li] = oi;
      }
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    let x0 = x[r * dims.ld];
    // argmax starts from element 0 and only a larger value replaces it: a NaN there wins
    out[r] = select(bi[0], 0u, bi[0] == NONE || is_nan(x0));
  }
}

// Appends the ids of one decode step to a token log, for decoding several tokens with no
// readback between them: out = [count, ids of step 0 (R of them), ids of step 1, ...]; x holds
// the step's R ids (u32 bits, what `main` wrote). One workgroup; the count grows by one step.
@compute @workgroup_size(64)
fn append(@builtin(local_invocation_index) li: u32) {
  let k = out[0];
  let base = 1u + k * dims.R;
  for (var r = li; r < dims.R; r += 64u) {
    if (base + r < arrayLength(&out)) {
      out[base + r] = bitcast<u32>(x[r]);
    }
  }
  storageBarrier(); // every invocation has read the count before it changes
  if (li == 0u) {
    out[0] = k + 1u;
  }
}
