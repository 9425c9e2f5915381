/* bench_native.c: the native side of `./build.sh bench`: builds a model of the given shape with
 * deterministic random weights (mb_model_init_random), then times prefill (one sequence of L
 * tokens, logits for the last position only) and recurrent decode steps (greedy feedback),
 * printing one JSON line (an optional last argument picks the weight dtype: 0 f32, 1 f16, 2 q8);
 * `train` times training steps instead. bench/bench.mjs runs the same
 * measurements on the WASM build. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "../src/memba.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* training: steps of B=1, L tokens with LoRA r=8 on in_proj + out_proj and a LIM gate */
static int bench_train(mb_model *m, int V, int L, int reps) {
  mb_adapter_config ac = {8, 16.0f, 0, (1 << MB_T_IN_PROJ) | (1 << MB_T_OUT_PROJ), 0, 1, 0, 16, 0.5f, 1.0f,
                          MB_LIM_POST_RESET, MB_LIM_MASK, 1.0f, MB_LIM_FIRST};
  mb_adapter *a = NULL;
  if (mb_adapter_new(m, &ac, &a) != MB_OK || mb_adapter_init(a, 1) != MB_OK) return 1;
  mb_model_set_adapter(m, a);
  mb_train_set_budget(m, 256.0 * 1048576.0);
  int32_t *ids = malloc(sizeof(int32_t) * L), *labels = malloc(sizeof(int32_t) * L);
  for (int i = 0; i < L; i++) ids[i] = (i * 7919) % V;
  for (int i = 0; i < L; i++) labels[i] = i + 1 < L ? ids[i + 1] : -100;
  mb_adamw opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f};
  double best = 1e30;
  float loss, gn;
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    mb_adapter_zero_grad(a);
    if (mb_train_backward(m, ids, labels, 1, L, (uint32_t)r, &loss) != MB_OK) return 1;
    if (mb_adamw_step(a, &opt, r + 1, &gn) != MB_OK) return 1;
    double t = now() - t0;
    best = t < best ? t : best;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("{\"train_tok_s\": %.2f, \"peak_rss_mb\": %.1f, \"stored_layers\": %d}\n", L / best,
         ru.ru_maxrss / 1024.0, mb_train_stored_layers(m));
  free(ids);
  free(labels);
  mb_adapter_free(a);
  return 0;
}

int main(int argc, char **argv) {
  const char *threads = getenv("MEMBA_THREADS"); /* the thread pool's size (default 1) */
  if (threads && mb_set_threads(atoi(threads)) != MB_OK) {
    fprintf(stderr, "MEMBA_THREADS=%s: %s\n", threads, mb_last_error());
    return 2;
  }
  if (argc == 7 && !strcmp(argv[1], "train")) {
    int d = atoi(argv[2]), nl = atoi(argv[3]), V = atoi(argv[4]);
    mb_config c = {d, nl, V, 16, 4, 2 * d, (d + 15) / 16, 1e-5f, 0, 1, 1};
    mb_model *m = NULL;
    if (mb_model_new(&c, &m) != MB_OK || mb_model_init_random(m, 1234) != MB_OK) return 1;
    int rc = bench_train(m, V, atoi(argv[5]), atoi(argv[6]));
    mb_model_free(m);
    return rc;
  }
  if (argc != 7 && argc != 8) {
    fprintf(stderr, "usage: bench_native d_model n_layer vocab L decode_tokens reps [dtype 0|1|2: f32 f16 q8]\n"
                    "       bench_native train d_model n_layer vocab L reps\n");
    return 2;
  }
  int d = atoi(argv[1]), nl = atoi(argv[2]), V = atoi(argv[3]), L = atoi(argv[4]);
  int steps = atoi(argv[5]), reps = atoi(argv[6]);
  mb_config c = {d, nl, V, 16, 4, 2 * d, (d + 15) / 16, 1e-5f, 0, 1, 1};
  mb_model *m = NULL;
  mb_dtype dt = argc == 8 ? (mb_dtype)atoi(argv[7]) : MB_DT_F32;
  if (mb_model_new_typed(&c, dt, &m) != MB_OK || mb_model_init_random(m, 1234) != MB_OK) {
    fprintf(stderr, "%s\n", mb_last_error());
    return 1;
  }
  int32_t *ids = malloc(sizeof(int32_t) * L);
  for (int i = 0; i < L; i++) ids[i] = (i * 7919) % V;
  float *logits = malloc(sizeof(float) * V);
  mb_state *s = NULL;
  if (mb_state_new(m, 1, &s) != MB_OK) return 1;
  double best_prefill = 1e30, best_decode = 1e30;
  for (int r = 0; r < reps; r++) {
    mb_state_reset(s);
    double t0 = now();
    if (mb_forward(m, ids, 1, L, MB_LOGITS_LAST, logits, NULL, s) != MB_OK) return 1;
    double t1 = now();
    int32_t tok = 0;
    for (int i = 0; i < steps; i++) {
      int best = 0;
      for (int v = 1; v < V; v++) best = logits[v] > logits[best] ? v : best;
      tok = best;
      if (mb_step(m, s, &tok, logits) != MB_OK) return 1;
    }
    double t2 = now();
    if (t1 - t0 < best_prefill) best_prefill = t1 - t0;
    if (t2 - t1 < best_decode) best_decode = t2 - t1;
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("{\"prefill_tok_s\": %.2f, \"decode_tok_s\": %.2f, \"weight_mb\": %.1f, \"peak_rss_mb\": %.1f}\n",
         L / best_prefill, steps / best_decode, mb_model_weight_bytes(m) / 1048576.0,
         ru.ru_maxrss / 1024.0);
  mb_state_free(s);
  mb_model_free(m);
  free(ids);
  free(logits);
  return 0;
}
