/* snbd-server: what the transmission phase's two files share.  xmit.c
 * reads and validates requests and decides where each runs; xmit_cmd.c
 * runs it through the backend layer and builds its reply. */
#ifndef SNBD_XMIT_H
#define SNBD_XMIT_H

#include <stdbool.h>

#include "backend.h"
#include "conn.h"
#include "reply.h"
#include "wire.h"

/* A request from the moment it was validated until its reply is queued.
 * Owned by whichever thread runs it: the reader, a worker, or the thread
 * completing its last backend operation (backend.h). */
struct req {
  struct conn *c;
  struct nbd_req r;
  enum reply_route route;    /* where its reply goes (reply.h) */
  void *buf;                 /* WRITE payload, READ data, or NULL */
  bool written;              /* WRITE payload already in place ... */
  int write_err;             /* ... with this outcome (write_into_map) */
  struct extents ex;         /* structured READ: data and holes */
  struct backend_req br;
  int64_t t0;                /* its start (metrics_request_start) */
};

/* xmit_cmd.c: runs q (its reply queued on q->route) and frees it; the
 * signature of a pool job. */
void xmit_req_start(void *q);
/* xmit_cmd.c: an error reply to q, which the caller still owns. */
void xmit_send_error(struct req *q, int err, const char *what);

#endif
