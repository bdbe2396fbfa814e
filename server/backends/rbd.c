/* snbd: the Ceph RBD backend, "rbd:POOL/[NAMESPACE/]IMAGE[@SNAP]".
 *
 * One image handle per export, opened at start and shared by all its
 * connections: a flush covers every connection's writes, so the export
 * offers NBD_FLAG_CAN_MULTI_CONN.  The cluster connection under it is
 * shared by every export with the same ceph-conf and ceph-id
 * (rbd_cluster.c).  A snapshot is opened read-only whatever the export
 * says.
 *
 * Requests go to librbd's aio calls from the thread that submits them
 * (the connection's reader, xmit.c dispatch) and complete on librbd's
 * completion thread, which calls backend_io_complete (backend.h); no
 * thread of ours waits for a request.  Two operations stay synchronous
 * and run on the server's worker pool: BLOCK_STATUS (rbd_diff_iterate2
 * has no aio form; each call covers at most EXTENTS_OBJECTS objects, so a
 * query of a huge range cannot hold a worker for long) and CACHE, which
 * does nothing here: librbd and the OSDs cache by themselves, and reading
 * ahead would pull the data through this gateway for nothing.
 *
 * FUA is a write followed by a flush (the layer's emulation): librbd
 * documents LIBRADOS_OP_FLAG_FADVISE_FUA only as a hint that it may
 * ignore.  WRITE_ZEROES is rbd_aio_write_zeroes, which discards whole
 * objects and zeroes partial ones on the OSD without sending data; with
 * NO_HOLE it passes RBD_WRITE_ZEROES_FLAG_THICK_PROVISION, which writes
 * the zeroes, so FAST_ZERO is refused there, and on a clone (whose
 * zeroing may copy up its parent's data first).
 *
 * Size: librbd's update watch (rbd_update_watch) calls back when the
 * image header changes, e.g. after `rbd resize`; the callback reads the
 * new size into backend.size (BACKEND_RESIZES), which new connections
 * are told in their handshake.  A connection made before keeps its
 * size, but the layer fails its requests past the new end of a shrunk
 * image (backend.c) instead of letting librbd clip them.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rbd/features.h>
#include <rbd/librbd.h>

#include "backend.h"
#include "log.h"
#include "rbd.h"
#include "rbd_cluster.h"
#include "vector.h"

/* BLOCK_STATUS: objects examined per request at most.  Without the
 * fast-diff feature rbd_diff_iterate2 asks the OSD about each object in
 * turn: 64 (256 MiB with the default 4 MiB objects).  With it, one read
 * of the object map answers for any number: 4096 (16 GiB), so nbdcopy's
 * scan of a large sparse image takes few requests. */
#define EXTENTS_OBJECTS 64
#define EXTENTS_OBJECTS_FAST 4096

struct rbd_backend {
  struct backend b;              /* first, so ops can cast back */
  struct rbd_cluster *cluster;
  rados_ioctx_t ioctx;
  rbd_image_t image;
  uint64_t watch;                /* rbd_update_watch's handle */
  bool watching;
  bool fast_zero;                /* no parent: zeroing never copies up */
  uint64_t obj_size;
  int timeout;                   /* ceph-timeout, seconds */
};

static struct rbd_backend *rb_of(struct backend *b)
{
  return (struct rbd_backend *)b;
}

/* Sets the error for librbd result ret of op; returns -1 with errno set
 * to what the request reports (rbd_errno). */
static int fail(int ret, const char *op)
{
  int err = rbd_errno(ret);
  rbd_error(err, "%s: ceph: %s (%d)%s", op, strerror(-ret), ret,
            ret == -ETIMEDOUT ? ": no answer within ceph-timeout (an OSD "
            "down?)" : "");
  errno = err;
  return -1;
}

/* ---- asynchronous operations ---- */

/* The result of io for librbd's return value ret: a read that got less
 * than asked (librbd clips at the image's end, which moved since the
 * request was checked) is an error too.  (A write's value is 0, clipped
 * or not: the layer's check against the size the update watch keeps is
 * all there is.) */
