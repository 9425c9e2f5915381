#!/usr/bin/env node
// cli.js: the `memba` command (package bin). `memba generate "a prompt"` prints a continuation
// from the embedded default model (models/default) or from --model (a directory, URL or hub id);
// `memba finetune` trains a Memba adapter on a text file and writes it in the PEFT format;
// `memba score` prints the log-likelihood of continuations (multiple-choice scoring);
// `memba eval` the accuracy (acc, acc_norm) on a multiple-choice task file (JSONL);
// `memba ppl` the perplexity of a text file; `memba inspect` shows the LIM membrane per layer
// and position. Progress goes to stderr, results to stdout.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Mamba } from './mamba.js';
import { MembaError } from './errors.js';
import { instructionPrompt } from './trainer.js';

const DEFAULT_MODEL = fileURLToPath(new URL('../models/default/', import.meta.url));

const HELP = `usage: memba <command> [options]

commands:
  generate [prompt]          continue a prompt (text, or --ids 1,2,3) and print the new text
  finetune <file>            train a Memba adapter on a file (--format); writes --out DIR (PEFT format)
  score <context> <cont>...  log-likelihood of each continuation after the context
  eval <task.jsonl>          multiple-choice accuracy (acc, acc_norm, n) on a task file: one
                             {"context": ..., "choices": [" a", " b"], "gold": 0} per line
  ppl <file.txt>             perplexity of a text file (sliding windows): perplexity, nll, tokens
  inspect <text>             the LIM membrane of each layer and position (needs an adapter with LIM)
  help                       this text

options (all commands):
  --model SRC              directory, base URL or HF hub id (default: the embedded model)
  --adapter SRC            an adapter to use (directory, URL or hub id)
  --hub-base URL           hub for hub ids (default: HF_ENDPOINT, else https://huggingface.co)
  --revision REV           hub branch, tag or commit of --model (default main)
  --cache-dir DIR          the hub cache folder (default: HF_HUB_CACHE, else HF_HOME/hub, else
                           ~/.cache/huggingface/hub; shared with Python's huggingface_hub)
  --quiet                  no progress on stderr
  --version                print the package version
generate:
  --ids 1,2,3              the prompt as token ids instead of text
  --max-new-tokens N       default 64
  --temperature T          default 0.8 (0 = greedy)
  --top-k K                default 0 (off)
  --top-p P                default 0.95
  --min-p P                default 0 (off)
  --repetition-penalty R   CTRL / HF penalty on ids already seen, default 1 (off)
  --no-repeat-ngram N      never repeat an N-gram of the prompt and output, default 0 (off)
  --seed S                 sampling seed (default: random)
finetune:
  --out DIR                where the adapter goes (required)
  --r R --alpha A          LoRA rank (8) and alpha (16)
  --targets LIST           comma-separated: in_proj,out_proj (default), x_proj, dt_proj, in_proj.x, in_proj.z
  --lim SPEC               add a LIM gate: e.g. chunk_size=16,cross_layer=first, or 'paper' (the
                           paper's settings); default 'off' (LoRA only: measured best, see README)
  --epochs N --seq-len L --batch-size B --lr LR --seed S   defaults 2, 128, 4, 2e-3, 0
  --format text|instruct|jsonl  text (default); instruct: a JSON list of {instruction, input, output}
                           (commonsense_170k): Alpaca prompts, loss on the output only; jsonl: one
                           such object, or {"text": ...}, per line
  --val FILE | --val-split F   held-out text (or the last fraction F of the file): its loss and
                           perplexity before and after every epoch; the best adapter is kept
eval:
  --limit N                only the first N items
  --json                   print the result as one JSON object
ppl:
  --seq-len N              window length in tokens (default 1024, capped to the text)
  --stride S               step between windows (default: seq-len, non-overlapping)
  --json                   print the result as one JSON object
inspect:
  --json FILE              also write every layer's gate inputs and membranes as JSON
`;

// eval and ppl take --json as a flag (print JSON); inspect takes --json FILE
const JSON_FLAG = new Set(['eval', 'ppl']);

