// matmul_forward.wgsl: mirrors matmul_forward (src/ops/matmul.c):
//   out[t, o] (+)= sum_c inp[t, c] * W[o, c] + bias[o]
// for t < T, o < OC, c < C. W is float32 [OC, C], or with F16 IEEE halves packed two to a u32
// word (unpack2x16float), each row ceil(C / 2) words (an odd row's last word has a zero high half).
// Rows of inp and out have strides ldi and ldo and start at element offsets ioff and ooff, so a
// call can read or write part of a wider buffer (the in_proj's x half, the residual stream).
// Entry points:
//   gemv1v one token (decode) where rows are whole vec4s of words (C % 8 == 0 for F16, C % 4
//         == 0 for f32) and ioff % 4 == 0: V_LANES invocations per row, each reading 16 bytes
//         of its row (and the matching floats of inp as vec4s) per step, two steps at a time;
//         optionally the token's rmsnorm fused in front (NORM).
//   gemv1 one token, any shape: as gemv, its sum in a register.
//   gemv  few tokens: 8 rows per workgroup, 32 invocations per row, each summing a strided
//         part of the row for every token (up to 8), then a tree reduction in workgroup memory.
//   gemm  many tokens (prefill): 64 x 64 tiles of out, 16 x 16 invocations of 4 x 4 each, the
//         reduction dimension in steps of 16 through workgroup memory.
// Overrides: F16 (weights packed as above), ACC (out += instead of out =: the residual add),
// HAS_BIAS. Sums are in a different order from the C loop: the tests compare with a tolerance.
override F16: bool = false;
override ACC: bool = false;
override HAS_BIAS: bool = false;
// gemv1v: the rmsnorm of the token fused in front (inp / sqrt(mean(inp^2) + eps) * nw, eps the
// f32 bits of dims.pad): one dispatch for norm + in_proj, and for norm_f + lm_head
override NORM: bool = false;

struct Dims { T: u32, C: u32, OC: u32, ldi: u32, ldo: u32, ioff: u32, ooff: u32, pad: u32 } // pad: eps (NORM)

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>; // words, four to an element (the buffer is padded to 16 bytes)
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<uniform> dims: Dims;
@group(0) @binding(5) var<storage, read> inp4: array<vec4<f32>>;   // inp again, four floats to an element (gemv1v)
@group(0) @binding(6) var<storage, read> nw: array<vec4<f32>>;     // the rmsnorm weight [C] (gemv1v with NORM)

// word i of the weights
fn word(i: u32) -> u32 {
  return w[i >> 2u][i & 3u];
}

fn row_words() -> u32 {
  return select(dims.C, (dims.C + 1u) / 2u, F16);
}

// W[o, c] as f32 (c < C)
fn weight(o: u32, c: u32) -> f32 {
  if (F16) {
    let v = unpack2x16float(word(o * row_words() + c / 2u));
    return select(v.x, v.y, (c & 1u) == 1u);
  }
  return bitcast<f32>(word(o * dims.C + c));
}

fn store(t: u32, o: u32, v: f32) {
  var r = v;
  if (HAS_BIAS) {
    r += bias[o];
  }
  let i = dims.ooff + t * dims.ldo + o;
  if (ACC) {
    r += out[i];
  }
  out[i] = r;
}

const GEMV_ROWS: u32 = 8u;
const GEMV_LANES: u32 = 32u;
const GEMV_TOKENS: u32 = 8u;
var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn gemv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let lane = li % GEMV_LANES;
  let o = (wid.x + wid.y * nwg.x) * GEMV_ROWS + li / GEMV_LANES;
  let live = o < dims.OC;
  var acc: array<f32, 8>;
  if (live) {
    if (F16) { // a word (two columns) per step: consecutive lanes read consecutive words
      let words = row_words();
      for (var k = lane; k < words; k += GEMV_LANES) {
        let v = unpack2x16float(word(o * words + k));
        let c = 2u * k;
        let has_hi = c + 1u < dims.C;
        for (var t = 0u; t < dims.T; t++) {
          let x = dims.ioff + t * dims.ldi + c;
          var s = v.x * inp[x];
          if (has_hi) {
            s += v.y * inp[x + 1u];
          }
          acc[t] += s;
        }
      }
    } else {
      for (var c = lane; c < dims.C; c += GEMV_LANES) {
        let v = bitcast<f32>(word(o * dims.C + c));
        for (var t = 0u; t < dims.T; t++) {
          acc[t] += v * inp[dims.ioff + t * dims.ldi + c];
        }
      }
    }
  }
  for (var t = 0u; t < dims.T; t++) {
    part[li] = acc[t];
    workgroupBarrier();
    for (var step = GEMV_LANES / 2u; step > 0u; step /= 2u) {
      if (lane < step) {
        part[li] += part[li + step];
      }
      workgroupBarrier();
    }
    if (live && lane == 0u) {
      store(t, o, part[li]);
    }
    workgroupBarrier();
  }
}

