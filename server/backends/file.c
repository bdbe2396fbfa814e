/* snbd: a regular file or a block device.
 *
 * One file descriptor serves every connection and worker thread: pread
 * and pwrite need no lock, and all writes go through the kernel's one page
 * cache, so fdatasync from any connection makes every connection's writes
 * durable; hence BACKEND_CAN_MULTI_CONN.
 *
 * Trim is advisory: where the file system or device cannot do it, trim
 * succeeds having done nothing.  Zero must leave zeroes: it uses the
 * cheapest method that works (zero range, punch hole, discard-based zeroing
 * on devices) and falls back to writing zeroes unless BACKEND_FAST asks it
 * not to.  Methods found unsupported are remembered so later calls skip
 * them.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "backend.h"
#include "log.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* Writing zeroes by hand goes in pieces of this size. */
#define ZERO_BUF_SIZE (64 * 1024)
static const uint8_t zero_buf[ZERO_BUF_SIZE];

struct file_backend {
  struct backend b;              /* first, so ops can cast back */
  int fd;
  bool is_bdev;
  bool in_ram;                   /* tmpfs or ramfs: never waits, and a
                                    read of it cannot fail */
  uint8_t *map;                  /* shared writable mapping, or NULL */
  /* Set once the kernel said a method is unsupported (never cleared). */
  atomic_bool no_zero_range, no_punch, no_alloc, no_discard, no_zeroout;
  /* The last SEEK_HOLE answer: [data_from, data_to) held data (empty when
   * equal).  On tmpfs SEEK_HOLE walks every page up to the next hole, so
   * in a fully written file each call walks to the end (7 ms for 2 GiB);
   * a copy asking for block status piece by piece paid that per piece.
   * Only a trim or zero of ours turns data into a hole: both clear it
   * (and bump punches, so a lookup racing with them stores nothing).  A
   * hole punched by another process reads as data until then, which is
   * always a correct answer. */
  pthread_mutex_t seek_lock;
  uint64_t data_from, data_to, punches;
};

static struct file_backend *fb(struct backend *b)
{
  return (struct file_backend *)b;
}

static int check_writable(const struct backend *b)
{
  if (b->caps & BACKEND_CAN_WRITE)
    return 0;
  set_error(EPERM, "%s is read-only", b->desc);
  return -1;
}

/* Errors that mean "this kernel, file system or device cannot do that",
 * as opposed to a failure of the storage. */
static bool is_unsupported(int err)
{
  return err == EOPNOTSUPP || err == ENOTSUP || err == ENOSYS ||
         err == ENOTTY;
}

static int file_pread(struct backend *b, void *buf, size_t count,
                      uint64_t offset)
{
  struct file_backend *f = fb(b);
  uint8_t *p = buf;
  size_t left = count;

  assert(offset <= b->size && count <= b->size - offset);
  while (left > 0) {
    ssize_t r = pread(f->fd, p, left, (off_t)offset);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      if (r == 0)
        set_error(EIO, "%s: end of file at %" PRIu64 " (file shrank?)",
                  b->desc, offset);
      else
        set_error(errno, "%s: read at %" PRIu64 ": %m", b->desc, offset);
      memset(buf, 0, count);     /* never hand back stale bytes */
      return -1;
    }
    p += r;
    left -= (size_t)r;
    offset += (uint64_t)r;
  }
  return 0;
}

/* pwrite all of buf, across short writes and signals. */
static int write_full(struct file_backend *f, const void *buf, size_t count,
                      uint64_t offset)
{
  const uint8_t *p = buf;

  while (count > 0) {
    ssize_t r = pwrite(f->fd, p, count, (off_t)offset);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      if (r == 0)
        errno = EIO;               /* no progress: do not spin */
      set_error(errno, "%s: write at %" PRIu64 ": %m", f->b.desc, offset);
      return -1;
    }
    p += r;
    count -= (size_t)r;
    offset += (uint64_t)r;
  }
  return 0;
}

static int file_flush(struct backend *b)
{
  if (fdatasync(fb(b)->fd) == -1) {
    set_error(errno, "%s: fdatasync: %m", b->desc);
    return -1;
  }
  return 0;
}

