/* snbd: what every backend shares: opening one from a spec string, the
 * size parser and the extent list (see backend.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "log.h"

/* Capabilities that only make sense on a writable backend.  A read-only
 * open drops them so the server never advertises them (the backends also
 * refuse the calls with EPERM, in case one arrives anyway). */
#define WRITE_CAPS (BACKEND_CAN_WRITE | BACKEND_CAN_FUA | BACKEND_CAN_TRIM | \
                    BACKEND_CAN_ZERO | BACKEND_CAN_FAST_ZERO)

/* The largest size accepted anywhere: NBD sizes and off_t are signed
 * 64-bit quantities. */
#define SIZE_LIMIT ((uint64_t)INT64_MAX)

/* The power of two a size suffix stands for, or 0 if c is not one. */
static unsigned size_suffix_shift(char c)
{
  switch (c) {
  case 'k': case 'K': return 10;
  case 'm': case 'M': return 20;
  case 'g': case 'G': return 30;
  case 't': case 'T': return 40;
  case 'p': case 'P': return 50;
  case 'e': case 'E': return 60;
  default: return 0;
  }
}

int parse_size(const char *s, uint64_t *out)
{
  const char *p = s;
  uint64_t v = 0;

  if (s == NULL || *s < '0' || *s > '9') {   /* empty, sign, space */
    set_error(EINVAL, "size \"%.40s\": expected a number", s ? s : "");
    return -1;
  }
  for (; *p >= '0' && *p <= '9'; p++) {
    unsigned d = (unsigned)(*p - '0');
    if (v > (SIZE_LIMIT - d) / 10) {
      set_error(ERANGE, "size \"%.40s\": larger than %" PRId64, s,
                INT64_MAX);
      return -1;
    }
    v = v * 10 + d;
  }
  if (*p != '\0') {
    unsigned shift = size_suffix_shift(*p);
    if (shift == 0 || p[1] != '\0') {
      set_error(EINVAL, "size \"%.40s\": bad suffix (use K M G T P E)", s);
      return -1;
    }
    if (v > (SIZE_LIMIT >> shift)) {
      set_error(ERANGE, "size \"%.40s\": larger than %" PRId64, s,
                INT64_MAX);
      return -1;
    }
    v <<= shift;
  }
  *out = v;
  return 0;
}

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

/* Opens "memory:SIZE". */
static struct backend *open_memory(const char *arg)
{
  uint64_t size;
  if (parse_size(arg, &size) == -1)
    return NULL;
  return backend_memory_open(size);
}

struct backend *backend_open(const char *spec, bool readonly)
{
  struct backend *b;

  if (spec == NULL) {
    set_error(EINVAL, "no backend given");
    return NULL;
  }
  if (strncmp(spec, "memory:", 7) == 0)
    b = open_memory(spec + 7);
  else if (strncmp(spec, "file:", 5) == 0)
    b = backend_file_open(spec + 5, readonly);
  else if (strncmp(spec, "error:", 6) == 0)
    b = backend_error_open(spec + 6, readonly);
  else {
    set_error(EINVAL, "unknown backend \"%.64s\" (use memory:SIZE or "
              "file:PATH)", spec);
    return NULL;
  }
  if (b != NULL && readonly)
    b->caps &= ~WRITE_CAPS;
  return b;
}

void backend_close(struct backend *b)
{
  if (b != NULL)
    b->ops->close(b);
}