function parseArgs(argv, cmd) {
  const opts = { _: [] };
  const takes = new Set(['model', 'adapter', 'ids', 'max-new-tokens', 'temperature', 'top-k', 'top-p', 'seed', 'out', 'r', 'alpha', 'targets', 'lim', 'epochs', 'seq-len', 'batch-size', 'lr', 'json', 'limit', 'stride', 'val', 'val-split', 'format', 'min-p', 'repetition-penalty', 'no-repeat-ngram',
    'hub-base', 'revision', 'cache-dir']); // where hub ids come from (sourceOptions)
  const flags = new Set(['quiet', 'help']);
  if (JSON_FLAG.has(cmd)) {
    takes.delete('json');
    flags.add('json');
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const [k, inline] = a.slice(2).split('=', 2);
      if (flags.has(k)) opts[k] = true;
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
    const what = `${mb(p.loaded)}/${p.total ? mb(p.total) : '?'} MB`; // bytes over the whole load (load-progress.js)
    process.stderr.write(`\r${p.status.padEnd(8)} [${bar}] ${what} ${p.file ?? ''}`.slice(0, 100).padEnd(100));
    if (p.status === 'ready') process.stderr.write('\n');
  };
}

async function loadModel(opts) {
  const source = opts.model ?? DEFAULT_MODEL;
  if (!opts.model && !fs.existsSync(DEFAULT_MODEL))
    throw usage('the embedded default model (models/default) is not in this copy; pass --model DIR|URL|HUB_ID');
  const model = await Mamba.load(source, { onProgress: progressReporter(opts.quiet), ...sourceOptions(opts, true) });
  if (opts.adapter) await model.loadAdapter(opts.adapter, sourceOptions(opts, false));
  return model;
}

/** --hub-base, --cache-dir (and for the model, --revision) as Mamba.load options. */
function sourceOptions(opts, model) {
  const o = {};
  if (opts['hub-base'] !== undefined) o.hubBase = opts['hub-base'];
  if (opts['cache-dir'] !== undefined) o.cacheDir = opts['cache-dir'];
  if (model && opts.revision !== undefined) o.revision = opts.revision;
  return o;
}

/** A finetune file as fit's data: the text itself, or a list of instruction examples / { text } */
function parseData(raw, format, name) {
  if (format === 'text') return raw;
  let items;
  if (format === 'instruct') {
    try {
      items = JSON.parse(raw);
    } catch (err) {
      throw usage(`${name}: not JSON (--format instruct takes a JSON list; use --format jsonl for JSON lines): ${err.message}`);
    }
    if (!Array.isArray(items)) throw usage(`${name}: --format instruct takes a JSON list of {instruction, input, output}`);
  } else {
    items = [];
    raw.split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      try {
        items.push(JSON.parse(line));
      } catch (err) {
        throw usage(`${name} line ${i + 1}: not JSON: ${err.message}`);
      }
    });
  }
  items.forEach((it, i) => {
    const ok = it && typeof it === 'object' && (typeof it.text === 'string' || (typeof it.instruction === 'string' && typeof it.output === 'string'));
    if (!ok) throw usage(`${name}: item ${i + 1} needs "instruction" and "output" strings (or "text")`);
  });
  if (items.length === 0) throw usage(`${name}: no examples`);
  return items;
}

/** "chunk_size=16,cross_layer=first" -> { chunk_size: 16, cross_layer: 'first' } */
function parseLim(spec) {
  if (spec === undefined || spec === 'off') return null; // LoRA only: the measured best (training/study)
  if (spec === 'paper') return true;
  const out = {};
  for (const kv of spec.split(',')) {
    const [k, v] = kv.split('=');
    if (!k || v === undefined) throw usage(`--lim: expected key=value pairs, got '${kv}'`);
    out[k.trim()] = Number.isFinite(Number(v)) ? Number(v) : v.trim();
  }
  return out;
}

