/* snbd-server: shared types of the server rooms.
 *
 * Locks:
 *   server.conns_lock  (list of connections, counts) before conn.lock.
 *   conn.send_lock     (replies go out under it, one sender at a time) is
 *                      held while taking conn.lock; a holder of conn.lock
 *                      only ever trylocks send_lock (reply.c direct_lock).
 * pool.lock is a leaf: nothing else is taken while holding it.
 */
#ifndef SNBD_SERVER_H
#define SNBD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"
#include "metrics.h"
#include "snbd/protocol.h"
#include "tls.h"
#include "transport.h"
#include "vector.h"

/* A backend's export key (ceph-conf=...), as given: see backend.h
 * struct backend_key. */
struct keyval {
  char *key, *value;
};
DEFINE_VECTOR(keyvals, struct keyval);

enum tls_mode { TLS_MODE_OFF, TLS_MODE_ON, TLS_MODE_REQUIRE };

struct export {
  char *name;               /* "" is the default export */
  char *description;        /* NULL if none */
  char *spec;               /* backend spec as given, for logs */
  struct backend *be;       /* opened once the export table is final */
  bool readonly;
  bool tls_only;            /* SELECTIVETLS: needs TLS */
  char **allow;             /* NULL, or identities allowed (NULL-ended) */
  struct keyvals keys;      /* the backend's keys (ceph-conf=...) */
  struct metrics_export m;  /* its counters (atomic; metrics.c) */
};

struct listener {
  int fd;
  int family;               /* AF_INET, AF_INET6, AF_UNIX */
  int port;                 /* TCP: the port actually bound */
  char desc[128];           /* "127.0.0.1:10809", "unix:/path" */
};

struct server {
  /* configuration (set before threads start, read-only afterwards) */
  struct export *exports;
  size_t nexports;
  int threads;
  int max_inflight;         /* per connection */
  int handshake_timeout;    /* seconds */
  int max_negotiating;      /* connections allowed in the handshake */
  int max_negotiating_per_source; /* of those, from one address (0: any) */
  int max_connections;
  int max_queued_mib;       /* request + reply bytes queued, all
                               connections (0: no bound) */
  enum tls_mode tls_mode;
  bool tls_mode_set;        /* --tls given explicitly */
  char *tls_certs;          /* directory */
  char *tls_psk;            /* file */
  char *tls_priority;
  bool tls_verify_peer;
  int tls_tickets;          /* 1: issue session tickets (default), 0: not */
  int tls_ticket_lifetime;  /* seconds */
  bool tls_old_versions;    /* --tls-unsafe-old-versions */
  struct keyvals backend_keys; /* [server] defaults of backend keys */
  bool xmit_workers_only;   /* test knob (fuzz_server.c): every request
                               runs on the worker pool, none inline or
                               submitted from the reader (xmit.c) */

  /* run-time state */
  pthread_mutex_t creds_lock;
  struct tls_creds *creds;  /* current credentials, swapped on SIGHUP */
  int wake_pipe[2];         /* readable once shutdown begins */
  volatile int shutting_down;

  pthread_mutex_t conns_lock;
  pthread_cond_t conns_cond;
  struct conn *conns;       /* doubly-linked list of live connections */
  _Atomic uint64_t queued_bytes; /* (reply.c) against max_queued_mib */
  int nconns;
  struct conn *negotiating; /* those in the handshake (neglimit.c) */
  int nnegotiating;
  bool trim_pending;        /* large request buffers, or many connections'
                               buffers, freed since the last malloc_trim */
  int closed_since_trim;    /* (conn.c) */
};

/* export.c */
int export_parse(struct server *s, const char *arg);
int export_add(struct server *s, const char *name, const char *backend);
int export_set_key(struct export *e, const char *key, const char *value);
/* Sets key to a copy of value in v (replacing an earlier one); -1 with
 * set_error() if value is missing or memory is short. */
int keyvals_set(struct keyvals *v, const char *key, const char *value);
void keyvals_free(struct keyvals *v);
const struct export *export_find(const struct server *s, const char *name,
                                 size_t len);
int exports_open(struct server *s, bool all_readonly);
/* Flushes and closes every export; -1 if a final flush failed. */
int exports_close(struct server *s);
uint16_t export_eflags(const struct export *e, bool structured);

/* conn.c */
void conn_start(struct server *s, int fd, bool tcp_loopback,
                const char *peer);
void conns_shutdown_wait(struct server *s, int seconds);

/* pool.c: a shared pool of worker threads */
int pool_start(int nthreads);
void pool_submit(void (*fn)(void *), void *arg);
void pool_stop(void);

#endif
