/* snbd-copy: endpoints on a file descriptor.  A regular file or a block
 * device is shared by the workers (pread/pwrite); "-" (stdin or stdout),
 * a FIFO or a character device is a pipe, read or written in order.
 * Requests are synchronous: they end before the call returns. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copy.h"

static void fd_close(struct endpoint *e)
{
  if (e->fd > STDERR_FILENO)
    close(e->fd);
}

static int fd_fsync(struct copy *c, struct endpoint *e)
{
  if (fsync(e->fd) == -1) {
    copy_fail(c, "%s: fsync: %s", e->name, strerror(errno));
    return -1;
  }
  return 0;
}

static int file_truncate(struct copy *c, struct endpoint *e, uint64_t size)
{
  if (ftruncate(e->fd, (off_t)size) == -1) {
    copy_fail(c, "%s: ftruncate: %s", e->name, strerror(errno));
    return -1;
  }
  return 0;
}

static void fd_read(struct copy *c, struct endpoint *e, struct ep_req *r)
{
  char *buf = r->buf;
  uint64_t len = r->len, off = r->off;
  while (len > 0) {
    ssize_t n = pread(e->fd, buf, len, (off_t)off);
    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0) {
      copy_fail(c, "%s: read at %llu: %s", e->name, (unsigned long long)off,
                n == 0 ? "unexpected end of file" : strerror(errno));
      r->done(r->ud, EIO, NULL);
      return;
    }
    buf += n;
    len -= (uint64_t)n;
    off += (uint64_t)n;
  }
  r->done(r->ud, 0, NULL);
}

/* Writes len bytes of buf at off (in order, for a pipe): 0 or -1. */
static int fd_write_all(struct copy *c, struct endpoint *e, const char *buf,
                        uint64_t len, uint64_t off)
{
  while (len > 0) {
    ssize_t n = e->ops->stream ? write(e->fd, buf, len)
                               : pwrite(e->fd, buf, len, (off_t)off);
    if (n == -1 && errno == EINTR)
      continue;
    if (n <= 0) {
      copy_fail(c, "%s: write at %llu: %s", e->name, (unsigned long long)off,
                n == 0 ? "nothing written" : strerror(errno));
      return -1;
    }
    buf += n;
    len -= (uint64_t)n;
    off += (uint64_t)n;
  }
  return 0;
}

static void fd_write(struct copy *c, struct endpoint *e, struct ep_req *r)
{
  int rc = fd_write_all(c, e, r->buf, r->len, r->off);
  r->done(r->ud, rc == 0 ? 0 : EIO, NULL);
}

/* Zeroes a run by writing r->buf, filled with zeroes, over it. */
static void fd_zero_by_writing(struct copy *c, struct endpoint *e,
                               struct ep_req *r)
{
  uint64_t len = r->len, off = r->off;
  memset(r->buf, 0, r->buflen);
  while (len > 0) {
    uint32_t n = len < r->buflen ? (uint32_t)len : r->buflen;
    if (fd_write_all(c, e, r->buf, n, off) == -1) {
      r->done(r->ud, EIO, NULL);
      return;
    }
    len -= n;
    off += n;
  }
  r->done(r->ud, 0, NULL);
}

static void file_zero(struct copy *c, struct endpoint *e, struct ep_req *r)
{
  if (fallocate(e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                (off_t)r->off, (off_t)r->len) == 0)
    r->done(r->ud, 0, NULL);
  else
    fd_zero_by_writing(c, e, r);
}

static void blockdev_zero(struct copy *c, struct endpoint *e,
                          struct ep_req *r)
{
  uint64_t range[2] = { r->off, r->len };
  if (ioctl(e->fd, BLKZEROOUT, range) == 0)
    r->done(r->ud, 0, NULL);
  else
    fd_zero_by_writing(c, e, r);
}

/* Where the data at off ends: SEEK_HOLE walks the file's pages up to the
 * next hole, to the end of a file without holes, so a run it found is
 * remembered (a 2 GiB file on tmpfs in 64 MiB units: 15% of the copy's
 * CPU went to those walks).  Remembering data is always safe: at worst
 * zeroes are read and copied as data. */
static uint64_t data_end(struct copy *c, struct endpoint *e, uint64_t off,
                         uint64_t end)
{
  pthread_mutex_lock(&c->lock);
  bool known = e->run_start <= off && off < e->run_end;
  uint64_t run_end = e->run_end;
  pthread_mutex_unlock(&c->lock);
  if (known)
    return run_end;
  off_t hl = lseek(e->fd, (off_t)off, SEEK_HOLE);
  if (hl == -1)
    return end;
  pthread_mutex_lock(&c->lock);
  e->run_start = off;
  e->run_end = (uint64_t)hl;
  pthread_mutex_unlock(&c->lock);
  return (uint64_t)hl;
}

