// app.js: the browser demo. Uses only the public package API (bindings/index.js); the engine runs
// in a Web Worker (Mamba.load(..., { worker: true })), so the page stays responsive while it
// generates and trains. State for automated checks is mirrored in data-* attributes.
import { Mamba } from '../bindings/index.js';
import { LossChart } from './chart.js';
import { MembraneHeatmap } from './heatmap.js';

const $ = (id) => document.getElementById(id);
const fmt = (n) => Math.round(n).toLocaleString('en-US');
const secs = (s) => (s >= 90 ? `${Math.floor(s / 60)} min ${Math.round(s % 60)} s` : `${Math.max(0, Math.round(s))} s`);
const errText = (err) => `${err?.code ?? 'error'}: ${err?.message ?? err}`;

// bundled sample texts (examples/data) and a prompt that suits each
const SAMPLES = {
  'kjv-genesis': { url: new URL('../examples/data/kjv-genesis.txt', import.meta.url), prompt: 'And God said unto Noah,' },
  'brown-scifi': { url: new URL('../examples/data/brown-scifi.txt', import.meta.url), prompt: 'The ship was' },
};
const DEFAULT_PROMPTS = new Set(['The jury said', ...Object.values(SAMPLES).map((s) => s.prompt)]);
const MAX_INSPECT = 128; // tokens drawn in the heatmap

const state = {
  model: null, // the remote model (in the worker)
  source: '', // what it was loaded from
  adapter: null, // the active adapter, or null
  busy: null, // the task running: 'load' | 'generate' | 'train' | 'compare' | 'inspect' | 'adapter'
  genCtl: null,
  trainCtl: null,
  encoded: { text: null, ids: null }, // the training text's tokens, for the model loaded
  links: [], // object URLs of the download links
};
const chart = new LossChart($('loss-chart'));
const heatmap = new MembraneHeatmap($('heatmap'), $('heatmap-tip'));

function setStatus(el, text, st) {
  el.textContent = text;
  if (st) el.dataset.state = st;
}

/** Enables the controls that make sense now (model loaded, a task running, an adapter active). */
function refresh() {
  const ready = !!state.model && !state.busy;
  $('load-btn').disabled = !!state.busy;
  for (const id of ['gen-btn', 'train-btn', 'adapter-files']) $(id).disabled = !ready;
  $('stop-btn').disabled = state.busy !== 'generate' && state.busy !== 'compare';
  $('abort-btn').disabled = state.busy !== 'train';
  $('compare-btn').disabled = !ready || !state.adapter;
  $('inspect-btn').disabled = !ready || !state.adapter?.config?.lim;
  $('gen-with').textContent = !state.model ? '' : state.adapter ? `with the adapter (${describe(state.adapter)})` : 'base model (no adapter yet)';
  for (const el of $('downloads').querySelectorAll('button')) el.disabled = !!state.busy;
}

/** Runs one task at a time with the controls set for it. */
async function task(name, fn) {
  state.busy = name;
  refresh();
  try {
    return await fn();
  } finally {
    state.busy = null;
    refresh();
  }
}

// ---- 1. Model: the new one is loaded first; the old one is disposed only once that succeeded ----

async function load() {
  const src = $('source').value.trim();
  // a relative path is relative to this page (the worker resolves URLs from its own location)
  const source = /^(\.|\/|https?:)/.test(src) ? new URL(src, location.href).href : src;
  setStatus($('status'), `loading ${src} ...`, 'loading');
  $('load-progress').value = 0;
  await task('load', async () => {
    let next;
    try {
      next = await Mamba.load(source, {
        worker: true,
        onProgress: (p) => {
          if (p.total) $('load-progress').value = p.loaded / p.total;
        },
      });
    } catch (err) {
      const keep = state.model ? ` (still using the previous model, ${state.source}${state.adapter ? ', and its adapter' : ''})` : '';
      setStatus($('status'), errText(err) + keep, 'error');
      $('load-progress').value = state.model ? 1 : 0;
      return;
    }
    const old = state.model;
    state.model = next;
    state.source = src;
    state.encoded = { text: null, ids: null };
    setAdapter(null);
    heatmap.clear();
    if (old) await old.dispose().catch(() => {}); // its worker ends with it
    const c = next.config;
    const threads = next.info.threads > 1 ? `${next.info.threads} threads` : `1 thread (${next.info.threadsNote.replace(/^1 thread: /, '')})`;
    setStatus($('status'), `ready: ${src}, ${c.nLayer} layers, d_model ${c.dModel}, vocab ${fmt(c.vocabSize)}; ${threads}`, 'ready');
    $('status').dataset.threads = String(next.info.threads);
    $('load-progress').value = 1;
  });
  updateDataInfo();
}

