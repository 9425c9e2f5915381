/* pool.c: a persistent pool of worker threads and mb_parallel_for, which splits an index range
 * [0, n) into contiguous chunks, runs chunk 0 on the calling thread and the others on the pool,
 * and returns when all are done. Threads are started once (mb_set_threads), never per call; an
 * idle worker spins briefly on a generation counter, then sleeps on a condition variable.
 * Determinism: a chunk boundary is a multiple of the caller's `align`, and callers only split
 * loops whose iterations are independent (output rows, channels, tokens), so every value is
 * computed by the same instructions whatever the thread count.
 * Builds without pthreads (the single-threaded wasm) run every range inline.
 * Not here: what is split (the ops), the choice of a thread count (the bindings). One thread
 * calls into the core at a time: the pool serves that one caller. */
#include <stdint.h>

#include "../internal.h"

#if MB_HAVE_THREADS
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#ifdef __EMSCRIPTEN__
#include <emscripten/threading.h>
#endif
#endif

static int g_threads = 1; /* workers + the caller */
uint64_t mb_par_min_work = 32768; /* below this much work a chunk is not worth a thread's wake-up */

int mb_get_threads(void) { return g_threads; }

#if !MB_HAVE_THREADS

mb_status mb_set_threads(int n) {
  if (n < 1 || n > MB_MAX_THREADS) return mb_fail(MB_ERR_INVALID_ARG, "threads must be 1..%d (got %d)", MB_MAX_THREADS, n);
  if (n > 1) return mb_fail(MB_ERR_INVALID_ARG, "this build has no threads (the threaded build runs %d)", n);
  mb_clear_error();
  return MB_OK;
}

void mb_parallel_for(int n, int align, uint64_t work, mb_range_fn fn, void *ctx) {
  (void)align, (void)work;
  if (n > 0) fn(ctx, 0, n);
}

int mb_pool_selftest(int mode) { return mode == 0 || mode == 1 ? 0 : -1; }

#else

/* chunks for a range: at most one per thread, one per `align` units, one per mb_par_min_work */
static int chunk_count(int n, int align, uint64_t work) {
  if (g_threads <= 1 || n <= 0) return 1;
  int units = (n + align - 1) / align;
  uint64_t by_work = work / mb_par_min_work;
  int k = g_threads;
  if (units < k) k = units;
  if (by_work < (uint64_t)k) k = by_work < 1 ? 1 : (int)by_work;
  return k;
}

/* [*i0, *i1) of chunk i of k over [0, n), boundaries at multiples of align */
static void chunk_bounds(int n, int align, int k, int i, int *i0, int *i1) {
  int units = (n + align - 1) / align;
  int64_t u0 = (int64_t)units * i / k, u1 = (int64_t)units * (i + 1) / k;
  *i0 = (int)(u0 * align < n ? u0 * align : n);
  *i1 = (int)(u1 * align < n ? u1 * align : n);
}

typedef struct {
  mb_range_fn fn;
  void *ctx;
  int n, align, k;
} pool_job;

static pthread_t g_th[MB_MAX_THREADS];
static int g_workers; /* started: g_threads - 1 */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static atomic_uint g_gen;     /* bumped once per job (and to stop the workers) */
static atomic_int g_pending;  /* workers that have not finished the current job */
static atomic_int g_sleeping; /* workers asleep (or about to be) on g_cv */
static pool_job g_job;        /* written before g_gen is bumped, read after it changes */
static int g_stop;
static unsigned g_start_gen; /* g_gen when the workers were started */
static _Thread_local int tl_in_pool; /* a range inside a range runs inline */

/* ~10-50 us of polling before sleeping: enough to bridge the serial work between two ops */
#define SPIN_ROUNDS 20000

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