/* SEEK_DATA / SEEK_HOLE: holes in a regular file read as zeroes. */
static int file_extents(struct copy *c, struct endpoint *e, int conn,
                        uint64_t off, uint64_t len, struct extent_vec *v)
{
  (void)conn;
  uint64_t end = off + len;
  while (off < end) {
    off_t d = lseek(e->fd, (off_t)off, SEEK_DATA);
    uint64_t data = d == -1 ? end : (uint64_t)d;
    if (d == -1 && errno != ENXIO)
      data = off;             /* no SEEK_DATA here: all data */
    if (data > end)
      data = end;
    if (extent_add(v, off, data - off, true) == -1)
      goto oom;
    if (data >= end)
      break;
    uint64_t hole = data_end(c, e, data, end);
    if (hole > end)
      hole = end;
    if (extent_add(v, data, hole - data, false) == -1)
      goto oom;
    off = hole;
  }
  return 0;
oom:
  copy_fail(c, "out of memory");
  return -1;
}

static int64_t pipe_read_next(struct copy *c, struct endpoint *e, char *buf,
                              uint32_t len)
{
  uint32_t got = 0;
  while (got < len) {
    ssize_t r = read(e->fd, buf + got, len - got);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1) {
      copy_fail(c, "%s: read: %s", e->name, strerror(errno));
      return -1;
    }
    if (r == 0)
      break;
    got += (uint32_t)r;
  }
  return got;
}

static const struct ep_ops file_ops = {
  .close = fd_close,
  .flush = fd_fsync,
  .truncate = file_truncate,
  .extents = file_extents,
  .read = fd_read,
  .write = fd_write,
  .zero = file_zero,
};

static const struct ep_ops blockdev_ops = {
  .fixed_size = true,
  .close = fd_close,
  .flush = fd_fsync,
  .read = fd_read,
  .write = fd_write,
  .zero = blockdev_zero,
};

/* stdin and stdout are left open, as before; fsync on a pipe fails with
 * EINVAL, which nobody asked about: flush does nothing. */
static const struct ep_ops pipe_ops = {
  .stream = true,
  .close = fd_close,
  .read_next = pipe_read_next,
  .write = fd_write,
  .zero = fd_zero_by_writing,
};

/* The ops for what fd is, and its size. */
static int fd_kind(struct copy *c, struct endpoint *e)
{
  struct stat st;
  if (fstat(e->fd, &st) == -1) {
    copy_fail(c, "%s: %s", e->name, strerror(errno));
    return -1;
  }
  if (S_ISREG(st.st_mode)) {
    e->ops = &file_ops;
    e->regular = true;
    e->size = st.st_size;
    e->has_extents = true;
    return 0;
  }
  if (S_ISBLK(st.st_mode)) {
    uint64_t n;
    e->ops = &blockdev_ops;
    if (ioctl(e->fd, BLKGETSIZE64, &n) == -1) {
      copy_fail(c, "%s: BLKGETSIZE64: %s", e->name, strerror(errno));
      return -1;
    }
    e->size = (int64_t)n;
    return 0;
  }
  e->ops = &pipe_ops;          /* a FIFO, a character device, ... */
  e->size = -1;
  return 0;
}

int ep_file_open(struct copy *c, struct endpoint *e, bool src)
{
  e->ops = &pipe_ops;          /* until fd_kind knows: closes fd */
  if (strcmp(e->name, "-") == 0)   /* a pipe, unless redirected from a file */
    e->fd = src ? STDIN_FILENO : STDOUT_FILENO;
  else {
    /* A destination this copy creates is removed if the copy fails
     * (snbd-copy.c); O_EXCL says whether it is ours. */
    e->fd = src ? open(e->name, O_RDONLY | O_CLOEXEC)
                : open(e->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    e->created = !src && e->fd != -1;
    if (!src && e->fd == -1 && errno == EEXIST)
      e->fd = open(e->name, O_WRONLY | O_CLOEXEC);
    if (e->fd == -1) {
      copy_fail(c, "%s: %s", e->name, strerror(errno));
      return -1;
    }
  }
  if (fd_kind(c, e) == -1)
    return -1;
  e->can_zero = !e->ops->stream;
  e->zero_any_size = e->can_zero;
  e->can_flush = true;
  e->can_multi_conn = !e->ops->stream;
  return 0;
}
