/* tolerance.h: reads a number from tests/tolerances.json, the one tolerance table that the JS
 * and C tests share. Test-only. */
#ifndef MEMBA_TOLERANCE_H
#define MEMBA_TOLERANCE_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline double tol(const char *name) {
  static char buf[4096];
  static int loaded = 0;
  if (!loaded) {
    FILE *f = fopen("tests/tolerances.json", "rb");
    if (!f) { fprintf(stderr, "cannot open tests/tolerances.json (run from the repo root)\n"); exit(2); }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    loaded = 1;
  }
  char key[128];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *p = strstr(buf, key);
  if (!p) { fprintf(stderr, "tolerance %s missing\n", name); exit(2); }
  return strtod(p + strlen(key), NULL);
}
#endif
