// abi.test.mjs: bindings/abi.js cannot drift from the C headers. It parses src/memba.h and
// src/memba_backend.h (enums, structs, function prototypes) and build.sh's EXPORTS list, and
// checks abi.js against them: every enum value, every struct field (name, type, order), every
// function (header, return kind, parameter names in C order), a wrapper for every export. Then
// it runs the wrappers (a struct round trip through the C core, status -> error code mapping) and
// checks that nothing outside abi.js / engine.js calls the raw exports, that the environment is
// probed only in bindings/env.js, and that web/ uses no model internals (only bindings/gpu.js's
// GpuModel / GpuPass).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers.mjs';
import {
  ENUMS, STRUCTS, FUNCTIONS, functionList, writeStruct, readStruct, MbConfig, Status, Param, TARGET_NAMES, Target,
  enumNames, enumValue, LimCross,
} from '../bindings/abi.js';
import { getEngine } from '../bindings/engine.js';

const read = (rel) => fs.readFileSync(path.join(ROOT, rel), 'utf8');

/** A header without comments, preprocessor lines and the extern "C" wrapper. */
function cleanHeader(rel) {
  return read(rel)
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/\/\/.*$/gm, ' ')
    .replace(/^\s*#.*$/gm, ' ')
    .replace(/extern\s+"C"\s*\{/g, ' ')
    .replace(/^\s*\}\s*$/gm, ' ');
}

const HEADERS = ['memba.h', 'memba_backend.h'];
const text = Object.fromEntries(HEADERS.map((h) => [h, cleanHeader(`src/${h}`)]));
const all = HEADERS.map((h) => text[h]).join('\n');

function parseEnums(src) {
  const out = new Map();
  for (const [, body, name] of src.matchAll(/typedef\s+enum\s*\{([^}]*)\}\s*(\w+)\s*;/g)) {
    const values = new Map();
    let next = 0;
    for (const item of body.split(',').map((s) => s.trim()).filter(Boolean)) {
      const m = /^(\w+)(?:\s*=\s*(-?\d+))?$/.exec(item);
      assert.ok(m, `cannot read enum item '${item}' of ${name}`);
      const v = m[2] !== undefined ? Number(m[2]) : next;
      values.set(m[1], v);
      next = v + 1;
    }
    out.set(name, values);
  }
  return out;
}

function parseStructs(src) {
  const C_TYPES = { int: 'i32', int32_t: 'i32', float: 'f32' };
  const out = new Map();
  for (const [, body, name] of src.matchAll(/typedef\s+struct\s*\{([^}]*)\}\s*(\w+)\s*;/g)) {
    const fields = [];
    for (const decl of body.split(';').map((s) => s.trim()).filter(Boolean)) {
      const m = /^(\w+)\s+(.+)$/.exec(decl);
      assert.ok(m && C_TYPES[m[1]], `cannot read field declaration '${decl}' of ${name}`);
      for (const f of m[2].split(',')) fields.push([f.trim(), C_TYPES[m[1]]]);
    }
    out.set(name, fields);
  }
  return out;
}

function parseFunctions(src) {
  const out = [];
  for (const [, ret, name, params] of src.matchAll(/([A-Za-z_][\w\s*]*?)\b(mb_\w+)\s*\(([^()]*)\)\s*;/g)) {
    const ps = params.trim() === 'void' ? [] : params.split(',').map((p) => {
      const m = /^(.*?)(\w+)\s*$/.exec(p.trim());
      return { ctype: m[1].replace(/\s+/g, ' ').trim(), name: m[2] };
    });
    out.push({ name, ret: ret.replace(/\s+/g, ' ').trim(), params: ps });
  }
  return out;
}

