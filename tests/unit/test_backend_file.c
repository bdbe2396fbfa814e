/* Unit tests of the file backend: a temporary file on the local file
 * system ($TMPDIR) and on tmpfs (/dev/shm: no FALLOC_FL_ZERO_RANGE, so
 * zero takes another path), and a loop block device when we may make
 * one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <linux/magic.h>
#include <sys/vfs.h>

#include "backend.h"
#include "log.h"

#define MIB  (UINT64_C(1) << 20)
#define SIZE (4 * MIB)
#define HZ   (EXTENT_HOLE | EXTENT_ZERO)

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
  for (size_t i = 0; i < n; i++)
    if (p[i] != v)
      return false;
  return true;
}

static void expect_bytes(struct backend *b, uint64_t offset, size_t n,
                         uint8_t v)
{
  uint8_t *buf = malloc(n);
  assert_non_null(buf);
  memset(buf, v ^ 0x5a, n);
  if (b->ops->pread(b, buf, n, offset) != 0)
    fail_msg("pread %llu+%zu: %s", (unsigned long long)offset, n,
             get_error());
  if (!all_bytes(buf, n, v))
    fail_msg("bytes at %llu+%zu are not all 0x%02x",
             (unsigned long long)offset, n, v);
  free(buf);
}

/* A sparse temporary file of size bytes in dir; its path in path. */
static int make_file(const char *dir, uint64_t size, char *path, size_t len)
{
  snprintf(path, len, "%s/snbd-file-XXXXXX", dir);
  int fd = mkstemp(path);
  if (fd == -1)
    return -1;
  assert_int_equal(ftruncate(fd, (off_t)size), 0);
  return fd;
}

/* The extents of the whole disk: contiguous, covering it, every hole
 * reads as zeroes.  Returns them for more checks. */
static struct extents whole_extents(struct backend *b)
{
  struct extents e;
  extents_init(&e, 0, b->size, 0);
  assert_int_equal(b->ops->extents(b, b->size, 0, &e), 0);
  assert_true(e.n >= 1);
  uint64_t pos = 0;
  for (size_t i = 0; i < e.n; i++) {
    assert_true(e.v[i].offset == pos);
    assert_true(e.v[i].flags == 0 || e.v[i].flags == HZ);
    if (e.v[i].flags == HZ)
      expect_bytes(b, pos, e.v[i].length, 0);
    pos += e.v[i].length;
  }
  assert_true(pos == b->size);
  return e;
}

/* The flags of the extent holding byte off. */
static uint32_t flags_at(const struct extents *e, uint64_t off)
{
  for (size_t i = 0; i < e->n; i++)
    if (off >= e->v[i].offset && off - e->v[i].offset < e->v[i].length)
      return e->v[i].flags;
  fail_msg("no extent holds %llu", (unsigned long long)off);
  return 0;
}

static void check_extents(struct backend *b, uint64_t data_off,
                          uint64_t data_len)
{
  struct extents e = whole_extents(b);
  assert_int_equal(flags_at(&e, 0), HZ);             /* never written */
  assert_int_equal(flags_at(&e, SIZE - 1), HZ);
  for (uint64_t o = data_off; o < data_off + data_len; o += 4096)
    assert_int_equal(flags_at(&e, o), 0);
  extents_free(&e);
  /* a range starting inside data, ending inside a hole */
  extents_init(&e, data_off + 10, 3 * MIB, 0);
  assert_int_equal(b->ops->extents(b, 3 * MIB - data_off - 10,
                                   data_off + 10, &e), 0);
  assert_true(e.v[0].offset == data_off + 10);
  assert_int_equal(e.v[0].flags, 0);
  assert_true(e.v[e.n - 1].offset + e.v[e.n - 1].length == 3 * MIB);
  assert_int_equal(e.v[e.n - 1].flags, HZ);
  extents_free(&e);
}

/* Zero with each flag mix over ranges that are not block-aligned: the
 * range reads as zeroes and its neighbours are untouched.  FAST alone
 * only where the backend has a fast way without trimming. */
static void check_zero(struct backend *b, uint64_t base, bool fast)
{
  const unsigned flag_sets[] = {
    0, BACKEND_MAY_TRIM, BACKEND_FUA | BACKEND_MAY_TRIM | BACKEND_FAST,
    fast ? BACKEND_FAST : BACKEND_FUA,
  };
  for (size_t i = 0; i < 4; i++) {
    uint64_t off = base + i * 20000 + 150;
    int r = b->ops->zero(b, 10000, off, flag_sets[i]);
    if (r != 0)
      fail_msg("zero flags %u: %s", flag_sets[i], get_error());
    expect_bytes(b, off - 150, 150, 0xc5);
    expect_bytes(b, off, 10000, 0);
    expect_bytes(b, off + 10000, 150, 0xc5);
  }
}

