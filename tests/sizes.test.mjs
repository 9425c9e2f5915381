// sizes.test.mjs: the C core's size checks in the wasm32 build, where size_t is 32 bits: sizes
// that wrapped there (issue "Memory safety": a 2^32-float embedding wrapped to 0 and the model
// was "allocated") fail as oom before anything is allocated, and the engine stays usable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEngine } from '../bindings/engine.js';

const CFG = { d_model: 8, n_layer: 2, vocab_size: 11, d_state: 4, d_conv: 3, d_inner: 16, dt_rank: 1, eps: 1e-5, use_bias: 0, use_conv_bias: 1, tied_head: 1 };

test('wasm32: model configs whose float32 bytes wrap 32 bits are oom, not a small block', async () => {
  const abi = await getEngine();
  const cases = [
    { d_model: 65536, vocab_size: 65536 },            // embedding of 2^32 floats: wrapped to 0
    { d_model: 65536, vocab_size: 16385 },            // 2^30 + 2^16 floats: 4 GB + 256 kB of bytes
    { d_model: 4096, d_inner: 1 << 19, n_layer: 1 },  // in_proj 2^32 floats
    { n_layer: 1 << 24, d_model: 256, d_inner: 512 }, // 2^24 layers
  ];
  for (const c of cases) {
    const cfg = { ...CFG, ...c };
    let code = null;
    let h = 0;
    try {
      h = abi.mb_model_new(cfg);
    } catch (e) {
      code = e.code;
      console.log(`${JSON.stringify(c)}: ${e.code}: ${e.message}`);
    }
    if (h) abi.mb_model_free(h);
    assert.equal(code, 'oom', `${JSON.stringify(c)} gave a model`);
  }
  const h = abi.mb_model_new(CFG); // still usable
  assert.ok(h > 0);
  abi.mb_model_free(h);
});