// ---- 2. Generate ----

async function generateInto(out, { useAdapter = true } = {}) {
  const { model } = state;
  const saved = state.adapter;
  if (!useAdapter) await model.setAdapter(null);
  let pieces = 0;
  delete out.dataset.tokens;
  out.textContent = $('prompt').value;
  state.genCtl = new AbortController();
  try {
    const opts = { maxNewTokens: Number($('max-tokens').value), temperature: Number($('temperature').value), topP: 0.95, seed: Number($('seed').value), signal: state.genCtl.signal };
    for await (const piece of model.streamText($('prompt').value, opts)) {
      out.textContent += piece;
      pieces++;
    }
  } finally {
    state.genCtl = null;
    if (!useAdapter && saved) await model.setAdapter(saved);
  }
  out.dataset.tokens = String(pieces);
}

async function generate() {
  await task('generate', async () => {
    try {
      await generateInto($('output'));
    } catch (err) {
      if (err.name !== 'AbortError') $('output').textContent += `\n[${errText(err)}]`;
    }
  });
}

// ---- 3. Data: a bundled sample, pasted text or a file; its size in characters and tokens ----

async function pickSample() {
  const key = $('sample').value;
  if (key === 'own') {
    $('train-text').value = '';
    $('train-text').focus();
    return updateDataInfo();
  }
  const { url, prompt } = SAMPLES[key];
  for (const k of ['chars', 'tokens', 'sample']) delete $('data-info').dataset[k]; // the old text's
  setStatus($('data-info'), 'fetching the sample ...');
  try {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
    $('train-text').value = await r.text();
    if (DEFAULT_PROMPTS.has($('prompt').value.trim())) $('prompt').value = prompt;
  } catch (err) {
    setStatus($('data-info'), `cannot fetch ${url.pathname}: ${err.message}`);
    return;
  }
  updateDataInfo();
}

async function useFile(file) {
  if (!file) return;
  $('train-text').value = await file.text();
  $('sample').value = 'own';
  $('data-info').dataset.file = file.name;
  updateDataInfo();
}

/** The training text's token ids (encoded once per text and model). */
async function tokensOf(text) {
  if (state.encoded.text !== text) state.encoded = { text, ids: Int32Array.from(await state.model.encode(text)) };
  return state.encoded.ids;
}

/** What training will use: the held-out validation part, and the slice that gives `steps` steps. */
function plan(ids) {
  const seqLen = Number($('seq-len').value);
  const steps = Number($('steps').value);
  const evalEvery = Math.max(1, Math.round(Number($('eval-every').value)) || 1);
  let nVal = Number($('val-pct').value) > 0 ? Math.ceil((ids.length * Number($('val-pct').value)) / 100) : 0;
  if (nVal < 2) nVal = 0; // too short to hold anything out: no validation
  const train = ids.subarray(0, ids.length - nVal);
  const val = ids.subarray(ids.length - nVal);
  const L = Math.max(1, Math.min(seqLen, train.length - 1));
  const perEpoch = Math.ceil((train.length - 1) / L); // fit packs every target once per epoch
  // fewer steps than one epoch: train on the first steps * L + 1 tokens; more: whole epochs
  const data = steps < perEpoch ? train.subarray(0, steps * L + 1) : train;
  const epochs = steps < perEpoch ? 1 : Math.ceil(steps / perEpoch);
  const total = epochs * Math.ceil((data.length - 1) / L);
  // keep the best-scoring tensors only when the last step is scored too (else the last steps would be dropped)
  return { train, val, data, epochs, L, total, evalEvery, keepBest: nVal > 0 && total % evalEvery === 0 };
}

let infoTimer = 0;
function updateDataInfo() {
  clearTimeout(infoTimer);
  infoTimer = setTimeout(async () => {
    const text = $('train-text').value;
    const el = $('data-info');
    el.dataset.chars = String(text.length);
    el.dataset.sample = $('sample').value;
    if (!state.model) return setStatus(el, `${fmt(text.length)} characters (tokens: once the model is loaded)`);
    try {
      const ids = await tokensOf(text);
      if ($('train-text').value !== text) return; // edited meanwhile: a later call reports
      el.dataset.tokens = String(ids.length);
      const p = plan(ids);
      const use = p.epochs > 1 ? `: ${p.epochs} epochs over all ${fmt(p.train.length)}` : ` on the first ${fmt(p.data.length)} of ${fmt(p.train.length)}`;
      const val = p.val.length
        ? ` Validation: the last ${fmt(p.val.length)} tokens are held out and scored before training and every ${p.evalEvery} steps` +
          (p.keepBest ? '; the adapter keeps the best-scoring tensors.' : ` (step ${p.total} is not scored, so the adapter keeps its last tensors).`)
        : ' No validation (the text is too short, or validation is 0%).';
      setStatus(el, `${fmt(text.length)} characters, ${fmt(ids.length)} tokens. Training: ${fmt(p.total)} steps of ${p.L} tokens${use} training tokens.${val}`);
    } catch (err) {
      setStatus(el, errText(err));
    }
  }, 250);
}

