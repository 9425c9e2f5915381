/* xent.c: the one log-softmax / cross-entropy of the core, used by scoring (log-likelihoods) and
 * by the training loss, so both compute the same numbers from the same logits. Row sums are in
 * double after subtracting the row maximum. Not here: making the logits (models/lm.c). */
#include <math.h>

#include "../internal.h"

/* lse = max + log(sum_v exp(row[v] - max)) */
double xent_lse(const float *row, int V) {
  float mx = row[0];
  for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
  double sum = 0.0;
  for (int v = 0; v < V; v++) sum += exp((double)row[v] - mx);
  return mx + log(sum);
}

/* d loss / d logits of loss = scale * (lse - row[target]): scale * (softmax - onehot) */
void xent_backward(float *dlogits, const float *row, double lse, int target, double scale, int V) {
  for (int v = 0; v < V; v++) dlogits[v] = (float)(exp((double)row[v] - lse) * scale);
  dlogits[target] -= (float)scale;
}
