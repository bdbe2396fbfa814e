/* snbd: the backend interface and the layer every request goes through.
 *
 * A backend knows nothing of NBD: it stores bytes.  It provides the
 * operations of struct backend_ops; the server never calls them itself
 * but goes through the layer at the end of this file (backend.c), which
 * checks each request, emulates what the backend lacks (FUA, zeroing)
 * and logs failures, as nbdkit's server/backend.c does for its plugins.
 *
 * Errors: every operation returns 0, or -1 with errno set (EIO, ENOSPC,
 * EPERM, EINVAL, ENOTSUP, ...) and a message set with set_error() (log.h)
 * on the thread that fails; the server maps errno to NBD_E* in one place.
 * The layer has range-checked every request against size, so backends may
 * assert it.  Operations are called concurrently from several threads and
 * must be thread-safe.
 */
#ifndef SNBD_BACKEND_H
#define SNBD_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "extents.h"

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
                                             call on every read (sparse RAM),
                                             and a hole it reports need not
                                             be read */
#define BACKEND_RESIZES        (1u << 11) /* size may change while serving
                                             (see struct backend.size) */

/* Operation flags. */
#define BACKEND_FUA       (1u << 0)  /* data is durable before completing */
#define BACKEND_MAY_TRIM  (1u << 1)  /* zero(): may punch a hole */
#define BACKEND_FAST      (1u << 2)  /* zero(): fail with ENOTSUP rather
                                        than be slower than a write */
#define BACKEND_IN_PLACE  (1u << 3)  /* backend_submit WRITE: the payload
                                        is already in place (received into
                                        backend_map's mapping); only its
                                        FUA remains to be done */

struct backend;

/* One operation handed to a backend's submit (asynchronous form). */
enum backend_op {
  BACKEND_OP_READ, BACKEND_OP_WRITE, BACKEND_OP_FLUSH, BACKEND_OP_TRIM,
  BACKEND_OP_ZERO, BACKEND_OP_CACHE,
};
struct backend_io {
  enum backend_op op;        /* READ, WRITE, FLUSH, TRIM or ZERO */
  void *buf;                 /* READ: to fill; WRITE: the data */
  uint64_t count, offset;
  unsigned flags;            /* as for the synchronous operation */
};

/* The asynchronous contract (struct backend_ops.submit).
 *
 * submit returns 0 once it accepted io; it then calls
 * backend_io_complete(io, err) exactly once, err 0 or an errno value, from
 * any thread, possibly before submit returned.  Before completing with an
 * error it calls set_error() on the completing thread: the layer logs that
 * message there.  -1 (errno set) means io was refused and will never
 * complete.  Until completion, io and its buffer belong to the backend:
 * the caller keeps both alive and untouched (the server frees a request
 * only in its completion).  A completion runs the rest of the request on
 * the completing thread: the layer's next step (a FUA flush, the next
 * piece of an emulated zero) and then the server's reply, which it only
 * queues for the connection's writer (reply.h REPLY_TO_WRITER); so it
 * must not be called with locks held that the backend's own submit takes.
 * A connection is freed only after every request in flight completed
 * (reply.c replies_finish), and a backend is closed only after every
 * connection ended, so close needs no cancellation: it may wait for its
 * own threads to finish. */
void backend_io_complete(struct backend_io *io, int err);
/* Runs io with b's synchronous operations (a filter completing its
 * inner backend's work): 0, or -1 with errno set. */
int backend_io_run(struct backend *b, struct backend_io *io);

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
  /* Frees b; a filter's inner backend is closed by the layer after it. */
  void (*close)(struct backend *b);

  /* Optional operations: the server's fast paths ask for them; a backend
   * (or a filter) without them simply never gets those paths. */
  /* Whether operations never wait for a device (RAM, tmpfs): the server
   * then runs them on the connection's reader thread. */
  bool (*never_waits)(struct backend *b);
  /* A file descriptor holding [offset, offset+count) at *fd_offset, whose
   * reading cannot fail, for sendfile; -1 if there is none. */
  int (*send_fd)(struct backend *b, uint64_t offset, uint64_t count,
                 uint64_t *fd_offset);
  /* The range in a shared, writable mapping of the disk, or NULL.  Only
   * the kernel may touch it (recv, send, mincore; see xmit.c), so a page
   * that cannot be provided fails a syscall instead of raising SIGBUS. */
  uint8_t *(*map)(struct backend *b, uint64_t offset, uint64_t count);
  /* The asynchronous form of pread, pwrite, flush, trim and zero (see
   * backend_io_complete); when present the layer uses it for those. */
  int (*submit)(struct backend *b, struct backend_io *io);
};

struct backend {
  const struct backend_ops *ops;
  /* Fixed, unless caps has BACKEND_RESIZES: then the backend stores a new
   * size from its own thread (an RBD image resized by `rbd resize`), new
   * connections are told it, and the layer fails a request past the end
   * of a shrunk backend (validated against the older size) instead of
   * asserting.  Atomic, so a reader sees the old or the new size. */
  _Atomic uint64_t size;
  unsigned caps;
  uint32_t block_min;      /* 1 unless the device needs more (e.g. 512) */
  uint32_t block_pref;     /* preferred I/O size, e.g. 4096 */
  char *desc;              /* human-readable, e.g. "memory:1G" */
  struct backend *inner;   /* a filter's backend (registry.c), or NULL */
};

/* ---- Opening (registry.c) ---- */

