/* libsnbd, bottom layer: what a structured READ reply has covered so far,
 * as a sorted list of disjoint intervals, merged when adjacent.  The
 * reader (reply.c) adds every data or hole chunk to it; a chunk that
 * overlaps one seen before is a protocol violation (doc/proto.md
 * "Structured reply chunk message": content chunks MUST NOT overlap). */
#include <string.h>

#include "internal.h"

/* A READ reply may be split, but not into more disjoint pieces than this
 * at once (a legitimate server sends them in order, and they merge). */
#define MAX_COVER_PIECES 4096

/* Index of the first piece with start >= start. */
static size_t cover_find(const struct cover *c, uint64_t start)
{
  size_t lo = 0, hi = c->len;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (c->ptr[mid].start < start)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

int cover_add(struct cover *c, uint64_t start, uint64_t end)
{
  struct cover_piece *v = c->ptr;
  size_t i = cover_find(c, start);
  if ((i > 0 && v[i - 1].end > start) || (i < c->len && v[i].start < end))
    return -1;
  bool join_prev = i > 0 && v[i - 1].end == start;
  bool join_next = i < c->len && v[i].start == end;
  if (join_prev && join_next) {
    v[i - 1].end = v[i].end;
    memmove(&v[i], &v[i + 1], (c->len - i - 1) * sizeof v[0]);
    c->len--;
  }
  else if (join_prev)
    v[i - 1].end = end;
  else if (join_next)
    v[i].start = start;
  else {
    if (c->len >= MAX_COVER_PIECES || cover_reserve(c, 1) == -1)
      return -1;
    v = c->ptr;
    memmove(&v[i + 1], &v[i], (c->len - i) * sizeof v[0]);
    v[i] = (struct cover_piece){ .start = start, .end = end };
    c->len++;
  }
  return 0;
}