test('abi.js enums equal the C enums, value for value', () => {
  const c = parseEnums(all);
  assert.deepEqual([...c.keys()].sort(), ENUMS.map((e) => e.c).sort(), 'the same enums');
  for (const { c: name, prefix, values } of ENUMS) {
    const want = Object.fromEntries([...c.get(name)].map(([k, v]) => {
      assert.ok(k.startsWith(prefix), `${k} starts with ${prefix}`);
      return [k.slice(prefix.length), v];
    }));
    assert.deepEqual({ ...values }, want, name);
  }
  // the JS names of enum values: one per LoRA target; the LIM ones are the lower-cased C names
  assert.deepEqual(Object.values(TARGET_NAMES).sort(), Object.values(Target).filter((v) => v !== Target.COUNT).sort());
  assert.deepEqual(enumNames(LimCross), ['mean', 'first', 'none']);
  assert.equal(enumValue(LimCross, 'none'), 2);
  assert.throws(() => enumValue(LimCross, 'count'), (e) => e.code === 'internal');
});

test('abi.js struct layouts equal the C structs, field by field', () => {
  const c = parseStructs(all);
  assert.deepEqual([...c.keys()].sort(), Object.keys(STRUCTS).sort(), 'the same structs');
  for (const [name, layout] of Object.entries(STRUCTS)) {
    assert.deepEqual(layout.fields.map((f) => [f.name, f.type]), c.get(name), name);
    layout.fields.forEach((f, i) => assert.equal(f.offset, 4 * i, `${name}.${f.name}: every field is 4 bytes`));
    assert.equal(layout.size, 4 * layout.fields.length);
  }
});

test('abi.js lists every function of each header, with its parameters in C order', () => {
  const retKind = (t) => ({ mb_status: 'status', void: 'void', int: 'int', double: 'double', size_t: 'size', 'const char *': 'str', 'const mb_config *': 'mb_config' })[t] ?? (t.endsWith('*') ? 'ptr' : `? ${t}`);
  const outType = { handle: /\*\*$/, size: /^size_t \*$/, f32: /^float \*$/, i32: /^int32_t \*$/ };
  for (const h of HEADERS) {
    const c = parseFunctions(text[h]);
    const js = FUNCTIONS[h].map(([name]) => name);
    assert.deepEqual(js, c.map((f) => f.name), `${h}: the same functions in the same order`);
    const byName = new Map(functionList().map((f) => [f.name, f]));
    for (const f of c) {
      const w = byName.get(f.name);
      assert.equal(w.ret, retKind(f.ret), `${f.name} returns ${f.ret}`);
      assert.deepEqual(w.params.map((p) => p.name), f.params.map((p) => p.name), `${f.name}: parameter names and order`);
      f.params.forEach((p, i) => {
        const t = w.params[i].type;
        if (t && STRUCTS[t]) assert.equal(p.ctype, `const ${t} *`, `${f.name}(${p.name}) is a ${t}`);
        else if (t) assert.match(p.ctype, outType[t], `${f.name}(${p.name}) is an out-parameter of type ${t}`);
        else assert.ok(!STRUCTS[p.ctype.replace(/^const (\w+) \*$/, '$1')], `${f.name}(${p.name}): a struct argument is marked as one`);
      });
    }
  }
});

test("every export in build.sh has a wrapper, and every wrapper's function is exported", async () => {
  const m = /EXPORTS=\(([^)]*)\)/.exec(read('build.sh'));
  assert.ok(m, 'build.sh has an EXPORTS list');
  const exported = m[1].split(/\s+/).filter(Boolean).sort();
  assert.deepEqual(functionList().map((f) => f.name).sort(), exported);
  const abi = await getEngine();
  assert.deepEqual(abi.missing, [], 'the WASM module has every function');
  for (const name of exported) assert.equal(typeof abi[name], 'function', name);
});

