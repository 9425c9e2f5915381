// pack.test.mjs: `npm pack` from a fresh clone of the committed tree builds dist/ first (the
// prepack script runs ./build.sh wasm) and ships what package.json "files" and "exports" name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { ROOT } from './helpers.mjs';

const hasGit = spawnSync('git', ['-C', ROOT, 'rev-parse', 'HEAD']).status === 0;

test('npm pack from a fresh clone includes dist/ and every exported file', { skip: hasGit ? false : 'not a git checkout', timeout: 300_000 }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'memba-pack-'));
  try {
    const clone = path.join(tmp, 'clone');
    const run = (cmd, args, cwd) => {
      const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
      assert.equal(r.status, 0, `${cmd} ${args.join(' ')}:\n${r.stdout}${r.stderr}`.slice(-4000));
      return r.stdout;
    };
    run('git', ['clone', '--quiet', ROOT, clone], tmp);
    assert.ok(!fs.existsSync(path.join(clone, 'dist')), 'a fresh clone has no dist/');
    // stdout has the prepack build's lines around npm's JSON: take the array npm printed
    const stdout = run('npm', ['pack', '--json', '--pack-destination', tmp], clone);
    const json = /^\[\n {2}\{[\s\S]*?^\]$/m.exec(stdout);
    assert.ok(json, `no JSON in npm pack's output:\n${stdout.slice(-2000)}`);
    const out = JSON.parse(json[0]);
    const files = new Set(out[0].files.map((f) => f.path));
    const pkg = JSON.parse(fs.readFileSync(path.join(clone, 'package.json'), 'utf8'));
    const targets = (e) => (typeof e === 'string' ? [e] : Object.values(e).flatMap(targets)); // conditions nest
    for (const target of Object.values(pkg.exports).flatMap(targets)) {
      if (target.includes('*')) continue;
      assert.ok(files.has(target.replace(/^\.\//, '')), `export target ${target} is not in the tarball`);
    }
    for (const f of ['dist/memba.mjs', 'dist/memba.wasm', 'dist/memba-threads.mjs', 'dist/memba-threads.wasm', 'dist/memba-threads.worker.js', 'dist/default-model-inline.js', 'bindings/pthread-node-boot.cjs', 'dist/memba-wasm-inline.js', 'dist/worker-inline.js', 'dist/kernels-inline.js', 'bindings/worker.js', 'models/default/model.safetensors', 'web/kernels/selective_scan_forward.wgsl',
      'CHANGELOG.md', 'README.md', 'LICENSE', 'examples/vite/src/index.js', 'examples/node/generate.mjs', 'examples/html/index.html'])
      assert.ok(files.has(f), `${f} is not in the tarball`);
    assert.ok(![...files].some((f) => f.startsWith('tests/') || f.startsWith('node_modules/')), 'no tests or node_modules in the tarball');
    console.log(`tarball: ${out[0].files.length} files, ${(out[0].size / 2 ** 20).toFixed(1)} MB packed, ${(out[0].unpackedSize / 2 ** 20).toFixed(1)} MB unpacked`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
