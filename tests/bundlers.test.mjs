// bundlers.test.mjs: the package as a web developer gets it. The `npm pack` tarball is installed
// into a fresh temp folder with the bundlers of tests/bundlers/package.json (from the registry),
// next to the example app of examples/vite/ (it imports the package, loads the default model in a
// Web Worker and streams text). The app is built with Vite (build, and the dev server), webpack 5,
// esbuild and Rollup, each with its defaults (esbuild and Rollup copy no files: their output must
// hold only the bundles, which use the inlined wasm, worker and model; README, "In the browser"), and run in
// headless Chromium (playwright-core): its text must equal Node's greedy continuation. Vite and
// webpack also run the README's own-worker recipe. The same install runs the other examples: the
// Node script (examples/node) and the plain page with an import map (examples/html). Skips without
// Chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { Mamba } from '../bindings/index.js';
import { ROOT, CHROMIUM, CHROMIUM_FLAGS } from './helpers.mjs';

const FLAGS = CHROMIUM_FLAGS;
const SKIP = CHROMIUM ? false : 'no Chromium found (./build.sh deps installs Debian chromium as root)';
const PROMPT = 'The jury said';
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };

let tmp;
let app;
let browser;
let expected;
const servers = [];
const times = {};

/** Runs a command (no shell); resolves with its output, rejects with it on a non-zero exit. */
function run(cmd, args, { cwd = app, timeout = 240_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}:\n${out.slice(-4000)}`));
    });
  });
}

const bin = (name) => path.join(app, 'node_modules', '.bin', name);

/** A static server for one build output. */
async function serve(dir) {
  const server = http.createServer((req, res) => {
    let p = path.join(dir, decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (!p.startsWith(dir)) return res.writeHead(403).end();
    if (fs.existsSync(p) && fs.statSync(p).isDirectory()) p = path.join(p, 'index.html');
    if (!fs.existsSync(p)) return res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    // cross-origin isolated (as demo/serve.mjs): the apps run the threaded build
    res.writeHead(200, { 'content-type': TYPES[path.extname(p)] ?? 'application/octet-stream', 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' });
    fs.createReadStream(p).pipe(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return `http://127.0.0.1:${server.address().port}/`;
}

/** Opens the app at `url` in Chromium; resolves with what it wrote to document.body.dataset. */
async function openApp(url) {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(e.message));
  page.on('console', (m) => m.type() === 'error' && !/^Failed to load resource/.test(m.text()) && problems.push(`console: ${m.text()}`)); // (responses: below)
  page.on('response', (r) => r.status() >= 400 && !r.url().endsWith('/favicon.ico') && problems.push(`HTTP ${r.status()} ${r.url()}`));
  try {
    await page.goto(url);
    await page.waitForFunction(() => document.body.dataset.result || document.body.dataset.error, null, { timeout: 90_000 }).catch((e) => {
      throw new Error(`${e.message} (page problems: ${problems.join('; ') || 'none'})`);
    });
    const { result, error } = await page.evaluate(() => ({ ...document.body.dataset }));
    return { result: result && JSON.parse(result), error, problems };
  } finally {
    await page.close();
  }
}

const THREADS = Math.min(8, os.availableParallelism?.() ?? os.cpus().length);

function checkApp({ result, error, problems }, what, { recipe = false, isolated = true } = {}) {
  assert.equal(error, undefined, `${what}: the app failed: ${error} (${problems.join('; ')})`);
  assert.deepEqual(problems, [], `${what}: errors in the page`);
  assert.equal(result.text, expected, `${what}: the text differs from Node's`);
  for (const phase of ['download', 'convert', 'ready']) assert.ok(result.phases.includes(phase), `${what}: no ${phase} phase (${result.phases})`);
  if (recipe) assert.equal(result.recipe, expected, `${what}: the README's own-worker recipe`);
  // served cross-origin isolated: the worker runs the threaded build (inlined in a bundle); the
  // Vite dev server sends no COOP/COEP by default: one thread, saying why
  if (isolated) assert.equal(result.threads, THREADS, `${what}: threads (${result.threadsNote})`);
  else assert.match(`${result.threads} ${result.threadsNote}`, /^1 1 thread: the page is not cross-origin isolated/, what);
  console.log(`${what}: ${JSON.stringify(PROMPT + result.text)} (phases ${result.phases.join(', ')}; ${result.threadsNote})`);
}

