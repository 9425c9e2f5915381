/* fuzz_config.c: mb_model_new_typed with any mb_config and weight dtype (every field from the
 * input; dtype 3 is invalid), then, for a model
 * that was accepted and is small, random weights, a forward, a score, a decode state and a step.
 * Must never crash, leak or trip a sanitizer; refusals are MB_ERR_INVALID_ARG or MB_ERR_OOM. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sentinel_check();
  reader r = {data, size};
  mb_config c;
  c.d_model = rd_i32(&r), c.n_layer = rd_i32(&r), c.vocab_size = rd_i32(&r), c.d_state = rd_i32(&r);
  c.d_conv = rd_i32(&r), c.d_inner = rd_i32(&r), c.dt_rank = rd_i32(&r), c.eps = rd_f32(&r);
  c.use_bias = rd_i32(&r), c.use_conv_bias = rd_i32(&r), c.tied_head = rd_i32(&r);
  int dtype = rd_u8(&r) % 4;
  mb_model *m = NULL;
  mb_status st = mb_model_new_typed(&c, (mb_dtype)dtype, &m);
  if (st != MB_OK) {
    if (m || (st != MB_ERR_INVALID_ARG && st != MB_ERR_OOM)) abort();
    return 0;
  }
  if (mb_model_weight_bytes(m) <= (1u << 20) && mb_model_init_random(m, rd_u32(&r)) == MB_OK) {
    int L = rd_range(&r, 1, 16);
    int32_t ids[16];
    for (int t = 0; t < L; t++) ids[t] = (int32_t)(rd_u32(&r) % (uint32_t)c.vocab_size);
    float *logits = malloc(sizeof(float) * (size_t)L * c.vocab_size), lp[16];
    mb_forward(m, ids, 1, L, MB_LOGITS_ALL, logits, NULL, NULL);
    if (L > 1) mb_score(m, ids, 1, L, 1, lp);
    mb_state *s = NULL;
    if (mb_state_new(m, 1, &s) == MB_OK) {
      mb_step(m, s, ids, logits);
      mb_state_free(s);
    }
    free(logits);
  }
  mb_model_free(m);
  return 0;
}
