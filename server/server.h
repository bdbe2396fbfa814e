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
#include "bufpool.h"
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

struct backend_ref;        /* export.c */

struct export {
  char *name;               /* "" is the default export */
  char *description;        /* NULL if none */
  char *spec;               /* backend spec as given, for logs */
  struct backend *be;       /* opened once the export table is final */
  struct backend_ref *be_ref; /* be's owner, shared with the exports of
                               later tables that keep it (export.c) */
  bool readonly;
  bool readonly_asked;      /* readonly before the backend's caps, with -r */
  bool tls_only;            /* SELECTIVETLS: needs TLS */
  char **allow;             /* NULL, or identities allowed (NULL-ended) */
  struct keyvals keys;      /* the backend's keys (ceph-conf=...) */
  struct metrics_export m;  /* its counters (atomic; metrics.c) */
};

/* The exports, opened, as one immutable unit: SIGHUP builds a new table
 * and swaps it in (main.c); each connection holds a reference to the
 * table current at its accept, so the export it chose stays valid until
 * it disconnects.  An export that a reload keeps unchanged shares its
 * backend with the old table (a memory export keeps its data). */
struct export_table {
  atomic_int refs;
  size_t n;
  struct export *v;         /* v[0] is also the default export */
};

struct listener {
  int fd;
  int family;               /* AF_INET, AF_INET6, AF_UNIX */
  int port;                 /* TCP: the port actually bound */
  char desc[128];           /* "127.0.0.1:10809", "unix:/path" */
};

struct server {
  /* configuration (set before threads start, read-only afterwards) */
  struct export *exports;   /* as parsed; exports_open moves them into */
  size_t nexports;          /* table */
  int threads;
  int max_inflight;         /* per connection */
  int handshake_timeout;    /* seconds */
  int max_negotiating;      /* connections allowed in the handshake */
  int max_negotiating_per_source; /* of those, from one address (0: any) */
  int max_connections;
  int max_queued_mib;       /* request + reply bytes queued, all
                               connections (0: no bound) */
  int tcp_timeout;          /* seconds a TCP peer may be silent; 0: no limit */
  enum tls_mode tls_mode;
  bool tls_mode_set;        /* --tls given explicitly */
  char *tls_certs;          /* directory */
  char *tls_psk;            /* file */
  char *tls_priority;
  bool tls_verify_peer;
  int tls_tickets_off;      /* --tls-session-tickets: 0 on (default), 1 off */
  int tls_ticket_lifetime;  /* seconds */
  bool tls_old_versions;    /* --tls-unsafe-old-versions */
  struct keyvals backend_keys; /* [server] defaults of backend keys */
  bool xmit_workers_only;   /* test knob (fuzz_server.c): every request
                               runs on the worker pool, none inline or
                               submitted from the reader (xmit.c) */

  /* run-time state */
  pthread_mutex_t creds_lock; /* guards creds and table (a leaf) */
  struct tls_creds *creds;  /* current credentials, swapped on SIGHUP */
  struct export_table *table; /* current exports, swapped on SIGHUP */
  int wake_pipe[2];         /* readable once shutdown begins */
  volatile int shutting_down;

  pthread_mutex_t conns_lock;
  pthread_cond_t conns_cond;
  struct conn *conns;       /* doubly-linked list of live connections */
  _Atomic uint64_t queued_bytes; /* (reply.c) against max_queued_mib */
  struct buf_pool_total buf_pools;  /* every connection's bufpool.c */
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
const struct export *export_find(const struct export_table *t,
                                 const char *name, size_t len);
/* Opens the parsed exports s->exports into a table (taking them), which
 * becomes s->table.  -1 after logging which export failed. */
int exports_open(struct server *s, bool all_readonly);
/* Opens exports v[0..n) into a new table, which takes v on success and on
 * failure.  Backends get the server's default keys (defaults: ceph-conf=
 * and the like), then each export's own.  An export of `keep` (may be
 * NULL) with the same name, spec, keys and readonly_asked lends its
 * backend instead of a new open.  NULL with
 * set_error() naming the export that failed. */
struct export_table *export_table_open(struct export *v, size_t n,
                                       bool all_readonly,
                                       const struct keyvals *defaults,
                                       const struct export_table *keep);
/* A reference to the current table (creds_lock), for a connection. */
struct export_table *exports_get(struct server *s);
/* Makes t the current table; drops the server's reference to the old. */
void exports_swap(struct server *s, struct export_table *t);
/* Drops a reference; the last one closes the table's backends that no
 * later table shares, flushing writable ones: -1 if such a flush failed. */
int export_table_unref(struct export_table *t);
/* Exports that need TLS (tls-only, allow=) when TLS is off: -1 with
 * set_error() naming the first. */
int exports_check_tls(const struct export *v, size_t n, bool tls_off);
/* For messages, an export's label: "(default)" for the default export's
 * empty name, else the name in quotes:
 *   log_info("export " EXPORT_FMT " removed", EXPORT_ARGS(e->name));
 * (no buffer: a per-thread one of NBD_MAX_STRING bytes was zeroed on
 * every connection thread's stack at its creation, a page per idle
 * connection; name is evaluated three times). */
#define EXPORT_FMT "%s%s%s"
#define EXPORT_ARGS(name) \
  *(name) ? "\"" : "", *(name) ? (name) : "(default)", *(name) ? "\"" : ""
/* One line for the log: name, backend, size, read-only, TLS, allow=. */
void export_describe(const struct export *e, bool is_default, char *buf,
                     size_t size);
/* Frees the parsed exports and drops the server's table: -1 if a final
 * flush failed. */
int exports_close(struct server *s);
uint16_t export_eflags(const struct export *e, bool structured);

/* conn.c */
void conn_start(struct server *s, int fd, bool tcp_loopback,
                const char *peer);
int conns_shutdown_wait(struct server *s, int seconds);

/* pool.c: a shared pool of worker threads */
int pool_start(int nthreads);
void pool_submit(void (*fn)(void *), void *arg);
void pool_stop(void);

#endif
