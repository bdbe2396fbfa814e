/* snbd: the backend layer (backend.h).  Every request of the server goes
 * through backend_submit, which asserts what the edge (xmit.c validate)
 * already checked, emulates what a backend lacks (FUA with a flush after
 * the operation, zeroing with writes of zeroes), logs a failure with the
 * backend's own message, and drives synchronous and asynchronous
 * backends alike (model: nbdkit server/backend.c).
 *
 * A request is a short sequence of backend operations: the operation
 * itself (one, or several pieces: the data extents of a sparse READ, the
 * writes of an emulated zero), then the FUA flush if one is emulated.
 * run() issues them in turn.  A synchronous one completes inside the
 * loop; an asynchronous one may complete on another thread at any time,
 * possibly before submit returns: whichever of the submitter and the
 * completion comes second (br->pending) continues the loop, so the
 * sequence never forks and a long run of synchronous pieces never
 * recurses.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "log.h"

/* Zeroes are written in pieces of this size where a backend cannot zero
 * (never a partial success: any failure fails the request). */
#define ZERO_PIECE (64 * 1024)
static const uint8_t zero_piece[ZERO_PIECE];

enum { STAGE_OP, STAGE_FUA, STAGE_END };

static const char *const op_names[] = {
  [BACKEND_OP_READ] = "read", [BACKEND_OP_WRITE] = "write",
  [BACKEND_OP_FLUSH] = "flush", [BACKEND_OP_TRIM] = "trim",
  [BACKEND_OP_ZERO] = "zero", [BACKEND_OP_CACHE] = "cache",
};

static bool writes(enum backend_op op)
{
  return op == BACKEND_OP_WRITE || op == BACKEND_OP_TRIM ||
         op == BACKEND_OP_ZERO;
}

/* The backend zeroes by itself (else the layer writes zeroes). */
static bool has_zero(const struct backend *be)
{
  return (be->caps & BACKEND_CAN_ZERO) && (be->ops->zero || be->ops->submit);
}

/* The flag a backend gets for the request's FUA: its own, if it has one. */
static unsigned native_fua(const struct backend *be, unsigned flags)
{
  return (flags & BACKEND_FUA) && (be->caps & BACKEND_CAN_FUA)
         ? BACKEND_FUA : 0;
}

/* One flush per FUA request that the backend did not make durable by
 * itself: without native FUA, or with the payload received in place
 * (it went in without FUA). */
static bool fua_flush_needed(const struct backend *be,
                             const struct backend_req *br)
{
  return writes(br->op) && (br->flags & BACKEND_FUA) &&
         (be->caps & BACKEND_CAN_FLUSH) &&
         ((br->flags & BACKEND_IN_PLACE) || !(be->caps & BACKEND_CAN_FUA));
}

/* First call for a single-piece operation: true, and never again. */
static bool once(struct backend_req *br)
{
  return br->pos++ == 0;
}

/* The next data extent of a sparse READ, if any left. */
static bool next_read_extent(struct backend_req *br)
{
  const struct extents *ex = br->data;
  while (br->pos < ex->n && (ex->v[br->pos].flags & EXTENT_ZERO))
    br->pos++;
  if (br->pos >= ex->n)
    return false;
  const struct extent *x = &ex->v[br->pos++];
  br->io = (struct backend_io){
    .op = BACKEND_OP_READ, .buf = (uint8_t *)br->buf + (x->offset - br->offset),
    .count = x->length, .offset = x->offset,
  };
  return true;
}

/* The next zero piece of an emulated WRITE_ZEROES, if any left. */
static bool next_zero_piece(struct backend_req *br)
{
  if (br->pos >= br->count)
    return false;
  uint64_t n = br->count - br->pos < ZERO_PIECE ? br->count - br->pos
                                                : ZERO_PIECE;
  br->io = (struct backend_io){
    .op = BACKEND_OP_WRITE, .buf = (void *)zero_piece, .count = n,
    .offset = br->offset + br->pos,
    .flags = native_fua(br->be, br->flags),
  };
  br->pos += n;
  return true;
}

/* Fills br->io with the next piece of the operation itself; false once
 * there is none left. */
static bool next_op_piece(struct backend_req *br)
{
  struct backend *be = br->be;
  unsigned fua = native_fua(be, br->flags);
  struct backend_io io = { .op = br->op, .buf = br->buf, .count = br->count,
                           .offset = br->offset, .flags = fua };
  bool go;

  switch (br->op) {
  case BACKEND_OP_READ:
    if (br->data)
      return next_read_extent(br);
    go = br->count > 0 && once(br);
    break;
  case BACKEND_OP_WRITE:
    go = !(br->flags & BACKEND_IN_PLACE) && br->count > 0 && once(br);
    break;
  case BACKEND_OP_FLUSH:
    go = (be->caps & BACKEND_CAN_FLUSH) && once(br);
    io.flags = 0;
    break;
  case BACKEND_OP_TRIM:
    go = br->count > 0 && once(br);
    break;
  case BACKEND_OP_ZERO:
    if (br->count > 0 && !has_zero(be))
      return next_zero_piece(br);
    go = br->count > 0 && once(br);
    io.flags |= br->flags & (BACKEND_MAY_TRIM | BACKEND_FAST);
    break;
  case BACKEND_OP_CACHE:
    /* Advisory: a failure changes nothing but speed, so report it. */
    go = (be->caps & BACKEND_CAN_CACHE) && be->ops->cache &&
         br->count > 0 && once(br);
    io.flags = 0;
    break;
  default:
    go = false;
  }
  if (go)
    br->io = io;
  return go;
}