static int io_result(const struct backend_io *io, ssize_t ret)
{
  static const char *const names[] = {
    [BACKEND_OP_READ] = "read", [BACKEND_OP_WRITE] = "write",
    [BACKEND_OP_FLUSH] = "flush", [BACKEND_OP_TRIM] = "discard",
    [BACKEND_OP_ZERO] = "write_zeroes", [BACKEND_OP_CACHE] = "cache",
  };
  if (ret < 0) {
    fail((int)ret, names[io->op]);
    return errno;
  }
  if (io->op == BACKEND_OP_READ && (uint64_t)ret != io->count) {
    rbd_error(EIO, "%s: librbd did %zd of %" PRIu64 " bytes (the image "
              "shrank?)", names[io->op], ret, io->count);
    return EIO;
  }
  return 0;
}

/* librbd's completion callback, on its completion thread. */
static void on_complete(rbd_completion_t c, void *arg)
{
  struct backend_io *io = arg;
  ssize_t ret = rbd_aio_get_return_value(c);
  rbd_aio_release(c);
  backend_io_complete(io, io_result(io, ret));
}

/* rbd_aio_write_zeroes's flags for io, or -1 (ENOTSUP set) for a
 * FAST_ZERO that could be slower than writing. */
static int zero_flags(const struct rbd_backend *rb,
                      const struct backend_io *io)
{
  bool thick = !(io->flags & BACKEND_MAY_TRIM);
  if ((io->flags & BACKEND_FAST) && (thick || !rb->fast_zero)) {
    rbd_error(ENOTSUP, "%s: no fast zero %s", rb->b.desc,
              thick ? "without holes" : "on a clone");
    errno = ENOTSUP;
    return -1;
  }
  return thick ? RBD_WRITE_ZEROES_FLAG_THICK_PROVISION : 0;
}

static int issue(struct rbd_backend *rb, struct backend_io *io,
                 rbd_completion_t c, int zflags)
{
  rbd_image_t img = rb->image;
  switch (io->op) {
  case BACKEND_OP_READ:
    return rbd_aio_read2(img, io->offset, (size_t)io->count, io->buf, c, 0);
  case BACKEND_OP_WRITE:
    return rbd_aio_write2(img, io->offset, (size_t)io->count, io->buf, c,
                          0);
  case BACKEND_OP_FLUSH:
    return rbd_aio_flush(img, c);
  case BACKEND_OP_TRIM:
    return rbd_aio_discard(img, io->offset, io->count, c);
  case BACKEND_OP_ZERO:
    return rbd_aio_write_zeroes(img, io->offset, (size_t)io->count, c,
                                zflags, 0);
  default:
    return -EINVAL;
  }
}

static int rbd_submit(struct backend *b, struct backend_io *io)
{
  struct rbd_backend *rb = rb_of(b);
  int zflags = 0;
  if (io->op == BACKEND_OP_ZERO && (zflags = zero_flags(rb, io)) == -1)
    return -1;
  rbd_completion_t c;
  int ret = rbd_aio_create_completion(io, on_complete, &c);
  if (ret < 0)
    return fail(ret, "rbd_aio_create_completion");
  ret = issue(rb, io, c, zflags);
  if (ret < 0) {
    rbd_aio_release(c);
    return fail(ret, "submit");
  }
  return 0;
}

/* ---- synchronous operations (filters call these: backend_io_run) ---- */

/* 0 if a synchronous read or write did all count bytes (r), else -1
 * with the error set. */
static int sync_result(ssize_t r, size_t count, const char *op)
{
  if (r < 0)
    return fail((int)r, op);
  if ((size_t)r == count)
    return 0;
  rbd_error(EIO, "%s: librbd did %zd of %zu bytes", op, r, count);
  return -1;
}

static int rbd_pread(struct backend *b, void *buf, size_t count,
                     uint64_t offset)
{
  return sync_result(rbd_read2(rb_of(b)->image, offset, count, buf, 0),
                     count, "read");
}

static int rbd_pwrite(struct backend *b, const void *buf, size_t count,
                      uint64_t offset, unsigned flags)
{
  (void)flags;                   /* no native FUA: the layer flushes */
  return sync_result(rbd_write2(rb_of(b)->image, offset, count, buf, 0),
                     count, "write");
}

