#!/usr/bin/env node
// cli.js: the `memba` command (package bin). `memba generate "a prompt"` prints a continuation
// from the embedded default model (models/default) or from --model (a directory, URL or hub id);
// `memba finetune` trains a Memba adapter on a text file and writes it in the PEFT format;
// `memba score` prints the log-likelihood of continuations (multiple-choice scoring);
// `memba eval` the accuracy (acc, acc_norm) on a multiple-choice task file (JSONL);
// `memba ppl` the perplexity of a text file; `memba inspect` shows the LIM membrane per layer
// and position. Progress goes to stderr, results to stdout. A user error (bad usage, a file that
// cannot be read or written, a MembaError) is one line `memba: <code>: <message>` and a hint,
// never a stack trace: exit 2 for usage, 1 at run time; a bug shows its stack with MEMBA_DEBUG=1.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Mamba } from './mamba.js';
import { MembaError, ErrorCodes } from './errors.js';
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
  help [command]             this text, or one command's usage and options

options (all commands):
  --model SRC              directory, base URL or HF hub id (default: the embedded model)
  --adapter SRC            an adapter to use (directory, URL or hub id)
  --hub-base URL           hub for hub ids (default: HF_ENDPOINT, else https://huggingface.co)
  --revision REV           hub branch, tag or commit of --model (default main)
  --cache-dir DIR          the hub cache folder (default: HF_HUB_CACHE, else HF_HOME/hub, else
                           ~/.cache/huggingface/hub; shared with Python's huggingface_hub)
  --threads N              threads for the engine, 1-16 (default: the cores, at most 8)
  --quiet                  no progress on stderr
  --version                print the package version
  (errors are one line and a hint; MEMBA_DEBUG=1 also prints the stack of an internal error)
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

/** `memba help <command>`: its usage line, its own options and the options of every command. */
function printCommandHelp(cmd) {
  if (!USAGE[cmd]) throw usage(`unknown command '${cmd}' (one of ${Object.keys(USAGE).join(', ')})`);
  const section = (name) => {
    const lines = HELP.split('\n');
    const i = lines.findIndex((l) => l === `${name}:`);
    if (i < 0) return [];
    const out = [];
    for (let j = i + 1; j < lines.length && /^\s/.test(lines[j]); j++) out.push(lines[j]);
    return out;
  };
  const own = section(cmd);
  process.stdout.write(`usage: ${USAGE[cmd]}\n${own.length ? `\n${cmd} options:\n${own.join('\n')}\n` : ''}\noptions (all commands):\n${section('options (all commands)').join('\n')}\n`);
}

/** Each command's usage line: printed after a usage error instead of the whole help. */
const USAGE = {
  generate: 'memba generate [prompt] [--ids 1,2,3] [--max-new-tokens N] [--temperature T] [--seed S] ...',
  finetune: 'memba finetune <file> --out DIR [--format text|instruct|jsonl] [--epochs N] [--lim SPEC] ...',
  score: 'memba score <context> <continuation>...',
  eval: 'memba eval <task.jsonl> [--adapter DIR] [--limit N] [--json]',
  ppl: 'memba ppl <file.txt> [--adapter DIR] [--seq-len N] [--stride S] [--json]',
  inspect: 'memba inspect <text> --adapter SRC [--json FILE]',
};

// eval and ppl take --json as a flag (print JSON); inspect takes --json FILE
const JSON_FLAG = new Set(['eval', 'ppl']);

function parseArgs(argv, cmd) {
  const opts = { _: [] };
  const takes = new Set(['model', 'adapter', 'ids', 'max-new-tokens', 'temperature', 'top-k', 'top-p', 'seed', 'out', 'r', 'alpha', 'targets', 'lim', 'epochs', 'seq-len', 'batch-size', 'lr', 'json', 'limit', 'stride', 'val', 'val-split', 'format', 'min-p', 'repetition-penalty', 'no-repeat-ngram',
    'hub-base', 'revision', 'cache-dir', 'threads']); // where hub ids come from, threads (sourceOptions)
  const flags = new Set(['quiet', 'help']);
  if (JSON_FLAG.has(cmd)) {
    takes.delete('json');
    flags.add('json');
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h') opts.help = true;
    else if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const k = eq < 0 ? a.slice(2) : a.slice(2, eq); // --lim=chunk_size=16 keeps its value whole
      const inline = eq < 0 ? undefined : a.slice(eq + 1);
      if (flags.has(k)) {
        if (inline !== undefined) throw usage(`--${k} takes no value`);
        opts[k] = true;
      } else if (takes.has(k)) {
        const v = inline ?? argv[++i];
        if (v === undefined || (inline === undefined && v.startsWith('--'))) throw usage(`--${k} needs a value`);
        opts[k] = v;
      } else throw usage(`unknown option --${k}`);
    } else opts._.push(a);
  }
  return opts;
}

/** A usage error: exit 2, the message and the command's usage line (not the whole help). */
class UsageError extends Error {}

function usage(msg) {
  return new UsageError(msg);
}

function num(opts, key, def, { integer = false } = {}) {
  if (opts[key] === undefined) return def;
  const v = opts[key].trim() === '' ? NaN : Number(opts[key]); // Number('') would be 0
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v))) throw usage(`--${key} must be a${integer ? 'n integer' : ' number'}`);
  return v;
}