static void *worker_main(void *arg) {
  int id = (int)(intptr_t)arg;
  tl_in_pool = 1;
  unsigned seen = g_start_gen; /* not g_gen now: a job may have been published before this ran */
  for (;;) {
    unsigned g;
    int spins = 0;
    while ((g = atomic_load_explicit(&g_gen, memory_order_acquire)) == seen && ++spins < SPIN_ROUNDS) cpu_relax();
    if (g == seen) {
      pthread_mutex_lock(&g_mu);
      atomic_fetch_add(&g_sleeping, 1);
      while ((g = atomic_load(&g_gen)) == seen) pthread_cond_wait(&g_cv, &g_mu);
      atomic_fetch_sub(&g_sleeping, 1);
      pthread_mutex_unlock(&g_mu);
    }
    seen = g;
    if (g_stop) return NULL;
    pool_job j = g_job;
    if (id < j.k) {
      int i0, i1;
      chunk_bounds(j.n, j.align, j.k, id, &i0, &i1);
      if (i1 > i0) j.fn(j.ctx, i0, i1);
    }
    atomic_fetch_sub_explicit(&g_pending, 1, memory_order_release);
  }
}

static void publish(void) {
  atomic_fetch_add(&g_gen, 1); /* seq_cst: a worker that counts itself asleep after this sees it */
  if (atomic_load(&g_sleeping) > 0) {
    pthread_mutex_lock(&g_mu);
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
  }
}

static void stop_workers(void) {
  if (g_workers == 0) return;
  g_stop = 1;
  publish();
  for (int i = 0; i < g_workers; i++) pthread_join(g_th[i], NULL);
  g_stop = 0;
  g_workers = 0;
  g_threads = 1;
}

mb_status mb_set_threads(int n) {
  if (n < 1 || n > MB_MAX_THREADS) return mb_fail(MB_ERR_INVALID_ARG, "threads must be 1..%d (got %d)", MB_MAX_THREADS, n);
  if (tl_in_pool) return mb_fail(MB_ERR_INVALID_ARG, "mb_set_threads inside a parallel range");
  mb_clear_error();
  if (n == g_threads) return MB_OK;
  stop_workers();
  g_start_gen = atomic_load(&g_gen);
  for (int i = 1; i < n; i++) {
    int rc = pthread_create(&g_th[g_workers], NULL, worker_main, (void *)(intptr_t)i);
    if (rc != 0) {
      stop_workers();
      return mb_fail(MB_ERR_OOM, "could not start thread %d of %d (error %d): running 1 thread", i + 1, n, rc);
    }
    g_workers++;
  }
  g_threads = n;
  return MB_OK;
}

/* Until every worker has finished the job. In wasm the wait also looks, every few thousand polls,
 * at whether a worker thread crashed (a trap): then the runtime unwinds this call to JS, which
 * turns it into an error (bindings/abi.js) instead of waiting for ever. */
static void wait_pending(void) {
  unsigned polls = 0;
  int v;
  while ((v = atomic_load_explicit(&g_pending, memory_order_acquire)) > 0) {
#ifdef __EMSCRIPTEN__
    if ((++polls & 4095) == 0) emscripten_futex_wait((void *)&g_pending, (uint32_t)v, 0.0);
#else
    (void)polls;
#endif
    cpu_relax();
  }
}

void mb_parallel_for(int n, int align, uint64_t work, mb_range_fn fn, void *ctx) {
  if (n <= 0) return;
  if (align < 1) align = 1;
  int k = tl_in_pool ? 1 : chunk_count(n, align, work);
  if (k <= 1) {
    fn(ctx, 0, n);
    return;
  }
  g_job = (pool_job){fn, ctx, n, align, k};
  atomic_store(&g_pending, g_workers);
  tl_in_pool = 1;
  publish();
  int i0, i1;
  chunk_bounds(n, align, k, 0, &i0, &i1);
  fn(ctx, i0, i1);
  wait_pending();
  tl_in_pool = 0;
}

/* ---- test hook (memba_backend.h) ---- */
static void selftest_range(void *ctx, int i0, int i1) {
  int mode = *(const int *)ctx;
  if (mode == 1 && i0 > 0) __builtin_trap(); /* a worker's chunk fails */
  (void)i1;
}

int mb_pool_selftest(int mode) {
  if (mode != 0 && mode != 1) return -1;
  if (g_threads < 2) return 0;
  mb_parallel_for(g_threads, 1, (uint64_t)g_threads * mb_par_min_work, selftest_range, &mode);
  return g_threads;
}

#endif
