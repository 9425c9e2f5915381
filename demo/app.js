// app.js: the browser demo. Uses only the public package API (bindings/index.js); the engine runs
// in a Web Worker (Mamba.load(..., { worker: true })), so the page stays responsive while it
// generates and trains. State for automated checks is mirrored in data-* attributes.
import { Mamba } from '../bindings/index.js';

const $ = (id) => document.getElementById(id);
let model = null;
let adapter = null;
let genCtl = null;
let trainCtl = null;
const losses = [];

function setStatus(el, text, state) {
  el.textContent = text;
  if (state) el.dataset.state = state;
}

function enable(on) {
  for (const id of ['gen-btn', 'train-btn', 'compare-btn', 'inspect-btn']) $(id).disabled = !on;
}

async function load() {
  const src = $('source').value.trim();
  // a relative path is relative to this page (the worker resolves URLs from its own location)
  const source = /^(\.|\/|https?:)/.test(src) ? new URL(src, location.href).href : src;
  enable(false);
  setStatus($('status'), 'loading...', 'loading');
  try {
    if (model) await model.dispose();
    model = await Mamba.load(source, {
      worker: true,
      onProgress: (p) => {
        if (p.total) $('load-progress').value = p.loaded / p.total;
      },
    });
    adapter = null;
    const c = model.config;
    setStatus($('status'), `ready: ${c.nLayer} layers, d_model ${c.dModel}, vocab ${c.vocabSize}`, 'ready');
    $('load-progress').value = 1;
    enable(true);
    $('inspect-btn').disabled = true;
  } catch (err) {
    setStatus($('status'), `${err.code ?? 'error'}: ${err.message}`, 'error');
  }
}

async function generateInto(out, { useAdapter = true } = {}) {
  const saved = adapter;
  if (!useAdapter) await model.setAdapter(null);
  let pieces = 0;
  out.textContent = $('prompt').value;
  genCtl = new AbortController();
  try {
    const opts = { maxNewTokens: Number($('max-tokens').value), temperature: Number($('temperature').value), topP: 0.95, seed: Number($('seed').value), signal: genCtl.signal };
    for await (const piece of model.streamText($('prompt').value, opts)) {
      out.textContent += piece;
      pieces++;
    }
  } finally {
    genCtl = null;
    if (!useAdapter && saved) await model.setAdapter(saved);
  }
  out.dataset.tokens = String(pieces);
}

async function generate() {
  $('gen-btn').disabled = true;
  $('stop-btn').disabled = false;
  try {
    await generateInto($('output'));
  } catch (err) {
    if (err.name !== 'AbortError') $('output').textContent += `\n[${err.code}: ${err.message}]`;
  } finally {
    $('gen-btn').disabled = false;
    $('stop-btn').disabled = true;
  }
}

function drawLoss() {
  const cv = $('loss-chart');
  const g = cv.getContext('2d');
  g.clearRect(0, 0, cv.width, cv.height);
  if (losses.length < 1) return;
  const max = Math.max(...losses);
  const min = Math.min(0, ...losses);
  g.strokeStyle = '#2962ff';
  g.lineWidth = 2;
  g.beginPath();
  losses.forEach((l, i) => {
    const x = 10 + (i / Math.max(1, losses.length - 1)) * (cv.width - 20);
    const y = cv.height - 10 - ((l - min) / (max - min || 1)) * (cv.height - 20);
    if (i) g.lineTo(x, y);
    else g.moveTo(x, y);
  });
  g.stroke();
  g.fillStyle = '#1d2430';
  g.fillText(`loss ${losses.at(-1).toFixed(3)} (start ${losses[0].toFixed(3)})`, 14, 16);
}

async function train() {
  const status = $('train-status');
  const steps = Number($('steps').value);
  $('train-btn').disabled = true;
  $('abort-btn').disabled = false;
  losses.length = 0;
  $('train-progress').value = 0;
  setStatus(status, 'training...', 'training');
  trainCtl = new AbortController();
  try {
    if (adapter) await adapter.dispose();
    adapter = await model.createAdapter({
      lora: { r: 8, alpha: 16, targets: ['in_proj', 'out_proj'] },
      lim: $('use-lim').checked ? { chunk_size: 16, cross_layer: 'first' } : null,
      seed: 1,
    });
    const trainer = await model.createTrainer({ lr: Number($('lr').value), clipNorm: 1, seed: 1 });
    const seqLen = Number($('seq-len').value);
    const text = $('train-text').value;
    while (losses.length < steps) {
      await trainer.fit(text, {
        epochs: 1, batchSize: 1, seqLen, signal: trainCtl.signal,
        onProgress: (p) => {
          if (losses.length >= steps) trainCtl.abort('done');
          losses.push(p.loss);
          $('train-progress').value = losses.length / steps;
          status.textContent = `step ${losses.length}/${steps}, loss ${p.loss.toFixed(3)}, ${p.tokensPerSec.toFixed(0)} tokens/s`;
          drawLoss();
        },
      });
    }
    finishTraining(status);
  } catch (err) {
    if (err.name === 'AbortError') finishTraining(status, losses.length < steps ? 'aborted' : null);
    else setStatus(status, `${err.code ?? 'error'}: ${err.message}`, 'error');
  } finally {
    trainCtl = null;
    $('train-btn').disabled = false;
    $('abort-btn').disabled = true;
  }
}

function finishTraining(status, note) {
  if (losses.length) {
    status.dataset.firstLoss = String(losses[0]);
    status.dataset.lastLoss = String(losses.at(-1));
    status.dataset.steps = String(losses.length);
  }
  setStatus(status, `${note ? `${note} after` : 'done:'} ${losses.length} steps, loss ${losses[0]?.toFixed(3)} -> ${losses.at(-1)?.toFixed(3)}`, note ?? 'done');
  $('inspect-btn').disabled = !adapter?.config?.lim;
}

async function compare() {
  $('compare-btn').disabled = true;
  try {
    await generateInto($('out-base'), { useAdapter: false });
    await generateInto($('out-adapted'));
  } finally {
    $('compare-btn').disabled = false;
  }
}

async function inspectMembrane() {
  const ids = await model.encode($('prompt').value);
  const { layers } = await model.inspect(ids);
  const E = model.config.dInner;
  const cv = $('heatmap');
  const g = cv.getContext('2d');
  const vals = layers.map(({ limV }) => ids.map((_, t) => {
    let s = 0;
    for (let e = 0; e < E; e++) s += Math.abs(limV.data[t * E + e]);
    return s / E;
  }));
  const max = Math.max(1e-9, ...vals.flat());
  const cw = cv.width / ids.length;
  const ch = cv.height / layers.length;
  vals.forEach((row, l) => row.forEach((v, t) => {
    const k = v / max;
    g.fillStyle = `rgb(${Math.round(255 * k)}, ${Math.round(80 + 100 * k)}, ${Math.round(255 * (1 - k))})`;
    g.fillRect(t * cw, l * ch, Math.ceil(cw), Math.ceil(ch));
  }));
  cv.dataset.drawn = 'true';
}

$('load-btn').onclick = load;
$('gen-btn').onclick = generate;
$('stop-btn').onclick = () => genCtl?.abort();
$('train-btn').onclick = train;
$('abort-btn').onclick = () => trainCtl?.abort();
$('compare-btn').onclick = compare;
$('inspect-btn').onclick = inspectMembrane;

const params = new URLSearchParams(location.search);
if (params.get('model')) $('source').value = params.get('model');
if (params.has('autoload')) load();
