/* snbd: extent lists (extents.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>

#include "extents.h"
#include "log.h"

void extents_init(struct extents *e, uint64_t start, uint64_t end, size_t max)
{
  e->v = NULL;
  e->n = e->cap = 0;
  e->max = max ? max : SIZE_MAX;
  e->start = start;
  e->end = end;
}

void extents_free(struct extents *e)
{
  free(e->v);
  e->v = NULL;
  e->n = e->cap = 0;
}

/* Where the next extent must begin. */
static uint64_t extents_next(const struct extents *e)
{
  if (e->n == 0)
    return e->start;
  return e->v[e->n - 1].offset + e->v[e->n - 1].length;
}

static int extents_grow(struct extents *e)
{
  size_t cap = e->cap ? e->cap * 2 : 16;
  if (cap > e->max)
    cap = e->max;
  if (cap < e->cap || cap > SIZE_MAX / sizeof *e->v) {
    set_error(ENOMEM, "extent list too long");
    return -1;
  }
  struct extent *v = realloc(e->v, cap * sizeof *v);
  if (v == NULL) {
    set_error(ENOMEM, "extent list: out of memory");
    return -1;
  }
  e->v = v;
  e->cap = cap;
  return 0;
}

int extents_add(struct extents *e, uint64_t offset, uint64_t length,
                uint32_t flags)
{
  uint64_t next = extents_next(e);

  if (length > UINT64_MAX - offset)       /* cannot wrap below */
    length = UINT64_MAX - offset;
  if (offset < e->start) {                /* clip the front */
    if (offset + length <= e->start)
      return 0;
    length -= e->start - offset;
    offset = e->start;
  }
  if (next >= e->end)
    return 1;
  if (length == 0)
    return 0;
  if (offset != next) {
    set_error(EINVAL, "extent at %" PRIu64 " is not contiguous with %" PRIu64,
              offset, next);
    return -1;
  }
  if (length > e->end - offset)           /* clip the back */
    length = e->end - offset;

  if (e->n > 0 && e->v[e->n - 1].flags == flags)
    e->v[e->n - 1].length += length;
  else {
    if (e->n >= e->max)
      return 1;
    if (e->n == e->cap && extents_grow(e) == -1)
      return -1;
    e->v[e->n++] = (struct extent){ offset, length, flags };
  }
  return offset + length >= e->end ? 1 : 0;
}
