// browser.test.mjs: the demo end to end in a real browser (Debian's headless Chromium driven by
// playwright-core): it loads the model in a Web Worker, picks a bundled sample, generates text,
// fine-tunes a Memba adapter with a validation split (the train loss must fall, the chart must
// show train and validation points), draws the membrane heatmap and hovers it, downloads the
// adapter and loads it back, checks that failed loads keep the previous model and adapter, and
// aborts a run; screenshots go to build/demo*.png (demo-defaults.png: base vs adapted after the page's
// default training).
// Uses the embedded default model (models/default) when present, else a small text model made here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createServer } from '../demo/serve.mjs';
import { makeTextModel } from './make-text-model.mjs';
import { ROOT, readCase, readExpected, assertClose, CHROMIUM, CHROMIUM_FLAGS } from './helpers.mjs';

const FLAGS = CHROMIUM_FLAGS;

let server;
let origin;

before(async () => {
  server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${server.address().port}`;
});
after(() => server?.close());

test('demo in headless Chromium: data picker, fine-tune with validation (chart), heatmap with tooltip, adapter download and reload, failed loads keep the model, abort', { skip: CHROMIUM ? false : 'no Chromium found (./build.sh deps installs Debian chromium as root)', timeout: 240_000 }, async () => {
  const { chromium } = await import('playwright-core');
  let modelPath = 'models/default/';
  if (!fs.existsSync(path.join(ROOT, modelPath, 'model.safetensors'))) {
    makeTextModel(path.join(ROOT, 'build', 'text-model'));
    modelPath = 'build/text-model/';
  }
  const BUILD = path.join(ROOT, 'build');
  const saved = path.join(BUILD, 'demo-adapter');
  fs.rmSync(saved, { recursive: true, force: true });
  fs.mkdirSync(saved, { recursive: true });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 1400 } });
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('response', (r) => r.status() >= 400 && errors.push(`${r.status()} ${r.url()}`));
    await page.goto(`${origin}/demo/?model=${encodeURIComponent(`/${modelPath}`)}&autoload=1`);
    await page.waitForSelector('#status[data-state=ready]', { timeout: 60_000 });
    assert.equal(await page.evaluate(() => self.crossOriginIsolated), true, 'COOP/COEP give cross-origin isolation');
    // cross-origin isolated: the worker runs the threaded build, one thread per core (at most 8)
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    const threads = Number(await page.getAttribute('#status', 'data-threads'));
    console.log(`demo engine: ${threads} threads (${cores} cores); ${await page.textContent('#status')}`);
    assert.equal(threads, Math.min(8, cores), 'the demo runs one thread per core');

    // the data picker: both bundled samples load, with their size in characters and tokens
    const sizeOf = async (sample) => {
      await page.selectOption('#sample', sample);
      await page.waitForFunction((s) => document.querySelector('#data-info').dataset.sample === s && Number(document.querySelector('#data-info').dataset.chars) > 30_000 && document.querySelector('#train-text').value.length === Number(document.querySelector('#data-info').dataset.chars) && document.querySelector('#data-info').dataset.tokens && /tokens/.test(document.querySelector('#data-info').textContent), sample, { timeout: 30_000 });
      return { chars: Number(await page.getAttribute('#data-info', 'data-chars')), tokens: Number(await page.getAttribute('#data-info', 'data-tokens')), info: await page.textContent('#data-info') };
    };
    const scifi = await sizeOf('brown-scifi');
    const kjv = await sizeOf('kjv-genesis');
    console.log(`samples: brown-scifi ${scifi.chars} chars / ${scifi.tokens} tokens; kjv-genesis ${kjv.chars} chars / ${kjv.tokens} tokens; ${kjv.info}`);
    assert.ok(kjv.tokens > 1000 && kjv.chars !== scifi.chars, 'the two samples differ and were tokenised');
    assert.match(kjv.info, /characters/);
    // your own text: pasted (typed into the box), chosen as a file, and dropped on the box
    const countIs = (chars) => page.waitForFunction((n) => Number(document.querySelector('#data-info').dataset.chars) === n && document.querySelector('#data-info').dataset.tokens, chars, { timeout: 30_000 });
    await page.selectOption('#sample', 'own');
    await page.fill('#train-text', 'Pasted words of my own. '.repeat(10));
    await countIs(240);
    const own = path.join(ROOT, 'build', 'demo-own.txt');
    fs.mkdirSync(path.dirname(own), { recursive: true });
    fs.writeFileSync(own, 'A file of my own text. '.repeat(20));
    await page.setInputFiles('#text-file', own);
    await countIs(460);
    assert.equal(await page.getAttribute('#data-info', 'data-file'), 'demo-own.txt');
    await page.evaluate(() => {
      const dt = new DataTransfer();
      dt.items.add(new File(['Dropped text. '.repeat(5)], 'dropped.txt', { type: 'text/plain' }));
      document.querySelector('#train-text').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    await countIs(70);
    assert.equal(await page.getAttribute('#data-info', 'data-file'), 'dropped.txt');
    assert.equal(await page.inputValue('#train-text'), 'Dropped text. '.repeat(5));
    console.log('own text: pasted (240 chars), file (460 chars) and dropped (70 chars) were each taken and tokenised');
    await page.selectOption('#sample', 'kjv-genesis'); // back to the sample for training
    await countIs(kjv.chars);

    await page.click('#gen-btn');
    await page.waitForSelector('#output[data-tokens]', { timeout: 60_000 });
    const prompt = await page.inputValue('#prompt');
    const out = await page.textContent('#output');
    console.log(`generated: ${JSON.stringify(out)}`);
    assert.ok(out.startsWith(prompt) && out.length > prompt.length + 5, 'text appeared after the prompt');

    // the page's defaults first (LoRA only, 60 steps of 128 tokens): what a visitor who just clicks
    // Train sees
    assert.equal(await page.isChecked('#use-lim'), false, 'LoRA only by default (training/study)');
    {
      const t = Date.now();
      await page.click('#train-btn');
      await page.waitForSelector('#train-status[data-state=done]', { timeout: 180_000 });
      const d = await page.$eval('#train-status', (el) => ({ ...el.dataset }));
      console.log(`defaults (${((Date.now() - t) / 1000).toFixed(1)} s): train loss ${Number(d.firstLoss).toFixed(3)} -> ${Number(d.lastLoss).toFixed(3)}; validation ${Number(d.valFirst).toFixed(3)} -> ${Number(d.valBest).toFixed(3)} (best)`);
      assert.ok(Number(d.valBest) < Number(d.valFirst) - 0.3, 'the defaults lower the held-out loss');
      await page.click('#compare-btn');
      await page.waitForFunction(() => document.querySelector('#out-adapted')?.dataset.tokens, null, { timeout: 60_000 });
      console.log(`defaults, adapted: ${JSON.stringify(await page.textContent('#out-adapted'))}`);
      await page.locator('#compare').screenshot({ path: path.join(BUILD, 'demo-defaults.png') });
    }

    // fine-tune with a validation split; the membrane heatmap below needs a LIM gate
    await page.check('#use-lim');
    await page.fill('#steps', '24');
    await page.fill('#eval-every', '8');
    const t0 = Date.now();
    await page.click('#train-btn');
    // the page stays responsive while the worker trains
    const tp = Date.now();
    await page.evaluate(() => new Promise((r) => setTimeout(r, 10)));
    assert.ok(Date.now() - tp < 2000, 'main thread blocked during training');
    // tokens/s and the time left show while it trains
    await page.waitForFunction(() => /[\d,]+ tokens\/s, about .+ left/.test(document.querySelector('#train-speed').textContent), null, { timeout: 60_000 });
    const speed = await page.textContent('#train-speed');
    await page.waitForSelector('#train-status[data-state=done]', { timeout: 120_000 });
    const trainSecs = (Date.now() - t0) / 1000;
    const ds = await page.$eval('#train-status', (el) => ({ ...el.dataset }));
    const first = Number(ds.firstLoss);
    const last = Number(ds.lastLoss);
    console.log(`browser fine-tuning (${trainSecs.toFixed(1)} s): ${speed}; train loss ${first.toFixed(3)} -> ${last.toFixed(3)}; validation ${Number(ds.valFirst).toFixed(3)} -> ${Number(ds.valLast).toFixed(3)} (best ${Number(ds.valBest).toFixed(3)})`);
    assert.ok(last < first, 'the train loss fell');
    assert.ok(Number.isFinite(Number(ds.valFirst)) && Number.isFinite(Number(ds.valLast)), 'validation losses were mirrored');
    assert.match(await page.textContent('#val-status'), /validation loss \d+\.\d+/, 'a validation loss was shown');
    const chart = await page.$eval('#loss-chart', (el) => ({ ...el.dataset }));
    assert.equal(Number(chart.trainPoints), 24, 'the chart drew every train step');
    assert.equal(Number(chart.valPoints), 4, 'the chart drew the validation loss before training and at steps 8, 16, 24');
    assert.match(await page.textContent('#train-speed'), /tokens\/s/);

    // base vs adapted, then the heatmap with its tooltip
    await page.click('#compare-btn');
    await page.waitForFunction(() => document.querySelector('#out-adapted')?.dataset.tokens, null, { timeout: 60_000 });
    const adapted = await page.textContent('#out-adapted');
    const base = await page.textContent('#out-base');
    console.log(`base: ${JSON.stringify(base.slice(0, 80))}\nadapted: ${JSON.stringify(adapted.slice(0, 80))}`);
    assert.ok(base.length > 20 && adapted.length > 20, 'both columns hold text');
    assert.notEqual(base, adapted, 'the adapted model writes something else');
    // side by side, equal widths, and the text wraps inside its column (nothing wider than the box)
    const cols = await page.$$eval('.two > div', (ds) => ds.map((d) => { const r = d.getBoundingClientRect(); const pre = d.querySelector('pre'); return { x: r.x, y: r.y, w: r.width, scroll: pre.scrollWidth, client: pre.clientWidth, lines: Math.round(pre.getBoundingClientRect().height / parseFloat(getComputedStyle(pre).lineHeight)) }; }));
    console.log(`columns: ${JSON.stringify(cols)}`);
    assert.equal(cols.length, 2);
    assert.ok(Math.abs(cols[0].w - cols[1].w) <= 1 && Math.abs(cols[0].y - cols[1].y) <= 1 && cols[1].x > cols[0].x + cols[0].w - 1, 'two equal columns side by side');
    assert.ok(cols.every((c) => c.scroll <= c.client + 1 && c.lines >= 2), 'the text wraps inside each column');
    assert.match(await page.textContent('.lim-note'), /Leaky Integrate Membrane/, 'one sentence says what LIM is');
    await page.click('#inspect-btn');
    await page.waitForSelector('#heatmap[data-drawn=true]', { timeout: 60_000 });
    const hm = await page.$eval('#heatmap', (el) => ({ ...el.dataset }));
    assert.equal(Number(hm.chunkLength), 16);
    assert.ok(Number(hm.positions) > 16 && Number(hm.layers) >= 2, `heatmap ${JSON.stringify(hm)}`);
    const box = await page.locator('#heatmap').boundingBox();
    // a cell inside the plot (margins: left 58, right 104, top 12, bottom 46)
    await page.locator('#heatmap').hover({ position: { x: 58 + (box.width - 162) * 0.3, y: 12 + (box.height - 58) * 0.4 } });
    await page.waitForSelector('#heatmap-tip:not([hidden])', { timeout: 5000 });
    const tip = await page.textContent('#heatmap-tip');
    console.log(`heatmap ${hm.layers} x ${hm.positions}, max ${hm.max}; tooltip: ${tip}`);
    assert.match(tip, /layer \d+.*position \d+.*token .*mean \|v\| \d+\.\d+/s);
    assert.ok(Number.isFinite(Number(await page.getAttribute('#heatmap-tip', 'data-value'))));
    await page.locator('#membrane').screenshot({ path: path.join(BUILD, 'demo-heatmap.png') });
    await page.locator('#train').screenshot({ path: path.join(BUILD, 'demo-training.png') });

    // download the adapter as PEFT files ...
    const links = await page.$$eval('#downloads a[download]', (as) => as.map((a) => a.dataset.file));
    assert.deepEqual(links.sort(), ['adapter_config.json', 'adapter_model.safetensors', 'memba_config.json']);
    const files = [];
    for (const name of links) {
      const [dl] = await Promise.all([page.waitForEvent('download'), page.click(`#downloads a[data-file="${name}"]`)]);
      const file = path.join(saved, dl.suggestedFilename());
      await dl.saveAs(file);
      files.push(file);
    }
    assert.ok(fs.statSync(path.join(saved, 'adapter_model.safetensors')).size > 1000);
    assert.equal(JSON.parse(fs.readFileSync(path.join(saved, 'adapter_config.json'), 'utf8')).peft_type, 'LORA');
    await page.screenshot({ path: path.join(BUILD, 'demo.png'), fullPage: true });
    // ... and load it back from disk: the same text with the same seed
    await page.setInputFiles('#adapter-files', files);
    await page.waitForSelector('#adapter-status[data-state=loaded][data-lim=true]', { timeout: 30_000 });
    await page.click('#compare-btn');
    await page.waitForFunction(() => document.querySelector('#out-adapted')?.dataset.tokens, null, { timeout: 60_000 });
    assert.equal(await page.textContent('#out-adapted'), adapted, 'the reloaded adapter generates the same text');

    // a failed adapter load keeps the previous adapter; a failed model load keeps the model
    await page.setInputFiles('#adapter-files', [path.join(saved, 'adapter_config.json')]);
    await page.waitForSelector('#adapter-status[data-state=error]', { timeout: 30_000 });
    const adapterErr = await page.textContent('#adapter-status');
    assert.match(adapterErr, /^not_found: .*previous adapter stays active/);
    await page.fill('#source', '/models/does-not-exist/');
    await page.click('#load-btn');
    await page.waitForSelector('#status[data-state=error]', { timeout: 30_000 });
    const loadErr = await page.textContent('#status');
    console.log(`failed loads: ${adapterErr} | ${loadErr}`);
    assert.match(loadErr, /^not_found: .*still using the previous model/);
    await page.locator('#load').screenshot({ path: path.join(BUILD, 'demo-load-error.png') });
    await page.click('#gen-btn');
    await page.waitForSelector('#output[data-tokens]', { timeout: 60_000 });
    assert.equal(await page.textContent('#output'), adapted, 'the previous model and adapter still generate the same text');

    // abort lands within one training step: start a long run, abort after a few steps
    await page.fill('#steps', '500');
    await page.click('#train-btn');
    await page.waitForFunction(() => Number(document.querySelector('#train-status').dataset.step) >= 3, null, { timeout: 120_000 });
    // read the page's step count and click Abort in the same task
    const atAbort = await page.evaluate(() => {
      const n = Number(document.querySelector('#train-status').dataset.step);
      document.querySelector('#abort-btn').click();
      return n;
    });
    await page.waitForSelector('#train-status[data-state=aborted]', { timeout: 60_000 });
    const ran = Number(await page.getAttribute('#train-status', 'data-steps'));
    console.log(`abort clicked after ${atAbort} steps; ${ran} steps ran`);
    // the step in flight in the worker finishes; the page's count may lag one progress event
    assert.ok(ran <= atAbort + 2, `abort should land within one step (${ran} vs ${atAbort})`);
    // the failed model load's 404s are expected; nothing else may fail
    assert.deepEqual(errors.filter((e) => !e.includes('does-not-exist')), [], 'no errors in the page');
  } finally {
    await browser.close();
  }
});

