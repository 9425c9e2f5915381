/* optim.c: the adapter's training state: gradient block (same layout as its tensors), AdamW with
 * PyTorch semantics and global-norm clipping (spec section 4), and access for save/restore.
 * Not here: schedules and accumulation (the bindings' Trainer drives those). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

mb_status mb_adapter_grad_ensure(mb_adapter *a) {
  if (a->grad) return MB_OK;
  a->grad = mb_calloc_floats(a->block_numel ? a->block_numel : 1);
  return a->grad ? MB_OK : mb_fail(MB_ERR_OOM, "out of memory for adapter gradients");
}

mb_status mb_adapter_zero_grad(mb_adapter *a) {
  mb_clear_error();
  if (!a) return mb_fail(MB_ERR_INVALID_ARG, "adapter is NULL");
  mb_status st = mb_adapter_grad_ensure(a);
  if (st) return st;
  memset(a->grad, 0, sizeof(float) * a->block_numel);
  return MB_OK;
}

float *mb_adapter_grad(mb_adapter *a, mb_target t, int layer, int which, size_t *numel) {
  float *p = mb_adapter_param(a, t, layer, which, numel);
  if (!p || mb_adapter_grad_ensure(a)) {
    if (numel) *numel = 0;
    return NULL;
  }
  return a->grad + (p - a->block);
}

float *mb_adapter_block(mb_adapter *a, int which, size_t *numel) {
  if (numel) *numel = a ? a->block_numel : 0;
  if (!a) return NULL;
  switch (which) {
    case 0: return a->block;
    case 1: return mb_adapter_grad_ensure(a) ? NULL : a->grad;
    case 2:
    case 3:
      if (!a->m1) a->m1 = mb_calloc_floats(a->block_numel ? a->block_numel : 1);
      if (!a->m2) a->m2 = mb_calloc_floats(a->block_numel ? a->block_numel : 1);
      return which == 2 ? a->m1 : a->m2;
    default: return NULL;
  }
}

double mb_adapter_grad_norm(mb_adapter *a) {
  if (!a || !a->grad) return 0.0;
  double ss = 0.0;
  for (size_t i = 0; i < a->block_numel; i++) ss += (double)a->grad[i] * a->grad[i];
  return sqrt(ss);
}

/* The AdamW update of element i, into *p, *m1, *m2 (one definition for both passes below). */
static inline void adamw_elem(const mb_adapter *a, const mb_adamw *o, size_t i, float gs, float step_size,
                              float bc2s, float *p, float *m1, float *m2) {
  float g = a->grad[i] * gs, w = a->block[i];
  w -= o->lr * o->weight_decay * w; /* decoupled weight decay */
  *m1 = o->beta1 * a->m1[i] + (1.0f - o->beta1) * g;
  *m2 = o->beta2 * a->m2[i] + (1.0f - o->beta2) * g * g;
  float denom = sqrtf(*m2) / bc2s + o->eps;
  *p = w - step_size * *m1 / denom;
}

mb_status mb_adamw_step(mb_adapter *a, const mb_adamw *o, int step, float *grad_norm) {
  mb_clear_error();
  if (!a || !o) return mb_fail(MB_ERR_INVALID_ARG, "NULL argument");
  if (a->merged) return mb_fail(MB_ERR_STATE, "unmerge the adapter before training it");
  if (step < 1) return mb_fail(MB_ERR_INVALID_ARG, "step counts from 1");
  if (!(o->lr >= 0 && isfinite(o->lr)) || !(o->beta1 >= 0 && o->beta1 < 1) ||
      !(o->beta2 >= 0 && o->beta2 < 1) || !(o->eps > 0 && isfinite(o->eps)) ||
      !(o->weight_decay >= 0 && isfinite(o->weight_decay)) || !(o->clip >= 0 && isfinite(o->clip)))
    return mb_fail(MB_ERR_INVALID_ARG, "bad AdamW settings (lr, weight_decay, clip >= 0, eps > 0, "
                                       "betas in [0, 1), all finite)");
  mb_status st = mb_adapter_grad_ensure(a);
  if (st) return st;
  size_t n = a->block_numel;
  if (!a->m1) a->m1 = mb_calloc_floats(n ? n : 1);
  if (!a->m2) a->m2 = mb_calloc_floats(n ? n : 1);
  if (!a->m1 || !a->m2) return mb_fail(MB_ERR_OOM, "out of memory for AdamW moments");
  double norm = mb_adapter_grad_norm(a);
  if (grad_norm) *grad_norm = (float)norm;
  if (!isfinite(norm)) return mb_fail(MB_ERR_NON_FINITE, "gradient is not finite (NaN or Inf); no update made");
  /* torch.nn.utils.clip_grad_norm_: scale by clip / (norm + 1e-6) when norm > clip */
  float gs = (o->clip > 0 && norm > o->clip) ? (float)(o->clip / (norm + 1e-6)) : 1.0f;
  double bc1 = 1.0 - pow(o->beta1, step), bc2 = 1.0 - pow(o->beta2, step);
  float step_size = (float)(o->lr / bc1), bc2s = (float)sqrt(bc2);
  /* pass 1 computes every new value and writes nothing: an update that would leave a NaN/Inf is
   * refused whole; pass 2 repeats the same arithmetic and writes it */
  for (size_t i = 0; i < n; i++) {
    float p, m1, m2;
    adamw_elem(a, o, i, gs, step_size, bc2s, &p, &m1, &m2);
    if (!isfinite(p) || !isfinite(m1) || !isfinite(m2))
      return mb_fail(MB_ERR_NON_FINITE, "the AdamW update would make adapter value %zu non-finite "
                                        "(lr %g, weight_decay %g): no update made", i, o->lr, o->weight_decay);
  }
  for (size_t i = 0; i < n; i++) adamw_elem(a, o, i, gs, step_size, bc2s, &a->block[i], &a->m1[i], &a->m2[i]);
  return MB_OK;
}

mb_status mb_adapter_reset_optimizer(mb_adapter *a) {
  if (!a) return mb_fail(MB_ERR_INVALID_ARG, "adapter is NULL");
  free(a->m1);
  free(a->m2);
  a->m1 = a->m2 = NULL;
  return MB_OK;
}
