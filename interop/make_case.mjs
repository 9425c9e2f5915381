// make_case.mjs: writes adapters saved by this library (PEFT format), the ids and this library's
// logits for them, so interop/peft_interop.py can load the same adapters with HF PEFT and compare.
// Usage: node interop/make_case.mjs OUT_DIR   (base model: tests/fixtures/mamba-tiny, HF layout)
import fs from 'node:fs';
import path from 'node:path';
import { Mamba } from '../bindings/index.js';
import { parseSafetensors, writeSafetensors, tensorToFloat32 } from '../bindings/safetensors.js';

const out = process.argv[2];
if (!out) {
  console.error('usage: node interop/make_case.mjs OUT_DIR');
  process.exit(2);
}
const base = new URL('../tests/fixtures/mamba-tiny/', import.meta.url);
const model = await Mamba.load(base);
fs.mkdirSync(path.join(out, 'base'), { recursive: true });
for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(new URL(f, base), path.join(out, 'base', f));
const ids = [[23, 32, 61, 28, 57, 3, 37, 26, 51, 40, 39, 47], [33, 13, 36, 38, 7, 10, 47, 35, 34, 53, 60, 60]];
const cases = {
  in_x: { targets: ['in_proj', 'x_proj'] },
  in_out_x: { targets: ['in_proj', 'out_proj', 'x_proj'] },
  dt_only: { targets: ['dt_proj'] },
};
const logits = {};
let seed = 1;
for (const [name, { targets }] of Object.entries(cases)) {
  const fresh = model.createAdapter({ lora: { r: 4, alpha: 8, targets }, seed: seed++ });
  // give lora_B values, as training would
  const files = fresh.save();
  const { tensors } = parseSafetensors(files['adapter_model.safetensors']);
  const entries = {};
  let k = 0;
  for (const [n, t] of tensors) {
    const data = tensorToFloat32(t);
    if (n.includes('lora_B')) for (let i = 0; i < data.length; i++) data[i] = 0.05 * Math.sin(++k * 0.7);
    entries[n] = { dtype: 'F32', shape: t.shape, data };
  }
  const trained = await model.loadAdapter({ files: { ...files, 'adapter_model.safetensors': writeSafetensors(entries) } });
  const saved = trained.save(); // what the library writes: this is what PEFT must load
  const dir = path.join(out, name);
  fs.mkdirSync(dir, { recursive: true });
  for (const [f, v] of Object.entries(saved)) fs.writeFileSync(path.join(dir, f), v);
  logits[name] = { dtype: 'F32', shape: [2, ids[0].length, model.config.vocabSize], data: (await model.forward(ids)).data };
  fresh.dispose();
  trained.dispose();
}
model.setAdapter(null);
logits.base = { dtype: 'F32', shape: [2, ids[0].length, model.config.vocabSize], data: (await model.forward(ids)).data };
fs.writeFileSync(path.join(out, 'ours_logits.safetensors'), writeSafetensors(logits));
fs.writeFileSync(path.join(out, 'ids.json'), JSON.stringify(ids));
console.log(`wrote ${Object.keys(cases).join(', ')} to ${out}`);