async function finetune(opts) {
  const [file] = opts._;
  if (!file) throw usage('finetune needs a text file');
  if (!opts.out) throw usage('finetune needs --out DIR');
  const read = (f) => {
    try {
      return fs.readFileSync(f, 'utf8');
    } catch (err) {
      throw usage(`cannot read ${f}: ${err.code ?? err.message}`);
    }
  };
  const format = opts.format ?? 'text';
  if (!['text', 'instruct', 'jsonl'].includes(format)) throw usage(`--format must be text, instruct or jsonl, got '${format}'`);
  const text = parseData(read(file), format, file);
  if (opts.val !== undefined && opts['val-split'] !== undefined) throw usage('give --val or --val-split, not both');
  const validation = opts.val !== undefined ? parseData(read(opts.val), format, opts.val) : undefined;
  const validationSplit = opts['val-split'] !== undefined ? num(opts, 'val-split', 0) : 0;
  const model = await loadModel(opts);
  if (!model.hasTokenizer) throw usage('finetune needs a model with a tokenizer.json');
  const targets = (opts.targets ?? 'in_proj,out_proj').split(',').map((t) => t.trim());
  model.createAdapter({ lora: { r: num(opts, 'r', 8, { integer: true }), alpha: num(opts, 'alpha', 16), targets }, lim: parseLim(opts.lim), seed: num(opts, 'seed', 0, { integer: true }) });
  const epochs = num(opts, 'epochs', 2, { integer: true });
  const seqLen = num(opts, 'seq-len', 128, { integer: true });
  const batchSize = num(opts, 'batch-size', 4, { integer: true });
  const tokens = typeof text === 'string' ? model.encode(text).length
    : text.reduce((n, ex) => n + 1 + model.encode(ex.text ?? `${instructionPrompt(ex).prompt}${ex.output}`).length, 0);
  const trainTokens = tokens - Math.ceil(tokens * validationSplit);
  const perEpoch = Math.ceil(Math.ceil((trainTokens - 1) / Math.max(1, Math.min(seqLen, trainTokens - 1))) / batchSize);
  const total = Math.max(1, perEpoch * epochs);
  const trainer = model.createTrainer({ lr: num(opts, 'lr', 2e-3), clipNorm: 1, schedule: { type: 'cosine', warmupSteps: Math.min(10, Math.floor(total / 10)), totalSteps: total }, seed: num(opts, 'seed', 0, { integer: true }) });
  let first = null;
  const res = await trainer.fit(text, {
    epochs, seqLen, batchSize, validation, validationSplit,
    onProgress: (p) => {
      if (p.phase === 'eval') {
        if (opts.quiet) return;
        const clear = process.stderr.isTTY ? '\r'.padEnd(101) + '\r' : '';
        process.stderr.write(`${clear}eval  after step ${p.step}: validation loss ${p.valLoss.toFixed(3)}, perplexity ${p.valPpl.toFixed(2)}${p.trainLoss === null ? ' (before training)' : `; train loss ${p.trainLoss.toFixed(3)}`}\n`);
        return;
      }
      first ??= p.loss;
      if (opts.quiet) return;
      const frac = Math.min(1, p.step / total);
      const bar = '#'.repeat(Math.round(frac * 30)).padEnd(30, '.');
      const line = `train [${bar}] step ${p.step}/${total} loss ${p.loss.toFixed(3)} ${p.tokensPerSec.toFixed(0)} tok/s`;
      if (process.stderr.isTTY) process.stderr.write(`\r${line}`);
      else if (p.step % Math.max(1, Math.round(total / 10)) === 0 || p.step === total) process.stderr.write(`${line}\n`);
    },
  });
  if (!opts.quiet && process.stderr.isTTY) process.stderr.write('\n');
  fs.mkdirSync(opts.out, { recursive: true });
  for (const [name, data] of Object.entries(model.adapter.save())) fs.writeFileSync(`${opts.out}/${name}`, data);
  const last = res.losses.slice(-Math.min(5, res.losses.length));
  const val = res.best ? `; validation perplexity ${res.evaluations[0].valPpl.toFixed(2)} -> ${res.best.valPpl.toFixed(2)} (best, kept: step ${res.best.step})` : '';
  process.stdout.write(`trained ${res.steps} steps on ${res.tokens} targets in ${res.seconds.toFixed(1)} s: loss ${first.toFixed(3)} -> ${(last.reduce((a, b) => a + b) / last.length).toFixed(3)}${val}; adapter written to ${opts.out}\n`);
  model.dispose();
}

const SHADES = ' .:-=+*#%@';

