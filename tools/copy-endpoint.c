/* snbd-copy: opening and using endpoints.  An NBD URI gets one libsnbd
 * handle per worker; a file or block device is shared (pread/pwrite);
 * "-" is stdin or stdout, read or written in order. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copy.h"

static bool is_uri(const char *s)
{
  static const char *const schemes[] = { "nbd://", "nbds://", "nbd+unix://",
                                         "nbds+unix://" };
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
    if (strncasecmp(s, schemes[i], strlen(schemes[i])) == 0)
      return true;
  return false;
}

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
      snbd_connect_uri(h, e->name) == -1) {
    copy_fail(c, "%s: %s", e->name, snbd_get_error());
    snbd_close(h);
    return NULL;
  }
  return h;
}

static int nbd_open(struct copy *c, struct endpoint *e, bool src)
{
  e->kind = EP_NBD;
  struct snbd_handle *h = nbd_connect(c, e, src);
  if (!h)
    return -1;
  e->h[0] = h;
  e->nconn = 1;
  e->size = snbd_get_size(h);
  e->can_zero = snbd_can_zero(h) == 1;
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

static int file_size(struct copy *c, struct endpoint *e)
{
  struct stat st;
  if (fstat(e->fd, &st) == -1) {
    copy_fail(c, "%s: %s", e->name, strerror(errno));
    return -1;
  }
  if (S_ISREG(st.st_mode)) {
    e->size = st.st_size;
    return 0;
  }
  if (S_ISBLK(st.st_mode)) {
    uint64_t n;
    if (ioctl(e->fd, BLKGETSIZE64, &n) == -1) {
      copy_fail(c, "%s: BLKGETSIZE64: %s", e->name, strerror(errno));
      return -1;
    }
    e->blockdev = true;
    e->size = (int64_t)n;
    return 0;
  }
  e->kind = EP_PIPE;           /* a FIFO, a character device, ... */
  e->size = -1;
  return 0;
}

int ep_open(struct copy *c, struct endpoint *e, const char *name, bool src)
{
  e->name = name;
  e->min_block = 1;
  e->max_block = UINT32_MAX;
  if (is_uri(name))
    return nbd_open(c, e, src);
  if (strcmp(name, "null:") == 0) {
    /* Discards what it is given, as nbdcopy's null: does: for measuring
     * or checking that a source reads back whole. */
    if (src) {
      copy_fail(c, "null: can only be a destination");
      return -1;
    }
    e->kind = EP_NULL;
    e->fd = -1;
    e->size = -1;
    e->can_zero = true;
    return 0;
  }
  e->kind = EP_FILE;
  if (strcmp(name, "-") == 0)   /* a pipe, unless redirected from a file */
    e->fd = src ? STDIN_FILENO : STDOUT_FILENO;
  else {
    e->fd = open(name, src ? O_RDONLY | O_CLOEXEC
                           : O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (e->fd == -1) {
      copy_fail(c, "%s: %s", name, strerror(errno));
      return -1;
    }
  }
  if (file_size(c, e) == -1)
    return -1;
  e->can_zero = e->kind == EP_FILE;
  e->can_flush = true;
  e->has_extents = e->kind == EP_FILE && !e->blockdev;
  return 0;
}

/* More connections for workers 1..n-1 (multi-conn). */
int ep_open_more(struct copy *c, struct endpoint *e, int n)
{
  bool src = e == &c->src;
  for (int i = 1; e->kind == EP_NBD && i < n; i++) {
    e->h[i] = nbd_connect(c, e, src);
    if (!e->h[i])
      return -1;
    e->nconn = i + 1;
  }
  return 0;
}

void ep_close(struct endpoint *e)
{
  for (int i = 0; i < e->nconn; i++) {
    snbd_shutdown(e->h[i]);
    snbd_close(e->h[i]);
    e->h[i] = NULL;
  }
  e->nconn = 0;
  if (e->kind == EP_FILE)
    close(e->fd);
}

int ep_flush(struct copy *c, struct endpoint *e)
{
  if (e->kind == EP_NBD) {
    /* All writes have been answered, so one flush covers them when the
     * server allows multi-conn; otherwise there is one connection. */
    if (e->can_flush && snbd_flush(e->h[0], 0) == -1) {
      copy_fail(c, "%s: flush: %s", e->name, snbd_get_error());
      return -1;
    }
    return 0;
  }
  if (e->kind == EP_FILE && fsync(e->fd) == -1) {
    copy_fail(c, "%s: fsync: %s", e->name, strerror(errno));
    return -1;
  }
  return 0;
}

/* ---- Files and pipes ---- */

int ep_file_read(struct copy *c, struct endpoint *e, char *buf, uint32_t len,
                 uint64_t off)
{
  while (len > 0) {
    ssize_t r = pread(e->fd, buf, len, (off_t)off);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      copy_fail(c, "%s: read at %llu: %s", e->name, (unsigned long long)off,
                r == 0 ? "unexpected end of file" : strerror(errno));
      return -1;
    }
    buf += r;
    len -= (uint32_t)r;
    off += (uint64_t)r;
  }
  return 0;
}

