/* test_block.c: the one Mamba block (src/core/block.c) run reversed in time, as Vision Mamba's
 * backward direction will run it: block(reverse, h) == flip(block(flip(h))) bit for bit, with and
 * without a LIM gate, for B = 2 sequences; and reversed differs from forward (the flag acts). */
#include "../../src/internal.h"
#include "testmodel.h"
#include "testutil.h"
#include "tolerance.h"

enum { B = 2 };
static int L = 9; /* sequence length of the current check */

typedef struct {
  mb_block_acts a;
  mb_block_scratch s;
  float *buf[12];
} acts;

static void acts_new(acts *x, const mb_config *c, int r, int cl) {
  size_t BT = B * L, d = c->d_model, E = c->d_inner, N = c->d_state, R = c->dt_rank;
  size_t n[12] = {BT * d, BT * 2 * E, BT * E, BT * (R + 2 * N), BT * R, BT * E, BT * E, BT * E, BT * E, BT * d, E * N, BT * (size_t)r};
  for (int i = 0; i < 12; i++) x->buf[i] = calloc(n[i], sizeof(float));
  mb_block_acts a = {.a = x->buf[0], .xz = x->buf[1], .u = x->buf[2], .dbc = x->buf[3], .dl = x->buf[4],
                     .delta = x->buf[5], .y = x->buf[6], .v = x->buf[7], .post = x->buf[8], .out = x->buf[9]};
  a.dlin = a.delta;
  a.o = a.y;
  x->a = a;
  mb_block_scratch s = {x->buf[11], NULL, x->buf[10], calloc((size_t)cl * E, sizeof(float))};
  x->s = s;
}

static void acts_free(acts *x) {
  for (int i = 0; i < 12; i++) free(x->buf[i]);
  free(x->s.U);
}

static void check_reverse(mb_model *m, const char *what) {
  const mb_config *c = mb_model_config(m);
  int d = c->d_model, E = c->d_inner, cl = m->adapter && m->adapter->cfg.lim ? m->adapter->cfg.chunk_size : 1;
  acts x;
  acts_new(&x, c, m->adapter ? m->adapter->cfg.r : 0, cl);
  size_t n = (size_t)B * L * d;
  float *h = malloc(n * sizeof(float)), *h1 = malloc(n * sizeof(float)), *h2 = malloc(n * sizeof(float)), *h3 = malloc(n * sizeof(float));
  float *lim_in = calloc((size_t)B * cl * E, sizeof(float));
  fill_rand(h, n, -1, 1);
  mb_block_run rev = {B, L, NULL, lim_in, m->adapter && m->adapter->cfg.lim ? cl : 0, 1, 0, 0}, fwd = rev;
  fwd.reverse = 0;
  memcpy(h1, h, n * sizeof(float));
  block_forward(m, 0, &rev, &x.a, &x.s, h1);
  memcpy(h2, h, n * sizeof(float));
  flip_rows(h2, B, L, d, d);
  block_forward(m, 0, &fwd, &x.a, &x.s, h2);
  flip_rows(h2, B, L, d, d);
  memcpy(h3, h, n * sizeof(float));
  block_forward(m, 0, &fwd, &x.a, &x.s, h3);
  float diff = max_abs_diff(h1, h2, n), moved = max_abs_diff(h1, h3, n);
  printf("  %-52s maxdiff %g (reversed vs forward: %g)\n", what, diff, moved);
  CHECK(memcmp(h1, h2, n * sizeof(float)) == 0, "%s: reversed block != flip(block(flip(h)))", what);
  CHECK(L == 1 || moved > tol("reverse_min_change_abs"), "%s: reverse changed nothing", what);
  free(h); free(h1); free(h2); free(h3); free(lim_in);
  acts_free(&x);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("# test_block\n");
  mb_config cfg = {32, 2, 64, 8, 4, 64, 2, 1e-5f, 0, 1, 1};
  mb_model *m = NULL;
  CHECK(mb_model_new(&cfg, &m) == MB_OK && mb_model_init_random(m, 3) == MB_OK, "random model");
  const int lens[] = {9, 4, 1};
  for (int i = 0; i < 3; i++)
    for (int simd = 0; simd < 2; simd++) {
      L = lens[i];
      mb_set_simd(simd);
      char what[80];
      snprintf(what, sizeof what, "block reversed in time, L=%d (%s)", L, simd ? "simd" : "scalar");
      check_reverse(m, what);
    }
  L = 9;
  mb_adapter_config ac = {4, 8.0f, 0, (1 << MB_T_IN_PROJ) | (1 << MB_T_OUT_PROJ), 0, 1, 0, 4, 0.5f, 0.3f,
                          MB_LIM_POST_RESET, MB_LIM_MASK, 1.0f, MB_LIM_NONE};
  mb_adapter *a = new_adapter(m, &ac);
  mb_adapter_init(a, 1);
  adapter_nudge(a, 0.1f);
  mb_model_set_adapter(m, a);
  check_reverse(m, "block reversed in time, LoRA + LIM (simd)");
  mb_adapter_free(a);
  mb_model_free(m);
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
