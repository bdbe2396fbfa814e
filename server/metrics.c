/* snbd-server: counting for the live metrics (metrics.h).  Every count is
 * a relaxed atomic add on a counter of its own: no lock, no ordering, on
 * the request path two clock reads and four adds (bench/RESULTS.md,
 * snbd-metrics against snbd).  metrics_http.c reads them. */
#include <sys/socket.h>
#include <time.h>

#include "conn.h"
#include "metrics.h"
#include "snbd/protocol.h"

struct metrics_global metrics;
bool metrics_on;

/* 10 us to 10 s, roughly 1-2.5-5 per decade: a RAM request takes tens of
 * microseconds, a TLS handshake about a millisecond, a disk seconds at
 * worst. */
const int64_t metrics_bucket_ns[METRICS_NBUCKETS] = {
  10000, 25000, 50000, 100000, 250000, 500000,
  1000000, 2500000, 5000000, 10000000, 25000000, 50000000,
  100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000,
  10000000000,
};

const char *const metrics_op_names[METRICS_NOPS] = {
  "read", "write", "disc", "flush", "trim", "cache", "write_zeroes",
  "block_status", "other",
};

const char *const metrics_err_names[METRICS_NERRS] = {
  "eperm", "eio", "enomem", "einval", "enospc", "eoverflow", "enotsup",
  "eshutdown",
};

const char *const metrics_hs_names[METRICS_HS_NRESULTS] = {
  "ok", "tls_failed", "policy_denied", "timeout", "dropped", "aborted",
};

static inline void add(metrics_counter *c, uint64_t n)
{
  atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline void sub(metrics_counter *c, uint64_t n)
{
  atomic_fetch_sub_explicit(c, n, memory_order_relaxed);
}

int64_t metrics_clock(void)
{
  return metrics_on ? metrics_now() : 0;
}

int64_t metrics_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void observe(struct metrics_hist *h, int64_t ns)
{
  if (ns < 0)
    ns = 0;
  int i = 0;
  while (i < METRICS_NBUCKETS && ns > metrics_bucket_ns[i])
    i++;
  add(&h->bucket[i], 1);
  add(&h->sum_ns, (uint64_t)ns);
}

/* ---- connections ---- */

static metrics_counter *conn_cell(const struct conn *c)
{
  const struct metrics_conn *m = &c->m;
  return &metrics.conns[m->transmission][m->transport][m->tls];
}

void metrics_conn_open(struct conn *c)
{
  if (!metrics_on)
    return;
  int domain = AF_INET;
  socklen_t len = sizeof domain;
  getsockopt(c->fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
  c->m = (struct metrics_conn){ .open = true,
                                .transport = domain == AF_UNIX };
  add(conn_cell(c), 1);
}

void metrics_conn_close(struct conn *c)
{
  if (c->m.open)
    sub(conn_cell(c), 1);
  c->m.open = false;
}

static enum metrics_hs_result hs_result(const struct conn *c, int rc,
                                        bool dropped)
{
  if (rc == 0)
    return METRICS_HS_OK;
  if (dropped)
    return METRICS_HS_DROPPED;
  if (c->m.tls_failed)
    return METRICS_HS_TLS_FAILED;
  if (c->m.denied)
    return METRICS_HS_POLICY_DENIED;
  int64_t deadline = c->started +
                     (int64_t)c->srv->handshake_timeout * 1000000000;
  if (metrics_now() >= deadline)
    return METRICS_HS_TIMEOUT;
  return METRICS_HS_ABORTED;
}

void metrics_conn_negotiated(struct conn *c, int rc, bool dropped)
{
  if (!metrics_on)
    return;
  add(&metrics.handshakes[hs_result(c, rc, dropped)], 1);
  if (rc == 0 && c->m.open) {
    sub(conn_cell(c), 1);
    c->m.transmission = true;
    add(conn_cell(c), 1);
  }
}

/* ---- handshake ---- */

void metrics_tls_handshake(struct conn *c, int64_t t0, bool ok)
{
  if (!metrics_on)
    return;
  observe(&metrics.tls_handshake, metrics_now() - t0);
  if (!ok) {
    c->m.tls_failed = true;
    return;
  }
  if (c->m.open) {
    sub(conn_cell(c), 1);
    c->m.tls = true;
    add(conn_cell(c), 1);
  }
}

void metrics_policy_denied(struct conn *c, const struct export *e)
{
  if (!metrics_on)
    return;
  c->m.denied = true;
  if (e)
    add((metrics_counter *)&e->m.policy_denials, 1);
}

/* ---- requests ---- */

static int err_index(uint32_t nbd_err)
{
  switch (nbd_err) {
  case NBD_EPERM: return 0;
  case NBD_EIO: return 1;
  case NBD_ENOMEM: return 2;
  case NBD_EINVAL: return 3;
  case NBD_ENOSPC: return 4;
  case NBD_EOVERFLOW: return 5;
  case NBD_ENOTSUP: return 6;
  case NBD_ESHUTDOWN: return 7;
  default: return 1;
  }
}

/* The export's counters are written through a const export: they are the
 * only mutable part of it, and atomic. */
void metrics_request(const struct export *e, uint16_t type, uint64_t count,
                     uint32_t err, int64_t t0)
{
  if (!metrics_on)
    return;
  struct metrics_export *m = (struct metrics_export *)&e->m;
  int op = type < METRICS_OP_OTHER ? type : METRICS_OP_OTHER;
  add(&m->requests[op], 1);
  if (err)
    add(&m->errors[op][err_index(err)], 1);
  else
    add(&m->bytes[op], count);
  observe(&metrics.request[op], metrics_now() - t0);
}

void metrics_credential_reload(bool ok)
{
  if (!metrics_on)
    return;
  add(&metrics.cred_reloads[ok], 1);
}