/* Open flags, size and caps; writes that reach the file; extents. */
static void check_write(struct backend *b, int fd)
{
  const unsigned want = BACKEND_CAN_WRITE | BACKEND_CAN_FLUSH |
    BACKEND_CAN_FUA | BACKEND_CAN_TRIM | BACKEND_CAN_ZERO |
    BACKEND_CAN_FAST_ZERO | BACKEND_CAN_EXTENTS | BACKEND_CAN_CACHE |
    BACKEND_CAN_MULTI_CONN;
  assert_int_equal(b->caps & want, want);
  /* Regular files answer sparse reads from SEEK_HOLE (xmit_cmd.c). */
  assert_int_equal(b->caps & BACKEND_CHEAP_EXTENTS, BACKEND_CHEAP_EXTENTS);
  assert_int_equal(b->size, SIZE);
  assert_int_equal(b->block_min, 1);
  assert_int_equal(b->block_pref & (b->block_pref - 1), 0);

  /* a fresh sparse file is one hole */
  struct extents e = whole_extents(b);
  assert_int_equal(e.n, 1);
  assert_int_equal(e.v[0].flags, HZ);
  extents_free(&e);

  const uint64_t doff = MIB + 100, dlen = 300000;
  uint8_t *w = malloc(dlen);
  assert_non_null(w);
  memset(w, 0xc5, dlen);
  assert_int_equal(b->ops->pwrite(b, w, dlen, doff, BACKEND_FUA), 0);
  free(w);
  expect_bytes(b, doff, dlen, 0xc5);
  expect_bytes(b, doff - 100, 100, 0);
  uint8_t c = 0;                         /* the bytes reached the file */
  assert_int_equal(pread(fd, &c, 1, (off_t)(doff + dlen - 1)), 1);
  assert_int_equal(c, 0xc5);
  assert_int_equal(b->ops->flush(b), 0);
  assert_int_equal(b->ops->cache(b, SIZE, 0), 0);
  check_extents(b, doff, dlen);
}

/* Trim of aligned blocks: these file systems punch, so zeroes, a hole. */
static void check_trim(struct backend *b, uint64_t toff)
{
  assert_int_equal(b->ops->trim(b, 65536, toff, BACKEND_FUA), 0);
  expect_bytes(b, toff, 65536, 0);
  expect_bytes(b, toff - 100, 100, 0xc5);
  expect_bytes(b, toff + 65536, 100, 0xc5);
  struct extents e = whole_extents(b);
  assert_int_equal(flags_at(&e, toff), HZ);
  assert_int_equal(flags_at(&e, toff + 65535), HZ);
  extents_free(&e);
  assert_int_equal(b->ops->trim(b, 1, 5, 0), 0);      /* tiny: no effect */
}

/* A file that shrank under the backend: EIO, and no stale bytes. */
static void check_shrunk(struct backend *b, int fd)
{
  uint8_t buf[8192];
  assert_int_equal(ftruncate(fd, (off_t)MIB), 0);
  memset(buf, 0xee, sizeof buf);
  assert_int_equal(b->ops->pread(b, buf, sizeof buf, MIB - 4096), -1);
  assert_int_equal(errno, EIO);
  assert_true(all_bytes(buf, sizeof buf, 0));
  assert_int_equal(ftruncate(fd, (off_t)SIZE), 0);
}

/* Flags of the one extent reported for [off, off+len). */
static uint32_t piece_flags(struct backend *b, uint64_t off, uint64_t len)
{
  struct extents e;
  extents_init(&e, off, off + len, 1);
  assert_int_equal(b->ops->extents(b, len, off, &e), 0);
  assert_int_equal(e.n, 1);
  assert_true(e.v[0].offset == off);
  uint32_t fl = e.v[0].flags;
  extents_free(&e);
  return fl;
}

/* The backend remembers where data ends (file.c data_end); asked piece
 * by piece, as a copy does, it must still see every trim and zero of its
 * own at once, and writes into the holes they leave. */
