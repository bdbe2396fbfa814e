/* snbd-copy: null:, a destination that discards what it is given, as
 * nbdcopy's null: does: for measuring, or checking that a source reads
 * back whole. */
#include "copy.h"

static void null_close(struct endpoint *e)
{
  (void)e;
}

static void null_discard(struct copy *c, struct endpoint *e,
                         struct ep_req *r)
{
  (void)c;
  (void)e;
  r->done(r->ud, 0, NULL);
}

static const struct ep_ops null_ops = {
  .close = null_close,
  .write = null_discard,
  .zero = null_discard,
};

int ep_null_open(struct copy *c, struct endpoint *e, bool src)
{
  if (src) {
    copy_fail(c, "null: can only be a destination");
    return -1;
  }
  e->ops = &null_ops;
  e->fd = -1;
  e->size = -1;
  e->can_zero = true;
  e->zero_any_size = true;
  e->can_multi_conn = true;
  return 0;
}
