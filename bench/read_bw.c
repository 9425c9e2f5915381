/* read_bw.c: the streaming-read bandwidth of this machine with 1..N threads, the bound on decode
 * (each decode step reads every weight once): ./build/read_bw THREADS [MB] prints GB/s as JSON.
 * Each thread sums its own contiguous slice of a buffer (4 float32 vectors, as the matvec does);
 * best of 5 passes. Used by bench/bench-threads.mjs. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef float f32x4 __attribute__((vector_size(16)));

typedef struct {
  const float *p;
  size_t n;
  float sum;
} slice;

static void *read_slice(void *arg) {
  slice *s = arg;
  f32x4 a = {0}, b = {0}, c = {0}, d = {0};
  for (size_t i = 0; i + 16 <= s->n; i += 16) {
    f32x4 x0, x1, x2, x3;
    memcpy(&x0, s->p + i, 16), memcpy(&x1, s->p + i + 4, 16), memcpy(&x2, s->p + i + 8, 16), memcpy(&x3, s->p + i + 12, 16);
    a += x0, b += x1, c += x2, d += x3;
  }
  f32x4 t = (a + b) + (c + d);
  s->sum = t[0] + t[1] + t[2] + t[3];
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 1;
  size_t mb = argc > 2 ? (size_t)atoi(argv[2]) : 512;
  if (threads < 1 || threads > 64 || mb < 16) {
    fprintf(stderr, "usage: read_bw THREADS [MB >= 16]\n");
    return 2;
  }
  size_t n = mb << 18; /* floats */
  float *buf = malloc(n * sizeof(float));
  if (!buf) return 1;
  for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 1023);
  pthread_t th[64];
  slice s[64];
  double best = 1e30, total = 0;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now();
    for (int t = 0; t < threads; t++) {
      size_t a = n / threads * t, b = t == threads - 1 ? n : n / threads * (t + 1);
      s[t] = (slice){buf + a, b - a, 0};
      pthread_create(&th[t], NULL, read_slice, &s[t]);
    }
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL), total += s[t].sum;
    double dt = now() - t0;
    if (dt < best) best = dt;
  }
  printf("{\"threads\": %d, \"read_gb_s\": %.2f, \"checksum\": %.0f}\n", threads, n * sizeof(float) / best / 1e9, total);
  free(buf);
  return 0;
}