static int file_pwrite(struct backend *b, const void *buf, size_t count,
                       uint64_t offset, unsigned flags)
{
  if (check_writable(b) == -1)
    return -1;
  assert(offset <= b->size && count <= b->size - offset);
  if (write_full(fb(b), buf, count, offset) == -1)
    return -1;
  return (flags & BACKEND_FUA) ? file_flush(b) : 0;
}

/* Writes zeroes over [offset, offset+count) in bounded pieces. */
static int write_zeroes(struct file_backend *f, uint64_t count,
                        uint64_t offset)
{
  while (count > 0) {
    size_t n = (size_t)MIN(count, (uint64_t)ZERO_BUF_SIZE);
    if (write_full(f, zero_buf, n, offset) == -1)
      return -1;
    count -= n;
    offset += n;
  }
  return 0;
}

/* fallocate(mode) over the range, unless known unsupported.  0 done,
 * 1 unsupported (and now remembered in *unsupported), -1 failed. */
static int try_fallocate(struct file_backend *f, atomic_bool *unsupported,
                         int mode, uint64_t count, uint64_t offset)
{
  if (atomic_load_explicit(unsupported, memory_order_relaxed))
    return 1;
  while (fallocate(f->fd, mode, (off_t)offset, (off_t)count) == -1) {
    if (errno == EINTR)
      continue;
    if (is_unsupported(errno)) {
      atomic_store_explicit(unsupported, true, memory_order_relaxed);
      return 1;
    }
    set_error(errno, "%s: fallocate(0x%x) at %" PRIu64 ": %m", f->b.desc,
              (unsigned)mode, offset);
    return -1;
  }
  return 0;
}

/* ioctl on a block device range, unless known unsupported; as above. */
static int try_bdev_ioctl(struct file_backend *f, atomic_bool *unsupported,
                          unsigned long req, const char *what,
                          uint64_t count, uint64_t offset)
{
  uint64_t range[2] = { offset, count };

  if (atomic_load_explicit(unsupported, memory_order_relaxed))
    return 1;
  while (ioctl(f->fd, req, range) == -1) {
    if (errno == EINTR)
      continue;
    if (is_unsupported(errno)) {
      atomic_store_explicit(unsupported, true, memory_order_relaxed);
      return 1;
    }
    set_error(errno, "%s: %s at %" PRIu64 ": %m", f->b.desc, what, offset);
    return -1;
  }
  return 0;
}

/* After a trim or zero (done or not): see struct file_backend. */
static void holes_changed(struct file_backend *f)
{
  pthread_mutex_lock(&f->seek_lock);
  f->data_from = f->data_to = 0;
  f->punches++;
  pthread_mutex_unlock(&f->seek_lock);
}

static int file_trim(struct backend *b, uint64_t count, uint64_t offset,
                     unsigned flags)
{
  struct file_backend *f = fb(b);
  int r;

  if (check_writable(b) == -1)
    return -1;
  assert(offset <= b->size && count <= b->size - offset);
  if (f->is_bdev) {
    /* Discard takes whole sectors: trim the ones inside the range. */
    uint64_t bs = b->block_min;
    uint64_t lo = (offset + bs - 1) / bs * bs, hi = (offset + count) / bs * bs;
    r = lo < hi ? try_bdev_ioctl(f, &f->no_discard, BLKDISCARD,
                                 "BLKDISCARD", hi - lo, lo) : 0;
  }
  else
    r = try_fallocate(f, &f->no_punch,
                      FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      count, offset);
  holes_changed(f);
  if (r == -1)
    return -1;
  return (flags & BACKEND_FUA) ? file_flush(b) : 0;
}

/* Zero on a regular file: zero range; else punch a hole (if allowed to);
 * else punch and allocate again; else write zeroes, unless FAST. */