int ep_file_write(struct copy *c, struct endpoint *e, const char *buf,
                  uint32_t len, uint64_t off)
{
  if (e->kind == EP_NULL)
    return 0;
  while (len > 0) {
    ssize_t r = e->kind == EP_PIPE ? write(e->fd, buf, len)
                                   : pwrite(e->fd, buf, len, (off_t)off);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      copy_fail(c, "%s: write at %llu: %s", e->name, (unsigned long long)off,
                r == 0 ? "nothing written" : strerror(errno));
      return -1;
    }
    buf += r;
    len -= (uint32_t)r;
    off += (uint64_t)r;
  }
  return 0;
}

/* Zeroes [off, off+len): punch a hole in a file (or ask the block device
 * to zero), else write zbuf (zlen bytes of zeroes) over it. */
int ep_file_zero(struct copy *c, struct endpoint *e, char *zbuf,
                 uint32_t zlen, uint64_t len, uint64_t off)
{
  if (e->kind == EP_NULL)
    return 0;
  if (e->kind == EP_FILE && !e->blockdev &&
      fallocate(e->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                (off_t)off, (off_t)len) == 0)
    return 0;
  if (e->kind == EP_FILE && e->blockdev) {
    uint64_t range[2] = { off, len };
    if (ioctl(e->fd, BLKZEROOUT, range) == 0)
      return 0;
  }
  memset(zbuf, 0, zlen);
  while (len > 0) {
    uint32_t n = len < zlen ? (uint32_t)len : zlen;
    if (ep_file_write(c, e, zbuf, n, off) == -1)
      return -1;
    len -= n;
    off += n;
  }
  return 0;
}

int64_t ep_pipe_read(struct copy *c, struct endpoint *e, char *buf,
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

/* ---- What the source holds ---- */

static int add_extent(struct extent **v, size_t *n, size_t *cap,
                      uint64_t off, uint64_t len, bool zero)
{
  if (len == 0)
    return 0;
  if (*n && (*v)[*n - 1].zero == zero &&
      (*v)[*n - 1].off + (*v)[*n - 1].len == off) {
    (*v)[*n - 1].len += len;
    return 0;
  }
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 16;
    struct extent *nv = realloc(*v, nc * sizeof *nv);
    if (!nv)
      return -1;
    *v = nv;
    *cap = nc;
  }
  (*v)[(*n)++] = (struct extent){ off, len, zero };
  return 0;
}

struct bs_state {
  struct extent **v;
  size_t *n, cap;
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
    if (add_extent(s->v, s->n, &s->cap, off, len,
                   (x[i].flags & SNBD_STATE_ZERO) != 0) == -1)
      s->oom = true;
    off += len;
  }
  s->next = off;
  return 0;
}

static int nbd_extents(struct copy *c, struct endpoint *e, int conn,
                       uint64_t off, uint64_t len, struct extent **v,
                       size_t *n)
{
  struct bs_state s = { v, n, 0, off, off + len, false };
  while (s.next < s.end && !atomic_load(&c->stop)) {
    uint64_t at = s.next;
    if (snbd_block_status(e->h[conn], s.end - at, at, bs_cb, &s, 0) == -1) {
      copy_fail(c, "%s: block status: %s", e->name, snbd_get_error());
      return -1;
    }
    if (s.oom) {
      copy_fail(c, "out of memory");
      return -1;
    }
  }
  return 0;
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
static int file_extents(struct copy *c, struct endpoint *e, uint64_t off,
                        uint64_t len, struct extent **v, size_t *n)
{
  size_t cap = 0;
  uint64_t end = off + len;
  while (off < end) {
    off_t d = lseek(e->fd, (off_t)off, SEEK_DATA);
    uint64_t data = d == -1 ? end : (uint64_t)d;
    if (d == -1 && errno != ENXIO)
      data = off;             /* no SEEK_DATA here: all data */
    if (data > end)
      data = end;
    if (add_extent(v, n, &cap, off, data - off, true) == -1)
      goto oom;
    if (data >= end)
      break;
    uint64_t hole = data_end(c, e, data, end);
    if (hole > end)
      hole = end;
    if (add_extent(v, n, &cap, data, hole - data, false) == -1)
      goto oom;
    off = hole;
  }
  return 0;
oom:
  copy_fail(c, "out of memory");
  return -1;
}

int ep_extents(struct copy *c, struct endpoint *e, int conn, uint64_t off,
               uint64_t len, struct extent **v, size_t *n)
{
  *v = NULL;
  *n = 0;
  if (c->o.sparse && e->has_extents && e->kind == EP_NBD)
    return nbd_extents(c, e, conn, off, len, v, n);
  if (c->o.sparse && e->has_extents && e->kind == EP_FILE)
    return file_extents(c, e, off, len, v, n);
  size_t cap = 0;
  if (add_extent(v, n, &cap, off, len, false) == -1) {
    copy_fail(c, "out of memory");
    return -1;
  }
  return 0;
}
