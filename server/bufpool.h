/* snbd-server: a connection's pool of large request buffers (READ data,
 * WRITE payloads), so a stream of 256 KiB requests reuses warm memory.
 * Without it each buffer came from malloc, which gave the top of the
 * connection's heap back after a burst of frees (M_TRIM_THRESHOLD, 8 MiB:
 * main.c) and took fresh pages again: a page fault per 4 KiB copied into
 * the buffer.  Measured (perf -e page-faults, memory export): 256 KiB
 * random reads at depth 64 over Unix, 46,000 faults in 5 s, 4,000 with
 * the pool, and 7-12% more bytes for the same server CPU; reading 1 GiB
 * over TLS X.509 with nbdcopy, 0.88 -> 0.72 s of server CPU.
 *
 * Bounded per connection (BUF_POOL_MAX_N buffers, BUF_POOL_MAX_BYTES) and
 * server-wide (struct buf_pool_total: every pool together, however many
 * connections); emptied when the connection closes.  A pool is not
 * emptied when its connection goes idle: fio's nbd engine leaves nothing
 * in flight between most requests, so a pool emptied then was empty
 * nearly always (64,585 drains in 70,000 requests); the server-wide bound
 * is what idle connections can hold, as malloc's arenas hold freed
 * memory.  Any thread may get and put (the reader allocates; workers,
 * completions and the writer free).
 */
#ifndef SNBD_BUFPOOL_H
#define SNBD_BUFPOOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Only buffers of at least this size are kept: malloc's own per-thread
 * caches serve smaller ones without touching fresh pages. */
#define BUF_POOL_MIN (64u * 1024)
/* A connection's requests in flight (--max-inflight, 64) of nbdcopy's
 * 256 KiB: fewer and the frees of a burst beyond them still made malloc
 * give memory back (16 buffers kept: 2,247 of 8,192 buffers freed, the
 * faults unchanged). */
#define BUF_POOL_MAX_N 64
#define BUF_POOL_MAX_BYTES (16u << 20)
/* Every connection's pool together (nbdcopy's 4 connections). */
#define BUF_POOL_TOTAL_MAX (64u << 20)

/* Bytes kept in every connection's pool together, against max. */
struct buf_pool_total {
  _Atomic uint64_t bytes;
  uint64_t max;
};

struct buf_pool {
  pthread_mutex_t lock;         /* leaf */
  struct buf_pool_total *total;
  _Atomic int n;                /* written under lock, peeked without */
  size_t bytes;
  /* BUF_POOL_MAX_N entries, allocated with the first buffer kept (an
   * idle connection does not pay for them). */
  struct buf_pool_entry { void *buf; size_t cap; } *v;
};

void buf_pool_init(struct buf_pool *p, struct buf_pool_total *total);
/* Empties the pool (buf_pool_drain) and destroys its lock. */
void buf_pool_destroy(struct buf_pool *p);
/* A buffer of at least size bytes (a kept one if one fits, not more than
 * twice as large), or NULL with errno set as by malloc.  Its contents are
 * whatever the last user left. */
void *buf_pool_get(struct buf_pool *p, size_t size);
/* Takes back a buffer from buf_pool_get or malloc (NULL is ignored):
 * kept if the bounds allow, else freed. */
void buf_pool_put(struct buf_pool *p, void *buf);
/* Whether the pool keeps any buffer (a hint, read without the lock). */
bool buf_pool_holds(struct buf_pool *p);
/* Frees every buffer kept. */
void buf_pool_drain(struct buf_pool *p);

#endif
