// lim_sensitivity.mjs: the LIM sensitivity study (issue "Memba fine-tuning that visibly helps"):
// fine-tunes the embedded default model (trained on the Brown corpus) on text from a domain it
// has not seen, the King James Bible, with a fixed token budget, and reports held-out perplexity
// for the base model, LoRA alone and Memba (LoRA + LIM) over chunks T, chunk_size, tau, v_th,
// output and cross-layer transfer, with 2 seeds; plus the perplexity with a fresh (untrained)
// adapter and text samples. Writes results.json, results.md and plots (SVG) next to itself.
//   apt-get install bible-kjv     # the `bible` reader and the KJV text (Debian)
//   node training/study/lim_sensitivity.mjs [--budget 16384] [--seeds 2] [--jobs 2] [--only group,..] [--tag T]
// Train: the start of Genesis (the first `budget` tokens). Held out (disjoint): Matthew 1-7.
// Every run uses only the public package API. Deliberately not here: the library itself.
import { spawnSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Mamba } from '../../bindings/index.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MODEL = path.join(HERE, '..', '..', 'models', 'default');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};

/** KJV text of a verse range without chapter headings and verse numbers. */
function kjv(range) {
  const r = spawnSync('bible', [range], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error || r.status !== 0) throw new Error(`the 'bible' reader failed (apt-get install bible-kjv): ${r.error?.message ?? r.stderr}`);
  const verses = [];
  for (const line of r.stdout.split('\n')) {
    if (/^\s+\d+ /.test(line)) verses.push(line.trim().replace(/^\d+ /, '')); // "  12 And ..."
    else if (/^[1-3]?\s?[A-Z][a-z]+ \d+$/.test(line.trim()) || !line.trim()) continue; // "Genesis 1"
    else verses[verses.length - 1] += ` ${line.trim()}`; // a wrapped verse
  }
  return verses.join(' ');
}

const LORA_IN = { r: 8, alpha: 16, targets: ['in_proj'] };
const LORA = { r: 8, alpha: 16, targets: ['in_proj', 'out_proj'] };
const LIM = { chunk_size: 16, tau: 0.5, v_th: 1.0, output: 'post_reset', cross_layer: 'first' }; // the swept base

/** The variants: name, group, adapter settings (null: the base model). */
function variants() {
  const v = [
    { name: 'base', group: 'base', adapter: null },
    { name: 'LoRA in_proj', group: 'lora', adapter: { lora: LORA_IN, lim: null } },
    { name: 'LoRA in+out_proj', group: 'lora', adapter: { lora: LORA, lim: null } },
  ];
  const memba = (group, name, lim) => v.push({ name, group, adapter: { lora: LORA, lim } });
  for (const T of [2, 4, 8]) memba('chunks', `T=${T} (chunks, mean)`, { chunks: T, tau: 0.5, v_th: 1.0, output: 'post_reset', cross_layer: 'mean' });
  for (const c of [8, 16, 32]) memba('chunk_size', `chunk_size=${c}`, { ...LIM, chunk_size: c });
  for (const tau of [0.25, 0.5, 0.75, 1.0]) memba('tau', `tau=${tau}`, { ...LIM, tau });
  for (const v_th of [0.5, 1, 2]) memba('v_th', `v_th=${v_th}`, { ...LIM, v_th });
  for (const output of ['post_reset', 'pre_reset']) memba('output', `output=${output}`, { ...LIM, output });
  for (const cross of ['mean', 'first', 'none']) memba('cross_layer', `cross_layer=${cross}`, { ...LIM, cross_layer: cross });
  // the three least harmful settings of the sweeps, combined (run with --only combo --tag combo)
  memba('combo', 'pre_reset + v_th=2', { ...LIM, v_th: 2, output: 'pre_reset' });
  memba('combo', 'pre_reset + v_th=2 + tau=0.25', { ...LIM, tau: 0.25, v_th: 2, output: 'pre_reset' });
  return v;
}

const PROMPT = 'And it came to pass, when';

