/* snbd-copy: how a copy reports.  The first error is kept and stops the
 * copy; progress goes to stderr, a bar on a terminal, else a line per
 * tenth. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

void copy_progress(struct copy *c, bool final)
{
  static int last = -1;
  if (!c->o.progress)
    return;
  uint64_t done = atomic_load(&c->done);
  int pct = c->total ? (int)(done * 100 / c->total) : 0;
  if (isatty(STDERR_FILENO)) {
    char bar[41];
    int fill = pct * 40 / 100;
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(40 - fill));
    bar[40] = '\0';
    if (c->total)
      fprintf(stderr, "\r[%s] %3d%%", bar, pct);
    else
      fprintf(stderr, "\r%" PRIu64 " bytes", done);
    if (final)
      fputc('\n', stderr);
  }
  else if (pct / 10 != last / 10 || (final && pct != last)) {
    fprintf(stderr, "snbd-copy: %d%%\n", pct);
    last = pct;
  }
}