static int file_zero_regular(struct file_backend *f, uint64_t count,
                             uint64_t offset, unsigned flags)
{
  const int punch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  int r;

  r = try_fallocate(f, &f->no_zero_range,
                    FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, count, offset);
  if (r != 1)
    return r;
  r = try_fallocate(f, &f->no_punch, punch, count, offset);
  if (r == -1)
    return -1;
  if (r == 0) {
    /* A hole reads as zeroes.  Without MAY_TRIM (NBD_CMD_FLAG_NO_HOLE)
     * the client wants the space kept so later writes cannot fail: so
     * allocate it again, and report ENOSPC rather than succeed with a
     * hole left behind (no silent partial success). */
    if (flags & BACKEND_MAY_TRIM)
      return 0;
    r = try_fallocate(f, &f->no_alloc, FALLOC_FL_KEEP_SIZE, count, offset);
    return r != 1 ? r : write_zeroes(f, count, offset);
  }
  if (flags & BACKEND_FAST) {
    set_error(ENOTSUP, "%s: no fast way to write zeroes", f->b.desc);
    return -1;
  }
  return write_zeroes(f, count, offset);
}

/* Zero whole sectors of a block device, in order: a punch if MAY_TRIM
 * (zeroes the kernel guarantees without falling back to writing them, so
 * it is fast), BLKZEROOUT (which may write zeroes itself, so not with
 * FAST), writing zeroes. */
static int zero_bdev_sectors(struct file_backend *f, uint64_t count,
                             uint64_t offset, unsigned flags)
{
  int r;

  if (flags & BACKEND_MAY_TRIM) {
    r = try_fallocate(f, &f->no_punch,
                      FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      count, offset);
    if (r != 1)
      return r;
  }
  if (flags & BACKEND_FAST) {
    set_error(ENOTSUP, "%s: no fast way to write zeroes", f->b.desc);
    return -1;
  }
  r = try_bdev_ioctl(f, &f->no_zeroout, BLKZEROOUT, "BLKZEROOUT",
                     count, offset);
  if (r != 1)
    return r;
  return write_zeroes(f, count, offset);
}

/* Zero on a block device: partial sectors at either end are written,
 * the whole sectors between zeroed as above. */
static int file_zero_bdev(struct file_backend *f, uint64_t count,
                          uint64_t offset, unsigned flags)
{
  uint64_t bs = f->b.block_min, end = offset + count;
  uint64_t lo = MIN((offset + bs - 1) / bs * bs, end);
  uint64_t hi = MAX(end / bs * bs, lo);

  if (lo < hi && zero_bdev_sectors(f, hi - lo, lo, flags) == -1)
    return -1;
  if (write_zeroes(f, lo - offset, offset) == -1 ||
      write_zeroes(f, end - hi, hi) == -1)
    return -1;
  return 0;
}

static int file_zero(struct backend *b, uint64_t count, uint64_t offset,
                     unsigned flags)
{
  struct file_backend *f = fb(b);
  int r;

  if (check_writable(b) == -1)
    return -1;
  assert(offset <= b->size && count <= b->size - offset);
  if (count == 0)
    return 0;
  if (f->is_bdev)
    r = file_zero_bdev(f, count, offset, flags);
  else
    r = file_zero_regular(f, count, offset, flags);
  holes_changed(f);
  if (r == -1)
    return -1;
  return (flags & BACKEND_FUA) ? file_flush(b) : 0;
}

/* lseek(SEEK_DATA or SEEK_HOLE) from pos.  ENXIO means no data after pos
 * (for SEEK_DATA) or pos past the end of a file that shrank (for
 * SEEK_HOLE): both are "end".  -1 with errno on other errors. */
static int64_t seek(int fd, uint64_t pos, int whence, uint64_t end)
{
  off_t r = lseek(fd, (off_t)pos, whence);
  if (r == -1)
    return errno == ENXIO ? (int64_t)end : -1;
  return (int64_t)r;
}

/* Where the data at pos ends (the next hole, maybe past end), or -1. */
static int64_t data_end(struct file_backend *f, uint64_t pos, uint64_t end)
{
  pthread_mutex_lock(&f->seek_lock);
  uint64_t punches = f->punches;
  if (f->data_from <= pos && pos < f->data_to) {
    int64_t to = (int64_t)f->data_to;
    pthread_mutex_unlock(&f->seek_lock);
    return to;
  }
  pthread_mutex_unlock(&f->seek_lock);
  int64_t next = seek(f->fd, pos, SEEK_HOLE, end);
  if (next > (int64_t)pos) {
    pthread_mutex_lock(&f->seek_lock);
    if (f->punches == punches) {
      f->data_from = pos;
      f->data_to = (uint64_t)next;
    }
    pthread_mutex_unlock(&f->seek_lock);
  }
  return next;
}

