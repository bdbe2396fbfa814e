/* snbd: extent lists, which a backend fills to describe allocation (holes,
 * zeroes) and the server turns into BLOCK_STATUS descriptors and
 * OFFSET_HOLE chunks.
 */
#ifndef SNBD_EXTENTS_H
#define SNBD_EXTENTS_H

#include <stddef.h>
#include <stdint.h>

/* Extent flags: as NBD base:allocation, so no translation is needed. */
#define EXTENT_HOLE 1u
#define EXTENT_ZERO 2u

struct extent { uint64_t offset, length; uint32_t flags; };

/* An extent list a backend fills for [start, end): extents_add appends,
 * merging with the previous entry when flags match and it is contiguous.
 * Extents must be contiguous from start (an add that leaves a gap or
 * overlaps fails with EINVAL); parts before start or past end are clipped
 * off.  extents_add returns 1, "stop", once the list reaches end or when
 * an extent does not fit because max entries exist (it is dropped; one that
 * merges with the last entry still fits).  The caller sets max; 0 means no
 * limit but memory. */
struct extents {
  struct extent *v;
  size_t n, cap, max;
  uint64_t start, end;
};
void extents_init(struct extents *e, uint64_t start, uint64_t end, size_t max);
int extents_add(struct extents *e, uint64_t offset, uint64_t length,
                uint32_t flags);     /* 0 ok, 1 stop, -1 ENOMEM/EINVAL */
void extents_free(struct extents *e);
/* The list reaches its end (a backend may stop early at max entries). */
static inline int extents_complete(const struct extents *e)
{
  return e->n > 0 && e->v[e->n - 1].offset + e->v[e->n - 1].length == e->end;
}

#endif