static int rbd_flush_sync(struct backend *b)
{
  int r = rbd_flush(rb_of(b)->image);
  return r < 0 ? fail(r, "flush") : 0;
}

static int rbd_trim(struct backend *b, uint64_t count, uint64_t offset,
                    unsigned flags)
{
  (void)flags;
  int r = rbd_discard(rb_of(b)->image, offset, count);
  return r < 0 ? fail(r, "discard") : 0;
}

static int rbd_zero(struct backend *b, uint64_t count, uint64_t offset,
                    unsigned flags)
{
  struct rbd_backend *rb = rb_of(b);
  struct backend_io io = { .op = BACKEND_OP_ZERO, .count = count,
                           .offset = offset, .flags = flags };
  int zflags = zero_flags(rb, &io);
  if (zflags == -1)
    return -1;
  ssize_t r = rbd_write_zeroes(rb->image, offset, (size_t)count, zflags, 0);
  return r < 0 ? fail((int)r, "write_zeroes") : 0;
}

static int rbd_cache(struct backend *b, uint64_t count, uint64_t offset)
{
  (void)b, (void)count, (void)offset;
  return 0;                      /* see the header comment */
}

/* ---- BLOCK_STATUS ---- */

struct diff_ctx {
  struct extents *e;
  uint64_t pos;                  /* reported up to here */
  int err;
};

/* Adds the hole before offset, if any, then [offset, offset+len) as data
 * or, when exists is 0, as a hole. */
static int on_diff(uint64_t offset, size_t len, int exists, void *arg)
{
  struct diff_ctx *d = arg;
  int r = 0;
  if (offset < d->pos) {         /* out of order: never seen, but be safe */
    d->err = EIO;
    return -EIO;
  }
  if (offset > d->pos)
    r = extents_add(d->e, d->pos, offset - d->pos, EXTENT_HOLE | EXTENT_ZERO);
  if (r == 0)
    r = extents_add(d->e, offset, len,
                    exists ? 0 : EXTENT_HOLE | EXTENT_ZERO);
  d->pos = offset + len;
  if (r == -1)
    d->err = errno ? errno : ENOMEM;
  return r == 0 ? 0 : -ECANCELED;          /* full, or an error: stop */
}

/* Whether the object map can answer a diff: fast-diff on and valid (the
 * flags can change while serving, so asked each time; both calls read
 * the open image's state, no I/O). */
static bool fast_diff(struct rbd_backend *rb)
{
  uint64_t features, flags;
  return rbd_get_features(rb->image, &features) == 0 &&
         (features & RBD_FEATURE_FAST_DIFF) &&
         rbd_get_flags(rb->image, &flags) == 0 &&
         !(flags & (RBD_FLAG_OBJECT_MAP_INVALID | RBD_FLAG_FAST_DIFF_INVALID));
}

/* Whatever rbd_diff_iterate2 does not report is unallocated: a hole that
 * reads as zeroes.  With a parent, include_parent makes the parent's data
 * count as data.  With fast-diff, whole objects (what `rbd diff
 * --whole-object` shows), else the extents the OSDs report (`rbd
 * diff`). */
static int rbd_extents(struct backend *b, uint64_t count, uint64_t offset,
                       struct extents *e)
{
  struct rbd_backend *rb = rb_of(b);
  bool fast = fast_diff(rb);
  uint64_t cap = rb->obj_size * (fast ? EXTENTS_OBJECTS_FAST
                                      : EXTENTS_OBJECTS);
  uint64_t len = count < cap ? count : cap;
  struct diff_ctx d = { .e = e, .pos = offset };
  int r = rbd_diff_iterate2(rb->image, NULL, offset, len, 1, fast, on_diff,
                            &d);
  if (d.err) {
    rbd_error(d.err, "block status: %s", strerror(d.err));
    return -1;
  }
  if (r < 0 && r != -ECANCELED)
    return fail(r, "diff_iterate");
  if (r == 0 && d.pos < offset + len &&
      extents_add(e, d.pos, offset + len - d.pos,
                  EXTENT_HOLE | EXTENT_ZERO) == -1) {
    rbd_error(ENOMEM, "block status: out of memory");
    return -1;
  }
  return 0;
}