/* Fills br->io with the request's next backend operation; false when the
 * request is finished. */
static bool next_io(struct backend_req *br)
{
  for (;;) {
    switch (br->stage) {
    case STAGE_OP:
      if (next_op_piece(br))
        return true;
      br->stage = STAGE_FUA;
      break;
    case STAGE_FUA:
      br->stage = STAGE_END;
      if (fua_flush_needed(br->be, br)) {
        br->io = (struct backend_io){ .op = BACKEND_OP_FLUSH };
        return true;
      }
      break;
    default:
      return false;
    }
  }
}

int backend_io_run(struct backend *be, struct backend_io *io)
{
  switch (io->op) {
  case BACKEND_OP_READ:
    return be->ops->pread(be, io->buf, (size_t)io->count, io->offset);
  case BACKEND_OP_WRITE:
    return be->ops->pwrite(be, io->buf, (size_t)io->count, io->offset,
                           io->flags);
  case BACKEND_OP_FLUSH:
    return be->ops->flush(be);
  case BACKEND_OP_TRIM:
    return be->ops->trim(be, io->count, io->offset, io->flags);
  case BACKEND_OP_ZERO:
    return be->ops->zero(be, io->count, io->offset, io->flags);
  case BACKEND_OP_CACHE:
    return be->ops->cache(be, io->count, io->offset);
  }
  errno = EINVAL;
  return -1;
}

/* The backend's own message for err, set on this thread. */
static const char *error_text(int err)
{
  return get_errno() == err ? get_error() : strerror(err);
}

/* Logs a failed step of br, on the thread where the backend failed. */
static void log_failure(const struct backend_req *br, int err)
{
  const struct backend_io *io = &br->io;
  if (err == ENOTSUP && br->op == BACKEND_OP_ZERO)   /* a FAST_ZERO probe */
    return;
  log_info("%s%s%s%s %s off=%llu len=%llu%s: %s",
           br->tag ? "export \"" : "", br->tag ? br->tag : "",
           br->tag ? "\" on " : "", br->be->desc, op_names[br->op],
           (unsigned long long)br->offset, (unsigned long long)br->count,
           io->op != br->op ? " (its flush)" : "", error_text(err));
}

static void run(struct backend_req *br);

void backend_io_complete(struct backend_io *io, int err)
{
  struct backend_req *br = (struct backend_req *)
    ((char *)io - offsetof(struct backend_req, io));
  if (err) {
    br->err = err;
    log_failure(br, err);
  }
  if (atomic_fetch_sub(&br->pending, 1) == 1)
    run(br);
}

/* Issues the next operations of br until one is left in flight (its
 * completion continues) or the request is finished. */
static void run(struct backend_req *br)
{
  struct backend *be = br->be;
  while (br->err == 0 && next_io(br)) {
    if (be->ops->submit && br->io.op != BACKEND_OP_CACHE) {
      atomic_store(&br->pending, 2);
      clear_error();
      if (be->ops->submit(be, &br->io) == -1) {
        br->err = errno ? errno : EIO;
        log_failure(br, br->err);
      }
      else if (atomic_fetch_sub(&br->pending, 1) != 1)
        return;                 /* the completion carries on */
    }
    else {
      clear_error();
      if (backend_io_run(be, &br->io) == -1) {
        br->err = errno ? errno : EIO;
        log_failure(br, br->err);
      }
    }
  }
  br->done(br, br->err);
}

/* Whether [offset, offset+count) lies within be's current size (read
 * once: a BACKEND_RESIZES backend's size may change meanwhile). */
static bool in_range(const struct backend *be, uint64_t offset,
                     uint64_t count)
{
  uint64_t size = be->size;
  return offset <= size && count <= size - offset;
}

/* A request past the end of a backend that shrank since xmit.c's validate
 * checked it: the error validate would answer now. */
static int past_end(const struct backend *be, const struct backend_req *br)
{
  if (br->op == BACKEND_OP_FLUSH || in_range(be, br->offset, br->count))
    return 0;
  assert(be->caps & BACKEND_RESIZES);     /* else validate caught it */
  set_error(writes(br->op) ? ENOSPC : EINVAL, "%s: past the end (%llu "
            "bytes since it was resized)", be->desc,
            (unsigned long long)be->size);
  return get_errno();
}

/* The facts xmit.c's validate established; a request breaking one is a
 * bug in the server, not the client's doing (docs/security.md 14).  The
 * range is past_end's. */
