/* test_backward.c: every op's backward against central finite differences at tiny sizes:
 * loss = sum(r * op(x)) with random r, the analytic gradient from the op's backward, the numeric
 * one from (loss(x + eps) - loss(x - eps)) / 2eps, for every input the op differentiates. The LIM
 * is checked away from its threshold (mask = the exact derivative there) and the triangle
 * surrogate against its formula; plus a whole-model check of the training loss, over float32,
 * f16 and q8 bases. */
#include "../../src/internal.h"
#include "testmodel.h"
#include "testutil.h"
#include "tolerance.h"

/* the op under test: fills g_out (n_out floats) from the globals; loss = sum r * out */
static void (*g_fwd)(void);
static float *g_out, *g_r;
static size_t g_nout;

static double loss_now(void) {
  g_fwd();
  double s = 0;
  for (size_t i = 0; i < g_nout; i++) s += (double)g_r[i] * g_out[i];
  return s;
}

static void fd_check(const char *name, float *x, size_t n, const float *grad) {
  const double eps = 1e-2;
  float worst = 0, gmax = max_abs(grad, n);
  for (size_t i = 0; i < n; i++) {
    float keep = x[i];
    x[i] = keep + (float)eps;
    double lp = loss_now();
    x[i] = keep - (float)eps;
    double lm = loss_now();
    x[i] = keep;
    float d = fabsf((float)((lp - lm) / (2 * eps)) - grad[i]);
    worst = d > worst ? d : worst;
  }
  float floor_ = (float)tol("fd_floor_abs"), lim = (float)(tol("fd_rel") * (gmax > floor_ ? gmax : floor_));
  printf("  %-44s maxdiff %.3g (limit %.3g, max|grad| %.3g)\n", name, worst, lim, gmax);
  CHECK(worst <= lim && gmax > 0, "%s: finite differences differ by %g", name, worst);
}

static float *rnd(size_t n, float lo, float hi) {
  float *p = malloc(n * sizeof(float));
  fill_rand(p, n, lo, hi);
  return p;
}
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

/* ---- rmsnorm ---- */
static float *rx, *rw;
static void f_rms(void) { rmsnorm_forward_scalar(g_out, rx, rw, 3, 7, 1e-5f); }
static void t_rmsnorm(void) {
  rx = rnd(21, -2, 2); rw = rnd(7, 0.5f, 1.5f); g_out = zeros(21); g_r = rnd(21, -1, 1); g_nout = 21; g_fwd = f_rms;
  float *dx = zeros(21);
  rmsnorm_backward(dx, g_r, rx, rw, 3, 7, 1e-5f);
  fd_check("rmsnorm dx", rx, 21, dx);
  free(rx); free(rw); free(g_out); free(g_r); free(dx);
}

/* ---- linear (frozen) + LoRA ---- */
static float *lx, *lW, *lA, *lB, *ltmp;
static void f_lin(void) {
  matmul_forward_scalar(g_out, lx, lW, NULL, 4, 6, 5);
  lora_forward(g_out, 5, ltmp, lx, lA, lB, 1.5f, 4, 6, 5, 3);
}
static void t_linear_lora(void) {
  lx = rnd(24, -1, 1); lW = rnd(30, -1, 1); lA = rnd(18, -1, 1); lB = rnd(15, -1, 1); ltmp = zeros(12);
  g_out = zeros(20); g_r = rnd(20, -1, 1); g_nout = 20; g_fwd = f_lin;
  float *dx = zeros(24), *dA = zeros(18), *dB = zeros(15), *th = zeros(12), *tg = zeros(12);
  matmul_backward_input(dx, g_r, lW, 4, 6, 5);
  lora_backward(dA, dB, dx, th, tg, g_r, 5, lx, lA, lB, 1.5f, 4, 6, 5, 3);
  fd_check("linear + LoRA dx", lx, 24, dx);
  fd_check("LoRA dA", lA, 18, dA);
  fd_check("LoRA dB", lB, 15, dB);
  free(lx); free(lW); free(lA); free(lB); free(ltmp); free(g_out); free(g_r);
  free(dx); free(dA); free(dB); free(th); free(tg);
}