/* Holes found with SEEK_DATA/SEEK_HOLE (lseek on a shared fd is safe: its
 * result does not depend on the file position). */
static int file_extents(struct backend *b, uint64_t count, uint64_t offset,
                        struct extents *e)
{
  struct file_backend *f = fb(b);
  uint64_t pos = offset, end = offset + count;
  int r = 0;

  if (count == 0) {
    set_error(EINVAL, "extents of an empty range");
    return -1;
  }
  assert(offset <= b->size && count <= b->size - offset);
  while (r == 0 && pos < end) {
    uint32_t flags = 0;
    int64_t next = data_end(f, pos, end);
    if (next == (int64_t)pos) {       /* a hole here: up to the next data */
      flags = EXTENT_HOLE | EXTENT_ZERO;
      next = seek(f->fd, pos, SEEK_DATA, end);
    }
    if (next == -1 && !(errno == EINVAL || is_unsupported(errno))) {
      set_error(errno, "%s: lseek at %" PRIu64 ": %m", b->desc, pos);
      return -1;
    }
    /* Unsupported, or a racing write or punch left no progress: report
     * the rest as data, which is always a correct answer. */
    if (next == -1 || (uint64_t)next <= pos) {
      flags = 0;
      next = (int64_t)end;
    }
    next = MIN(next, (int64_t)end);
    r = extents_add(e, pos, (uint64_t)next - pos, flags);
    pos = (uint64_t)next;
  }
  return r == -1 ? -1 : 0;
}

static int file_cache(struct backend *b, uint64_t count, uint64_t offset)
{
  int err = posix_fadvise(fb(b)->fd, (off_t)offset, (off_t)count,
                          POSIX_FADV_WILLNEED);
  if (err != 0) {
    set_error(err, "%s: posix_fadvise: %s", b->desc, strerror(err));
    return -1;
  }
  return 0;
}

static bool file_never_waits(struct backend *b)
{
  return fb(b)->in_ram;
}

static int file_send_fd(struct backend *b, uint64_t offset, uint64_t count,
                        uint64_t *fd_offset)
{
  (void)count;
  *fd_offset = offset;
  return fb(b)->in_ram ? fb(b)->fd : -1;
}

static uint8_t *file_map(struct backend *b, uint64_t offset, uint64_t count)
{
  (void)count;
  return fb(b)->map ? fb(b)->map + offset : NULL;
}

static void file_close(struct backend *b)
{
  struct file_backend *f = fb(b);
  pthread_mutex_destroy(&f->seek_lock);
  if (f->map)
    munmap(f->map, (size_t)b->size);
  close(f->fd);
  free(b->desc);
  free(f);
}

static const struct backend_ops file_ops = {
  .name = "file",
  .pread = file_pread,
  .pwrite = file_pwrite,
  .flush = file_flush,
  .trim = file_trim,
  .zero = file_zero,
  .extents = file_extents,
  .cache = file_cache,
  .close = file_close,
  .never_waits = file_never_waits,
  .send_fd = file_send_fd,
  .map = file_map,
};

static bool is_pow2(uint64_t v)
{
  return v != 0 && (v & (v - 1)) == 0;
}

/* Size, sector sizes and rotation of a block device. */
static int probe_bdev(struct file_backend *f)
{
  uint64_t size;
  int logical = 0;
  unsigned physical = 0;
  unsigned short rotational = 0;

  if (ioctl(f->fd, BLKGETSIZE64, &size) == -1) {
    set_error(errno, "%s: BLKGETSIZE64: %m", f->b.desc);
    return -1;
  }
  f->b.size = size;
  if (ioctl(f->fd, BLKSSZGET, &logical) == 0 && logical > 0 &&
      is_pow2((uint64_t)logical))
    f->b.block_min = (uint32_t)logical;
  else
    f->b.block_min = 512;
  if (ioctl(f->fd, BLKPBSZGET, &physical) == 0 && is_pow2(physical))
    f->b.block_pref = MAX(physical, f->b.block_min);
  else
    f->b.block_pref = MAX(4096u, f->b.block_min);
  if (ioctl(f->fd, BLKROTATIONAL, &rotational) == 0 && rotational)
    f->b.caps |= BACKEND_ROTATIONAL;
  return 0;
}