test('WebGPU in headless Chromium (SwiftShader): whole-model logits and greedy tokens match golden and WASM, with a Memba adapter, and with residency gpu', { skip: CHROMIUM ? false : 'no Chromium found', timeout: 180_000 }, async (t) => {
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: [...FLAGS, '--enable-unsafe-webgpu'] });
  try {
    const page = await browser.newPage();
    const weightRequests = [];
    page.on('request', (r) => r.url().endsWith('/model.safetensors') && weightRequests.push(r.url()));
    await page.goto(`${origin}/demo/`);
    const hasAdapter = await page.evaluate(async () => !!(await navigator.gpu?.requestAdapter()));
    if (!hasAdapter) return t.skip('Chromium exposes no WebGPU adapter here');
    for (const name of ['mamba-tiny', 'memba-tiny-stream']) {
      const c = readCase(name);
      const P = c.greedy_prompt_len;
      const got = await page.evaluate(async ({ name, ids, P, G }) => {
        const { Mamba } = await import('/bindings/index.js');
        const run = async (backend, residency = 'auto') => {
          // residency 'gpu' holds fp16 unless fp32 is asked for; these goldens are fp32
          const m = await Mamba.load(`/tests/fixtures/${name}/`, { backend, residency, dtype: residency === 'gpu' ? 'fp32' : 'auto' });
          if (name.startsWith('memba')) await m.loadAdapter(`/tests/fixtures/${name}/`);
          const out = await m.forward(ids);
          const greedy = await m.generate(ids[0].slice(0, P), { maxNewTokens: G, stopTokens: [] });
          const info = m.info;
          m.dispose();
          return { logits: Array.from(out.data), greedy, backend: info.backend, adapter: info.adapter ?? null, residency: info.residency };
        };
        // without an adapter, also with the weights on the GPU only (straight from the file)
        return { gpu: await run('webgpu'), wasm: await run('wasm'), gpuOnly: name.startsWith('memba') ? null : await run('webgpu', 'gpu') };
      }, { name, ids: c.ids, P, G: readExpected(name).get('greedy').shape[1] });
      assert.equal(got.gpu.backend, 'webgpu');
      console.log(`${name}: Chromium WebGPU adapter ${got.gpu.adapter}`);
      const exp = readExpected(name);
      assertClose(`${name} Chromium webgpu logits vs golden`, got.gpu.logits, exp.get('logits'), 'logits_rel');
      assertClose(`${name} Chromium webgpu vs wasm logits`, got.gpu.logits, got.wasm.logits, 'logits_rel');
      const G = exp.get('greedy').shape[1];
      assert.deepEqual(got.gpu.greedy, Array.from(exp.get('greedy').subarray(0, G)));
      if (got.gpuOnly) {
        assert.equal(got.gpuOnly.residency, 'gpu');
        assertClose(`${name} Chromium webgpu, residency gpu, logits vs golden`, got.gpuOnly.logits, exp.get('logits'), 'logits_rel');
        assert.deepEqual(got.gpuOnly.greedy, Array.from(exp.get('greedy').subarray(0, G)));
      }
    }
    // each model was loaded two or three times: the loads after the first came from the Cache API
    const cacheNames = await page.evaluate(() => caches.keys());
    assert.ok(cacheNames.includes('memba-wasm-v1'), `caches: ${cacheNames}`);
    assert.equal(weightRequests.length, 2, `weights fetched ${weightRequests.length} times for 5 loads: ${weightRequests}`);
  } finally {
    await browser.close();
  }
});