/** One variant and seed: fresh and trained held-out perplexity, samples. */
async function runOne({ variant, seed, budget, seqLen, lr }) {
  const train = kjv('Gen1:1-Exod40:38');
  const held = kjv('Matt1:1-Matt7:29');
  const model = await Mamba.load(MODEL);
  const heldIds = model.encode(held);
  const ppl = async () => (await model.perplexity(heldIds, { seqLen })).perplexity;
  const out = { name: variant.name, group: variant.group, seed, adapter: variant.adapter };
  if (variant.adapter) {
    model.createAdapter({ ...variant.adapter, seed });
    out.freshPpl = await ppl();
    // encode a prefix long enough for the budget (a BPE token is >= 1 character)
    const trainIds = model.encode(train.slice(0, (budget + 1) * 8)).slice(0, budget + 1);
    if (trainIds.length < budget + 1) throw new Error(`the training text has only ${trainIds.length} tokens`);
    const steps = Math.ceil(budget / seqLen);
    const tr = model.createTrainer({ lr, clipNorm: 1, seed, schedule: { type: 'cosine', warmupSteps: Math.min(10, steps >> 3), totalSteps: steps } });
    const t0 = performance.now();
    const r = await tr.fit([trainIds], { epochs: 1, batchSize: 1, seqLen });
    out.seconds = (performance.now() - t0) / 1000;
    out.trainTokens = r.tokens;
    out.finalTrainLoss = r.losses.slice(-10).reduce((a, b) => a + b) / Math.min(10, r.losses.length);
  }
  out.ppl = await ppl();
  const p = model.encode(PROMPT);
  out.greedy = model.decode(await model.generate(p, { maxNewTokens: 40 }));
  out.sampled = model.decode(await model.generate(p, { maxNewTokens: 40, temperature: 0.8, topP: 0.95, seed: 1 }));
  model.dispose();
  return out;
}