// ---- 3. Train with validation: chart, tokens/s and time left ----

function describe(a) {
  const { lora, lim } = a.config;
  const parts = [];
  if (lora) parts.push(`LoRA r ${lora.r} on ${lora.targets.join(', ')}`);
  if (lim) parts.push(`LIM ${lim.chunk_size ? `chunk ${lim.chunk_size}` : `${lim.chunks} chunks`}, ${lim.cross_layer} transfer`);
  return parts.join(' + ');
}

async function train() {
  const status = $('train-status');
  const valStatus = $('val-status');
  for (const k of ['firstLoss', 'lastLoss', 'steps', 'step', 'valFirst', 'valBest', 'valLast']) delete status.dataset[k];
  setStatus(status, 'tokenising ...', 'training');
  setStatus(valStatus, '');
  $('train-speed').textContent = '';
  $('train-progress').value = 0;
  await task('train', async () => {
    state.trainCtl = new AbortController();
    const losses = [];
    const evals = [];
    // timing from the events themselves: each event arrives as its step or evaluation ends, so
    // the gap since the one before is that step's (or evaluation's) duration. fit's own
    // tokensPerSec / secondsLeft count the evaluations as training time, which makes the first
    // estimates several times too long; this keeps steps and evaluations apart.
    const stepMs = [];
    const evalMs = [];
    let lastEvent = performance.now();
    const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
    try {
      const p = plan(await tokensOf($('train-text').value));
      chart.reset(p.total);
      // a fresh adapter (it becomes active; the previous one is freed)
      const old = state.adapter;
      const adapter = await state.model.createAdapter({
        lora: { r: 8, alpha: 16, targets: ['in_proj', 'out_proj'] },
        lim: $('use-lim').checked ? { chunk_size: 16, cross_layer: 'first' } : null,
        seed: 1,
      });
      setAdapter(adapter, 'trained here');
      await old?.dispose();
      const trainer = await state.model.createTrainer({ lr: Number($('lr').value), clipNorm: 1, seed: 1 });
      setStatus(status, p.val.length ? 'scoring the validation text before training ...' : 'training ...');
      const r = await trainer.fit([p.data], {
        epochs: p.epochs, batchSize: 1, seqLen: p.L, signal: state.trainCtl.signal,
        ...(p.val.length ? { validation: [p.val], evalEvery: p.evalEvery, keepBest: p.keepBest } : {}),
        onProgress: (e) => {
          const now = performance.now();
          (e.phase === 'train' ? stepMs : evalMs).push(now - lastEvent);
          lastEvent = now;
          if (e.phase === 'train') {
            losses.push(e.loss);
            chart.addTrain(e.step, e.loss);
            status.dataset.step = String(losses.length);
            $('train-progress').value = e.step / p.total;
            status.textContent = `step ${e.step} / ${p.total}, train loss ${e.loss.toFixed(3)}`;
            const perStep = mean(stepMs.slice(stepMs.length > 1 ? 1 : 0).slice(-10)); // the first step warms up
            const evalsLeft = p.val.length ? Math.floor(p.total / p.evalEvery) - Math.floor(e.step / p.evalEvery) : 0;
            const left = (perStep * (p.total - e.step) + (evalMs.length ? mean(evalMs) * evalsLeft : 0)) / 1000;
            $('train-speed').textContent = `${fmt((p.L * 1000) / perStep)} tokens/s, about ${secs(left)} left`;
          } else {
            evals.push(e);
            chart.addVal(e.step, e.valLoss);
            Object.assign(status.dataset, { valFirst: String(evals[0].valLoss), valLast: String(e.valLoss), valBest: String(e.best.valLoss) });
            valStatus.textContent = `validation loss ${e.valLoss.toFixed(3)} (perplexity ${e.valPpl.toFixed(1)}) at step ${e.step} on ${fmt(e.valTokens)} held-out tokens` +
              (evals.length > 1 ? `; before training ${evals[0].valLoss.toFixed(3)} (perplexity ${evals[0].valPpl.toFixed(1)}); best ${e.best.valLoss.toFixed(3)} at step ${e.best.step}` : '');
          }
        },
      });
      finishTraining(losses, `done: ${r.steps} steps, ${fmt(r.tokens)} tokens in ${r.seconds.toFixed(1)} s`, 'done');
      const trainSecs = stepMs.reduce((x, y) => x + y, 0) / 1000;
      $('train-speed').textContent = `${fmt(r.tokens / trainSecs)} tokens/s while training; ${secs(r.seconds)} in all, ${secs(r.seconds - trainSecs)} of it validation`;
      if (r.keptBest) {
        const kept = r.best.step > 0 ? `the adapter keeps the tensors of step ${r.best.step}, its best validation loss (${r.best.valLoss.toFixed(3)}, perplexity ${r.best.valPpl.toFixed(1)})` : 'training did not improve the validation loss: the adapter keeps its tensors from before training';
        valStatus.textContent += `; ${kept}.`;
      } else if (r.best) valStatus.textContent += `; the adapter keeps the tensors of its last step (${r.steps}).`;
      if (p.val.length && !$('inspect-text').dataset.edited) $('inspect-text').value = await state.model.decode(p.val.subarray(0, MAX_INSPECT));
    } catch (err) {
      if (err.name === 'AbortError') finishTraining(losses, `aborted after ${losses.length} steps`, 'aborted');
      else setStatus(status, errText(err), 'error');
    } finally {
      state.trainCtl = null;
    }
    if (state.adapter) await offerDownloads();
  });
}