/** The page for bundlers that write no HTML (webpack, esbuild, Rollup). */
function writePage(dir, script, module) {
  fs.writeFileSync(path.join(dir, 'index.html'),
    `<!doctype html><meta charset="utf-8"><title>memba-wasm</title><p><progress id="progress" max="1" value="0"></progress> <span id="status"></span></p><pre id="out"></pre><script ${module ? 'type="module" ' : ''}src="${script}"></script>\n`);
}


/** Vite and webpack copy the model's files: their output must not also hold the inlined copy
 * (package.json's export conditions give them models/default/model.js). */
function noInlinedModel(dir, what) {
  const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]));
  const big = walk(dir).filter((f) => f.endsWith('.js') && fs.statSync(f).size > 4e6);
  assert.deepEqual(big.map((f) => path.relative(dir, f)), [], `${what} bundled the inlined model`);
}

/** A second entry for esbuild: a wrong wasmUrl must fail with an error that names the URL. */
const WASM_URL_PAGE = `import { Mamba } from 'memba-wasm';
import { defaultModel } from 'memba-wasm/default-model';
Mamba.load(defaultModel, { wasmUrl: new URL('missing.wasm', location.href) }).then(
  () => { document.body.dataset.error = 'loaded with a missing wasmUrl'; },
  (err) => { document.body.dataset.result = JSON.stringify({ error: err.code + ': ' + err.message }); });
`;

async function timed(what, fn) {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    times[what] = (Date.now() - t0) / 1000;
  }
}

before(async () => {
  if (SKIP) return;
  const t0 = Date.now();
  for (const f of ['dist/memba.mjs', 'dist/memba.wasm']) assert.ok(fs.existsSync(path.join(ROOT, f)), `${f} is missing: run ./build.sh first`);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-bundlers-'));
  app = path.join(tmp, 'app');
  fs.mkdirSync(app);
  // the tarball as npm would publish it (dist/ is built already: no prepack here)
  await timed('pack', () => run('npm', ['pack', '--ignore-scripts', '--pack-destination', tmp], { cwd: ROOT }));
  const tarball = fs.readdirSync(tmp).find((f) => f.endsWith('.tgz'));
  assert.ok(tarball, 'npm pack made no tarball');
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'tests', 'bundlers', 'package.json'), 'utf8'));
  pkg.dependencies = { 'memba-wasm': `file:../${tarball}` };
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify(pkg, null, 2));
  fs.cpSync(path.join(ROOT, 'examples', 'vite', 'index.html'), path.join(app, 'index.html'));
  fs.cpSync(path.join(ROOT, 'examples', 'vite', 'src'), path.join(app, 'src'), { recursive: true });
  fs.cpSync(path.join(ROOT, 'examples', 'node', 'generate.mjs'), path.join(app, 'generate.mjs'));
  fs.cpSync(path.join(ROOT, 'examples', 'html', 'index.html'), path.join(app, 'importmap.html'));
  await timed('npm install', () => run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error']));
  const model = await Mamba.load('default');
  expected = '';
  for await (const piece of model.streamText(PROMPT, { maxNewTokens: 16 })) expected += piece;
  model.dispose();
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  console.log(`setup (pack, npm install, Chromium) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}, { timeout: 360_000 });

after(async () => {
  await browser?.close();
  for (const s of servers) s.close();
  console.log(`bundler test times (s): ${JSON.stringify(times)}`);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('Vite build, no config: the default model in a Worker generates the same text as Node; the README recipe too', { skip: SKIP, timeout: 180_000 }, async () => {
  await timed('vite build', () => run(bin('vite'), ['build', '--outDir', 'out-vite']));
  noInlinedModel(path.join(app, 'out-vite'), 'vite build');
  checkApp(await openApp(`${await serve(path.join(app, 'out-vite'))}?recipe`), 'vite build', { recipe: true });
});

test('Vite dev server, no config: the same', { skip: SKIP, timeout: 180_000 }, async () => {
  const port = await new Promise((resolve) => {
    const s = http.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
  const child = spawn(bin('vite'), ['--host', '127.0.0.1', '--port', String(port), '--strictPort'], { cwd: app, env: { ...process.env, NO_COLOR: '1' } });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  try {
    await timed('vite dev', async () => {
      const t0 = Date.now();
      while (!out.includes(`:${port}`)) {
        if (child.exitCode !== null || Date.now() - t0 > 60_000) throw new Error(`vite dev did not start:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      checkApp(await openApp(`http://127.0.0.1:${port}/?recipe`), 'vite dev', { recipe: true, isolated: false });
    });
  } finally {
    child.kill();
  }
});