/* ---- conv + SiLU ---- */
static float *cx, *cw, *cb;
static void f_conv(void) { conv1d_silu_forward_scalar(g_out, NULL, NULL, cx, 10, cw, cb, 6, 5, 4); }
static void t_conv(void) {
  cx = rnd(60, -2, 2); cw = rnd(20, -1, 1); cb = rnd(5, -1, 1);
  g_out = zeros(30); g_r = rnd(30, -1, 1); g_nout = 30; g_fwd = f_conv;
  float *xc = zeros(30), *dx = zeros(60), *u = zeros(30);
  conv1d_silu_forward_scalar(u, xc, NULL, cx, 10, cw, cb, 6, 5, 4); /* the kept pre-activation */
  conv1d_silu_backward(dx, 10, g_r, xc, cw, 6, 5, 4);
  fd_check("conv1d + SiLU dx", cx, 60, dx);
  free(cx); free(cw); free(cb); free(g_out); free(g_r); free(xc); free(dx); free(u);
}

/* ---- selective scan ---- */
enum { SL = 5, SE = 3, SN = 4, SBC = 2 * SN + 1 };
static float *su, *sdelta, *sbc, *sA, *sD, *ss0, *sst, *ss;
static void f_scan(void) {
  memcpy(ss, ss0, SE * SN * sizeof(float));
  selective_scan_forward_scalar(g_out, ss, sst, su, sdelta, sbc, SBC, sA, sD, SL, SE, SN);
}
static void t_scan(void) {
  su = rnd(SL * SE, -1, 1); sdelta = rnd(SL * SE, 0.05f, 1.0f); sbc = rnd(SL * SBC, -1, 1);
  sA = zeros(SE * SN); sD = rnd(SE, 0, 2); ss0 = zeros(SE * SN); sst = zeros(SL * SE * SN); ss = zeros(SE * SN);
  for (int i = 0; i < SE * SN; i++) sA[i] = -expf(frand(-1, 1));
  g_out = zeros(SL * SE); g_r = rnd(SL * SE, -1, 1); g_nout = SL * SE; g_fwd = f_scan;
  f_scan();
  float *du = zeros(SL * SE), *dd = zeros(SL * SE), *dbc = zeros(SL * SBC), *ds = zeros(SE * SN);
  selective_scan_backward(du, dd, dbc, ds, NULL, g_r, sst, ss0, su, sdelta, sbc, SBC, sA, sD, SL, SE, SN);
  fd_check("scan du", su, SL * SE, du);
  fd_check("scan ddelta", sdelta, SL * SE, dd);
  fd_check("scan dB, dC", sbc, SL * SBC, dbc);
  free(su); free(sdelta); free(sbc); free(sA); free(sD); free(ss0); free(sst); free(ss);
  free(g_out); free(g_r); free(du); free(dd); free(dbc); free(ds);
}

/* ---- dt_proj + softplus ---- */
static float *dbcin, *dW, *db;
static void f_dt(void) {
  dt_forward(g_out, dbcin, 6, dW, db, 4, 5, 2);
  softplus_forward(g_out, g_out, 20);
}
static void t_dt(void) {
  dbcin = rnd(24, -2, 2); dW = rnd(10, -2, 2); db = rnd(5, -3, 3);
  g_out = zeros(20); g_r = rnd(20, -1, 1); g_nout = 20; g_fwd = f_dt;
  float *lin = zeros(20), *dlin = zeros(20), *dbc = zeros(24);
  dt_forward(lin, dbcin, 6, dW, db, 4, 5, 2);
  softplus_backward(dlin, g_r, lin, 20);
  dt_backward(dbc, 6, dlin, dW, 4, 5, 2);
  fd_check("dt_proj + softplus d(dl)", dbcin, 24, dbc);
  free(dbcin); free(dW); free(db); free(g_out); free(g_r); free(lin); free(dlin); free(dbc);
}

