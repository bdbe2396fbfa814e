/* snbd-copy: an NBD export as an endpoint.  One libsnbd handle per
 * worker (when the server allows multi-conn); requests are asynchronous
 * and complete from libsnbd's reader threads. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "copy.h"

static struct snbd_handle *nbd_connect(struct copy *c, struct endpoint *e,
                                       bool src)
{
  struct snbd_handle *h = snbd_create();
  if (!h) {
    copy_fail(c, "%s", snbd_get_error());
    return NULL;
  }
  /* The URIs come from the user running us: they may name TLS files. */
  if (snbd_set_uri_allow_local_file(h, true) == -1 ||
      (src && c->o.sparse &&
       snbd_add_meta_context(h, "base:allocation") == -1) ||
      (c->o.tls >= 0 && snbd_set_tls(h, c->o.tls) == -1) ||
      snbd_set_request_timeout(h, c->o.timeout) == -1 ||
      snbd_set_request_extended_headers(h, !c->o.no_eh) == -1 ||
      snbd_connect_uri(h, e->name) == -1) {
    copy_fail(c, "%s: %s", e->name, snbd_get_error());
    snbd_close(h);
    return NULL;
  }
  return h;
}

static int nbd_open_more(struct copy *c, struct endpoint *e, int n)
{
  bool src = e == &c->src;
  for (int i = 1; i < n; i++) {
    e->h[i] = nbd_connect(c, e, src);
    if (!e->h[i])
      return -1;
    e->nconn = i + 1;
  }
  return 0;
}

static void nbd_close(struct endpoint *e)
{
  for (int i = 0; i < e->nconn; i++) {
    snbd_shutdown(e->h[i]);
    snbd_close(e->h[i]);
    e->h[i] = NULL;
  }
  e->nconn = 0;
}

static int nbd_flush(struct copy *c, struct endpoint *e)
{
  /* All writes have been answered, so one flush covers them when the
   * server allows multi-conn; otherwise there is one connection. */
  if (e->can_flush && snbd_flush(e->h[0], 0) == -1) {
    copy_fail(c, "%s: flush: %s", e->name, snbd_get_error());
    return -1;
  }
  return 0;
}

struct bs_state {
  struct extent_vec *v;
  uint64_t next, end;
  bool oom;
};

static int bs_cb(void *ud, const char *ctx, uint64_t off,
                 const struct snbd_extent *x, size_t nx, int *error)
{
  struct bs_state *s = ud;
  (void)error;
  if (strcmp(ctx, "base:allocation") != 0)
    return 0;
  for (size_t i = 0; i < nx && off < s->end; i++) {
    uint64_t len = x[i].length < s->end - off ? x[i].length : s->end - off;
    if (extent_add(s->v, off, len, (x[i].flags & SNBD_STATE_ZERO) != 0) == -1)
      s->oom = true;
    off += len;
  }
  s->next = off;
  return 0;
}

/* A server answering block status with tiny extents (one byte at a
 * time) kept the copy asking for ever: after this many answers that
 * advance less than BS_SLOW_BYTES, the rest of the unit is copied as
 * data, which is always correct. */
#define BS_MAX_SLOW 16
#define BS_SLOW_BYTES (64 * 1024)

static int nbd_extents(struct copy *c, struct endpoint *e, int conn,
                       uint64_t off, uint64_t len, struct extent_vec *v)
{
  struct bs_state s = { v, off, off + len, false };
  int slow = 0;
  while (s.next < s.end && !atomic_load(&c->stop)) {
    uint64_t at = s.next;
    if (slow == BS_MAX_SLOW) {
      if (!atomic_exchange(&e->bs_slow_warned, true))
        fprintf(stderr, "snbd-copy: %s: block status makes no progress; "
                "copying what it does not describe as data\n", e->name);
      if (extent_add(v, at, s.end - at, false) == -1) {
        copy_fail(c, "out of memory");
        return -1;
      }
      return 0;
    }
    if (snbd_block_status(e->h[conn], s.end - at, at, bs_cb, &s, 0) == -1) {
      copy_fail(c, "%s: block status: %s", e->name, snbd_get_error());
      return -1;
    }
    if (s.oom) {
      copy_fail(c, "out of memory");
      return -1;
    }
    slow += s.next < s.end && s.next - at < BS_SLOW_BYTES;
  }
  return 0;
}

/* libsnbd's completion callback (a reader thread). */
static void nbd_done(void *ud, int64_t cookie, int err)
{
  struct ep_req *r = ud;
  (void)cookie;
  r->done(r->ud, err, err ? snbd_get_error() : NULL);
}

/* A request libsnbd did not take ends at once. */
static void nbd_not_started(struct ep_req *r)
{
  r->fast = false;
  r->done(r->ud, snbd_get_errno() ? snbd_get_errno() : EIO,
          snbd_get_error());
}

static void nbd_read(struct copy *c, struct endpoint *e, struct ep_req *r)
{
  (void)c;
  if (snbd_aio_pread(e->h[r->conn], r->buf, r->len, r->off, nbd_done, r,
                     0) == -1)
    nbd_not_started(r);
}

static void nbd_write(struct copy *c, struct endpoint *e, struct ep_req *r)
{
  (void)c;
  if (snbd_aio_pwrite(e->h[r->conn], r->buf, r->len, r->off, nbd_done, r,
                      0) == -1)
    nbd_not_started(r);
}

static void nbd_zero(struct copy *c, struct endpoint *e, struct ep_req *r)
{
  if (!e->can_zero) {
    memset(r->buf, 0, r->len);     /* no zero command: write zeroes */
    nbd_write(c, e, r);
    return;
  }
  r->fast = atomic_load(&e->fast_zero);
  if (snbd_aio_zero(e->h[r->conn], r->len, r->off, nbd_done, r,
                    r->fast ? SNBD_CMD_FLAG_FAST_ZERO : 0) == -1)
    nbd_not_started(r);
}

static const struct ep_ops nbd_ops = {
  .fixed_size = true,
  .open_more = nbd_open_more,
  .close = nbd_close,
  .flush = nbd_flush,
  .extents = nbd_extents,
  .read = nbd_read,
  .write = nbd_write,
  .zero = nbd_zero,
};

int ep_nbd_open(struct copy *c, struct endpoint *e, bool src)
{
  e->ops = &nbd_ops;
  struct snbd_handle *h = nbd_connect(c, e, src);
  if (!h)
    return -1;
  e->h[0] = h;
  e->nconn = 1;
  e->size = snbd_get_size(h);
  e->can_zero = snbd_can_zero(h) == 1;
  e->zero_any_size = e->can_zero &&
                     snbd_get_extended_headers_negotiated(h) == 1;
  atomic_store(&e->fast_zero, snbd_can_fast_zero(h) == 1);
  e->can_flush = snbd_can_flush(h) == 1;
  e->can_multi_conn = snbd_can_multi_conn(h) == 1;
  e->has_extents = snbd_can_meta_context(h, "base:allocation") == 1;
  e->min_block = (uint32_t)snbd_get_block_size(h, SNBD_SIZE_MINIMUM);
  int64_t max = snbd_get_block_size(h, SNBD_SIZE_MAXIMUM);
  e->max_block = max > 0 && max < (int64_t)UINT32_MAX ? (uint32_t)max
                                                      : UINT32_MAX;
  if (!src && snbd_is_read_only(h) == 1) {
    copy_fail(c, "%s: the destination export is read-only", e->name);
    return -1;
  }
  return 0;
}