test('webpack 5, no config (default entry src/index.js): the same, and the README recipe', { skip: SKIP, timeout: 180_000 }, async () => {
  const out = path.join(app, 'out-webpack');
  await timed('webpack', () => run(bin('webpack'), ['--mode', 'production', '--output-path', out]));
  noInlinedModel(out, 'webpack');
  writePage(out, 'main.js', false);
  checkApp(await openApp(`${await serve(out)}?recipe`), 'webpack', { recipe: true });
});

test('esbuild, no config (esbuild --bundle): the same; a wrong wasmUrl fails naming the URL', { skip: SKIP, timeout: 180_000 }, async () => {
  const out = path.join(app, 'out-esbuild');
  fs.writeFileSync(path.join(app, 'src', 'wasm-url.js'), WASM_URL_PAGE);
  await timed('esbuild', () => run(bin('esbuild'), ['src/index.js', 'src/wasm-url.js', '--bundle', '--format=esm', `--outdir=${out}`]));
  assert.deepEqual(fs.readdirSync(out).sort(), ['index.js', 'wasm-url.js'], 'esbuild wrote other files');
  writePage(out, 'index.js', true);
  const url = await serve(out);
  checkApp(await openApp(url), 'esbuild');
  writePage(out, 'wasm-url.js', true);
  const { result } = await openApp(url);
  assert.match(result?.error ?? '', /^network: could not start the WASM engine: fetching memba\.wasm from http:\/\/127\.0\.0\.1:\d+\/missing\.wasm gave HTTP 404\..*wasmUrl/, result?.error);
});

test('Rollup with @rollup/plugin-node-resolve (its way to npm packages), no other config: the same', { skip: SKIP, timeout: 180_000 }, async () => {
  const out = path.join(app, 'out-rollup');
  await timed('rollup', () => run(bin('rollup'), ['src/index.js', '-p', 'node-resolve', '-f', 'es', '-d', out]));
  const files = fs.readdirSync(out);
  assert.ok(files.every((f) => f.endsWith('.js')), `Rollup wrote files other than chunks: ${files}`);
  writePage(out, 'index.js', true);
  checkApp(await openApp(await serve(out)), 'rollup');
});

test("Rollup with node-resolve's browser: true (Vite's export conditions, no copies): the load fails naming memba-wasm/default-model/inline", { skip: SKIP, timeout: 180_000 }, async () => {
  const out = path.join(app, 'out-rollup-browser');
  await run(bin('rollup'), ['src/index.js', '-p', 'node-resolve={browser: true}', '-f', 'es', '-d', out]);
  writePage(out, 'index.js', true);
  const { error } = await openApp(await serve(out));
  assert.match(error ?? '', /did not copy beside the bundle: import defaultModel from 'memba-wasm\/default-model\/inline'/, error);
});

test('examples/node: the Node script, run against the installed tarball', { skip: SKIP, timeout: 60_000 }, async () => {
  const out = await timed('node example', () => run(process.execPath, ['generate.mjs', PROMPT]));
  assert.equal(out, `${PROMPT}${expected}\n`);
});

test('examples/html: the plain page with an import map over node_modules, no build step', { skip: SKIP, timeout: 60_000 }, async () => {
  const got = await timed('import map page', async () => openApp(`${await serve(app)}importmap.html`));
  checkApp(got, 'import map page');
});
