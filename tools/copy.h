/* snbd-copy internals: endpoints (an NBD export, a file or block device,
 * a pipe, null: which discards) and the workers that move data between them. */
#ifndef SNBD_TOOLS_COPY_H
#define SNBD_TOOLS_COPY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "snbd/snbd.h"

#define MAX_CONNECTIONS 16
#define MAX_REQUESTS 64

enum ep_kind { EP_NBD, EP_FILE, EP_PIPE, EP_NULL };  /* EP_NULL: null: */

struct endpoint {
  enum ep_kind kind;
  const char *name;            /* as given on the command line */
  int fd;                      /* EP_FILE, EP_PIPE */
  bool blockdev;
  int64_t size;                /* -1: unknown (a pipe) */
  struct snbd_handle *h[MAX_CONNECTIONS];   /* EP_NBD: one per worker */
  int nconn;
  bool can_zero, can_flush, can_multi_conn, has_extents;
  atomic_bool fast_zero;       /* cleared after the server says ENOTSUP */
  uint32_t min_block, max_block;
  uint64_t run_start, run_end; /* EP_FILE: a data run SEEK_HOLE found */
};

struct copy_opts {
  int connections, requests;
  uint32_t request_size;
  bool flush, progress, sparse, dst_is_zero;
  int tls;                     /* -1: as each URI says */
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

/* copy-endpoint.c */
int ep_open(struct copy *c, struct endpoint *e, const char *name, bool src);
int ep_open_more(struct copy *c, struct endpoint *e, int n);
void ep_close(struct endpoint *e);
int ep_flush(struct copy *c, struct endpoint *e);
/* Synchronous file/pipe I/O: 0 or -1 after copy_fail(). */
int ep_file_read(struct copy *c, struct endpoint *e, char *buf, uint32_t len,
                 uint64_t off);
int ep_file_write(struct copy *c, struct endpoint *e, const char *buf,
                  uint32_t len, uint64_t off);
int ep_file_zero(struct copy *c, struct endpoint *e, char *zbuf,
                 uint32_t zlen, uint64_t len, uint64_t off);
/* Reads up to len bytes from a pipe; returns the count (0 at EOF) or -1. */
int64_t ep_pipe_read(struct copy *c, struct endpoint *e, char *buf,
                     uint32_t len);

/* A run of the source: data, or known to read as zeroes. */
struct extent {
  uint64_t off, len;
  bool zero;
};
/* Describes [off, off+len) of the source; *n extents in *v (caller frees). */
int ep_extents(struct copy *c, struct endpoint *e, int conn, uint64_t off,
               uint64_t len, struct extent **v, size_t *n);

/* copy-worker.c */
int copy_run(struct copy *c);

/* snbd-copy.c */
void copy_fail(struct copy *c, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

#endif
