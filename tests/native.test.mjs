// native.test.mjs: runs the native C tests (built by ./build.sh under ASan + UBSan + LeakSanitizer)
// inside node --test, so one runner reports everything.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers.mjs';

for (const name of ['test_ops', 'test_block', 'test_model', 'test_adapter', 'test_train', 'test_backward', 'test_robust', 'test_dtypes', 'test_threads']) {
  test(`native C ${name} (ASan + UBSan + leaks)`, () => {
    const bin = path.join(ROOT, 'build', name);
    assert.ok(fs.existsSync(bin), `${bin} is missing: run ./build.sh test`);
    const r = spawnSync(bin, [], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:allocator_may_return_null=1', UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1' },
    });
    for (const line of (r.stdout ?? '').split('\n')) if (line) console.log(line);
    // the OOM tests make ASan warn that an impossible allocation failed: expected, not a report
    const stderr = (r.stderr ?? '').split('\n').filter((l) => l && !/WARNING: AddressSanitizer failed to allocate/.test(l));
    if (stderr.length) console.log(stderr.map((l) => `stderr: ${l}`).join('\n'));
    assert.equal(r.status, 0, `${name} exited with ${r.status}`);
    assert.ok(!stderr.some((l) => /Sanitizer|runtime error:/.test(l)), 'a sanitizer reported a problem');
    const m = /(\d+) passed, (\d+) failed/.exec(r.stdout);
    assert.ok(m, 'no summary line');
    assert.equal(Number(m[2]), 0);
    assert.ok(Number(m[1]) > 10);
  });
}
