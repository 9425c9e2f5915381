// eval-cli.test.mjs: `memba eval` on the shipped example task prints { acc, acc_norm, n } (one
// JSON object with --json, n = the items in the file) and agrees with model.evaluate; `memba ppl`
// prints finite numbers that agree with model.perplexity; bad usage and bad files exit non-zero.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Mamba } from '../bindings/index.js';
import { ROOT } from './helpers.mjs';

const cli = (...args) => spawnSync(process.execPath, [path.join(ROOT, 'bindings', 'cli.js'), ...args], { encoding: 'utf8', cwd: ROOT, timeout: 120_000 });
const TASK = path.join(ROOT, 'examples', 'tasks', 'example.jsonl');

test('memba eval TASK.jsonl --json prints exactly { acc, acc_norm, n } for the example task', async () => {
  const lines = fs.readFileSync(TASK, 'utf8').split('\n').filter((l) => l.trim());
  assert.ok(lines.length >= 15, `the example task has ${lines.length} items`);
  const r = cli('eval', TASK, '--json', '--quiet');
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  assert.equal(r.stdout, `${JSON.stringify(res)}\n`, 'stdout is one JSON object');
  assert.deepEqual(Object.keys(res), ['acc', 'acc_norm', 'n']);
  assert.equal(res.n, lines.length);
  for (const k of ['acc', 'acc_norm']) assert.ok(res[k] >= 0 && res[k] <= 1, `${k} ${res[k]}`);
  console.log(`default model on examples/tasks/example.jsonl: ${r.stdout.trim()}`);
  const model = await Mamba.load(path.join(ROOT, 'models', 'default'));
  assert.deepEqual(await model.evaluate(fs.readFileSync(TASK, 'utf8')), res);
  model.dispose();
  const plain = cli('eval', TASK, '--limit', '5');
  assert.equal(plain.status, 0, plain.stderr);
  assert.match(plain.stdout, /^acc\t[\d.]+\nacc_norm\t[\d.]+\nn\t5\n$/);
});

test('memba ppl FILE prints finite perplexity, nll and tokens (also with --seq-len / --stride)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-ppl-'));
  const file = path.join(dir, 'text.txt');
  const text = 'The little robot liked to paint the sea. The little robot painted the sea blue. '.repeat(3);
  fs.writeFileSync(file, text);
  const r = cli('ppl', file, '--json', '--quiet');
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(r.stdout);
  assert.deepEqual(Object.keys(res), ['perplexity', 'nll', 'tokens']);
  assert.ok(Number.isFinite(res.perplexity) && res.perplexity > 1 && Number.isFinite(res.nll) && res.tokens > 10, r.stdout);
  const model = await Mamba.load(path.join(ROOT, 'models', 'default'));
  assert.deepEqual(await model.perplexity(text), res);
  assert.equal(res.tokens, model.encode(text).length - 1);
  const w = cli('ppl', file, '--seq-len', '16', '--stride', '8', '--adapter', path.join(ROOT, 'tests', 'fixtures', 'missing-adapter'));
  assert.notEqual(w.status, 0, 'a missing adapter is an error');
  const s = cli('ppl', file, '--seq-len', '16', '--stride', '8');
  assert.equal(s.status, 0, s.stderr);
  console.log(s.stdout.trim());
  const m = /^perplexity\t([\d.]+)\nnll\t([\d.]+)\ntokens\t(\d+)\n$/.exec(s.stdout);
  assert.ok(m, s.stdout);
  const want = await model.perplexity(text, { seqLen: 16, stride: 8 });
  assert.equal(Number(m[3]), want.tokens);
  assert.ok(Math.abs(Number(m[1]) - want.perplexity) < 1e-4 * want.perplexity, `${m[1]} vs ${want.perplexity}`);
  model.dispose();
  fs.rmSync(dir, { recursive: true });
});

