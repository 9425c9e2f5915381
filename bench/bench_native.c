/* bench_native.c: the native side of `./build.sh bench`: builds a model of the given shape with
 * deterministic random weights (mb_model_init_random), then times prefill (one sequence of L
 * tokens, logits for the last position only) and recurrent decode steps (greedy feedback),
 * printing one JSON line. bench/bench.mjs runs the same measurement on the WASM build. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "../src/memba.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: bench_native d_model n_layer vocab L decode_tokens reps\n");
    return 2;
  }
  int d = atoi(argv[1]), nl = atoi(argv[2]), V = atoi(argv[3]), L = atoi(argv[4]);
  int steps = atoi(argv[5]), reps = atoi(argv[6]);
  mb_config c = {d, nl, V, 16, 4, 2 * d, (d + 15) / 16, 1e-5f, 0, 1, 1};
  mb_model *m = mb_model_new(&c);
  if (!m || mb_model_init_random(m, 1234) != MB_OK) {
    fprintf(stderr, "%s\n", mb_last_error());
    return 1;
  }
  int32_t *ids = malloc(sizeof(int32_t) * L);
  for (int i = 0; i < L; i++) ids[i] = (i * 7919) % V;
  float *logits = malloc(sizeof(float) * V);
  mb_state *s = mb_state_new(m, 1);
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
