/* snbd-server: replies of the transmission phase.  Workers build a reply
 * and queue it; each connection's writer thread sends queued replies in
 * batches (several replies in one sendv / one run of TLS records).  A
 * worker therefore never blocks on a client's socket: a client that stops
 * reading stalls only its own writer, never the shared pool.  The reader,
 * when it ran a request itself, sends the reply at once without blocking
 * and leaves only what the socket did not take to the writer
 * (enum reply_route). */
#ifndef SNBD_REPLY_H
#define SNBD_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "conn.h"
#include "wire.h"

/* Bound on request payload bytes in flight per connection (back-pressure
 * for large READs and WRITEs, besides the request count). */
#define REPLY_MAX_INFLIGHT_BYTES (64u * 1024 * 1024)
/* Over the server-wide bound (--max-queued-mib), a connection with nothing
 * in flight may still take one request of at most this many bytes, so a
 * fresh client is served while others pin the budget; each such
 * connection adds at most this much to the bound. */
#define REPLY_ALWAYS_BYTES (1u * 1024 * 1024)

struct reply;

/* A reply to request r with room for max_iov pieces and hdr_bytes of
 * headers copied in.  NULL on ENOMEM. */
struct reply *reply_new(const struct nbd_req *r, int max_iov,
                        size_t hdr_bytes);
/* Room for len header bytes inside the reply, appended as the next piece. */
void *reply_hdr(struct reply *rp, size_t len);
/* Appends borrowed data: it must live until the reply is sent (static, or
 * handed over with reply_own). */
void reply_data(struct reply *rp, const void *p, size_t len);
/* Appends len bytes of file fd from off, sent with the transport's
 * sendfile (which the caller checked it has); the last piece of a reply.
 * The reply is sent alone, never held back with others. */
void reply_file(struct reply *rp, int fd, uint64_t off, size_t len);
/* The reply frees p after sending (at most 2 per reply). */
void reply_own(struct reply *rp, void *p);
/* Where a reply goes; the caller knows which thread it runs on. */
enum reply_route {
  REPLY_TO_WRITER, /* queue for the connection's writer thread (workers,
                      backend completions) */
  REPLY_NOW,       /* the reader ran the request: send now without
                      blocking; what the socket does not take goes to
                      the writer */
  REPLY_BATCH,     /* as REPLY_NOW, but may be held back to share one
                      send with the next request's reply (its header
                      is already buffered) */
};
/* Sends or queues the reply to request r.  REPLY_TO_WRITER is safe from
 * any thread; REPLY_NOW and REPLY_BATCH only from the connection's reader.
 * Held (REPLY_BATCH) replies go out, in order, with the next REPLY_NOW
 * reply, when a batch is full, or at reply_flush_held.  rp == NULL
 * (allocation failed) ends the connection, as the client would otherwise
 * wait forever. */
void reply_queue(struct conn *c, const struct nbd_req *r,
                 struct reply *rp, enum reply_route route);
/* Reader only: sends the replies held back by REPLY_BATCH. */
void reply_flush_held(struct conn *c);

/* Reader side: count a request in flight (its reply is queued later);
 * wait for room before reading the next; at the end, wait until every
 * reply went out and stop the writer. */
void reply_account(struct conn *c, const struct nbd_req *r);
bool reply_wait_room(struct conn *c);
/* Before taking in valid request r (its header read, a WRITE's payload
 * not yet): wait while the server-wide queued bytes are over the bound
 * (docs/architecture.md "Memory bounds").  False if the connection died. */
bool reply_wait_budget(struct conn *c, const struct nbd_req *r);
/* Before a READ or WRITE of bytes is given memory: waits until it fits
 * under REPLY_MAX_INFLIGHT_BYTES with those in flight (or none is), so a
 * connection never holds more than that in request payloads.  False if
 * the connection died meanwhile. */
bool reply_wait_bytes(struct conn *c, uint64_t bytes);
void replies_finish(struct conn *c);

#endif
