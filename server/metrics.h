/* snbd-server: live metrics.  metrics.c counts (relaxed atomics, no lock
 * on the request path); metrics_http.c serves them (--metrics) in the
 * Prometheus text format from libmicrohttpd's own thread.
 * docs/architecture.md "Metrics". */
#ifndef SNBD_METRICS_H
#define SNBD_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct conn;
struct export;
struct server;

/* Requests by NBD command (NBD_CMD_READ .. NBD_CMD_BLOCK_STATUS), and one
 * more for a command the server does not know. */
#define METRICS_NOPS 9
#define METRICS_OP_OTHER 8
/* Error replies by NBD error (NBD_EPERM .. NBD_ESHUTDOWN, in
 * metrics_err_names order). */
#define METRICS_NERRS 8

typedef atomic_uint_least64_t metrics_counter;

/* A counter's value, as a scrape reads it (relaxed: no ordering). */
static inline uint64_t metrics_get(const metrics_counter *c)
{
  return atomic_load_explicit(c, memory_order_relaxed);
}

/* Requests answered and the bytes of the successful ones, by op. */
struct metrics_requests {
  metrics_counter requests[METRICS_NOPS];
  metrics_counter bytes[METRICS_NOPS];
};

/* A struct export's own counters: they live and die with the export, so
 * an export removed from the table takes its series with it. */
struct metrics_export {
  /* Off the cache lines of the export's other fields, which every
   * request reads. */
  char pad[64];
  struct metrics_requests r;
  metrics_counter errors[METRICS_NOPS][METRICS_NERRS];
  metrics_counter policy_denials;
};

/* The histograms' upper bounds, in nanoseconds (+Inf is the last bucket). */
#define METRICS_NBUCKETS 19
extern const int64_t metrics_bucket_ns[METRICS_NBUCKETS];

struct metrics_hist {
  metrics_counter bucket[METRICS_NBUCKETS + 1];   /* not cumulative */
  metrics_counter sum_ns;
};

/* A connection's own counts of the requests its thread answers itself
 * (exports that never wait: RAM, tmpfs), written by that thread alone
 * with plain loads and stores instead of locked adds; scrapes add them
 * in, and they go into the shared counters when transmission ends
 * (metrics.c, "The connection's own counts"). */
struct metrics_local {
  struct metrics_requests r;
  struct metrics_hist hist[METRICS_NOPS];
};

/* What a scrape prints of the request counters: per export of one
 * table, and the duration histograms, shared and own counts added up
 * (metrics_snapshot). */
struct metrics_snapshot {
  size_t n;
  struct metrics_requests *exp;        /* n of them, the table's order */
  struct metrics_hist hist[METRICS_NOPS];
};

/* Connections by state x transport x TLS (a gauge, moved at each change). */
enum metrics_state { METRICS_NEGOTIATING, METRICS_TRANSMISSION };
enum { METRICS_NTRANSPORTS = 2 };        /* tcp, unix */

/* A connection's place in the gauge and what its handshake met; its
 * thread's alone (set before the thread starts, then only by it). */
struct metrics_conn {
  bool open;                /* counted in metrics.conns */
  bool transmission, tls;
  uint8_t transport;        /* 0 tcp, 1 unix */
  bool denied;              /* the policy refused something */
  bool tls_failed;
};

/* How a handshake ended (snbd_handshakes_total{result}). */
enum metrics_hs_result {
  METRICS_HS_OK, METRICS_HS_TLS_FAILED, METRICS_HS_POLICY_DENIED,
  METRICS_HS_TIMEOUT, METRICS_HS_DROPPED, METRICS_HS_ABORTED,
  METRICS_HS_NRESULTS,
};

/* Everything the exposition reads (metrics_http.c). */
struct metrics_global {
  metrics_counter conns[2][METRICS_NTRANSPORTS][2];  /* state, transport, tls */
  metrics_counter handshakes[METRICS_HS_NRESULTS];
  struct metrics_hist tls_handshake;
  struct metrics_hist request[METRICS_NOPS];
  metrics_counter cred_reloads[2];                   /* failed, ok */
};
extern struct metrics_global metrics;
/* Counting is on only with --metrics: set before any thread starts,
 * read-only afterwards. */
extern bool metrics_on;

extern const char *const metrics_op_names[METRICS_NOPS];
extern const char *const metrics_err_names[METRICS_NERRS];
extern const char *const metrics_hs_names[METRICS_HS_NRESULTS];

int64_t metrics_now(void);          /* monotonic nanoseconds */
/* metrics_now, or 0 when counting is off (a TLS handshake's start: no
 * clock read without --metrics). */
int64_t metrics_clock(void);
/* metrics_start: measure the request clock's rate (metrics.c; 20 ms). */
void metrics_clock_init(void);
/* xmit.c: the start of a request whose header was just read, on the
 * request clock (its own unit: only metrics_request reads it), 0 when
 * counting is off.  follows: the previous request was answered on this
 * thread while this one's header waited in the buffer, so this one starts
 * when that one was counted, and the clock is not read again. */
int64_t metrics_request_start(bool follows);

/* ---- the hooks, one call at each place something happens ---- */

/* conn.c: a connection was accepted (negotiating, not TLS yet). */
void metrics_conn_open(struct conn *c);
/* conn.c: its handshake ended; rc is srv_hs_run's, dropped says a flood
 * of negotiations cut it (conn.c drop_oldest_negotiating). */
void metrics_conn_negotiated(struct conn *c, int rc, bool dropped);
/* conn.c: transmission has ended and every request is answered; the
 * connection's own counts go into its export's (before its export table
 * is dropped). */
void metrics_conn_end(struct conn *c);
/* conn.c: the connection is about to be freed. */
void metrics_conn_close(struct conn *c);
/* handshake.c: a TLS handshake that began at t0 ended. */
void metrics_tls_handshake(struct conn *c, int64_t t0, bool ok);
/* handshake.c: the policy refused this connection export e (NULL: the
 * session, before STARTTLS). */
void metrics_policy_denied(struct conn *c, const struct export *e);
/* xmit_cmd.c, as its reply is queued: a request of NBD command type for
 * count bytes of c's export, begun at t0 (metrics_request_start), was
 * answered with NBD error err (NBD_SUCCESS, NBD_EIO, ...). */
void metrics_request(struct conn *c, uint16_t type, uint64_t count,
                     uint32_t err, int64_t t0);
/* metrics_http.c: the request counters of table t's exports and the
 * request durations, into *out (out->exp malloc'd: free it); -1 when out
 * of memory. */
struct export_table;
int metrics_snapshot(struct server *s, const struct export_table *t,
                     struct metrics_snapshot *out);
/* main.c: a SIGHUP reload of the TLS credentials. */
void metrics_credential_reload(bool ok);

/* metrics_http.c: switch counting on and serve GET /metrics on addr
 * (HOST:PORT or unix:PATH) from libmicrohttpd's thread; a non-loopback
 * HOST is refused unless allow_remote.  -1 (logged) on failure.  Call it
 * before any connection starts.  metrics_stop is idempotent. */
int metrics_start(struct server *s, const char *addr, bool allow_remote);
void metrics_stop(void);

#endif