function finishTraining(losses, what, st) {
  const status = $('train-status');
  if (losses.length) {
    const mean = (a) => a.reduce((s, x) => s + x, 0) / a.length;
    const first = losses[0];
    const last = mean(losses.slice(-Math.min(5, losses.length)));
    Object.assign(status.dataset, { firstLoss: String(first), lastLoss: String(last), steps: String(losses.length) });
    what += `; train loss ${first.toFixed(3)} at the first step, ${last.toFixed(3)} over the last ${Math.min(5, losses.length)}`;
  }
  setStatus(status, what, st);
}

// ---- 4. Base vs adapted ----

async function compare() {
  await task('compare', async () => {
    // both columns are cleared first: the adapted one must not show the last comparison's text
    // while the base one is written
    for (const id of ['out-base', 'out-adapted']) {
      $(id).textContent = '';
      delete $(id).dataset.tokens;
    }
    try {
      await generateInto($('out-base'), { useAdapter: false });
      await generateInto($('out-adapted'));
    } catch (err) {
      if (err.name !== 'AbortError') $('out-adapted').textContent += `\n[${errText(err)}]`;
    }
  });
}

// ---- 5. Adapter files: download as PEFT files, load from disk ----

/** Makes `a` the page's active adapter and says so (the model has already activated it). */
function setAdapter(a, origin = '') {
  state.adapter = a;
  const el = $('adapter-status');
  if (!a) {
    setStatus(el, 'no adapter yet: train one above, or load one from disk', 'none');
    clearDownloads();
  } else {
    setStatus(el, `active adapter: ${origin}: ${describe(a)}`, origin === 'trained here' ? 'trained' : 'loaded');
    el.dataset.lim = String(!!a.config.lim);
  }
  refresh();
}

function clearDownloads() {
  for (const u of state.links) URL.revokeObjectURL(u);
  state.links = [];
  $('downloads').textContent = '';
}

/** One download link per file of adapter.save() (PEFT adapter_config.json + adapter_model.safetensors,
 * and memba_config.json with a LIM gate), and a button that downloads them all. */
async function offerDownloads() {
  let files;
  try {
    files = await state.adapter.save();
  } catch (err) {
    setStatus($('adapter-status'), `cannot save the adapter: ${errText(err)}`, 'error');
    return;
  }
  clearDownloads();
  const box = $('downloads');
  box.append(Object.assign(document.createElement('span'), { textContent: 'Download:' }));
  const links = Object.entries(files).map(([name, body]) => {
    const blob = new Blob([body], { type: name.endsWith('.json') ? 'application/json' : 'application/octet-stream' });
    const url = URL.createObjectURL(blob);
    state.links.push(url);
    const a = Object.assign(document.createElement('a'), { href: url, download: name, className: 'download' });
    a.dataset.file = name;
    a.textContent = `${name} (${blob.size < 2048 ? `${blob.size} B` : `${fmt(blob.size / 1024)} kB`})`;
    return a;
  });
  const all = Object.assign(document.createElement('button'), { textContent: 'all files', id: 'download-all' });
  all.onclick = () => links.forEach((a, i) => setTimeout(() => a.click(), i * 300));
  box.append(...links, all);
}

