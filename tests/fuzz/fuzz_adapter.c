/* fuzz_adapter.c: mb_adapter_new with any mb_adapter_config (every field from the input) on a small
 * model; an accepted adapter is initialised, nudged and driven through a forward of an input-chosen
 * length, inspect, score, a decode state and steps, a training step with input-chosen AdamW
 * settings, and merge/unmerge. The model's base logits must come back bit for bit afterwards.
 * The top bit of the input's last byte picks the model: FUZZ_MODEL or FUZZ_WIDE_RANK. */
#include "fuzz.h"

static mb_model *g_models[2];
static float g_bases[2][8 * 40];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sentinel_check();
  int which = size && (data[size - 1] & 0x80);
  if (!g_models[which]) {
    g_models[which] = fuzz_model_of(which ? &FUZZ_WIDE_RANK : &FUZZ_MODEL, 77);
    if (mb_forward(g_models[which], SENTINEL_IDS, 1, 8, MB_LOGITS_ALL, g_bases[which], NULL, NULL)) abort();
  }
  mb_model *g_m = g_models[which];
  const float *g_base = g_bases[which];
  reader r = {data, size};
  mb_adapter_config ac;
  ac.r = rd_i32(&r), ac.alpha = rd_f32(&r), ac.rslora = rd_i32(&r), ac.targets = rd_i32(&r);
  ac.dropout = rd_f32(&r), ac.lim = rd_i32(&r), ac.chunks = rd_i32(&r), ac.chunk_size = rd_i32(&r);
  ac.tau = rd_f32(&r), ac.v_th = rd_f32(&r), ac.output = rd_i32(&r), ac.reset_grad = rd_i32(&r);
  ac.surrogate_width = rd_f32(&r), ac.cross_layer = rd_i32(&r);
  mb_adapter *a = NULL;
  mb_status st = mb_adapter_new(g_m, &ac, &a);
  if (st != MB_OK) {
    if (a || (st != MB_ERR_INVALID_ARG && st != MB_ERR_OOM)) abort();
    return 0;
  }
  mb_adapter_init(a, rd_u32(&r));
  size_t n;
  float *blk = mb_adapter_block(a, 0, &n), amp = rd_f32(&r);
  for (size_t i = 0; blk && i < n; i++) blk[i] += amp * (float)((int)(i % 7) - 3) * 0.01f;
  mb_model_set_adapter(g_m, a);
  int L = rd_range(&r, 1, 96), B = rd_range(&r, 1, 2);
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)B * L), *labels = malloc(sizeof(int32_t) * (size_t)B * L);
  for (int i = 0; i < B * L; i++) ids[i] = rd_u8(&r) % 40, labels[i] = (rd_u8(&r) % 41) - 1;
  for (int i = 0; i < B * L; i++) labels[i] = labels[i] < 0 ? -100 : labels[i];
  float *logits = malloc(sizeof(float) * (size_t)B * L * 40), *lp = malloc(sizeof(float) * (size_t)B * L);
  float *v = malloc(sizeof(float) * 2 * (size_t)B * L * 32);
  mb_forward(g_m, ids, B, L, MB_LOGITS_ALL, logits, NULL, NULL);
  if (ac.lim) {
    int32_t clen = 0;
    if (mb_inspect(g_m, ids, B, L, v, NULL, &clen) == MB_OK && clen < 1) abort();
  }
  if (L > 1) mb_score(g_m, ids, B, L, rd_range(&r, 1, L - 1), lp);
  mb_state *s = NULL;
  if (mb_state_new(g_m, B, &s) == MB_OK) {
    for (int t = 0; t < (L < 4 ? L : 4); t++) mb_step(g_m, s, ids + t * B, logits);
    mb_state_free(s);
  }
  float loss, gn;
  mb_train_set_budget(g_m, rd_u8(&r) & 1 ? 1e9 : 0);
  mb_adapter_zero_grad(a);
  if (mb_train_backward(g_m, ids, labels, B, L, rd_u32(&r), &loss) == MB_OK) {
    mb_adamw o = {.lr = rd_f32(&r), .beta1 = rd_f32(&r), .beta2 = rd_f32(&r), .eps = rd_f32(&r),
                  .weight_decay = rd_f32(&r), .clip = rd_f32(&r)};
    mb_adamw_step(a, &o, rd_range(&r, 0, 3), &gn);
  }
  if (rd_u8(&r) & 1) {
    mb_adapter_merge(g_m, a);
    mb_forward(g_m, ids, B, L, MB_LOGITS_LAST, logits, NULL, NULL);
    if (rd_u8(&r) & 1) mb_adapter_unmerge(g_m, a);
  }
  mb_model_set_adapter(g_m, NULL); /* unmerges */
  mb_adapter_free(a);
  free(ids), free(labels), free(logits), free(lp), free(v);
  float base[8 * 40];
  if (mb_forward(g_m, SENTINEL_IDS, 1, 8, MB_LOGITS_ALL, base, NULL, NULL)) abort();
  if (memcmp(base, g_base, sizeof base)) abort(); /* the adapter left the base weights changed */
  return 0;
}