/* ---- gate ---- */
static float *gy, *gg;
static void f_gate(void) {
  gate_forward_scalar(g_out, gy, gg, 4, 3, 4);
}
static void t_gate(void) {
  gy = rnd(12, -2, 2); gg = rnd(12, -4, 4);
  g_out = zeros(12); g_r = rnd(12, -1, 1); g_nout = 12; g_fwd = f_gate;
  float *dy = zeros(12), *dg = zeros(12);
  gate_backward(dy, dg, g_r, gy, gg, 4, 3, 4);
  fd_check("gate dy", gy, 12, dy);
  fd_check("gate dg", gg, 12, dg);
  free(gy); free(gg); free(g_out); free(g_r); free(dy); free(dg);
}

/* ---- LIM (mask: exact away from the threshold) ---- */
enum { ML = 7, ME = 3, MC = 3 };
static float *mz, *mu0, *mU, *mpost, *ma, *mr2;
static int mpre;
static void f_lim(void) {
  memcpy(mU, mu0, MC * ME * sizeof(float));
  lim_forward(g_out, mpost, ma, mU, mz, ME, NULL, ML, ME, MC, 0, 0.6f, 1.0f, mpre);
  /* the loss also reads the post values (as a next layer's transfer would) */
  for (int i = 0; i < ML * ME; i++) g_out[ML * ME + i] = mpost[i];
}
static void t_lim(void) {
  for (mpre = 0; mpre < 2; mpre++) {
    mz = rnd(ML * ME, -1.5f, 1.5f); mu0 = rnd(MC * ME, -1, 1); mU = zeros(MC * ME);
    mpost = zeros(ML * ME); ma = zeros(ML * ME);
    g_out = zeros(2 * ML * ME); g_r = rnd(2 * ML * ME, -1, 1); g_nout = 2 * ML * ME; g_fwd = f_lim;
    f_lim();
    /* keep every A at least 0.05 away from v_th so +-eps never flips a spike */
    for (int it = 0; it < 50; it++) {
      int moved = 0;
      for (int i = 0; i < ML * ME; i++)
        if (fabsf(ma[i] - 1.0f) < 0.05f) { mz[i] += 0.2f; moved = 1; }
      if (!moved) break;
      f_lim();
    }
    float *dz = zeros(ML * ME), *du0 = zeros(MC * ME), *dU = zeros(MC * ME);
    mr2 = g_r + ML * ME; /* d loss / d post */
    lim_backward(dz, ME, du0, dU, g_r, mr2, ma, ML, ME, MC, 0.6f, 1.0f, mpre, 0, 1.0f);
    fd_check(mpre ? "LIM (pre_reset, mask) dz" : "LIM (post_reset, mask) dz", mz, ML * ME, dz);
    fd_check(mpre ? "LIM (pre_reset, mask) dU0" : "LIM (post_reset, mask) dU0", mu0, MC * ME, du0);
    free(mz); free(mu0); free(mU); free(mpost); free(ma); free(g_out); free(g_r); free(dz); free(du0); free(dU);
  }
  /* triangle surrogate on one neuron, one step: dz = dv * ((1 - S) - A * max(0, w - |A - v_th|) / w^2) */
  const float As[] = {0.4f, 0.9f, 1.2f, 2.5f};
  for (int i = 0; i < 4; i++) {
    float a = As[i], dz = 0, du0 = 0, dU, dv = 1.0f, want;
    lim_backward(&dz, 1, &du0, &dU, &dv, NULL, &a, 1, 1, 1, 0.5f, 1.0f, 0, 1, 1.0f);
    float s = a > 1.0f ? 1.0f : 0.0f, m = 1.0f - fabsf(a - 1.0f);
    want = (1.0f - s) - (m > 0 ? a * m : 0.0f);
    CHECK(fabsf(dz - want) < tol("surrogate_abs"), "triangle surrogate at A=%g: %g vs %g", a, dz, want);
    CHECK(fabsf(du0 - 0.5f * want) < tol("surrogate_abs"), "triangle dU0 at A=%g", a);
  }
  printf("  %-44s exact at 4 points\n", "LIM triangle surrogate vs its formula");
}

