// browser.test.mjs: the demo end to end in a real browser (Debian's headless Chromium driven by
// playwright-core): it loads the model in a Web Worker, generates text, fine-tunes a Memba adapter
// (the loss must fall), draws the membrane heatmap, and saves a screenshot to build/demo.png.
// Uses the embedded default model (models/default) when present, else a small text model made here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createServer } from '../demo/serve.mjs';
import { makeTextModel } from './make-text-model.mjs';
import { ROOT, readCase, readExpected, assertClose } from './helpers.mjs';

const FLAGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
let server;
let origin;

before(async () => {
  server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${server.address().port}`;
});
after(() => server?.close());

test('demo in headless Chromium: load in a worker, generate, fine-tune (loss falls), heatmap, screenshot', { skip: CHROMIUM ? false : 'no Chromium found (./build.sh deps installs Debian chromium as root)', timeout: 240_000 }, async () => {
  const { chromium } = await import('playwright-core');
  let modelPath = 'models/default/';
  if (!fs.existsSync(path.join(ROOT, modelPath, 'model.safetensors'))) {
    makeTextModel(path.join(ROOT, 'build', 'text-model'));
    modelPath = 'build/text-model/';
  }
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
    await page.click('#gen-btn');
    await page.waitForSelector('#output[data-tokens]', { timeout: 60_000 });
    const prompt = await page.inputValue('#prompt');
    const out = await page.textContent('#output');
    console.log(`generated: ${JSON.stringify(out)}`);
    assert.ok(out.startsWith(prompt) && out.length > prompt.length + 5, 'text appeared after the prompt');
    assert.equal(await page.isChecked('#use-lim'), false, 'LoRA only by default (training/study)');
    await page.check('#use-lim'); // the membrane heatmap below needs a LIM gate
    await page.fill('#steps', '24');
    await page.fill('#seq-len', '16');
    await page.fill('#lr', '0.01');
    await page.click('#train-btn');
    // the page stays responsive while the worker trains
    const t0 = Date.now();
    await page.evaluate(() => new Promise((r) => setTimeout(r, 10)));
    assert.ok(Date.now() - t0 < 2000, 'main thread blocked during training');
    await page.waitForSelector('#train-status[data-state=done]', { timeout: 180_000 });
    const first = Number(await page.getAttribute('#train-status', 'data-first-loss'));
    const last = Number(await page.getAttribute('#train-status', 'data-last-loss'));
    console.log(`browser fine-tuning: loss ${first.toFixed(3)} -> ${last.toFixed(3)}`);
    assert.ok(last < first, 'the loss fell');
    // abort lands within one training step: start a long run, abort after a few steps
    await page.fill('#steps', '500');
    await page.click('#train-btn');
    await page.waitForSelector('#train-status[data-state=training]', { timeout: 60_000 });
    await page.waitForFunction(() => Number(document.querySelector('#train-progress').value) * 500 >= 3, null, { timeout: 120_000 });
    // read the page's step count and click Abort in the same task
    const atAbort = await page.evaluate(() => {
      const n = Math.round(Number(document.querySelector('#train-progress').value) * 500);
      document.querySelector('#abort-btn').click();
      return n;
    });
    await page.waitForSelector('#train-status[data-state=aborted]', { timeout: 60_000 });
    const ran = Number(await page.getAttribute('#train-status', 'data-steps'));
    console.log(`abort clicked after ${atAbort} steps; ${ran} steps ran`);
    // the step in flight in the worker finishes; the page's count may lag one progress event
    assert.ok(ran <= atAbort + 2, `abort should land within one step (${ran} vs ${atAbort})`);
    await page.click('#inspect-btn');
    await page.waitForSelector('#heatmap[data-drawn=true]', { timeout: 60_000 });
    await page.click('#compare-btn');
    await page.waitForFunction(() => document.querySelector('#out-adapted')?.dataset.tokens, null, { timeout: 60_000 });
    fs.mkdirSync(path.join(ROOT, 'build'), { recursive: true });
    await page.screenshot({ path: path.join(ROOT, 'build', 'demo.png'), fullPage: true });
    assert.deepEqual(errors, [], 'no errors in the page');
  } finally {
    await browser.close();
  }
});

test('WebGPU in headless Chromium (SwiftShader): whole-model logits and greedy tokens match golden and WASM, with a Memba adapter', { skip: CHROMIUM ? false : 'no Chromium found', timeout: 180_000 }, async (t) => {
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
        const run = async (backend) => {
          const m = await Mamba.load(`/tests/fixtures/${name}/`, { backend });
          if (name.startsWith('memba')) await m.loadAdapter(`/tests/fixtures/${name}/`);
          const out = await m.forward(ids);
          const greedy = await m.generate(ids[0].slice(0, P), { maxNewTokens: G, stopTokens: [] });
          const info = m.info;
          m.dispose();
          return { logits: Array.from(out.data), greedy, backend: info.backend, adapter: info.adapter ?? null };
        };
        return { gpu: await run('webgpu'), wasm: await run('wasm') };
      }, { name, ids: c.ids, P, G: readExpected(name).get('greedy').shape[1] });
      assert.equal(got.gpu.backend, 'webgpu');
      console.log(`${name}: Chromium WebGPU adapter ${got.gpu.adapter}`);
      const exp = readExpected(name);
      assertClose(`${name} Chromium webgpu logits vs golden`, got.gpu.logits, exp.get('logits'), 'logits_rel');
      assertClose(`${name} Chromium webgpu vs wasm logits`, got.gpu.logits, got.wasm.logits, 'logits_rel');
      const G = exp.get('greedy').shape[1];
      assert.deepEqual(got.gpu.greedy, Array.from(exp.get('greedy').subarray(0, G)));
    }
    // each model was loaded twice (webgpu, then wasm): the second load came from the Cache API
    const cacheNames = await page.evaluate(() => caches.keys());
    assert.ok(cacheNames.includes('memba-wasm-v1'), `caches: ${cacheNames}`);
    assert.equal(weightRequests.length, 2, `weights fetched ${weightRequests.length} times for 4 loads: ${weightRequests}`);
  } finally {
    await browser.close();
  }
});
