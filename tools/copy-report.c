/* snbd-copy: how a copy reports.  The first error is kept and stops the
 * copy; progress goes to stderr, a bar on a terminal, else a line per
 * tenth. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "copy.h"

void copy_fail(struct copy *c, const char *fmt, ...)
{
  char *msg = NULL;
  va_list ap;
  va_start(ap, fmt);
  if (vasprintf(&msg, fmt, ap) == -1)
    msg = NULL;
  va_end(ap);
  pthread_mutex_lock(&c->lock);
  if (!c->err)
    c->err = msg ? msg : strdup("out of memory");
  else
    free(msg);
  pthread_mutex_unlock(&c->lock);
  atomic_store(&c->stop, true);
}

/* "1.5 GiB" */
static void human(double n, char *buf, size_t size)
{
  static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB",
                                       "PiB", "EiB" };
  int u = 0;
  while (n >= 1024 && u < 6) {
    n /= 1024;
    u++;
  }
  snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", n, units[u]);
}

static double now_seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* "1.2 GiB of 2.0 GiB, 310.5 MiB/s, 0:03 left": the rate is the average
 * since the copy began, the time left what is left at that rate. */
static void progress_text(struct copy *c, uint64_t done, double seconds,
                          char *buf, size_t size)
{
  char d[32], t[32], r[32], left[32] = "";
  double rate = seconds > 0 ? (double)done / seconds : 0;
  human((double)done, d, sizeof d);
  human(rate, r, sizeof r);
  if (c->total && rate > 0) {
    unsigned long s = (unsigned long)((double)(c->total - done) / rate + 0.5);
    snprintf(left, sizeof left, ", %lu:%02lu left", s / 60, s % 60);
  }
  human((double)c->total, t, sizeof t);
  snprintf(buf, size, "%s%s%s, %s/s%s", d, c->total ? " of " : "",
           c->total ? t : "", r, left);
}

void copy_progress(struct copy *c, bool final)
{
  static int last = -1;
  static double start;
  if (!c->o.progress)
    return;
  if (start == 0)
    start = now_seconds();
  uint64_t done = atomic_load(&c->done);
  int pct = c->total ? (int)(done * 100 / c->total) : 0;
  char text[160];
  progress_text(c, done, now_seconds() - start, text, sizeof text);
  if (isatty(STDERR_FILENO)) {
    char bar[41];
    int fill = pct * 40 / 100;
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(40 - fill));
    bar[40] = '\0';
    if (c->total)
      fprintf(stderr, "\r[%s] %3d%% %s  ", bar, pct, text);
    else
      fprintf(stderr, "\r%s  ", text);
    if (final)
      fputc('\n', stderr);
  }
  else if (pct / 10 != last / 10 || (final && pct != last)) {
    fprintf(stderr, "snbd-copy: %d%% (%s)\n", pct, text);
    last = pct;
  }
}