test('memba eval / ppl: bad usage exits 2, bad files and arguments exit 1 naming the problem', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-eval-'));
  const bad = path.join(dir, 'bad.jsonl');
  fs.writeFileSync(bad, '{"context": "a", "choices": [" b", " c"], "gold": 0}\n{"context": "a", "choices": [" b"], "gold": 0}\n');
  const cases = [
    [['eval'], 2, /eval needs a task file/],
    [['eval', path.join(dir, 'missing.jsonl')], 2, /cannot read/],
    [['ppl'], 2, /ppl needs a text file/],
    [['ppl', bad, '--seq-len', 'x'], 2, /--seq-len must be an integer/],
    [['eval', bad], 1, /bad_format: task line 2: choices/],
    [['ppl', bad, '--seq-len', '8', '--stride', '9'], 1, /invalid_argument: .*stride/],
  ];
  for (const [args, status, re] of cases) {
    const r = cli(...args);
    assert.equal(r.status, status, `${args.join(' ')}: exit ${r.status} ${r.stderr}`);
    assert.match(r.stderr, re);
  }
  const help = cli('help');
  assert.match(help.stdout, /eval <task\.jsonl>/);
  assert.match(help.stdout, /ppl <file\.txt>/);
  fs.rmSync(dir, { recursive: true });
});

test('memba finetune with the defaults (no --lim: LoRA only) and --val FILE; eval and ppl --adapter DIR use the adapter', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-evad-'));
  const words = fs.readFileSync(path.join(ROOT, 'examples', 'data', 'kjv-genesis.txt'), 'utf8').split(/\s+/);
  const train = path.join(dir, 'train.txt');
  const val = path.join(dir, 'val.txt');
  fs.writeFileSync(train, words.slice(0, 1500).join(' '));
  fs.writeFileSync(val, words.slice(1500, 1900).join(' '));
  const out = path.join(dir, 'adapter');
  const f = cli('finetune', train, '--out', out, '--val', val, '--epochs', '1', '--seq-len', '64', '--batch-size', '2', '--lr', '0.003');
  assert.equal(f.status, 0, f.stderr);
  console.log(f.stdout.trim());
  const m = /validation perplexity ([\d.]+) -> ([\d.]+)/.exec(f.stdout);
  assert.ok(m && Number(m[2]) < Number(m[1]), `the held-out file was scored and its perplexity fell: ${f.stdout}`);
  assert.deepEqual(fs.readdirSync(out).sort(), ['adapter_config.json', 'adapter_model.safetensors'], 'the default adapter is LoRA only: no memba_config.json');

  const model = await Mamba.load(path.join(ROOT, 'models', 'default'));
  const baseP = await model.perplexity(fs.readFileSync(val, 'utf8'), { seqLen: 64 });
  const baseE = await model.evaluate(fs.readFileSync(TASK, 'utf8'));
  await model.loadAdapter(out);
  const wantP = await model.perplexity(fs.readFileSync(val, 'utf8'), { seqLen: 64 });
  const wantE = await model.evaluate(fs.readFileSync(TASK, 'utf8'));
  const p = cli('ppl', val, '--adapter', out, '--seq-len', '64', '--json', '--quiet');
  assert.equal(p.status, 0, p.stderr);
  const gotP = JSON.parse(p.stdout);
  console.log(`ppl on the held-out file: base ${baseP.perplexity.toFixed(2)}, --adapter ${gotP.perplexity.toFixed(2)} (API with the adapter ${wantP.perplexity.toFixed(2)})`);
  assert.deepEqual(gotP, wantP, 'memba ppl --adapter = model.perplexity with the adapter loaded');
  assert.ok(gotP.perplexity < baseP.perplexity, 'the adapter lowers the held-out perplexity');
  const e = cli('eval', TASK, '--adapter', out, '--json', '--quiet');
  assert.equal(e.status, 0, e.stderr);
  const gotE = JSON.parse(e.stdout);
  console.log(`eval on the example task: base ${JSON.stringify(baseE)}, --adapter ${JSON.stringify(gotE)}`);
  assert.deepEqual(gotE, wantE, 'memba eval --adapter = model.evaluate with the adapter loaded');
  model.dispose();
  fs.rmSync(dir, { recursive: true });
});