/** `--ids 1,2,3` as token ids: every entry a non-negative integer (checked against the vocabulary
 * once the model is loaded: checkIds). */
function parseIds(text) {
  const parts = text.split(',');
  return parts.map((raw, i) => {
    const s = raw.trim();
    if (!/^\d+$/.test(s) || !Number.isSafeInteger(Number(s)))
      throw usage(`--ids: entry ${i + 1} of ${parts.length} (${JSON.stringify(raw)}) is not a token id (a non-negative integer)`);
    return Number(s);
  });
}

function checkIds(ids, vocabSize) {
  const bad = ids.find((id) => id >= vocabSize);
  if (bad !== undefined) throw usage(`--ids: ${bad} is out of range for this model's vocabulary (ids 0..${vocabSize - 1})`);
}

/** Throws a usage error unless `dir` is a writable directory or can be made one (checked before
 * any work, so a bad --out fails in a second, not after the training). */
function checkWritableDir(dir, flag) {
  const want = path.resolve(dir);
  for (let p = want; ; p = path.dirname(p)) {
    let st = null;
    try {
      st = fs.statSync(p);
    } catch (err) {
      if (err.code !== 'ENOENT' && err.code !== 'ENOTDIR') throw usage(`${flag} ${dir}: ${err.code ?? err.message}`);
    }
    if (st) {
      if (!st.isDirectory()) throw usage(`${flag} ${dir}: ${p === want ? 'it' : p} is ${p === want ? 'a file, not a directory' : 'a file, so the directory cannot be made'}`);
      try {
        fs.accessSync(p, fs.constants.W_OK | fs.constants.X_OK);
      } catch {
        throw usage(`${flag} ${dir}: ${p} is not writable`);
      }
      return;
    }
    if (path.dirname(p) === p) return;
  }
}