/* Export keys a kind of backend takes besides its spec (ceph-conf=...):
 * each row of registry.c's table names its own.  An export's keys apply
 * only to a kind that takes them (else the open fails); a fallback key
 * (a server-wide default, [server] in the config file) is ignored by a
 * kind that does not take it. */
struct backend_key {
  const char *name, *value;
  bool fallback;
};
struct backend_keys {
  const struct backend_key *v;
  size_t n;
};
/* The value of key name: the last one given that is not a fallback, else
 * the last fallback, else NULL.  keys may be NULL.  (keys.c) */
const char *backend_key_get(const struct backend_keys *keys,
                            const char *name);
/* Whether some kind of backend takes the key name. */
bool backend_key_known(const char *name);

/* "memory:SIZE", "file:PATH", "rbd:POOL/IMAGE" (when built with librbd),
 * or a filter "NAME:ARGS:SPEC" wrapping the backend SPEC (the test-only
 * error and async filters); the table in registry.c lists them.  keys
 * (may be NULL) go to the backend the spec names under its filters.  NULL
 * with set_error() on failure.  A read-only open clears
 * BACKEND_CAN_WRITE, CAN_FUA, CAN_TRIM, CAN_ZERO and CAN_FAST_ZERO;
 * pwrite, trim and zero then fail with EPERM if called anyway. */
struct backend *backend_open_keys(const char *spec, bool readonly,
                                  const struct backend_keys *keys);
/* backend_open_keys without keys. */
struct backend *backend_open(const char *spec, bool readonly);
/* The usage line of every kind, for --help: "memory:SIZE | file:PATH...". */
void backend_kinds_usage(char *buf, size_t len);
/* Closes b and, after it, the backends it wraps. */
void backend_close(struct backend *b);

/* Sparse RAM disk of any size up to INT64_MAX (see memory.c). */
struct backend *backend_memory_open(uint64_t size);
/* Regular file or block device (see file.c). */
struct backend *backend_file_open(const char *path, bool readonly);
/* Ceph RBD image: checks the spec and keys, then loads the module rbd.so
 * (module.c, rbd.c); only when built with librbd. */
struct backend *backend_rbd_open(const char *args, bool readonly,
                                 const struct backend_keys *keys);
/* Test filters, handed their own arguments and the opened inner backend,
 * which they own on success (see error.c, async.c). */
struct backend *backend_error_open(const char *args, struct backend *inner);
struct backend *backend_async_open(const char *args, struct backend *inner);

/* "1G", "512M", "4096", "1T", "10k": decimal digits and at most one
 * binary suffix KMGTPE, case-insensitive; 0, or -1 (set_error) on garbage
 * or a value above INT64_MAX (the largest size NBD and off_t allow). */
int parse_size(const char *s, uint64_t *out);

/* ---- The layer (backend.c) ---- */

/* A request through the layer.  The caller fills the first block and
 * calls backend_submit; done(br, err) runs exactly once, err 0 or an
 * errno value, on the submitting thread if every step completed at once
 * (synchronous backends), else on the thread of the last completion (see
 * backend_io_complete).  br and buf stay alive until then. */
struct backend_req {
  enum backend_op op;
  unsigned flags;            /* BACKEND_FUA, MAY_TRIM, FAST, IN_PLACE */
  uint64_t offset, count;
  void *buf;                 /* READ: count bytes; WRITE: the payload */
  const struct extents *data; /* READ: read only its non-zero extents
                                (into buf at their offset - offset);
                                NULL: the whole range */
  const char *tag;           /* for the log: who asked (may be NULL) */
  void (*done)(struct backend_req *br, int err);

  /* The layer's. */
  struct backend *be;
  int stage;
  uint64_t pos;              /* next piece (extent index or byte) */
  int err;
  atomic_int pending;        /* 2 while an asynchronous step is issued */
  struct backend_io io;
};

/* Runs br on be: checks (asserts) range and capability, emulates FUA
 * with one flush after a backend without native FUA, and zeroing with
 * writes in bounded pieces (FAST refused with ENOTSUP then).  The caller
 * has validated the request at the edge (xmit.c), so a bad one is a bug. */
void backend_submit(struct backend *be, struct backend_req *br);

/* Synchronous forms (they wait for an asynchronous backend); 0 or -1
 * with errno and the error message set. */
int backend_pread(struct backend *be, void *buf, uint64_t count,
                  uint64_t offset);
int backend_pwrite(struct backend *be, const void *buf, uint64_t count,
                   uint64_t offset, unsigned flags);
int backend_flush(struct backend *be);
int backend_trim(struct backend *be, uint64_t count, uint64_t offset,
                 unsigned flags);
int backend_zero(struct backend *be, uint64_t count, uint64_t offset,
                 unsigned flags);
int backend_cache(struct backend *be, uint64_t count, uint64_t offset);
/* Fills e (initialised by the caller for [offset, offset+count)): the
 * backend's extents, or one data extent for a backend without them. */
int backend_extents(struct backend *be, uint64_t count, uint64_t offset,
                    struct extents *e);

/* The optional operations, NULL-safe (false, -1, NULL when absent). */
bool backend_never_waits(struct backend *be);
bool backend_is_async(const struct backend *be);
int backend_send_fd(struct backend *be, uint64_t offset, uint64_t count,
                    uint64_t *fd_offset);
uint8_t *backend_map(struct backend *be, uint64_t offset, uint64_t count);

#endif