test('wrappers: structs by field name, handles from out-parameters, statuses as error codes', async () => {
  const abi = await getEngine();
  const cfg = { d_model: 8, n_layer: 2, vocab_size: 11, d_state: 4, d_conv: 3, d_inner: 16, dt_rank: 1, eps: 1e-5, use_bias: 1, use_conv_bias: 0, tied_head: 0 };
  const h = abi.mb_model_new(cfg);
  try {
    assert.ok(h > 0);
    assert.deepEqual(abi.mb_model_config(h), { ...cfg, eps: Math.fround(1e-5) }, 'mb_config round trip through the C core');
    const { ptr, numel } = abi.mb_model_param(h, Param.IN_PROJ_W, 1);
    assert.ok(ptr > 0);
    assert.equal(numel, 2 * 16 * 8, 'MB_P_IN_PROJ_W of layer 1: [2E, d]');
    assert.equal(abi.mb_model_param(h, Param.LM_HEAD, -1).numel, 11 * 8, 'an untied lm_head');
  } finally {
    abi.mb_model_free(h);
  }
  const bad = { ...cfg, d_model: 0 };
  assert.throws(() => abi.mb_model_new(bad), (e) => e.code === 'invalid_argument' && /^mb_model_new: ./.test(e.message));
  assert.throws(() => abi.mb_model_new(bad, { what: 'from a file', codes: { [Status.ERR_INVALID_ARG]: 'bad_format' } }),
    (e) => e.code === 'bad_format' && e.message.startsWith('from a file: '));
  assert.throws(() => abi.mb_model_new({ ...cfg, n_layer: 2 ** 24 }), (e) => e.code === 'oom', 'more weights than wasm32 can address');
  assert.throws(() => abi.mb_model_new({ ...cfg, extra: 1 }), (e) => e.code === 'internal' && /no field 'extra'/.test(e.message));
  const { tied_head, ...partial } = cfg;
  assert.equal(tied_head, 0);
  assert.throws(() => abi.mb_model_new(partial), (e) => e.code === 'internal' && /tied_head is missing/.test(e.message));
  assert.throws(() => abi.mb_forward(0, 0, 1), (e) => e.code === 'internal' && /takes 8 argument/.test(e.message));
});

test('writeStruct / readStruct go by field name', () => {
  const heap = new Uint8Array(64);
  const v = { d_model: 1, n_layer: 2, vocab_size: 3, d_state: 4, d_conv: 5, d_inner: 6, dt_rank: 7, eps: 0.5, use_bias: true, use_conv_bias: false, tied_head: 1 };
  writeStruct(heap, 8, MbConfig, v);
  assert.deepEqual(readStruct(heap, 8, MbConfig), { ...v, use_bias: 1, use_conv_bias: 0 });
  assert.equal(new DataView(heap.buffer).getFloat32(8 + 28, true), 0.5, 'eps at byte 28');
  assert.throws(() => writeStruct(heap, 0, MbConfig, { ...v, eps: '1' }), (e) => e.code === 'internal');
});

/** The .js / .mjs files of a directory tree. */
function sources(dir) {
  const out = [];
  for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...sources(rel));
    else if (/\.m?js$/.test(e.name)) out.push(rel);
  }
  return out;
}

test('only abi.js (and the loader engine.js) touch the raw exports; only env.js probes the environment; web/ uses no model internals', () => {
  const raw = new RegExp(['_', 'mb_'].join('')); // spelled apart so that this file does not match itself
  const files = ['bindings', 'web', 'tests', 'bench', 'demo'].flatMap(sources);
  const rawHits = files.filter((f) => !['bindings/abi.js', 'bindings/engine.js'].includes(f) && raw.test(read(f)));
  assert.deepEqual(rawHits, [], 'files that call the raw exports');
  const probe = /process\.versions|typeof (window|self|Worker|navigator)\b|globalThis\.navigator/;
  const probeHits = ['bindings', 'web'].flatMap(sources).filter((f) => f !== 'bindings/env.js' && probe.test(read(f)));
  assert.deepEqual(probeHits, [], 'files that probe the environment themselves');
  // web/ reaches the model only through bindings/gpu.js's GpuModel / GpuPass
  const inside = /\._(engine|handle|bind|states|adapters)\b|bindings\/(abi|engine|mamba)\.js/;
  assert.deepEqual(sources('web').filter((f) => inside.test(read(f))), [], 'web/ files that use model internals');
});