/* Fills in size, block sizes and capabilities from the open fd. */
static int probe(struct file_backend *f, bool readonly)
{
  struct stat st;

  if (fstat(f->fd, &st) == -1) {
    set_error(errno, "%s: fstat: %m", f->b.desc);
    return -1;
  }
  f->b.caps = BACKEND_CAN_FLUSH | BACKEND_CAN_EXTENTS | BACKEND_CAN_CACHE |
              BACKEND_CAN_MULTI_CONN;
  if (!readonly)
    f->b.caps |= BACKEND_CAN_WRITE | BACKEND_CAN_FUA | BACKEND_CAN_TRIM |
                 BACKEND_CAN_ZERO | BACKEND_CAN_FAST_ZERO;
  if (S_ISBLK(st.st_mode)) {
    f->is_bdev = true;
    return probe_bdev(f);
  }
  if (!S_ISREG(st.st_mode)) {
    set_error(EINVAL, "%s: not a regular file or block device", f->b.desc);
    return -1;
  }
  f->b.size = (uint64_t)st.st_size;
  /* A file in RAM (tmpfs, ramfs) never waits for a device, and cannot
   * fail a read: the server runs requests inline and sends READ data
   * with sendfile (never_waits, send_fd).  WRITE payloads are received
   * into a shared mapping (map: one copy, socket to page cache, instead
   * of two, and no inode lock for concurrent writers to spin on).
   * MADV_DONTDUMP keeps the disk's data out of core dumps. */
  struct statfs sf;
  if (fstatfs(f->fd, &sf) == 0 &&
      (sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC)) {
    f->in_ram = true;
    void *m = MAP_FAILED;
    if (!readonly && st.st_size > 0 && (uint64_t)st.st_size <= SIZE_MAX)
      m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
               MAP_SHARED, f->fd, 0);
    if (m != MAP_FAILED) {
      madvise(m, (size_t)st.st_size, MADV_DONTDUMP);
      f->map = m;
    }
  }
  /* Sparse reads answer holes without reading them (OFFSET_HOLE): one
   * SEEK_HOLE per read, or none while it stays inside the data run the
   * last one found (data_end). */
  f->b.caps |= BACKEND_CHEAP_EXTENTS;
  f->b.block_min = 1;
  f->b.block_pref = is_pow2((uint64_t)st.st_blksize) &&
                    st.st_blksize >= 512 && st.st_blksize <= (1 << 20)
                    ? (uint32_t)st.st_blksize : 4096;
  return 0;
}

static int clear_nonblock(struct file_backend *f)
{
  int fl = fcntl(f->fd, F_GETFL);
  if (fl == -1 || fcntl(f->fd, F_SETFL, fl & ~O_NONBLOCK) == -1) {
    set_error(errno, "%s: fcntl: %m", f->b.desc);
    return -1;
  }
  return 0;
}

struct backend *backend_file_open(const char *path, bool readonly)
{
  struct file_backend *f;

  if (path == NULL || *path == '\0') {
    set_error(EINVAL, "file: no path given");
    return NULL;
  }
  f = calloc(1, sizeof *f);
  if (f == NULL || asprintf(&f->b.desc, "file:%s", path) == -1) {
    free(f);
    set_error(ENOMEM, "file backend: out of memory");
    return NULL;
  }
  f->b.ops = &file_ops;
  pthread_mutex_init(&f->seek_lock, NULL);
  /* O_NONBLOCK so that a FIFO given by mistake cannot hang the open; it
   * is cleared once the type is known. */
  f->fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC |
               O_NOCTTY | O_NONBLOCK);
  if (f->fd == -1) {
    set_error(errno, "%s: %m", f->b.desc);
    free(f->b.desc);
    free(f);
    return NULL;
  }
  if (probe(f, readonly) == -1 || clear_nonblock(f) == -1) {
    int err = errno;
    file_close(&f->b);
    errno = err;
    return NULL;
  }
  return &f->b;
}
