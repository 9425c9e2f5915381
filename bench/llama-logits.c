/* llama-logits.c: the logits llama.cpp computes for a few token ids, for `node bench/llama-cpp.mjs
 * --check` (which compiles this file against the llama.cpp build it is given and compares the
 * output with memba's own forward pass on the same weights). Our code, linked to libllama; no
 * llama.cpp source is copied here.
 *
 *   llama-logits MODEL.gguf OUT.bin ID...
 *
 * On one thread, writes two float32 vectors of n_vocab values (little-endian, as the machine
 * stores them) to OUT.bin: the last-position logits of the ids decoded as one batch (prefill), then
 * the logits of the last id decoded alone after the others as one batch, from a cleared state
 * (the recurrent step). Exit status 0 on success, 1 with a message on stderr otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static int decode(struct llama_context *ctx, llama_token *ids, int n) {
  int rc = llama_decode(ctx, llama_batch_get_one(ids, n));
  if (rc != 0) fprintf(stderr, "llama-logits: llama_decode of %d tokens failed (%d)\n", n, rc);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: llama-logits MODEL.gguf OUT.bin ID...\n");
    return 1;
  }
  int n = argc - 3;
  llama_token *ids = malloc(sizeof(llama_token) * (size_t)n);
  if (!ids) return 1;
  for (int i = 0; i < n; i++) ids[i] = (llama_token)atoi(argv[3 + i]);

  llama_backend_init();
  struct llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = 0;
  struct llama_model *model = llama_model_load_from_file(argv[1], mp);
  if (!model) {
    fprintf(stderr, "llama-logits: cannot load %s\n", argv[1]);
    return 1;
  }
  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 512;
  cp.n_batch = 512;
  cp.n_ubatch = 512;
  cp.n_threads = 1;
  cp.n_threads_batch = 1;
  struct llama_context *ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    fprintf(stderr, "llama-logits: cannot create a context\n");
    return 1;
  }
  int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  FILE *out = fopen(argv[2], "wb");
  if (!out) {
    fprintf(stderr, "llama-logits: cannot write %s\n", argv[2]);
    return 1;
  }
  int rc = decode(ctx, ids, n);
  if (!rc) rc = fwrite(llama_get_logits_ith(ctx, -1), sizeof(float), (size_t)n_vocab, out) != (size_t)n_vocab;
  if (!rc) {
    llama_kv_cache_clear(ctx); /* the recurrent state, for Mamba */
    rc = (n > 1 && decode(ctx, ids, n - 1)) || decode(ctx, ids + n - 1, 1);
  }
  if (!rc) rc = fwrite(llama_get_logits_ith(ctx, -1), sizeof(float), (size_t)n_vocab, out) != (size_t)n_vocab;
  if (fclose(out) != 0) rc = 1;
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  free(ids);
  fprintf(stderr, "llama-logits: n_vocab %d, %d ids, %s\n", n_vocab, n, rc ? "failed" : "ok");
  return rc ? 1 : 0;
}
