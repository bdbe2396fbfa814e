/* snbd: the backend interface.  A backend knows nothing of NBD: it stores
 * bytes.  Every operation returns 0, or -1 with errno set (EIO, ENOSPC,
 * EPERM, EINVAL, ENOTSUP, ...); the server maps errno to NBD_E* in one
 * place.  Callers have already range-checked every request against size,
 * so backends may assert it.  All operations are called concurrently from
 * several worker threads and must be thread-safe.
 */
#ifndef SNBD_BACKEND_H
#define SNBD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Capabilities (struct backend.caps). */
#define BACKEND_CAN_WRITE      (1u << 0)  /* not opened read-only */
#define BACKEND_CAN_FLUSH      (1u << 1)
#define BACKEND_CAN_FUA        (1u << 2)  /* honours BACKEND_FUA natively */
#define BACKEND_CAN_TRIM       (1u << 3)
#define BACKEND_CAN_ZERO       (1u << 4)  /* zero() exists (maybe emulated) */
#define BACKEND_CAN_FAST_ZERO  (1u << 5)  /* zero(BACKEND_FAST) can succeed */
#define BACKEND_CAN_EXTENTS    (1u << 6)
#define BACKEND_CAN_CACHE      (1u << 7)
#define BACKEND_CAN_MULTI_CONN (1u << 8)  /* flush covers all connections */
#define BACKEND_ROTATIONAL     (1u << 9)
#define BACKEND_CHEAP_EXTENTS  (1u << 10) /* extents() is cheap enough to
                                             call on every read (sparse RAM) */
#define BACKEND_FAST_IO        (1u << 11) /* operations never wait for a
                                             device (RAM, tmpfs): the server
                                             runs them inline */
#define BACKEND_SENDFILE       (1u << 12) /* data_fd holds the disk from
                                             offset 0 and reading it cannot
                                             fail: READ data may be sent
                                             from it with sendfile */
#define BACKEND_RECV_MAP       (1u << 13) /* map is the whole disk, mapped
                                             shared and writable: a WRITE
                                             payload may be received into it
                                             by the kernel (never touched
                                             from user space, see xmit.c) */

/* Operation flags. */
#define BACKEND_FUA       (1u << 0)  /* data is durable before returning */
#define BACKEND_MAY_TRIM  (1u << 1)  /* zero(): may punch a hole */
#define BACKEND_FAST      (1u << 2)  /* zero(): fail with ENOTSUP rather
                                        than be slower than a write */

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

struct backend;

struct backend_ops {
  const char *name;
  int (*pread)(struct backend *b, void *buf, size_t count, uint64_t offset);
  int (*pwrite)(struct backend *b, const void *buf, size_t count,
                uint64_t offset, unsigned flags);
  int (*flush)(struct backend *b);
  int (*trim)(struct backend *b, uint64_t count, uint64_t offset,
              unsigned flags);
  /* Reads back as zeroes afterwards, for the whole range or it fails. */
  int (*zero)(struct backend *b, uint64_t count, uint64_t offset,
              unsigned flags);
  /* Fills e for [offset, offset+count), at least one extent on success. */
  int (*extents)(struct backend *b, uint64_t count, uint64_t offset,
                 struct extents *e);
  int (*cache)(struct backend *b, uint64_t count, uint64_t offset);
  void (*close)(struct backend *b);
};

struct backend {
  const struct backend_ops *ops;
  uint64_t size;
  unsigned caps;
  uint32_t block_min;      /* 1 unless the device needs more (e.g. 512) */
  uint32_t block_pref;     /* preferred I/O size, e.g. 4096 */
  char *desc;              /* human-readable, e.g. "memory:1G" */
  int data_fd;             /* with BACKEND_SENDFILE */
  uint8_t *map;            /* with BACKEND_RECV_MAP */
};

/* Parse "memory:SIZE" | "file:PATH" (and "error:RATE:ERRNO:SPEC" for tests,
 * see backends/error.c).  NULL with set_error() on failure. */
struct backend *backend_open(const char *spec, bool readonly);
void backend_close(struct backend *b);

/* A read-only open (backend_open(spec, true)) clears BACKEND_CAN_WRITE,
 * CAN_FUA, CAN_TRIM, CAN_ZERO and CAN_FAST_ZERO; pwrite, trim and zero
 * then fail with EPERM if called anyway. */

/* Sparse RAM disk of any size up to INT64_MAX (see memory.c). */
struct backend *backend_memory_open(uint64_t size);
/* Regular file or block device (see file.c). */
struct backend *backend_file_open(const char *path, bool readonly);
/* Test wrapper: args is "RATE:ERRNAME:SPEC" (see error.c); SPEC is opened
 * with backend_open. */
struct backend *backend_error_open(const char *args, bool readonly);

/* "1G", "512M", "4096", "1T", "10k": decimal digits and at most one
 * binary suffix KMGTPE, case-insensitive; 0, or -1 (set_error) on garbage
 * or a value above INT64_MAX (the largest size NBD and off_t allow). */
int parse_size(const char *s, uint64_t *out);

#endif