static void check_data_cache(struct backend *b)
{
  const uint64_t base = 2 * MIB, len = MIB;
  uint8_t *w = malloc(len);
  assert_non_null(w);
  memset(w, 0x3c, len);
  assert_int_equal(b->ops->pwrite(b, w, len, base, 0), 0);
  for (uint64_t o = base; o < base + len; o += 64 * 1024)
    assert_int_equal(piece_flags(b, o, 64 * 1024), 0);
  /* a trim inside the remembered data */
  assert_int_equal(b->ops->trim(b, 65536, base + 128 * 1024, 0), 0);
  assert_int_equal(piece_flags(b, base + 128 * 1024, 65536), HZ);
  assert_int_equal(piece_flags(b, base + 64 * 1024, 65536), 0);
  /* then a zero that may punch, after the data was asked for again */
  assert_int_equal(piece_flags(b, base + 256 * 1024, 65536), 0);
  assert_int_equal(b->ops->zero(b, 65536, base + 256 * 1024,
                                BACKEND_MAY_TRIM), 0);
  assert_int_equal(piece_flags(b, base + 256 * 1024, 65536), HZ);
  expect_bytes(b, base + 256 * 1024, 65536, 0);
  /* a hole written again is data */
  assert_int_equal(b->ops->pwrite(b, w, 65536, base + 128 * 1024, 0), 0);
  assert_int_equal(piece_flags(b, base + 128 * 1024, 65536), 0);
  assert_int_equal(b->ops->trim(b, len, base, 0), 0);
  assert_int_equal(piece_flags(b, base, len), HZ);
  free(w);
}

/* Read-only: caps say so and writes are refused. */
static void check_readonly(const char *path, int fd)
{
  assert_int_equal(pwrite(fd, "abc", 3, 0), 3);
  struct backend *b = backend_file_open(path, true);
  assert_non_null(b);
  assert_int_equal(b->caps & (BACKEND_CAN_WRITE | BACKEND_CAN_TRIM |
                              BACKEND_CAN_ZERO | BACKEND_CAN_FUA), 0);
  assert_null(backend_map(b, 0, 3));
  assert_int_equal(b->ops->pwrite(b, "xyz", 3, 0, 0), -1);
  assert_int_equal(errno, EPERM);
  assert_int_equal(b->ops->trim(b, 4096, 0, 0), -1);
  assert_int_equal(errno, EPERM);
  assert_int_equal(b->ops->zero(b, 4096, 0, 0), -1);
  assert_int_equal(errno, EPERM);
  char r[3];
  assert_int_equal(b->ops->pread(b, r, 3, 0), 0);
  assert_memory_equal(r, "abc", 3);
  assert_int_equal(b->ops->flush(b), 0);
  backend_close(b);
}

/* The file is unlinked at once and reached through /proc/self/fd, so a
 * failed test leaves nothing behind (/dev/shm is not cleaned for us). */
static void file_suite(const char *dir)
{
  char path[4096];
  int fd = make_file(dir, SIZE, path, sizeof path);
  if (fd == -1)
    skip();
  unlink(path);
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  struct backend *b = backend_file_open(path, false);
  assert_non_null(b);
  /* A file in RAM is run inline by the server; one on a disk is not. */
  struct statfs sf;
  assert_int_equal(fstatfs(fd, &sf), 0);
  bool ram = sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC;
  assert_int_equal(backend_never_waits(b), ram);
  /* ... and sends READ data from it with sendfile, and receives WRITE
   * payloads into a shared mapping of it (xmit.c): the same bytes. */
  uint64_t fd_off = 0;
  int data_fd = backend_send_fd(b, 5, 3, &fd_off);
  assert_int_equal(data_fd != -1, ram);
  assert_int_equal(backend_map(b, 5, 3) != NULL, ram);

  check_write(b, fd);
  check_zero(b, MIB + 1100, true);
  check_trim(b, MIB + 128 * 1024);
  check_data_cache(b);
  check_shrunk(b, fd);
  if (ram) {
    uint8_t *map = backend_map(b, 5, 3);
    assert_int_equal(fd_off, 5);
    assert_int_equal(pwrite(data_fd, "map", 3, (off_t)fd_off), 3);
    assert_memory_equal(map, "map", 3);
    memcpy(map, "pam", 3);
    char back[3];
    assert_int_equal(b->ops->pread(b, back, 3, 5), 0);
    assert_memory_equal(back, "pam", 3);
  }
  backend_close(b);
  check_readonly(path, fd);
  close(fd);
}

static void test_local_fs(void **state)
{
  (void)state;
  const char *dir = getenv("TMPDIR");
  file_suite(dir != NULL && *dir != '\0' ? dir : "/tmp");
}

static void test_tmpfs(void **state)
{
  (void)state;
  file_suite("/dev/shm");
}

