// sampler.js: picks the next token from a row of logits: greedy (temperature 0), or temperature
// + top-k + top-p (nucleus) + min-p sampling with a seeded PRNG so a seed reproduces a generation
// exactly; before either, the history-dependent processors of Hugging Face generate():
// repetitionPenalty (CTRL) and noRepeatNgramSize. Deliberately not here: beam search.
import { options, checkInt, checkNumber } from './ids.js';

/** Mulberry32: a small, fast, seedable 32-bit PRNG (uniform floats in [0, 1)). */
export function createRng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Index of the largest value (the first one on ties, as torch.argmax). */
export function argmax(row) {
  let best = 0;
  let bv = row[0];
  for (let i = 1; i < row.length; i++) {
    if (row[i] > bv) {
      bv = row[i];
      best = i;
    }
  }
  return best;
}

/** Indices of the k largest values, sorted by value descending (ties: lower index first). */
export function topIndices(row, k) {
  k = Math.min(k, row.length);
  // min-heap of size k over (value, index)
  const hv = new Float64Array(k);
  const hi = new Int32Array(k);
  let n = 0;
  const less = (va, ia, vb, ib) => va < vb || (va === vb && ia > ib);
  const siftDown = (i) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && less(hv[l], hi[l], hv[m], hi[m])) m = l;
      if (r < n && less(hv[r], hi[r], hv[m], hi[m])) m = r;
      if (m === i) return;
      [hv[i], hv[m]] = [hv[m], hv[i]];
      [hi[i], hi[m]] = [hi[m], hi[i]];
      i = m;
    }
  };
  for (let i = 0; i < row.length; i++) {
    const v = row[i];
    if (n < k) {
      let j = n++;
      hv[j] = v;
      hi[j] = i;
      while (j > 0) {
        const p = (j - 1) >> 1;
        if (!less(hv[j], hi[j], hv[p], hi[p])) break;
        [hv[j], hv[p]] = [hv[p], hv[j]];
        [hi[j], hi[p]] = [hi[p], hi[j]];
        j = p;
      }
    } else if (less(hv[0], hi[0], v, i)) {
      hv[0] = v;
      hi[0] = i;
      siftDown(0);
    }
  }
  const out = Array.from(hi.subarray(0, n));
  out.sort((a, b) => row[b] - row[a] || a - b);
  return out;
}

/**
 * The logits after the history-dependent processors, as Hugging Face's
 * RepetitionPenaltyLogitsProcessor and NoRepeatNGramLogitsProcessor define them (a copy; the row
 * itself when neither is on). history: the token ids so far (prompt and generated).
 *   repetitionPenalty p (CTRL, Keskar et al. 2019): each id seen in the history has its logit
 *     divided by p when positive, multiplied by p when negative (p = 1: off).
 *   noRepeatNgramSize n: ids that would complete an n-gram already in the history are banned
 *     (logit -Infinity) (n = 0: off).
 */
export function processLogits(row, history, repetitionPenalty = 1, noRepeatNgramSize = 0) {
  const n = noRepeatNgramSize;
  if ((repetitionPenalty === 1 && n === 0) || !history || history.length === 0) return row;
  const out = Float32Array.from(row);
  if (repetitionPenalty !== 1)
    for (const id of new Set(history)) {
      const v = out[id];
      out[id] = v < 0 ? v * repetitionPenalty : v / repetitionPenalty;
    }
  if (n > 0 && history.length >= n) {
    const h = history;
    const start = h.length - (n - 1); // the current prefix: the last n-1 ids
    for (let i = 0; i + n <= h.length; i++) {
      let match = true;
      for (let j = 0; j < n - 1 && match; j++) match = h[i + j] === h[start + j];
      if (match) out[h[i + n - 1]] = -Infinity;
    }
  }
  return out;
}

/**
 * Validates sampling options and returns a function (logits, history) -> token id. Every bad
 * value (wrong type, out of range, NaN or Infinity) is an invalid_argument; null = the defaults.
 * @param {{ temperature?: number, topK?: number, topP?: number, minP?: number, seed?: number,
 *           repetitionPenalty?: number, noRepeatNgramSize?: number }} [opts]
 */
export function createSampler(opts) {
  const { temperature = 0, topK = 0, topP = 1, minP = 0, seed, repetitionPenalty = 1, noRepeatNgramSize = 0 } = options(opts, 'sampling');
  checkNumber(repetitionPenalty, 'repetitionPenalty (1 = off)', { above: 0 });
  checkInt(noRepeatNgramSize, 'noRepeatNgramSize (0 = off)', 0);
  checkNumber(minP, 'minP (0 = off)', { min: 0, max: 1 });
  const pick = createPicker({ temperature, topK, topP, minP, seed });
  return (row, history) => pick(processLogits(row, history, repetitionPenalty, noRepeatNgramSize));
}

function createPicker({ temperature, topK, topP, minP, seed }) {
  checkNumber(temperature, 'temperature (0 = greedy)', { min: 0 });
  checkInt(topK, 'topK (0 = off)', 0);
  checkNumber(topP, 'topP', { above: 0, max: 1 });
  if (seed !== undefined) checkInt(seed, 'seed', Number.MIN_SAFE_INTEGER);
  if (temperature === 0) return (row) => argmax(row);
  const rng = createRng(seed ?? Math.floor(Math.random() * 2 ** 32));
  return (row) => {
    // Candidates: the top-k (or, for top-p alone, a growing top set until it covers topP).
    let k = topK > 0 ? topK : topP < 1 ? 256 : row.length;
    for (;;) {
      // sorted candidates whenever top-k or top-p needs an order; null = the whole row as is
      const cand = k < row.length || topP < 1 ? topIndices(row, k) : null;
      const idx = cand ?? Array.from(row.keys());
      const mx = cand ? row[cand[0]] : row[argmax(row)];
      let total = 0;
      const p = new Float64Array(idx.length);
      for (let i = 0; i < idx.length; i++) total += p[i] = Math.exp((row[idx[i]] - mx) / temperature);
      let keep = idx.length;
      if (topP < 1) {
        // full softmax mass, to know whether the candidates cover topP of it
        let all = total;
        if (cand && topK === 0) {
          all = 0;
          for (let i = 0; i < row.length; i++) all += Math.exp((row[i] - mx) / temperature);
        }
        let acc = 0;
        keep = 0;
        while (keep < idx.length && acc < topP * all) acc += p[keep++];
        if (acc < topP * all && topK === 0 && k < row.length) {
          k *= 4; // the nucleus is larger than the candidates: widen and retry
          continue;
        }
        total = acc;
      }
      if (minP > 0) {
        // min-p (HF MinPLogitsWarper): keep candidates with p >= minP * p_max, p_max = p[0]'s
        const floor = Math.log(minP) * temperature;
        let kept = 0;
        let sum = 0;
        for (let i = 0; i < keep; i++) {
          if (row[idx[i]] - mx < floor) continue;
          idx[kept] = idx[i];
          sum += p[kept++] = p[i];
        }
        keep = kept;
        total = sum;
      }
      let r = rng() * total;
      for (let i = 0; i < keep; i++) {
        r -= p[i];
        if (r < 0) return idx[i];
      }
      return idx[keep - 1];
    }
  };
}