/* ---- the whole training loss vs finite differences on LoRA tensors ---- */
static mb_model *wm;
static mb_adapter *wa;
static const int32_t WIDS[12] = {23, 32, 61, 28, 57, 3, 37, 26, 51, 40, 39, 47};
static const int32_t WLAB[12] = {32, 61, 28, 57, 3, 37, 26, 51, 40, 39, 47, -100};
static float wloss[1];
static void f_model(void) { mb_train_backward(wm, WIDS, WLAB, 1, 12, 0, wloss); }
/* model: the fixture (float32), or a random model of the same shape holding its large matrices
 * in f16 or q8 (QLoRA-style: the loss through the frozen dequantised base; many tokens, so the
 * forward decodes the rows to float32 and the loss is smooth in the adapter) */
static void t_model(mb_dtype dt) {
  mb_config cfg = {32, 2, 64, 8, 4, 64, 2, 1e-5f, 0, 1, 1};
  const char *name = dt == MB_DT_F32 ? "f32" : dt == MB_DT_F16 ? "f16" : "q8";
  if (dt == MB_DT_F32) {
    wm = load_model("tests/fixtures/mamba-tiny/model.safetensors", &cfg);
  } else {
    wm = NULL;
    CHECK(mb_model_new_typed(&cfg, dt, &wm) == MB_OK && mb_model_init_random(wm, 7) == MB_OK, "typed model: %s", mb_last_error());
  }
  mb_adapter_config ac = {2, 4.0f, 0, (1 << MB_T_IN_PROJ_Z) | (1 << MB_T_X_PROJ) | (1 << MB_T_DT_PROJ) | (1 << MB_T_OUT_PROJ), 0,
                          1, 0, 4, 0.7f, 5.0f, MB_LIM_POST_RESET, MB_LIM_MASK, 1.0f, MB_LIM_FIRST};
  wa = new_adapter(wm, &ac);
  mb_adapter_init(wa, 5);
  size_t n;
  for (int t = 0; t < MB_T_COUNT; t++)
    for (int l = 0; l < 2; l++) {
      float *B = mb_adapter_param(wa, (mb_target)t, l, 1, &n);
      if (B) fill_rand(B, n, -0.3f, 0.3f);
    }
  mb_model_set_adapter(wm, wa);
  mb_adapter_zero_grad(wa);
  f_model();
  const struct { mb_target t; int layer, which; const char *what; } checks[] = {
      {MB_T_IN_PROJ_Z, 0, 1, "in_proj.z lora_B (layer 0)"},
      {MB_T_DT_PROJ, 1, 0, "dt_proj lora_A (layer 1)"},
      {MB_T_OUT_PROJ, 1, 0, "out_proj lora_A (layer 1)"},
      {MB_T_X_PROJ, 0, 1, "x_proj lora_B (layer 0)"},
  };
  float *grads[4];
  for (int k = 0; k < 4; k++) {
    float *g = mb_adapter_grad(wa, checks[k].t, checks[k].layer, checks[k].which, &n);
    grads[k] = malloc(n * sizeof(float));
    memcpy(grads[k], g, n * sizeof(float));
  }
  g_out = wloss; g_r = malloc(sizeof(float)); g_r[0] = 1.0f; g_nout = 1; g_fwd = f_model;
  /* v_th 5 keeps every spike off, so the loss is smooth (the reset's mask derivative is exact) */
  for (int k = 0; k < 4; k++) {
    if (dt != MB_DT_F32 && checks[k].t == MB_T_DT_PROJ) { /* dt_proj stays float32; its gradient is ~1e-6 here */
      free(grads[k]);
      continue;
    }
    char what[96];
    snprintf(what, sizeof what, "%s base: loss d %s", name, checks[k].what);
    float *x = mb_adapter_param(wa, checks[k].t, checks[k].layer, checks[k].which, &n);
    fd_check(what, x, n, grads[k]);
    free(grads[k]);
  }
  free(g_r);
  mb_adapter_free(wa);
  mb_model_free(wm);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("# test_backward (finite differences)\n");
  mb_set_simd(0);
  t_rmsnorm();
  t_linear_lora();
  t_conv();
  t_scan();
  t_dt();
  t_gate();
  t_lim();
  t_model(MB_DT_F32);
  t_model(MB_DT_F16);
  t_model(MB_DT_Q8);
  printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}