/** Throws a usage error unless `file` can be written (its directory may still have to be made). */
function checkWritableFile(file, flag) {
  let st = null;
  try {
    st = fs.statSync(file);
  } catch { /* not there yet: its directory decides */ }
  if (st?.isDirectory()) throw usage(`${flag} ${file}: it is a directory`);
  checkWritableDir(path.dirname(path.resolve(file)), flag);
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
  if (model && opts.threads !== undefined) {
    const n = num(opts, 'threads', undefined, { integer: true });
    if (n < 1 || n > 16) throw usage('--threads must be an integer from 1 to 16');
    o.threads = n;
  }
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
  checkWritableDir(opts.out, '--out'); // now, not after the training: the adapter would be lost
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
  // every option is read before the model loads: a typo fails at once
  const targets = (opts.targets ?? 'in_proj,out_proj').split(',').map((t) => t.trim());
  const lora = { r: num(opts, 'r', 8, { integer: true }), alpha: num(opts, 'alpha', 16), targets };
  const lim = parseLim(opts.lim);
  const seed = num(opts, 'seed', 0, { integer: true });
  const epochs = num(opts, 'epochs', 2, { integer: true });
  const seqLen = num(opts, 'seq-len', 128, { integer: true });
  const batchSize = num(opts, 'batch-size', 4, { integer: true });
  const lr = num(opts, 'lr', 2e-3);
  const model = await loadModel(opts);
  if (!model.hasTokenizer) throw usage('finetune needs a model with a tokenizer.json');
  model.createAdapter({ lora, lim, seed });
  const tokens = typeof text === 'string' ? model.encode(text).length
    : text.reduce((n, ex) => n + 1 + model.encode(ex.text ?? `${instructionPrompt(ex).prompt}${ex.output}`).length, 0);
  const trainTokens = tokens - Math.ceil(tokens * validationSplit);
  const perEpoch = Math.ceil(Math.ceil((trainTokens - 1) / Math.max(1, Math.min(seqLen, trainTokens - 1))) / batchSize);
  const total = Math.max(1, perEpoch * epochs);
  const trainer = model.createTrainer({ lr, clipNorm: 1, schedule: { type: 'cosine', warmupSteps: Math.min(10, Math.floor(total / 10)), totalSteps: total }, seed });
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
  for (const [name, data] of Object.entries(model.adapter.save())) fs.writeFileSync(path.join(opts.out, name), data);
  const last = res.losses.slice(-Math.min(5, res.losses.length));
  const val = res.best ? `; validation perplexity ${res.evaluations[0].valPpl.toFixed(2)} -> ${res.best.valPpl.toFixed(2)} (best, kept: step ${res.best.step})` : '';
  process.stdout.write(`trained ${res.steps} steps on ${res.tokens} targets in ${res.seconds.toFixed(1)} s: loss ${first.toFixed(3)} -> ${(last.reduce((a, b) => a + b) / last.length).toFixed(3)}${val}; adapter written to ${opts.out}\n`);
  model.dispose();
}

const SHADES = ' .:-=+*#%@';

async function inspect(opts) {
  const text = opts._.join(' ');
  if (!text) throw usage('inspect needs some text');
  if (opts.json) checkWritableFile(opts.json, '--json');
  const model = await loadModel(opts);
  if (!model.adapter?.config.lim) throw usage('inspect needs --adapter with a LIM gate (memba_config.json)');
  const ids = model.encode(text);
  const { chunkLength, layers } = await model.inspect(ids);
  const E = model.config.dInner;
  // mean |v| per (layer, position): the membrane the gate saw (loops: a long text has more
  // positions than a spread may pass as arguments)
  let max = 1e-9;
  const rows = layers.map(({ limV }) => {
    const row = new Float64Array(ids.length);
    for (let t = 0; t < ids.length; t++) {
      let s = 0;
      for (let e = 0; e < E; e++) s += Math.abs(limV.data[t * E + e]);
      row[t] = s / E;
      if (row[t] > max) max = row[t];
    }
    return row;
  });
  process.stdout.write(`LIM membrane, mean |v| per layer (rows) and position (columns); chunk length ${chunkLength}\n`);
  rows.forEach((r, l) => {
    let line = '';
    for (const v of r) line += SHADES[Math.min(9, Math.floor((v / max) * 9.99))];
    process.stdout.write(`${String(l).padStart(3)} |${line}|\n`);
  });
  const zero = layers.map(({ limV }) => {
    let n = 0;
    for (const v of limV.data) n += v === 0;
    return n / limV.data.length;
  });
  process.stdout.write(`reset (zero) fraction per layer: ${zero.map((z) => z.toFixed(3)).join(' ')}\n`);
  if (opts.json) writeInspectJson(opts.json, ids, chunkLength, layers);
  model.dispose();
}

/**
 * Writes inspect's JSON piece by piece: { tokens, chunkLength, layers: [{ limV: { dims, data },
 * membrane: { dims, data } }] } (the same text JSON.stringify gives, without one string of the
 * whole, which a long text would make too long for a JS string). The directory is made if needed.
 */
