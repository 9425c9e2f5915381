#!/usr/bin/env node
// cli.js: the `memba` command (package bin). `memba generate "a prompt"` prints a continuation
// from the embedded default model (models/default) or from --model (a directory, URL or hub id);
// `memba score` prints the log-likelihood of continuations (multiple-choice scoring).
// Progress and diagnostics go to stderr, results to stdout.
// Deliberately not here yet: finetune and inspect (adapters and training are later work).
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Mamba } from './mamba.js';
import { MembaError } from './errors.js';

const DEFAULT_MODEL = fileURLToPath(new URL('../models/default/', import.meta.url));

const HELP = `usage: memba <command> [options]

commands:
  generate [prompt]        continue a prompt (text, or --ids 1,2,3) and print the new text
  score <context> <cont>...  log-likelihood of each continuation after the context
  help                     this text

options:
  --model SRC              directory, base URL or HF hub id (default: the embedded model)
  --ids 1,2,3              the prompt as token ids instead of text
  --max-new-tokens N       default 64
  --temperature T          default 0.8 (0 = greedy)
  --top-k K                default 0 (off)
  --top-p P                default 0.95
  --seed S                 sampling seed (default: random)
  --quiet                  no progress on stderr
`;

function parseArgs(argv) {
  const opts = { _: [] };
  const takes = new Set(['model', 'ids', 'max-new-tokens', 'temperature', 'top-k', 'top-p', 'seed']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const [k, inline] = a.slice(2).split('=', 2);
      if (k === 'quiet' || k === 'help') opts[k] = true;
      else if (takes.has(k)) {
        const v = inline ?? argv[++i];
        if (v === undefined) throw usage(`--${k} needs a value`);
        opts[k] = v;
      } else throw usage(`unknown option --${k}`);
    } else opts._.push(a);
  }
  return opts;
}

function usage(msg) {
  const e = new Error(msg);
  e.usage = true;
  return e;
}

function num(opts, key, def, { integer = false } = {}) {
  if (opts[key] === undefined) return def;
  const v = Number(opts[key]);
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v))) throw usage(`--${key} must be a${integer ? 'n integer' : ' number'}`);
  return v;
}

/** A one-line progress bar on stderr (only when stderr is a terminal, else a few plain lines). */
function progressReporter(quiet) {
  if (quiet) return undefined;
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (p.status !== 'done' && p.status !== 'ready' && now - last < 100) return;
    last = now;
    if (!process.stderr.isTTY) {
      if (p.status === 'ready') process.stderr.write('model loaded\n');
      return;
    }
    const frac = p.total ? Math.min(1, p.loaded / p.total) : 0;
    const bar = '#'.repeat(Math.round(frac * 30)).padEnd(30, '.');
    const mb = (x) => (x / 2 ** 20).toFixed(1);
    const what = p.status === 'load' || p.status === 'ready' ? `${p.loaded}/${p.total} tensors` : `${mb(p.loaded)}/${p.total ? mb(p.total) : '?'} MB`;
    process.stderr.write(`\r${p.status.padEnd(8)} [${bar}] ${what} ${p.file ?? ''}`.slice(0, 100).padEnd(100));
    if (p.status === 'ready') process.stderr.write('\n');
  };
}

async function loadModel(opts) {
  const source = opts.model ?? DEFAULT_MODEL;
  if (!opts.model && !fs.existsSync(DEFAULT_MODEL))
    throw usage('the embedded default model (models/default) is not in this copy; pass --model DIR|URL|HUB_ID');
  return Mamba.load(source, { onProgress: progressReporter(opts.quiet) });
}

async function generate(opts) {
  const model = await loadModel(opts);
  let prompt;
  if (opts.ids !== undefined) prompt = opts.ids.split(',').map((s) => Number(s.trim()));
  else {
    const text = opts._.join(' ');
    if (!text) throw usage('generate needs a prompt (text, or --ids)');
    if (!model.hasTokenizer) throw usage('this model has no tokenizer.json: pass the prompt as --ids 1,2,3');
    prompt = model.encode(text);
  }
  const gen = {
    maxNewTokens: num(opts, 'max-new-tokens', 64, { integer: true }),
    temperature: num(opts, 'temperature', 0.8),
    topK: num(opts, 'top-k', 0, { integer: true }),
    topP: num(opts, 'top-p', 0.95),
    seed: opts.seed === undefined ? undefined : num(opts, 'seed', 0, { integer: true }),
  };
  const ids = [];
  let printed = '';
  for await (const id of model.stream(prompt, gen)) {
    ids.push(id);
    if (!model.hasTokenizer) {
      process.stdout.write(`${ids.length > 1 ? ' ' : ''}${id}`);
      continue;
    }
    const text = model.decode(ids);
    // hold back a trailing partial UTF-8 character until its next byte-token arrives
    const safe = text.endsWith('\uFFFD') ? text.slice(0, -1) : text;
    if (safe.startsWith(printed)) {
      process.stdout.write(safe.slice(printed.length));
      printed = safe;
    }
  }
  if (model.hasTokenizer) {
    const text = model.decode(ids);
    if (text.startsWith(printed)) process.stdout.write(text.slice(printed.length));
  }
  process.stdout.write('\n');
  model.dispose();
}

async function score(opts) {
  const [context, ...conts] = opts._;
  if (context === undefined || conts.length === 0) throw usage('score needs a context and at least one continuation');
  const model = await loadModel(opts);
  if (!model.hasTokenizer) throw usage('score needs a model with a tokenizer.json');
  const ctx = model.encode(context);
  for (const c of conts) {
    const ids = model.encode(c);
    const ll = await model.loglikelihood(ctx, ids);
    process.stdout.write(`${ll.toFixed(4)}\t${ids.length}\t${JSON.stringify(c)}\n`);
  }
  model.dispose();
}

async function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(HELP);
    return;
  }
  const opts = parseArgs(rest);
  if (cmd === 'generate') await generate(opts);
  else if (cmd === 'score') await score(opts);
  else throw usage(`unknown command '${cmd}'`);
}

main().catch((err) => {
  if (err.usage) {
    process.stderr.write(`memba: ${err.message}\n\n${HELP}`);
    process.exitCode = 2;
  } else if (err instanceof MembaError) {
    process.stderr.write(`memba: ${err.code}: ${err.message}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`memba: ${err.stack ?? err}\n`);
    process.exitCode = 1;
  }
});
