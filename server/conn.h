/* snbd-server: one client connection, shared by the handshake
 * (handshake.c) and transmission (xmit.c) phases. */
#ifndef SNBD_CONN_H
#define SNBD_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "server.h"
#include "tls.h"
#include "transport.h"
#include "wire.h"

struct conn {
  /* Set by conn_start on the accepting thread before the connection's
   * thread starts; t is replaced at STARTTLS, before any writer runs. */
  struct server *srv;
  struct transport *t;
  int fd;                       /* the socket; constant for the conn's life */
  struct tls_creds *creds;      /* ref taken at accept; NULL without TLS */
  struct export_table *table;   /* ref taken at accept: the exports this
                                   connection sees, whatever a reload
                                   does meanwhile */
  char peer[128];               /* for logs */
  bool tcp_loopback;            /* TCP peer on this host (xmit.c) */
  int64_t started;              /* monotonic ns */
  size_t greeted;               /* greeting bytes sent by srv_hs_greet */

  /* Negotiation state, the connection's thread's alone.  Everything
   * below "reset at STARTTLS" is forgotten when TLS starts (proto.md,
   * NBD_OPT_STARTTLS). */
  bool fixed;                   /* client set NBD_FLAG_C_FIXED_NEWSTYLE */
  bool no_zeroes;
  bool tls;                     /* TLS is up */
  struct tls_peer tls_peer;
  unsigned noptions;
  uint64_t discarded;           /* option bytes thrown away so far */
  bool tls_reqd_logged;         /* "TLS is required" said once in the log */
  struct wire_buf hs_out;       /* replies to the option being answered */
  /* -- reset at STARTTLS -- */
  bool structured;
  bool ext;                     /* NBD_OPT_EXTENDED_HEADERS: 32-byte
                                   headers, every reply a chunk */
  const struct export *meta_export; /* export SET_META_CONTEXT named */
  bool meta_base_allocation;    /* base:allocation selected */
  /* -- chosen by GO / EXPORT_NAME -- */
  const struct export *exp;
  uint16_t eflags;
  bool meta_active;             /* BLOCK_STATUS allowed */

  /* Transmission (reply.c).  Locks, in the order they may be taken
   * (server.h has the server-wide order):
   *   send_lock   held around every send of a reply, so one sender at a
   *               time writes to c->t; may be held while taking lock.
   *   lock        guards the fields below up to send_lock; whoever holds
   *               it only ever trylocks send_lock (reply.c direct_lock).
   * cond signals room for more requests (or dead), out_cond queued
   * replies (or writer_stop). */
  pthread_mutex_t lock;
  pthread_cond_t cond, out_cond;
  int inflight;                 /* requests whose reply is not yet sent */
  uint64_t inflight_bytes;      /* their READ/WRITE payload bytes */
  bool dead;                    /* a send failed: stop reading */
  struct reply *outq, *outq_tail;   /* the writer's queue, in order */
  bool writer_started, writer_stop;
  bool writer_busy;             /* a popped batch is being sent */
  pthread_mutex_t send_lock;
  pthread_t writer;             /* set once, when writer_started is */
  /* The reader's alone (no lock): */
  bool big_io;                  /* had a READ/WRITE of 128 KiB or more,
                                   or 8 MiB of them in flight */
  /* Replies of REPLY_BATCH requests held back to go out together in one
   * send (reply.h). */
  struct reply *held, *held_tail;
  int held_n, held_iov;
  size_t held_len;
  /* Large request buffers for reuse (bufpool.h): any thread. */
  struct buf_pool bufs;

  struct conn *prev, *next;     /* server.conns, under conns_lock */
  /* Under conns_lock (neglimit.c): while negotiating, c is in
   * server.negotiating and src (its source address's count) is set. */
  struct conn *neg_prev, *neg_next;
  struct neg_source *src;
  /* Steps the client has completed (flags, options, TLS handshake): a
   * flood drops the connections that made the least (neglimit.c).
   * Written by the connection's thread, read under conns_lock. */
  atomic_uint progress;
  /* Set by the handshake when it accepts GO / EXPORT_NAME, before the
   * reply goes out: from then on the client believes it is connected, so
   * the connection is never the one a flood drops (conn.c), even while
   * its thread has not yet left the negotiating count. */
  atomic_bool chosen;
  struct metrics_conn m;        /* the connection's thread's (metrics.c) */
  /* Its own request counts in transmission (metrics.c), or NULL: set and
   * cleared under conns_lock, written by the connection's thread. */
  struct metrics_local *ml;
};

/* handshake.c: sends what the socket takes of the greeting now, through
 * the connection's transport without blocking (the accepting thread, so
 * the client can answer while the connection's thread starts:
 * docs/architecture.md "Greeting from the accepting thread"); srv_hs_run sends
 * the rest. */
void srv_hs_greet(struct conn *c);
/* handshake.c: the server's side of the handshake, on the connection's
 * thread.  0 = go to transmission, -1 = close the connection. */
int srv_hs_run(struct conn *c);

/* xmit.c: serve requests until the client disconnects or shutdown. */
void xmit_run(struct conn *c);
uint32_t xmit_nbd_errno(int err);

/* neglimit.c, under conns_lock: count c as negotiating, first dropping
 * the negotiation a flood should lose if c's address or the server is at
 * its limit (-1: out of memory); and stop counting it (idempotent). */
int neg_enter(struct server *s, struct conn *c);
void neg_leave(struct server *s, struct conn *c);
static inline void conn_progress(struct conn *c)
{
  atomic_fetch_add(&c->progress, 1);
}

/* policy.c: the one place every TLS/identity/export yes-no is answered. */
enum policy_verdict {
  POLICY_OK,
  POLICY_TLS_REQD,        /* NBD_REP_ERR_TLS_REQD */
  POLICY_DENIED,          /* NBD_REP_ERR_POLICY */
  POLICY_UNKNOWN,         /* NBD_REP_ERR_UNKNOWN */
  POLICY_INVALID,         /* NBD_REP_ERR_INVALID */
  POLICY_UNSUP,           /* NBD_REP_ERR_UNSUP */
  POLICY_EXT_HEADER_REQD, /* NBD_REP_ERR_EXT_HEADER_REQD */
};
struct policy_session {
  enum tls_mode mode;
  bool tls;                     /* TLS established on this connection */
  bool have_creds;              /* server can do TLS at all */
  const struct tls_peer *peer;  /* when tls */
  bool ext;                     /* extended headers negotiated */
};
/* May option opt be processed at all in this state? (FORCEDTLS gate,
 * STARTTLS rules, what extended headers rule out.)  Unknown options in
 * FORCEDTLS before TLS: TLS_REQD.  EXPORT_NAME refused in any way ends
 * the session (the caller's business). */
enum policy_verdict policy_option(const struct policy_session *s,
                                  uint32_t opt, bool known);
/* May this session see / use export e (NULL: no such export)? */
enum policy_verdict policy_export(const struct policy_session *s,
                                  const struct export *e);
/* What the client is told for a verdict of policy_export: DENIED looks
 * like UNKNOWN. */
enum policy_verdict policy_export_answer(enum policy_verdict v);
bool policy_identity_allowed(const struct tls_peer *peer,
                             char *const *allow);
/* Does this allow list name certificates (cn=, DN), i.e. need the peer's
 * names parsed out of its certificate? */
bool policy_needs_cert_names(char *const *allow);
uint32_t policy_rep_error(enum policy_verdict v);
/* Why policy_export said v, for the operator's log. */
const char *policy_reason(const struct policy_session *s,
                          const struct export *e, enum policy_verdict v);

#endif