/* ---- opening and closing ---- */

/* librbd's update watch: the header changed (resize, snapshot, ...). */
static void on_update(void *arg)
{
  struct rbd_backend *rb = arg;
  uint64_t size;
  if (rbd_get_size(rb->image, &size) < 0 || size == rb->b.size)
    return;
  if (size > (uint64_t)INT64_MAX)
    size = (uint64_t)INT64_MAX;
  log_info("%s: the image's size is now %" PRIu64 " (new connections see "
           "it)", rb->b.desc, size);
  rb->b.size = size;
}

/* Releases everything rb holds, and rb. */
static void release(struct rbd_backend *rb)
{
  if (rb->watching)
    rbd_update_unwatch(rb->image, rb->watch);
  if (rb->image)
    rbd_close(rb->image);
  if (rb->ioctx)
    rados_ioctx_destroy(rb->ioctx);
  if (rb->cluster)
    rbd_cluster_put(rb->cluster);
  free(rb->b.desc);
  free(rb);
}

/* A close running on a thread of its own (rbd_close_be). */
struct closer {
  struct rbd_backend *rb;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool done, abandoned;          /* under lock */
};

static void closer_free(struct closer *c)
{
  pthread_cond_destroy(&c->cond);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

static void *close_thread(void *arg)
{
  struct closer *c = arg;
  release(c->rb);
  pthread_mutex_lock(&c->lock);
  c->done = true;
  bool abandoned = c->abandoned;
  pthread_cond_signal(&c->cond);
  pthread_mutex_unlock(&c->lock);
  if (abandoned)
    closer_free(c);
  return NULL;
}

/* Waits until c is done, at most seconds; false if it is not. */
static bool closer_wait(struct closer *c, int seconds)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += seconds;
  pthread_mutex_lock(&c->lock);
  while (!c->done &&
         pthread_cond_timedwait(&c->cond, &c->lock, &ts) != ETIMEDOUT)
    ;
  bool done = c->done;
  c->abandoned = !done;
  pthread_mutex_unlock(&c->lock);
  return done;
}

/* Closing talks to the cluster (the update watch, the exclusive lock of
 * an image written to), and with the cluster gone librbd waits for ever,
 * beyond every timeout set (seen: a SIGTERMed server hung in rbd_close
 * after its cluster was stopped).  So the close runs on a thread of its
 * own; if it has not finished within ceph-timeout and 5 s more, it is
 * left running and the backend's memory with it.  Exports close only at
 * exit (export.c), so nothing waits for what is left. */
static void rbd_close_be(struct backend *b)
{
  struct rbd_backend *rb = rb_of(b);
  char desc[128];
  int seconds = rb->timeout + 5;
  snprintf(desc, sizeof desc, "%s", b->desc);
  struct closer *c = calloc(1, sizeof *c);
  pthread_t t;
  pthread_condattr_t ca;
  if (c == NULL) {
    release(rb);
    return;
  }
  c->rb = rb;
  pthread_mutex_init(&c->lock, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&c->cond, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&t, NULL, close_thread, c) != 0) {
    closer_free(c);
    release(rb);
    return;
  }
  if (closer_wait(c, seconds)) {
    pthread_join(t, NULL);
    closer_free(c);
    return;
  }
  pthread_detach(t);
  log_warn("%s: the cluster did not let the image close within %d s; "
           "left open", desc, seconds);
}

static const struct backend_ops rbd_ops = {
  .name = "rbd",
  .pread = rbd_pread,
  .pwrite = rbd_pwrite,
  .flush = rbd_flush_sync,
  .trim = rbd_trim,
  .zero = rbd_zero,
  .extents = rbd_extents,
  .cache = rbd_cache,
  .close = rbd_close_be,
  .submit = rbd_submit,
};

