// cli-errors.test.mjs: the `memba` command on user errors (issue 11): one line `memba: <code>:
// <message>` and a hint, never a stack trace or the whole help; exit 2 for usage, 1 at run time.
// Malformed --ids are refused; finetune checks --out before training; inspect --json makes a
// missing directory; inspect handles a 110 KB text (no call-stack overflow).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Mamba } from '../bindings/index.js';
import { ROOT, FIXTURES } from './helpers.mjs';
import { makeTextModel } from './make-text-model.mjs';

const cli = (...args) => spawnSync(process.execPath, [path.join(ROOT, 'bindings', 'cli.js'), ...args], { encoding: 'utf8', cwd: ROOT, timeout: 120_000 });

let dir; // a scratch directory for this file's outputs
let model; // a small text model: 6 layers like the embedded one, the fixture tokenizer
let adapter; // a LIM adapter for it (inspect needs one)

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-cli-errors-'));
  model = path.join(dir, 'model');
  adapter = path.join(dir, 'lim-adapter');
  makeTextModel(model, { d: 32, nl: 6, N: 8, R: 2, seed: 3 });
  const m = await Mamba.load(model);
  const a = m.createAdapter({ lora: null, lim: { chunk_size: 16, cross_layer: 'first' } });
  fs.mkdirSync(adapter);
  for (const [name, bytes] of Object.entries(a.save())) fs.writeFileSync(path.join(adapter, name), bytes);
  m.dispose();
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Asserts a clean error: `status`, stderr of two lines (`memba: code: ...` and a hint), no stack, no help. */
function assertClean(r, status, code, re) {
  const lines = r.stderr.trimEnd().split('\n').filter((l) => l !== 'model loaded');
  console.log(`exit ${r.status}: ${lines.join(' | ')}`);
  assert.equal(r.status, status, r.stderr);
  assert.match(lines[0], new RegExp(`^memba: ${code}: `));
  if (re) assert.match(lines[0], re);
  assert.equal(lines.length, 2, 'one line of error, one of hint');
  assert.ok(!/^\s+at /m.test(r.stderr), 'no stack trace');
  assert.ok(!r.stderr.includes('commands:'), 'not the whole help');
}

test('usage errors: the one-line error and `see: memba help <command>`, exit 2; memba help <command>', () => {
  const cases = [
    [['nonsense'], /unknown command/],
    [['generate'], /needs a prompt/],
    [['generate', 'x', '--bogus'], /unknown option --bogus/],
    [['generate', 'x', '--seed', ''], /--seed must be an integer/],
    [['generate', 'x', '--threads', '0'], /--threads must be an integer from 1 to 16/],
    [['generate', 'x', '--threads', '1.5'], /--threads must be an integer/],
    [['generate', 'x', '--model'], /--model needs a value/],
    [['generate', 'x', '--quiet=yes'], /--quiet takes no value/],
    [['finetune', path.join(dir, 'missing.txt'), '--out', path.join(dir, 'o')], /cannot read/],
    [['score', 'only a context'], /needs a context and at least one continuation/],
  ];
  for (const [args, re] of cases) assertClean(cli(...args, '--model', model), 2, 'usage', re);
  const r = cli('generate', '--bogus');
  assert.equal(r.stderr.split('\n')[1], 'see: memba help generate', 'one line plus where the command\'s help is');
  assert.equal(r.stderr.trimEnd().split('\n').length, 2, 'two lines in all');
  assert.equal(cli('nonsense').stderr.split('\n')[1], 'see: memba help');
  assert.match(cli('generate', '--help').stdout, /^usage: memba <command>/, '--help after a command prints the help');
  const h = cli('help', 'ppl');
  assert.equal(h.status, 0);
  assert.match(h.stdout, /^usage: memba ppl <file\.txt>/);
  assert.match(h.stdout, /--stride S/, 'its own options');
  assert.doesNotMatch(h.stdout, /--max-new-tokens/, 'not the other commands\' options');
  assertClean(cli('help', 'nope'), 2, 'usage', /unknown command 'nope'/);
});