function mean(xs) {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** A horizontal bar chart of fresh and trained perplexity per variant (SVG). */
function barChart(rows, title) {
  const W = 760, rowH = 22, left = 230, top = 40, H = top + rows.length * rowH + 40;
  const max = Math.max(...rows.flatMap((r) => [r.ppl, r.freshPpl ?? 0]));
  const x = (v) => left + ((W - left - 60) * Math.log(v)) / Math.log(max);
  const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`];
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    parts.push(`<text x="${left - 6}" y="${y + 14}" text-anchor="end">${esc(r.name)}</text>`);
    if (r.freshPpl) parts.push(`<rect x="${left}" y="${y + 2}" width="${x(r.freshPpl) - left}" height="7" fill="#d9a441"><title>fresh ${r.freshPpl.toFixed(1)}</title></rect>`);
    parts.push(`<rect x="${left}" y="${y + 10}" width="${x(r.ppl) - left}" height="9" fill="#2f6db5"><title>trained ${r.ppl.toFixed(1)}</title></rect>`);
    parts.push(`<text x="${x(r.ppl) + 4}" y="${y + 19}" font-size="10">${r.ppl.toFixed(1)}${r.freshPpl ? ` (fresh ${r.freshPpl.toFixed(0)})` : ''}</text>`);
  });
  const ay = top + rows.length * rowH + 8;
  parts.push(`<line x1="${left}" y1="${ay}" x2="${W - 60}" y2="${ay}" stroke="#444"/>`);
  for (const t of [10, 30, 100, 300, 1000, 3000].filter((t) => t <= max)) parts.push(`<line x1="${x(t)}" y1="${ay}" x2="${x(t)}" y2="${ay + 4}" stroke="#444"/><text x="${x(t)}" y="${ay + 16}" text-anchor="middle" font-size="10">${t}</text>`);
  parts.push(`<text x="${(left + W - 60) / 2}" y="${ay + 30}" text-anchor="middle">held-out perplexity (log scale; blue: trained, orange: fresh adapter)</text></svg>`);
  return parts.join('\n');
}

async function main() {
  if (args[0] === '--run') {
    process.stdout.write(JSON.stringify(await runOne(JSON.parse(args[1]))));
    return;
  }
  const budget = Number(opt('budget', 16384));
  const seeds = Number(opt('seeds', 2));
  const jobs = Number(opt('jobs', 2));
  const seqLen = Number(opt('seq-len', 128));
  const lr = Number(opt('lr', 3e-3));
  const only = opt('only', null)?.split(',');
  const tag = opt('tag', null); // results-TAG.* instead of results.* (a partial run keeps the full one)
  const stem = tag ? `results-${tag}` : 'results';
  // a setting that several sweeps share (chunk_size=16 is tau=0.5 is v_th=1 ...) runs once
  const key = (v) => JSON.stringify(v.adapter);
  const runs = [];
  const wanted = variants().filter((v) => (only ? only.includes(v.group) : v.group !== 'combo'));
  for (const variant of wanted) {
    if (runs.some((r) => key(r.variant) === key(variant))) continue;
    for (let s = 0; s < (variant.adapter ? seeds : 1); s++) runs.push({ variant, seed: s + 1, budget, seqLen, lr });
  }
  const results = [];
  let next = 0;
  const t0 = Date.now();
  const worker = async () => {
    while (next < runs.length) {
      const job = runs[next++];
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--run', JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let outText = '';
      child.stdout.on('data', (d) => (outText += d));
      await new Promise((res) => child.on('close', res));
      const r = JSON.parse(outText);
      results.push(r);
      process.stderr.write(`${results.length}/${runs.length} ${r.name} seed ${r.seed}: ppl ${r.ppl.toFixed(2)}${r.freshPpl ? ` (fresh ${r.freshPpl.toFixed(2)})` : ''} [${((Date.now() - t0) / 1000).toFixed(0)} s]\n`);
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  results.sort((a, b) => wanted.findIndex((v) => v.name === a.name) - wanted.findIndex((v) => v.name === b.name) || a.seed - b.seed);
  const rows = wanted.map(({ name, group, adapter }) => {
    const rs = results.filter((r) => JSON.stringify(r.adapter) === JSON.stringify(adapter));
    return { name, group, seeds: rs.length, ppl: mean(rs.map((r) => r.ppl)), pplAll: rs.map((r) => r.ppl),
      freshPpl: rs[0].freshPpl === undefined ? null : mean(rs.map((r) => r.freshPpl)), greedy: rs[0].greedy, sampled: rs[0].sampled };
  });
  const meta = { date: new Date().toISOString(), machine: `${os.cpus()[0]?.model}, ${os.cpus().length} cores, node ${process.version}`, budget, seqLen, lr, seeds, train: 'KJV Genesis (its first budget tokens)', heldOut: 'KJV Matthew 1-7', prompt: PROMPT };
  fs.writeFileSync(path.join(HERE, `${stem}.json`), JSON.stringify({ meta, rows, runs: results }, null, 2));
  const md = [`# LIM sensitivity study: results`, '', `${meta.date.slice(0, 16)} UTC, ${meta.machine}. Fine-tuning budget ${budget} tokens (seq ${seqLen}, batch 1, AdamW lr ${lr}, cosine, clip 1), ${seeds} seeds; LoRA r=8, alpha=16. Train: ${meta.train}; held out: ${meta.heldOut}. Perplexity per token of the held-out text (windows of ${seqLen}).`, '',
    '| variant | held-out ppl (mean of seeds) | per seed | with a fresh adapter |', '|---|---|---|---|',
    ...rows.map((r) => `| ${r.name} | ${r.ppl.toFixed(2)} | ${r.pplAll.map((x) => x.toFixed(2)).join(', ')} | ${r.freshPpl === null ? '' : r.freshPpl.toFixed(2)} |`),
    '', '## Samples (seed 1; prompt "' + PROMPT + '")', '',
    ...rows.flatMap((r) => [`- **${r.name}**, greedy: ${JSON.stringify(r.greedy)}`, `  sampled (T 0.8, top-p 0.95): ${JSON.stringify(r.sampled)}`]), ''];
  fs.writeFileSync(path.join(HERE, `${stem}.md`), md.join('\n'));
  fs.writeFileSync(path.join(HERE, tag ? `ppl-${tag}.svg` : 'ppl.svg'), barChart(rows, `Held-out perplexity after ${budget} tokens of KJV fine-tuning`));
  process.stderr.write(`wrote ${stem}.json, ${stem}.md and the plot in ${path.relative(process.cwd(), HERE) || '.'}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err.stack ?? err}\n`);
  process.exitCode = 1;
});