// gemv for one token (a decode step): the same layout as gemv with the sum in a register (gemv's
// per-token sums are a dynamically indexed array, which measured 3% of the GPU's bandwidth)
@compute @workgroup_size(256)
fn gemv1(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let lane = li % GEMV_LANES;
  let o = (wid.x + wid.y * nwg.x) * GEMV_ROWS + li / GEMV_LANES;
  var acc = 0.0;
  if (o < dims.OC) {
    let x0 = dims.ioff;
    if (F16) {
      let words = row_words();
      let full = dims.C / 2u; // words with both halves in the row
      let base = o * words;
      for (var k = lane; k < full; k += GEMV_LANES) {
        let v = unpack2x16float(word(base + k));
        acc += v.x * inp[x0 + 2u * k] + v.y * inp[x0 + 2u * k + 1u];
      }
      if (lane == 0u && full < words) {
        acc += unpack2x16float(word(base + full)).x * inp[x0 + 2u * full];
      }
    } else {
      let base = o * dims.C;
      for (var c = lane; c < dims.C; c += GEMV_LANES) {
        acc += bitcast<f32>(word(base + c)) * inp[x0 + c];
      }
    }
  }
  part[li] = acc;
  workgroupBarrier();
  for (var step = GEMV_LANES / 2u; step > 0u; step /= 2u) {
    if (lane < step) {
      part[li] += part[li + step];
    }
    workgroupBarrier();
  }
  if (o < dims.OC && lane == 0u) {
    store(0u, o, part[li]);
  }
}

// gemv1v: invocations per row (8 to 64, a power of two; 256 / V_LANES rows per workgroup), chosen
// by the host (webgpu.js gemvTiles, from measurements)
override V_LANES: u32 = 32u;
override V_UNROLL4: bool = false; // four steps at a time rather than two
var<workgroup> part2: array<f32, 256>;

// (the dot product of weight vec4 v with the columns of vec4 index cj of inp, scaled by nw with
// NORM; the sum of squares of those inp values)
fn dotv(v: vec4<u32>, cj: u32) -> vec2<f32> {
  let x0 = dims.ioff / 4u;
  if (F16) {
    var xa = inp4[x0 + cj];
    var xb = inp4[x0 + cj + 1u];
    let ss = dot(xa, xa) + dot(xb, xb);
    if (NORM) {
      xa *= nw[cj];
      xb *= nw[cj + 1u];
    }
    let wa = vec4f(unpack2x16float(v.x), unpack2x16float(v.y));
    let wb = vec4f(unpack2x16float(v.z), unpack2x16float(v.w));
    return vec2f(dot(wa, xa) + dot(wb, xb), ss);
  }
  var x = inp4[x0 + cj];
  let ss = dot(x, x);
  if (NORM) {
    x *= nw[cj];
  }
  return vec2f(dot(bitcast<vec4f>(v), x), ss);
}

@compute @workgroup_size(256)
fn gemv1v(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) li: u32) {
  let lane = li % V_LANES;
  let o = (wid.x + wid.y * nwg.x) * (256u / V_LANES) + li / V_LANES;
  let step = select(1u, 2u, F16); // inp vec4s per weight vec4
  var acc = vec2f(0.0);
  var acc2 = vec2f(0.0);
  if (o < dims.OC) {
    let q = row_words() / 4u; // weight vec4s per row
    let base = o * q;
    var k = lane;
    if (V_UNROLL4) { // four loads in flight
      for (; k + 3u * V_LANES < q; k += 4u * V_LANES) {
        let va = w[base + k];
        let vb = w[base + k + V_LANES];
        let vc = w[base + k + 2u * V_LANES];
        let vd = w[base + k + 3u * V_LANES];
        acc += dotv(va, k * step) + dotv(vc, (k + 2u * V_LANES) * step);
        acc2 += dotv(vb, (k + V_LANES) * step) + dotv(vd, (k + 3u * V_LANES) * step);
      }
    }
    for (; k + V_LANES < q; k += 2u * V_LANES) {
      let va = w[base + k];
      let vb = w[base + k + V_LANES];
      acc += dotv(va, k * step);
      acc2 += dotv(vb, (k + V_LANES) * step);
    }
    if (k < q) {
      acc += dotv(w[base + k], k * step);
    }
  }
  acc += acc2;
  part[li] = acc.x;
  part2[li] = acc.y;
  workgroupBarrier();
  for (var s = V_LANES / 2u; s > 0u; s /= 2u) {
    if (lane < s) {
      part[li] += part[li + s];
      part2[li] += part2[li + s];
    }
    workgroupBarrier();
  }
  if (o < dims.OC && lane == 0u) {
    var r = part[li];
    if (NORM) {
      r *= inverseSqrt(part2[li] / f32(dims.C) + bitcast<f32>(dims.pad));
    }
    store(0u, o, r);
  }
}

const TILE: u32 = 64u;
const KSTEP: u32 = 16u;
var<workgroup> xs: array<array<f32, 16>, 64>; // [token][k]
var<workgroup> ws: array<array<f32, 16>, 64>; // [row][k]

@compute @workgroup_size(16, 16)
fn gemm(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let o0 = wid.x * TILE;
  let t0 = wid.y * TILE;
  var acc: array<array<f32, 4>, 4>; // [token][row]
  for (var k0 = 0u; k0 < dims.C; k0 += KSTEP) {
    // 64 x 16 values of each tile, 4 per invocation
    for (var j = 0u; j < 4u; j++) {
      let e = li + j * 256u;
      let r = e / KSTEP;
      let k = e % KSTEP;
      let c = k0 + k;
      let t = t0 + r;
      let o = o0 + r;
      xs[r][k] = select(0.0, inp[dims.ioff + t * dims.ldi + c], t < dims.T && c < dims.C);
      ws[r][k] = select(0.0, weight(o, c), o < dims.OC && c < dims.C);
    }
    workgroupBarrier();
    for (var k = 0u; k < KSTEP; k++) {
      var xv: array<f32, 4>;
      var wv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        xv[i] = xs[lid.y + 16u * i][k];
        wv[i] = ws[lid.x + 16u * i][k];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i][j] += xv[i] * wv[j];
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let t = t0 + lid.y + 16u * i;
    for (var j = 0u; j < 4u; j++) {
      let o = o0 + lid.x + 16u * j;
      if (t < dims.T && o < dims.OC) {
        store(t, o, acc[i][j]);
      }
    }
  }
}
