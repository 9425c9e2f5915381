// cli.test.mjs: the `memba` command on the embedded default model: generate prints a continuation
// on stdout (progress only on stderr), finetune writes a PEFT adapter that generate, score and
// inspect then use, and bad usage exits 2 with a message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './helpers.mjs';

const cli = (...args) => spawnSync(process.execPath, [path.join(ROOT, 'bindings', 'cli.js'), ...args], { encoding: 'utf8', cwd: ROOT, timeout: 120_000 });

test('memba generate "prompt" prints the continuation of the embedded model on stdout', () => {
  const r = cli('generate', 'The jury said', '--seed', '3', '--max-new-tokens', '24');
  assert.equal(r.status, 0, r.stderr);
  console.log(`stdout: ${JSON.stringify(r.stdout)}`);
  assert.ok(r.stdout.trim().split(/\s+/).length >= 5, 'some words came out');
  assert.ok(!r.stdout.includes('loaded'), 'progress stays on stderr');
  const greedy1 = cli('generate', 'The jury said', '--temperature', '0', '--max-new-tokens', '12');
  const greedy2 = cli('generate', 'The jury said', '--temperature', '0', '--max-new-tokens', '12');
  assert.equal(greedy1.stdout, greedy2.stdout, 'greedy is deterministic');
  const one = cli('generate', 'The jury said', '--seed', '3', '--max-new-tokens', '24', '--threads', '1');
  const two = cli('generate', 'The jury said', '--seed', '3', '--max-new-tokens', '24', '--threads', '2');
  assert.equal(one.status, 0, one.stderr);
  assert.equal(one.stdout, r.stdout, '--threads 1 (the single-threaded build) samples the same text');
  assert.equal(two.stdout, r.stdout, '--threads 2 samples the same text');
});

test('memba finetune writes a PEFT adapter + memba_config.json; generate, score and inspect use it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-cli-'));
  const text = path.join(dir, 'notes.txt');
  fs.writeFileSync(text, 'The little robot liked to paint the sea. The little robot painted the sea blue. '.repeat(6));
  const out = path.join(dir, 'adapter');
  const r = cli('finetune', text, '--out', out, '--epochs', '3', '--seq-len', '32', '--batch-size', '2', '--lr', '0.005', '--lim', 'chunk_size=16,cross_layer=first');
  assert.equal(r.status, 0, r.stderr);
  console.log(r.stdout.trim());
  const m = /loss ([\d.]+) -> ([\d.]+)/.exec(r.stdout);
  assert.ok(m && Number(m[2]) < Number(m[1]), 'the loss fell');
  assert.deepEqual(fs.readdirSync(out).sort(), ['adapter_config.json', 'adapter_model.safetensors', 'memba_config.json']);
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8'));
  assert.equal(cfg.peft_type, 'LORA');
  const g = cli('generate', 'The little robot', '--adapter', out, '--temperature', '0', '--max-new-tokens', '8');
  assert.equal(g.status, 0, g.stderr);
  assert.ok(g.stdout.trim().length > 0);
  const s = cli('score', 'The little robot painted the', ' sea', ' jury', '--adapter', out);
  assert.equal(s.status, 0, s.stderr);
  const [sea, jury] = s.stdout.trim().split('\n').map((l) => Number(l.split('\t')[0]));
  assert.ok(sea > jury, `after fine-tuning " sea" should beat " jury" (${sea} vs ${jury})`);
  const i = cli('inspect', 'The little robot', '--adapter', out);
  assert.equal(i.status, 0, i.stderr);
  assert.match(i.stdout, /LIM membrane/);
  fs.rmSync(dir, { recursive: true });
});

test('bad usage exits 2 with a message', () => {
  for (const args of [['generate'], ['nonsense'], ['generate', 'x', '--bogus'], ['finetune', 'missing.txt']]) {
    const r = cli(...args);
    assert.equal(r.status === 2 || r.status === 1, true, `${args}: exit ${r.status}`);
    assert.ok(r.stderr.includes('memba:'), r.stderr);
  }
  assert.equal(cli('help').status, 0);
});

test('memba finetune --val-split reports the held-out perplexity before and after, and keeps the best adapter', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-cli-'));
  const text = path.join(dir, 'notes.txt');
  fs.writeFileSync(text, 'The little robot liked to paint the sea. The little robot painted the sea blue. '.repeat(8));
  const out = path.join(dir, 'adapter');
  const r = cli('finetune', text, '--out', out, '--epochs', '2', '--seq-len', '32', '--batch-size', '2', '--lr', '0.005', '--lim', 'off', '--val-split', '0.25');
  assert.equal(r.status, 0, r.stderr);
  console.log(r.stdout.trim());
  const m = /validation perplexity ([\d.]+) -> ([\d.]+) \(best, kept: step (\d+)\)/.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.ok(Number(m[2]) < Number(m[1]), 'held-out perplexity fell on text of the same kind');
  assert.equal((r.stderr.match(/^eval {2}after step/gm) ?? []).length, 3, 'before training and after each of 2 epochs');
  assert.equal(cli('finetune', text, '--out', out, '--val', text, '--val-split', '0.1').status, 2);
  fs.rmSync(dir, { recursive: true });
});

test('memba finetune --format instruct / jsonl: instruction examples train on their outputs', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-cli-'));
  const ex = Array.from({ length: 12 }, (_, i) => ({ instruction: 'Please answer the question.', input: `Is ${i} even?`, output: `the answer is ${i % 2 ? 'no' : 'yes'}` }));
  fs.writeFileSync(path.join(dir, 'data.json'), JSON.stringify(ex));
  fs.writeFileSync(path.join(dir, 'data.jsonl'), ex.map((e) => JSON.stringify(e)).join('\n') + '\n{"text": "The jury said it was so."}\n');
  const args = ['--epochs', '1', '--seq-len', '64', '--batch-size', '2', '--lim', 'off', '--quiet'];
  const a = cli('finetune', path.join(dir, 'data.json'), '--format', 'instruct', '--out', path.join(dir, 'a'), ...args);
  assert.equal(a.status, 0, a.stderr);
  const b = cli('finetune', path.join(dir, 'data.jsonl'), '--format', 'jsonl', '--out', path.join(dir, 'b'), ...args);
  assert.equal(b.status, 0, b.stderr);
  const targets = (r) => Number(/on (\d+) targets/.exec(r.stdout)[1]);
  console.log(a.stdout.trim());
  assert.ok(targets(b) > targets(a), 'the {text} line adds targets');
  fs.writeFileSync(path.join(dir, 'bad.jsonl'), '{"instruction": "x", "output": "y"}\nnot json\n');
  const bad = cli('finetune', path.join(dir, 'bad.jsonl'), '--format', 'jsonl', '--out', path.join(dir, 'c'));
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /line 2/);
  fs.rmSync(dir, { recursive: true });
});