// names as browsers save them ("adapter_config (1).json") mapped back to the PEFT names
function peftFileName(name) {
  if (/^adapter_config.*\.json$/i.test(name)) return 'adapter_config.json';
  if (/^memba_config.*\.json$/i.test(name)) return 'memba_config.json';
  if (/\.safetensors$/i.test(name)) return 'adapter_model.safetensors';
  return name;
}

/** Loads an adapter from chosen files; on failure the previous adapter stays active. */
async function loadAdapterFiles(list) {
  if (!list.length) return;
  const el = $('adapter-status');
  await task('adapter', async () => {
    const files = {};
    for (const f of list) files[peftFileName(f.name)] = new Uint8Array(await f.arrayBuffer());
    const names = [...list].map((f) => f.name).join(', ');
    let next;
    try {
      next = await state.model.loadAdapter({ files }, { name: names });
    } catch (err) {
      const keep = state.adapter ? `the previous adapter stays active (${describe(state.adapter)})` : 'no adapter is active';
      setStatus(el, `${errText(err)}; ${keep}`, 'error');
      return;
    }
    const old = state.adapter;
    setAdapter(next, `loaded from ${names}`);
    await old?.dispose();
    heatmap.clear();
    await offerDownloads();
  });
  $('adapter-files').value = '';
}

// ---- 6. The LIM membrane heatmap ----

async function inspectMembrane() {
  const { model } = state;
  await task('inspect', async () => {
    try {
      const ids = (await model.encode($('inspect-text').value)).slice(0, MAX_INSPECT);
      if (ids.length < 1) throw Object.assign(new Error('no text to inspect'), { code: 'invalid_argument' });
      const { chunkLength, layers } = await model.inspect(ids);
      const E = model.config.dInner;
      const lim = state.adapter.config.lim;
      // per layer and token: mean |v| over channels, and the share of channels that spiked
      // (post_reset: a spike resets v to exactly 0; pre_reset: v = A, a spike is A > v_th)
      const values = [];
      const spikes = [];
      for (const { limV } of layers) {
        const vr = [];
        const sr = [];
        for (let t = 0; t < ids.length; t++) {
          let s = 0;
          let n = 0;
          for (let e = 0; e < E; e++) {
            const v = limV.data[t * E + e];
            s += Math.abs(v);
            n += (lim.output === 'pre_reset' ? v > lim.v_th : v === 0) ? 1 : 0;
          }
          vr.push(s / E);
          sr.push(n / E);
        }
        values.push(vr);
        spikes.push(sr);
      }
      const tokens = await Promise.all(ids.map((id) => model.decode([id])));
      heatmap.set({ values, spikes, tokens, chunkLength, channels: E });
      $('inspect-status').textContent = `${ids.length} tokens, ${layers.length} layers, chunk length ${chunkLength}; hover a cell for its value`;
    } catch (err) {
      $('inspect-status').textContent = errText(err);
    }
  });
}

// ---- wiring ----

$('load-btn').onclick = load;
$('gen-btn').onclick = generate;
$('stop-btn').onclick = () => state.genCtl?.abort();
$('train-btn').onclick = train;
$('abort-btn').onclick = () => state.trainCtl?.abort();
$('compare-btn').onclick = compare;
$('inspect-btn').onclick = inspectMembrane;
$('sample').onchange = pickSample;
$('text-file').onchange = async (e) => {
  await useFile(e.target.files[0]);
  e.target.value = ''; // choosing the same file again loads it again
};
$('adapter-files').onchange = (e) => loadAdapterFiles(e.target.files);
$('inspect-text').oninput = (e) => (e.target.dataset.edited = 'true');
$('train-text').oninput = () => {
  $('sample').value = 'own';
  updateDataInfo();
};
for (const id of ['steps', 'seq-len', 'val-pct', 'eval-every']) $(id).oninput = updateDataInfo;
// drop a text file on the text area
const drop = $('train-text');
drop.ondragover = (e) => {
  e.preventDefault();
  drop.classList.add('dragging');
};
drop.ondragleave = () => drop.classList.remove('dragging');
drop.ondrop = (e) => {
  e.preventDefault();
  drop.classList.remove('dragging');
  useFile(e.dataTransfer.files[0]);
};

const params = new URLSearchParams(location.search);
if (params.get('model')) $('source').value = params.get('model');
refresh();
pickSample();
if (params.has('autoload')) load();
