/* snbd-copy internals: endpoints (an NBD export, a file, a block device,
 * a pipe, null: which discards), each kind a table of operations
 * (ep-nbd.c, ep-file.c, ep-null.c), and the workers that move data
 * between them (copy-worker.c), which never ask which kind they use. */
#ifndef SNBD_TOOLS_COPY_H
#define SNBD_TOOLS_COPY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "snbd/snbd.h"
#include "vector.h"

#define MAX_CONNECTIONS 16
#define MAX_REQUESTS 64

struct copy;
struct endpoint;

/* A run of the source: data, or known to read as zeroes. */
struct extent {
  uint64_t off, len;
  bool zero;
};
DEFINE_VECTOR(extent_vec, struct extent);

/* Appends [off, off+len), merged into the last extent when it continues
 * it: 0, or -1 (ENOMEM). */
static inline int extent_add(struct extent_vec *v, uint64_t off, uint64_t len,
                             bool zero)
{
  struct extent *last = v->len ? &v->ptr[v->len - 1] : NULL;
  if (len == 0)
    return 0;
  if (last && last->zero == zero && last->off + last->len == off) {
    last->len += len;
    return 0;
  }
  return extent_vec_append(v, (struct extent){ off, len, zero });
}

/* One read, write or zero request.  The endpoint calls done(ud, err, msg)
 * once it has finished (err 0, or an errno with msg saying why, or NULL
 * when copy_fail() already has), from any thread, perhaps before the call
 * that started it returns. */
struct ep_req {
  int conn;                 /* which of the endpoint's connections */
  char *buf;                /* len bytes to read or write; scratch of
                             * buflen bytes for a zero request */
  uint32_t buflen;
  uint64_t off, len;
  bool fast;                /* zero: the endpoint asked for FAST_ZERO */
  void (*done)(void *ud, int err, const char *msg);
  void *ud;
};

/* What the copy needs from one kind of endpoint.  Optional operations are
 * NULL.  Synchronous ones return 0, or -1 after copy_fail(). */
struct ep_ops {
  /* A pipe: read or written in order, every byte, by one worker. */
  bool stream;
  /* Writes past its size fail: a source must fit (files grow). */
  bool fixed_size;
  /* Connections for workers 1..n-1 (optional: workers share it). */
  int (*open_more)(struct copy *c, struct endpoint *e, int n);
  void (*close)(struct endpoint *e);
  /* Makes what was written durable (optional). */
  int (*flush)(struct copy *c, struct endpoint *e);
  /* A destination's size before the copy (optional: it has one). */
  int (*truncate)(struct copy *c, struct endpoint *e, uint64_t size);
  /* Describes [off, off+len) of a source into *v, when has_extents. */
  int (*extents)(struct copy *c, struct endpoint *e, int conn, uint64_t off,
                 uint64_t len, struct extent_vec *v);
  /* A stream source: up to len bytes, the count (0 at its end) or -1. */
  int64_t (*read_next)(struct copy *c, struct endpoint *e, char *buf,
                       uint32_t len);
  /* Asynchronous requests, ending with r->done. */
  void (*read)(struct copy *c, struct endpoint *e, struct ep_req *r);
  void (*write)(struct copy *c, struct endpoint *e, struct ep_req *r);
  /* Any length when can_zero; else at most r->buflen. */
  void (*zero)(struct copy *c, struct endpoint *e, struct ep_req *r);
};

struct endpoint {
  const struct ep_ops *ops;
  const char *name;            /* as given on the command line */
  int fd;                      /* a file, block device or pipe */
  bool regular;                /* a regular file */
  bool created;                /* this copy created the file (removed if
                                  the copy fails) */
  int64_t size;                /* -1: unknown (a pipe, null:) */
  struct snbd_handle *h[MAX_CONNECTIONS];   /* NBD: one per worker */
  int nconn;
  /* can_zero: a zero request covers any length (NBD: the server's WRITE_ZEROES);
   * can_multi_conn: several workers at once (NBD: the server's multi-conn). */
  bool can_zero, can_flush, can_multi_conn, has_extents;
  /* One zero request of any length stays one request (NBD: extended
   * headers; a file: one fallocate; null:), so a hole is zeroed whole. */
  bool zero_any_size;
  atomic_bool fast_zero;       /* cleared after the server says ENOTSUP */
  atomic_bool bs_slow_warned;  /* ep-nbd.c: said block status is too slow */
  uint32_t min_block, max_block;
  uint64_t run_start, run_end; /* a file: a data run SEEK_HOLE found */
};

struct copy_opts {
  int connections, requests;
  uint32_t request_size;
  bool flush, progress, sparse, dst_is_zero;
  int tls;                     /* -1: as each URI says */
  unsigned timeout;            /* libsnbd request timeout, seconds */
  bool no_eh;                  /* --no-extended-headers */
};

struct copy {
  struct copy_opts o;
  struct endpoint src, dst;
  uint64_t total;              /* bytes to copy; src size (0 for a pipe) */
  uint64_t unit;               /* work handed to a worker at a time */
  pthread_mutex_t lock;        /* guards next, err, the endpoints' runs */
  uint64_t next;               /* next offset to hand out */
  char *err;                   /* first error, NULL if none */
  atomic_bool stop;            /* an error or a signal: wind down */
  atomic_uint_fast64_t done;   /* bytes written, for --progress */
  int nworkers;
};

/* copy-endpoint.c: opens NAME with the ops its syntax names. */
int ep_open(struct copy *c, struct endpoint *e, const char *name, bool src);

/* ep-nbd.c, ep-file.c, ep-null.c: each fills in e for its kind. */
int ep_nbd_open(struct copy *c, struct endpoint *e, bool src);
int ep_file_open(struct copy *c, struct endpoint *e, bool src);
int ep_null_open(struct copy *c, struct endpoint *e, bool src);

/* copy-worker.c */
int copy_run(struct copy *c);

/* copy-report.c: the first error wins and stops the copy; progress. */
void copy_fail(struct copy *c, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
void copy_progress(struct copy *c, bool final);

#endif
