// readme-types.test.mjs: every ```js block of README.md type-checks with `tsc --strict` against the
// package's own declarations (bindings/index.d.ts, remote.d.ts, models/default/model.d.ts), each
// block as its own module importing 'memba-wasm' by name (the package's exports). The names the
// blocks use without defining (a loaded `model`, `ids`, your text) are declared once, below.
// Also the example scripts of examples/ that are TypeScript-checkable JS (// @ts-check).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { ROOT } from './helpers.mjs';

const GLOBALS = `import type { Mamba, Adapter, Trainer } from 'memba-wasm';
declare global {
  const model: Mamba;
  const adapter: Adapter;
  const trainer: Trainer;
  const ids: number[];
  const labels: number[];
  const text: string;
  const myText: string;
  const heldOutText: string;
  const source: string;
  const onProgress: (p: unknown) => void;
  const signal: AbortSignal;
}
export {};
`;

test('README js blocks type-check with tsc --strict against the package types', { timeout: 120_000 }, () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/^```js\n([\s\S]*?)^```/gm)].map((m) => m[1]);
  assert.ok(blocks.length >= 5, `only ${blocks.length} js blocks found`);
  // inside the package, so 'memba-wasm' resolves to it by name through package.json "exports"
  const dir = path.join(ROOT, 'build', 'readme-types');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'globals.d.ts'), GLOBALS);
  blocks.forEach((b, i) => fs.writeFileSync(path.join(dir, `block-${String(i + 1).padStart(2, '0')}.ts`), `${b}\nexport {};\n`));
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022',
      lib: ['es2022', 'dom', 'dom.iterable', 'esnext.disposable'], types: ['node'], skipLibCheck: false,
    },
    include: ['*.ts'],
  }));
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(dir, 'tsconfig.json')], { encoding: 'utf8' });
  const out = `${r.stdout}${r.stderr}`;
  // name the README line of each error
  const starts = [];
  let line = 1;
  for (const m of readme.matchAll(/^```js\n/gm)) starts.push(readme.slice(0, m.index).split('\n').length + 1);
  const explained = out.replace(/\S*block-(\d+)\.ts\((\d+),(\d+)\)/g, (_, b, l) => `README.md:${starts[Number(b) - 1] + Number(l) - 1}`);
  assert.equal(r.status, 0, `tsc --strict found errors in README's js blocks:\n${explained}`);
  console.log(`${blocks.length} README js blocks type-check (tsc ${JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', 'typescript', 'package.json'), 'utf8')).version}, --strict)`);
  void line;
});

test('the API reference builds with TypeDoc (npm run docs) from the declarations, warnings as errors', { timeout: 120_000 }, () => {
  const out = path.join(ROOT, 'build', 'api-docs');
  const typedoc = path.join(ROOT, 'node_modules', 'typedoc', 'bin', 'typedoc');
  const r = spawnSync(process.execPath, [typedoc, '--out', out], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, `typedoc failed:\n${r.stdout}${r.stderr}`);
  for (const page of ['index.html', 'classes/memba-wasm.Mamba.html', 'interfaces/memba-wasm.RemoteMamba.html'])
    assert.ok(fs.existsSync(path.join(out, page)), `${page} missing from the API reference`);
});