async function inspect(opts) {
  const text = opts._.join(' ');
  if (!text) throw usage('inspect needs some text');
  const model = await loadModel(opts);
  if (!model.adapter?.config.lim) throw usage('inspect needs --adapter with a LIM gate (memba_config.json)');
  const ids = model.encode(text);
  const { chunkLength, layers } = await model.inspect(ids);
  const E = model.config.dInner;
  // mean |v| per (layer, position): the membrane the gate saw
  const rows = layers.map(({ limV }) => ids.map((_, t) => {
    let s = 0;
    for (let e = 0; e < E; e++) s += Math.abs(limV.data[t * E + e]);
    return s / E;
  }));
  const max = Math.max(1e-9, ...rows.flat());
  process.stdout.write(`LIM membrane, mean |v| per layer (rows) and position (columns); chunk length ${chunkLength}\n`);
  rows.forEach((r, l) => process.stdout.write(`${String(l).padStart(3)} |${r.map((v) => SHADES[Math.min(9, Math.floor((v / max) * 9.99))]).join('')}|\n`));
  const zero = layers.map(({ limV }) => limV.data.reduce((n, v) => n + (v === 0), 0) / limV.data.length);
  process.stdout.write(`reset (zero) fraction per layer: ${zero.map((z) => z.toFixed(3)).join(' ')}\n`);
  if (opts.json) {
    const out = { tokens: ids, chunkLength, layers: layers.map(({ limV, membrane }) => ({ limV: { dims: limV.dims, data: Array.from(limV.data) }, membrane: { dims: membrane.dims, data: Array.from(membrane.data) } })) };
    fs.writeFileSync(opts.json, JSON.stringify(out));
  }
  model.dispose();
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
    minP: num(opts, 'min-p', 0),
    repetitionPenalty: num(opts, 'repetition-penalty', 1),
    noRepeatNgramSize: num(opts, 'no-repeat-ngram', 0, { integer: true }),
    seed: opts.seed === undefined ? undefined : num(opts, 'seed', 0, { integer: true }),
  };
  if (model.hasTokenizer) {
    for await (const piece of model.streamText(prompt, gen)) process.stdout.write(piece);
  } else {
    let first = true;
    for await (const id of model.stream(prompt, gen)) {
      process.stdout.write(`${first ? '' : ' '}${id}`);
      first = false;
    }
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

function readText(file, what) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw usage(`${what}: cannot read ${file}: ${err.code ?? err.message}`);
  }
}

/** A one-line counter on stderr (a terminal only), cleared when done. */
function counter(quiet, label) {
  if (quiet || !process.stderr.isTTY) return { tick: undefined, done: () => {} };
  return {
    tick: (i, n, extra = '') => process.stderr.write(`\r${label} ${i}/${n}${extra}`.padEnd(60)),
    done: () => process.stderr.write(`\r${''.padEnd(60)}\r`),
  };
}

async function evalTask(opts) {
  const [file] = opts._;
  if (!file) throw usage('eval needs a task file (JSONL)');
  const task = readText(file, 'eval');
  const limit = opts.limit === undefined ? undefined : num(opts, 'limit', 0, { integer: true });
  const model = await loadModel(opts);
  if (!model.hasTokenizer) throw usage('eval needs a model with a tokenizer.json');
  const c = counter(opts.quiet, 'eval item');
  const res = await model.evaluate(task, { limit, onProgress: c.tick && ((p) => c.tick(p.item, p.items, ` acc ${p.acc.toFixed(3)}`)) });
  c.done();
  if (opts.json) process.stdout.write(`${JSON.stringify(res)}\n`);
  else process.stdout.write(`acc\t${res.acc.toFixed(4)}\nacc_norm\t${res.acc_norm.toFixed(4)}\nn\t${res.n}\n`);
  model.dispose();
}

async function ppl(opts) {
  const [file] = opts._;
  if (!file) throw usage('ppl needs a text file');
  const text = readText(file, 'ppl');
  const seqLen = opts['seq-len'] === undefined ? undefined : num(opts, 'seq-len', 0, { integer: true });
  const stride = opts.stride === undefined ? undefined : num(opts, 'stride', 0, { integer: true });
  const model = await loadModel(opts);
  if (!model.hasTokenizer) throw usage('ppl needs a model with a tokenizer.json');
  const c = counter(opts.quiet, 'ppl window');
  const res = await model.perplexity(text, { seqLen, stride, onProgress: c.tick && ((p) => c.tick(p.window, p.windows)) });
  c.done();
  if (opts.json) process.stdout.write(`${JSON.stringify(res)}\n`);
  else process.stdout.write(`perplexity\t${res.perplexity.toFixed(4)}\nnll\t${res.nll.toFixed(6)}\ntokens\t${res.tokens}\n`);
  model.dispose();
}

async function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
    process.stdout.write(HELP);
    return;
  }
  if (cmd === '--version' || cmd === '-v' || cmd === 'version') {
    const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    process.stdout.write(`${pkg.version}\n`);
    return;
  }
  const opts = parseArgs(rest, cmd);
  if (cmd === 'generate') await generate(opts);
  else if (cmd === 'finetune') await finetune(opts);
  else if (cmd === 'score') await score(opts);
  else if (cmd === 'inspect') await inspect(opts);
  else if (cmd === 'eval') await evalTask(opts);
  else if (cmd === 'ppl') await ppl(opts);
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