static void assert_valid(const struct backend *be,
                         const struct backend_req *br)
{
  if (br->op == BACKEND_OP_READ || br->op == BACKEND_OP_WRITE)
    assert(br->count <= SIZE_MAX && (br->buf || br->count == 0 ||
                                     (br->flags & BACKEND_IN_PLACE)));
  if (writes(br->op))
    assert(be->caps & BACKEND_CAN_WRITE);
  if (br->op == BACKEND_OP_TRIM)
    assert(be->caps & BACKEND_CAN_TRIM);
  (void)be;
  (void)br;
}

void backend_submit(struct backend *be, struct backend_req *br)
{
  assert_valid(be, br);
  br->be = be;
  br->stage = STAGE_OP;
  br->pos = 0;
  br->err = 0;
  atomic_init(&br->pending, 0);
  int err = past_end(be, br);
  if (err) {
    br->done(br, err);
    return;
  }
  if (br->op == BACKEND_OP_ZERO && br->count > 0 &&
      (br->flags & BACKEND_FAST) &&
      !((be->caps & BACKEND_CAN_FAST_ZERO) && has_zero(be))) {
    /* doc/proto.md "NBD_CMD_WRITE_ZEROES": fail fast rather than be
     * slower than a write, which emulation would be. */
    set_error(ENOTSUP, "%s: no fast zero", be->desc);
    br->done(br, ENOTSUP);
    return;
  }
  run(br);
}

/* ---- the synchronous forms ---- */

struct sync_wait {
  struct backend_req br;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool finished;
  int err;
  char msg[256];             /* the completing thread's message */
};

static void sync_done(struct backend_req *br, int err)
{
  struct sync_wait *w = (struct sync_wait *)br;
  if (err)
    snprintf(w->msg, sizeof w->msg, "%s", error_text(err));
  pthread_mutex_lock(&w->lock);
  w->err = err;
  w->finished = true;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

static int run_and_wait(struct backend *be, enum backend_op op, void *buf,
                        uint64_t count, uint64_t offset, unsigned flags)
{
  struct sync_wait w = {
    .br = { .op = op, .flags = flags, .offset = offset, .count = count,
            .buf = buf, .done = sync_done },
    .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER,
  };
  backend_submit(be, &w.br);
  pthread_mutex_lock(&w.lock);
  while (!w.finished)
    pthread_cond_wait(&w.cond, &w.lock);
  pthread_mutex_unlock(&w.lock);
  pthread_cond_destroy(&w.cond);
  pthread_mutex_destroy(&w.lock);
  if (w.err == 0)
    return 0;
  set_error(w.err, "%s", w.msg);
  return -1;
}

int backend_pread(struct backend *be, void *buf, uint64_t count,
                  uint64_t offset)
{
  return run_and_wait(be, BACKEND_OP_READ, buf, count, offset, 0);
}

int backend_pwrite(struct backend *be, const void *buf, uint64_t count,
                   uint64_t offset, unsigned flags)
{
  return run_and_wait(be, BACKEND_OP_WRITE, (void *)buf, count, offset,
                      flags);
}

int backend_flush(struct backend *be)
{
  return run_and_wait(be, BACKEND_OP_FLUSH, NULL, 0, 0, 0);
}

int backend_trim(struct backend *be, uint64_t count, uint64_t offset,
                 unsigned flags)
{
  return run_and_wait(be, BACKEND_OP_TRIM, NULL, count, offset, flags);
}

int backend_zero(struct backend *be, uint64_t count, uint64_t offset,
                 unsigned flags)
{
  return run_and_wait(be, BACKEND_OP_ZERO, NULL, count, offset, flags);
}

int backend_cache(struct backend *be, uint64_t count, uint64_t offset)
{
  return run_and_wait(be, BACKEND_OP_CACHE, NULL, count, offset, 0);
}

int backend_extents(struct backend *be, uint64_t count, uint64_t offset,
                    struct extents *e)
{
  if (!in_range(be, offset, count)) {
    assert(be->caps & BACKEND_RESIZES);
    set_error(EINVAL, "%s: past the end (resized)", be->desc);
    return -1;
  }
  if ((be->caps & BACKEND_CAN_EXTENTS) && be->ops->extents)
    return be->ops->extents(be, count, offset, e);
  return extents_add(e, offset, count, 0) == -1 ? -1 : 0;
}

/* ---- the optional operations ---- */

bool backend_never_waits(struct backend *be)
{
  return be->ops->never_waits && !be->ops->submit && be->ops->never_waits(be);
}

bool backend_is_async(const struct backend *be)
{
  return be->ops->submit != NULL;
}

int backend_send_fd(struct backend *be, uint64_t offset, uint64_t count,
                    uint64_t *fd_offset)
{
  return be->ops->send_fd ? be->ops->send_fd(be, offset, count, fd_offset)
                          : -1;
}

uint8_t *backend_map(struct backend *be, uint64_t offset, uint64_t count)
{
  return be->ops->map ? be->ops->map(be, offset, count) : NULL;
}
