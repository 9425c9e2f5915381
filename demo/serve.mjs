// serve.mjs: serves the repository to a browser for the demo (`npm run demo`): static files with
// COOP/COEP headers (cross-origin isolation, for SharedArrayBuffer and later WASM threads), and
// bare module specifiers in JS (e.g. '@huggingface/tokenizers') rewritten to their files under
// node_modules, as a bundler or dev server would. Loopback only.
// Usage: node demo/serve.mjs [--port N]   then open http://127.0.0.1:N/demo/
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript', '.css': 'text/css',
  '.json': 'application/json', '.wasm': 'application/wasm', '.safetensors': 'application/octet-stream',
  '.png': 'image/png', '.txt': 'text/plain; charset=utf-8', '.md': 'text/plain; charset=utf-8',
};

/** The browser entry file of an installed package (its "exports" browser/import, or module/main). */
function packageEntry(name) {
  const dir = path.join(ROOT, 'node_modules', name);
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  const e = pkg.exports?.['.'] ?? pkg.exports;
  const pick = (x) => (typeof x === 'string' ? x : x && (pick(x.browser) ?? pick(x.import) ?? pick(x.default)));
  return `/node_modules/${name}/${(pick(e) ?? pkg.module ?? pkg.main ?? 'index.js').replace(/^\.\//, '')}`;
}

function rewriteBare(src) {
  return src.replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])([^'"./][^'"]*)\2/g, (m, pre, q, spec) => {
    if (spec.startsWith('node:')) return m;
    const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
    try {
      return `${pre}${q}${spec === name ? packageEntry(name) : `/node_modules/${spec}`}${q}`;
    } catch {
      return m;
    }
  });
}

export function createServer() {
  return http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    let p = path.normalize(path.join(ROOT, decodeURIComponent(url.pathname)));
    if (!p.startsWith(ROOT)) return res.writeHead(403).end();
    if (fs.existsSync(p) && fs.statSync(p).isDirectory()) p = path.join(p, 'index.html');
    if (!fs.existsSync(p)) return res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
    const ext = path.extname(p);
    let body = fs.readFileSync(p);
    if (ext === '.js' || ext === '.mjs') body = Buffer.from(rewriteBare(body.toString('utf8')));
    res.writeHead(200, {
      'content-type': TYPES[ext] ?? 'application/octet-stream',
      'content-length': body.length,
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-embedder-policy': 'require-corp',
      'cross-origin-resource-policy': 'same-origin',
      'cache-control': 'no-cache',
    });
    res.end(body);
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : 8080;
  createServer().listen(port, '127.0.0.1', () => console.log(`memba-wasm demo: http://127.0.0.1:${port}/demo/`));
}