/* Opens the image (at its snapshot, if any); -1 with the error set. */
static int open_image(struct rbd_backend *rb, const struct rbd_spec *sp,
                      const struct rbd_keys *k, bool readonly)
{
  int ret = rados_ioctx_create(rbd_cluster_rados(rb->cluster), sp->pool,
                               &rb->ioctx);
  if (ret < 0) {
    rb->ioctx = NULL;
    rbd_set_open_error(RBD_STAGE_POOL, ret, sp, k);
    return -1;
  }
  rados_ioctx_set_namespace(rb->ioctx, sp->ns);
  /* A full pool or cluster: librados holds writes back until there is
   * room (the request then times out, indistinguishable from a cluster
   * that went away); with full_try they are sent, and the OSD refuses
   * them with ENOSPC (EDQUOT for a quota) at once.  librbd's own I/O
   * context is a copy of this one. */
  rados_set_pool_full_try(rb->ioctx);
  /* A read-only open takes no header watch, so it never hears of a
   * resize: a read-only export of the image itself is opened writable
   * (the export never writes), unless the user may not. */
  ret = sp->snap[0] ? -EROFS
        : rbd_open(rb->ioctx, sp->image, &rb->image, NULL);
  if ((ret == -EROFS || ret == -EPERM || ret == -EACCES) &&
      (readonly || sp->snap[0])) {
    if (!sp->snap[0])
      log_info("rbd:%s: opened read-only (client.%s may not write): it "
               "will not see resizes", sp->image, k->id ? k->id : "admin");
    ret = rbd_open_read_only(rb->ioctx, sp->image, &rb->image, NULL);
  }
  if (ret < 0) {
    rb->image = NULL;
    rbd_set_open_error(RBD_STAGE_IMAGE, ret, sp, k);
    return -1;
  }
  if (sp->snap[0] && (ret = rbd_snap_set(rb->image, sp->snap)) < 0) {
    rbd_set_open_error(RBD_STAGE_SNAP, ret, sp, k);
    return -1;
  }
  return 0;
}

/* Size, object size, capabilities and the update watch of the open
 * image; -1 with the error set. */
static int describe(struct rbd_backend *rb, bool writable)
{
  rbd_image_info_t info;
  uint64_t overlap = 0;
  int ret = rbd_stat(rb->image, &info, sizeof info);
  if (ret < 0)
    return fail(ret, "rbd_stat");
  if (rbd_get_overlap(rb->image, &overlap) < 0)
    overlap = 1;                 /* unknown: assume a parent */
  rb->b.size = info.size > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX
                                                : info.size;
  rb->obj_size = info.obj_size ? info.obj_size : 4u << 20;
  rb->fast_zero = overlap == 0;
  rb->b.block_min = 1;
  rb->b.block_pref = 4096;
  rb->b.caps = BACKEND_CAN_FLUSH | BACKEND_CAN_EXTENTS |
               BACKEND_CAN_MULTI_CONN | BACKEND_RESIZES;
  if (writable)
    rb->b.caps |= BACKEND_CAN_WRITE | BACKEND_CAN_TRIM | BACKEND_CAN_ZERO |
                  BACKEND_CAN_FAST_ZERO;
  ret = rbd_update_watch(rb->image, &rb->watch, on_update, rb);
  if (ret < 0)
    return fail(ret, "rbd_update_watch");
  rb->watching = true;
  return 0;
}

struct backend *rbd_module_open(const char *args, const struct rbd_spec *spec,
                                const struct rbd_keys *keys, bool readonly)
{
  struct rbd_backend *rb = calloc(1, sizeof *rb);
  if (!rb || asprintf(&rb->b.desc, "rbd:%s", args) == -1) {
    free(rb);
    rbd_error(ENOMEM, "out of memory");
    return NULL;
  }
  rb->b.ops = &rbd_ops;
  rb->timeout = keys->timeout;
  if (!(rb->cluster = rbd_cluster_get(keys, spec)) ||
      open_image(rb, spec, keys, readonly) == -1 ||
      describe(rb, !readonly && !spec->snap[0]) == -1) {
    rbd_close_be(&rb->b);
    return NULL;
  }
  return &rb->b;
}