function writeInspectJson(file, ids, chunkLength, layers) {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const fd = fs.openSync(file, 'w');
  try {
    const put = (s) => fs.writeSync(fd, s);
    const numbers = (a) => {
      put('[');
      for (let i = 0; i < a.length; i += 65536) {
        if (i) put(',');
        put(JSON.stringify(Array.from(a.subarray(i, i + 65536))).slice(1, -1));
      }
      put(']');
    };
    const tensor = ({ dims, data }) => {
      put(`{"dims":${JSON.stringify(dims)},"data":`);
      numbers(data);
      put('}');
    };
    put('{"tokens":');
    numbers(Int32Array.from(ids));
    put(`,"chunkLength":${chunkLength},"layers":[`);
    layers.forEach(({ limV, membrane }, l) => {
      put(`${l ? ',' : ''}{"limV":`);
      tensor(limV);
      put(',"membrane":');
      tensor(membrane);
      put('}');
    });
    put(']}');
  } finally {
    fs.closeSync(fd);
  }
}

async function generate(opts) {
  // the arguments are checked before the model loads: a typo fails at once
  const ids = opts.ids === undefined ? null : parseIds(opts.ids);
  const text = opts._.join(' ');
  if (!ids && !text) throw usage('generate needs a prompt (text, or --ids)');
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
  const model = await loadModel(opts);
  let prompt;
  if (ids) {
    checkIds(ids, model.config.vocabSize);
    prompt = ids;
  } else {
    if (!model.hasTokenizer) throw usage('this model has no tokenizer.json: pass the prompt as --ids 1,2,3');
    prompt = model.encode(text);
  }
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
    if (cmd === 'help' && rest.length) return printCommandHelp(rest[0]);
    process.stdout.write(HELP);
    return;
  }
  if (cmd === '--version' || cmd === '-v' || cmd === 'version') {
    const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    process.stdout.write(`${pkg.version}\n`);
    return;
  }
  const run = { generate, finetune, score, inspect, eval: evalTask, ppl }[cmd];
  if (!run) throw usage(`unknown command '${cmd}'`);
  const opts = parseArgs(rest, cmd);
  if (opts.help) {
    process.stdout.write(HELP);
    return;
  }
  await run(opts);
}

/** One line of advice after an error, by its code. */
const HINTS = {
  not_found: 'check the path, URL or hub id (--model, --adapter)',
  network: 'check the connection and the URL',
  bad_format: 'the file named above is malformed',
  shape_mismatch: 'the files do not belong together (e.g. an adapter made for another model)',
  unsupported: 'this engine does not handle that input',
  invalid_argument: 'run `memba --help` for the options and their ranges',
  oom: 'the model or the input is too large for the 4 GB WASM heap: try a shorter input or a smaller model',
  internal: 'this is a bug in memba-wasm; MEMBA_DEBUG=1 prints the stack',
};

/** Prints an error the way the header says: one line and a hint; the stack only for bugs with MEMBA_DEBUG=1. */
function report(err) {
  const cmd = process.argv[2];
  const debug = process.env.MEMBA_DEBUG === '1';
  const line = (code, message, hint) => process.stderr.write(`memba: ${code}: ${String(message).split('\n')[0]}\n${hint ? `${hint}\n` : ''}`);
  if (err instanceof UsageError) {
    line('usage', err.message, USAGE[cmd] ? `see: memba help ${cmd}` : 'see: memba help');
    return 2;
  }
  if (err instanceof MembaError) {
    line(err.code, err.message, HINTS[err.code]);
    if (debug && err.code === ErrorCodes.INTERNAL) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
  if (typeof err?.code === 'string' && typeof err?.syscall === 'string') { // a file the system refused (EACCES, ENOSPC, ...)
    line(err.code, err.message, 'check the path and its permissions');
    return 1;
  }
  line('internal', err?.message ?? err, debug ? null : HINTS.internal); // a real bug: keep it visible
  if (debug) process.stderr.write(`${err?.stack ?? err}\n`);
  return 1;
}

// `memba ... | head` closes stdout early: that is the reader's choice, not an error
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main().catch((err) => {
  process.exitCode = report(err);
});