test('--ids: empty entries, non-integers, negatives and ids past the vocabulary are refused', () => {
  for (const ids of ['1,,2', '1,x,2', '1,2.5', '-1,2', '', ',', '1, 2,']) assertClean(cli('generate', '--ids', ids, '--model', model), 2, 'usage', /--ids: entry \d+ of \d+/);
  assertClean(cli('generate', '--ids', '1,1024', '--model', model), 2, 'usage', /1024 is out of range .*0\.\.1023/);
  const ok = cli('generate', '--ids', ' 1, 2 ,3', '--model', path.join(FIXTURES, 'mamba-tiny'), '--max-new-tokens', '3', '--quiet');
  assert.equal(ok.status, 0, ok.stderr);
  console.log(`--ids ' 1, 2 ,3' on a model without a tokenizer: ${ok.stdout.trim()}`);
  assert.equal(ok.stdout.trim().split(' ').length, 3);
});

test('runtime errors are one line with the MembaError code and a hint, exit 1', () => {
  assertClean(cli('generate', 'x', '--model', path.join(dir, 'no-such-model')), 1, 'not_found');
  const bad = path.join(dir, 'bad-config');
  fs.mkdirSync(bad);
  fs.writeFileSync(path.join(bad, 'config.json'), '{"hidden_size": 32,');
  fs.copyFileSync(path.join(model, 'model.safetensors'), path.join(bad, 'model.safetensors'));
  assertClean(cli('generate', 'x', '--model', bad), 1, 'bad_format', /config\.json is not valid/);
  assertClean(cli('generate', 'x', '--model', model, '--adapter', path.join(dir, 'no-such-adapter')), 1, 'not_found');
  assertClean(cli('generate', 'x', '--model', model, '--max-new-tokens', '-2'), 1, 'invalid_argument');
});

test('finetune --out under a regular file fails before the model loads, not after training', () => {
  const text = path.join(dir, 'notes.txt');
  fs.writeFileSync(text, 'The little robot liked to paint the sea. '.repeat(20));
  for (const out of [path.join(text, 'adapter'), text]) {
    const t0 = Date.now();
    const r = cli('finetune', text, '--out', out, '--model', model, '--epochs', '50');
    console.log(`--out ${path.relative(dir, out)}: ${Date.now() - t0} ms`);
    assertClean(r, 2, 'usage', /--out .*(a file|not a directory)/);
    assert.ok(!r.stderr.includes('model loaded') && !r.stderr.includes('train ['), 'nothing was loaded or trained');
  }
});

test('inspect --json into a missing directory makes it; --json naming a directory is refused first', async () => {
  const out = path.join(dir, 'new', 'deeper', 'inspect.json');
  const r = cli('inspect', 'The little robot', '--model', model, '--adapter', adapter, '--json', out, '--quiet');
  assert.equal(r.status, 0, r.stderr);
  const got = JSON.parse(fs.readFileSync(out, 'utf8'));
  const m = await Mamba.load(model);
  await m.loadAdapter(adapter);
  const ids = m.encode('The little robot');
  const want = await m.inspect(ids);
  m.dispose();
  assert.deepEqual(got.tokens, ids);
  assert.equal(got.chunkLength, want.chunkLength);
  assert.equal(got.layers.length, 6);
  assert.deepEqual(got.layers[5].limV.data, Array.from(want.layers[5].limV.data), 'the JSON holds the exact values');
  assert.deepEqual(got.layers[2].membrane.dims, want.layers[2].membrane.dims);
  console.log(`inspect --json wrote ${fs.statSync(out).size} bytes into a directory it made`);
  assertClean(cli('inspect', 'x', '--model', model, '--adapter', adapter, '--json', dir), 2, 'usage', /is a directory/);
});

test('inspect on a 110 KB text: no call-stack overflow (6 layers x 40k positions)', () => {
  const kjv = fs.readFileSync(path.join(ROOT, 'examples', 'data', 'kjv-genesis.txt'), 'utf8');
  const text = kjv.repeat(4).slice(0, 110_000);
  const args = [text.slice(0, 55_000), text.slice(55_000)]; // two arguments: each under the OS limit of one
  const t0 = Date.now();
  const r = cli('inspect', ...args, '--model', model, '--adapter', adapter, '--quiet');
  const rows = r.stdout.split('\n').filter((l) => /^\s+\d+ \|/.test(l));
  console.log(`inspect of ${text.length} characters: exit ${r.status} in ${Date.now() - t0} ms, ${rows.length} rows of ${rows[0]?.length ?? 0} characters`);
  assert.equal(r.status, 0, r.stderr.slice(0, 500));
  assert.equal(rows.length, 6);
  assert.ok(rows[0].length > 30_000, 'one column per token');
});