/* Through backend_open, with a path holding a colon, and an empty file. */
static void test_open_spec(void **state)
{
  (void)state;
  char spec[4096 + 8];
  int fd = make_file(".", 0, spec + 5, sizeof spec - 5);
  assert_true(fd >= 0);
  memcpy(spec, "file:", 5);
  struct backend *b = backend_open(spec, false);
  assert_non_null(b);
  assert_string_equal(b->desc, spec);
  assert_int_equal(b->size, 0);
  backend_close(b);
  unlink(spec + 5);
  close(fd);
  assert_int_equal(mkdir("a:b", 0700), 0);
  fd = open("a:b/f", O_CREAT | O_RDWR, 0600);
  assert_true(fd >= 0);
  assert_int_equal(pwrite(fd, "hello", 5, 0), 5);
  b = backend_open("file:a:b/f", true);
  assert_non_null(b);
  assert_int_equal(b->size, 5);
  assert_int_equal(b->caps & BACKEND_CAN_WRITE, 0);
  backend_close(b);
  close(fd);
  unlink("a:b/f");
  rmdir("a:b");
}

/* A loop device over a file, set to detach itself when the last user
 * closes it, so nothing outlives the test.  -1 when not allowed. */
static int make_loop(int backing, char *dev, size_t len)
{
  int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl == -1)
    return -1;
  for (int attempt = 0; attempt < 10; attempt++) {
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0)
      break;
    snprintf(dev, len, "/dev/loop%d", n);
    int lfd = open(dev, O_RDWR | O_CLOEXEC);
    if (lfd == -1)
      break;
    struct loop_config cfg = { .fd = (unsigned)backing };
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
      close(ctl);
      return lfd;
    }
    int err = errno;
    close(lfd);
    if (err != EBUSY)                 /* EBUSY: another test took it */
      break;
  }
  close(ctl);
  return -1;
}

static unsigned sys_rotational(const char *dev)
{
  char path[256];
  unsigned v = 99;
  snprintf(path, sizeof path, "/sys/block/%s/queue/rotational",
           strrchr(dev, '/') + 1);
  FILE *fp = fopen(path, "r");
  if (fp != NULL) {
    if (fscanf(fp, "%u", &v) != 1)
      v = 99;
    fclose(fp);
  }
  return v;
}

static void test_block_device(void **state)
{
  (void)state;
  char path[4096], dev[64];
  int fd = make_file(".", SIZE, path, sizeof path);
  assert_true(fd >= 0);
  unlink(path);
  int lfd = make_loop(fd, dev, sizeof dev);
  if (lfd == -1) {
    close(fd);
    skip();                           /* not root, or no loop devices */
  }
  struct backend *b = backend_file_open(dev, false);
  close(lfd);                         /* b keeps the device attached */
  assert_non_null(b);
  assert_int_equal(b->size, SIZE);
  assert_true(b->block_min >= 512);
  assert_int_equal(b->block_min & (b->block_min - 1), 0);
  assert_true(b->block_pref >= b->block_min);
  unsigned rot = sys_rotational(dev);
  if (rot != 99)
    assert_int_equal(!!(b->caps & BACKEND_ROTATIONAL), rot);

  uint8_t *w = malloc(MIB);
  assert_non_null(w);
  memset(w, 0xc5, MIB);
  assert_int_equal(b->ops->pwrite(b, w, MIB, MIB + 3, 0), 0);
  expect_bytes(b, MIB + 3, MIB, 0xc5);
  check_zero(b, MIB + 1000, false);
  /* FAST without MAY_TRIM over whole sectors: no guaranteed-fast way */
  assert_int_equal(b->ops->zero(b, 65536, MIB + 262144, BACKEND_FAST), -1);
  assert_int_equal(errno, ENOTSUP);
  expect_bytes(b, MIB + 262144, 65536, 0xc5);
  /* trim is advisory; unaligned ends are left alone */
  assert_int_equal(b->ops->trim(b, 100000, MIB + 300001, 0), 0);
  assert_int_equal(b->ops->trim(b, 10, MIB + 3, 0), 0);
  expect_bytes(b, MIB + 3, 10, 0xc5);
  /* a device has no holes to find: one data extent */
  struct extents e;
  extents_init(&e, 0, SIZE, 0);
  assert_int_equal(b->ops->extents(b, SIZE, 0, &e), 0);
  assert_int_equal(e.n, 1);
  assert_int_equal(e.v[0].flags, 0);
  assert_true(e.v[0].length == SIZE);
  extents_free(&e);
  assert_int_equal(b->ops->flush(b), 0);
  assert_int_equal(b->ops->cache(b, MIB, 0), 0);
  backend_close(b);
  /* the data reached the backing file */
  uint8_t c = 0;
  assert_int_equal(pread(fd, &c, 1, (off_t)(2 * MIB + 2)), 1);
  assert_int_equal(c, 0xc5);
  assert_int_equal(pread(fd, &c, 1, (off_t)(MIB + 1000 + 150)), 1);
  assert_int_equal(c, 0);
  free(w);
  close(fd);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_local_fs),
    cmocka_unit_test(test_tmpfs),
    cmocka_unit_test(test_open_spec),
    cmocka_unit_test(test_block_device),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
