/* fuzz_forward.c: the forward entry points with input-chosen dimensions and ids (out-of-range
 * ones included) on a small model with or without a causal LIM adapter: mb_forward in every logits
 * mode, mb_score with any `from`, decode states of any batch and their copy / position, and the
 * split stages called in any order with any layer. Buffers are sized as the API documents for
 * the B and L passed; B and L themselves may be out of range (the core must refuse them). */
#include "fuzz.h"

static mb_model *g_m;
static mb_adapter *g_lim;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sentinel_check();
  if (!g_m) {
    g_m = fuzz_model(99);
    mb_adapter_config ac = {.r = 2, .alpha = 4, .targets = 1 << MB_T_OUT_PROJ, .lim = 1, .chunk_size = 5,
                            .tau = 0.5f, .v_th = 1.0f, .surrogate_width = 1.0f, .cross_layer = MB_LIM_FIRST};
    if (mb_adapter_new(g_m, &ac, &g_lim) || mb_adapter_init(g_lim, 1)) abort();
  }
  reader r = {data, size};
  mb_model_set_adapter(g_m, rd_u8(&r) & 1 ? g_lim : NULL);
  int B = rd_range(&r, -1, 4), L = rd_range(&r, -1, 70);
  size_t BL = (size_t)(B > 0 ? B : 0) * (L > 0 ? L : 0);
  int32_t *ids = malloc(sizeof(int32_t) * (BL ? BL : 1));
  for (size_t i = 0; i < BL; i++) ids[i] = rd_u8(&r) < 250 ? rd_u8(&r) % 40 : rd_i32(&r);
  float *logits = malloc(sizeof(float) * (BL ? BL : 1) * 40), *hidden = malloc(sizeof(float) * 2 * (BL ? BL : 1) * 16);
  float *lp = malloc(sizeof(float) * (BL ? BL : 1));
  int mode = rd_range(&r, 0, 3);
  mb_forward(g_m, ids, B, L, (mb_logits_mode)mode, mode ? logits : NULL, rd_u8(&r) & 1 ? hidden : NULL, NULL);
  mb_score(g_m, ids, B, L, rd_range(&r, -1, 72), lp);
  mb_state *s = NULL, *s2 = NULL;
  int batch = rd_range(&r, -1, 5);
  if (mb_state_new(g_m, batch, &s) == MB_OK) {
    if (batch == B && L > 0) mb_forward(g_m, ids, B, L, MB_LOGITS_LAST, logits, NULL, s);
    if ((size_t)batch <= BL) mb_step(g_m, s, ids, logits); /* ids holds at least `batch` ids */
    if (mb_state_new(g_m, rd_range(&r, 1, 5), &s2) == MB_OK) mb_state_copy(s2, s);
    mb_state_set_pos(s, (double)rd_i32(&r));
    mb_state_free(s2);
  }
  if (mb_split_begin(g_m, ids, B, L, batch == B ? s : NULL) == MB_OK) {
    int calls = rd_range(&r, 0, 12);
    for (int k = 0; k < calls; k++) {
      int l = rd_range(&r, -1, 2), op = rd_range(&r, 0, 4);
      if (op == 0) mb_split_pre(g_m, l);
      else if (op == 1) mb_split_mid(g_m, l);
      else if (op == 2) mb_split_post(g_m, l);
      else if (op == 3) {
        float *buf = mb_split_buffer(g_m, (mb_split_buf)rd_range(&r, -1, 8));
        (void)buf;
      } else if (s && (size_t)batch <= BL)
        mb_step(g_m, s, ids, logits); /* closes the split */
    }
    if (rd_u8(&r) & 1) mb_split_end(g_m, (mb_logits_mode)rd_range(&r, 0, 2), logits);
    else mb_split_end_score(g_m, ids, rd_range(&r, 0, 72), lp);
  }
  mb_state_free(s);
  free(ids), free(logits), free(hidden), free(lp);
  mb_model_set_adapter(g_m, NULL);
  return 0;
}
