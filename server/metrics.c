/* snbd-server: counting for the live metrics (metrics.h).  Every count is
 * a relaxed atomic add on a counter of its own: no lock, no ordering.  On
 * the request path, one or two reads of the request clock and four adds
 * (bench/RESULTS.md, "Metrics on against off").  metrics_http.c reads
 * them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

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

/* ---- the request clock ----
 * Read once or twice per request, so its cost is what counting costs:
 * clock_gettime through the vDSO takes 21 ns here, 60% of the rest of
 * the counting.  Where the kernel itself keeps time with the time stamp
 * counter (its clocksource is "tsc": it found the counter invariant,
 * one rate in every power state, and in step on every CPU) the counter
 * is read directly, 10 ns, and a duration is scaled by the counter's
 * rate, measured against CLOCK_MONOTONIC when counting starts.
 * Elsewhere a tick is a nanosecond of clock_gettime. */

static double ns_per_tick = 1;
#if defined(__x86_64__)
static bool use_tsc;

static bool kernel_keeps_tsc(void)
{
  unsigned a, b, c, d;
  /* CPUID 0x80000007 EDX bit 8: invariant TSC. */
  if ((unsigned)__get_cpuid_max(0x80000000, NULL) < 0x80000007u ||
      !__get_cpuid(0x80000007, &a, &b, &c, &d) || !(d & (1u << 8)))
    return false;
  char name[32] = "";
  FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/"
                  "current_clocksource", "re");
  if (!f)
    return false;
  bool ok = fgets(name, sizeof name, f) && strcmp(name, "tsc\n") == 0;
  fclose(f);
  return ok;
}

static void tsc_calibrate(void)
{
  if (!kernel_keeps_tsc())
    return;
  int64_t t0 = metrics_now();
  uint64_t c0 = __rdtsc();
  nanosleep(&(struct timespec){ .tv_nsec = 20000000 }, NULL);
  int64_t t1 = metrics_now();
  uint64_t c1 = __rdtsc();
  if (c1 <= c0 || t1 <= t0)
    return;
  ns_per_tick = (double)(t1 - t0) / (double)(c1 - c0);
  use_tsc = true;
}
#endif

void metrics_clock_init(void)
{
#if defined(__x86_64__)
  tsc_calibrate();
#endif
}

static inline int64_t ticks(void)
{
#if defined(__x86_64__)
  if (use_tsc)
    return (int64_t)__rdtsc();
#endif
  return metrics_now();
}

/* When this thread last counted a request (metrics_request_start). */
static __thread int64_t last_counted;

int64_t metrics_request_start(bool follows)
{
  if (!metrics_on)
    return 0;
  return follows && last_counted ? last_counted : ticks();
}

/* A counter only one thread writes: a plain load and store, no locked
 * instruction (readers may see it a moment late, never torn). */
static inline void bump(metrics_counter *c, uint64_t n)
{
  atomic_store_explicit(c, metrics_get(c) + n, memory_order_relaxed);
}

static int bucket_of(int64_t ns)
{
  int i = 0;
  while (i < METRICS_NBUCKETS && ns > metrics_bucket_ns[i])
    i++;
  return i;
}

static void observe(struct metrics_hist *h, int64_t ns)
{
  if (ns < 0)
    ns = 0;
  add(&h->bucket[bucket_of(ns)], 1);
  add(&h->sum_ns, (uint64_t)ns);
}

static void observe_own(struct metrics_hist *h, int64_t ns)
{
  if (ns < 0)
    ns = 0;
  bump(&h->bucket[bucket_of(ns)], 1);
  bump(&h->sum_ns, (uint64_t)ns);
}

/* Adds what from has into to (to: shared, or a snapshot's). */
static void add_hist(struct metrics_hist *to, const struct metrics_hist *from)
{
  for (int i = 0; i <= METRICS_NBUCKETS; i++)
    add(&to->bucket[i], metrics_get(&from->bucket[i]));
  add(&to->sum_ns, metrics_get(&from->sum_ns));
}

static void add_requests(struct metrics_requests *to,
                         const struct metrics_requests *from)
{
  for (int op = 0; op < METRICS_NOPS; op++) {
    add(&to->requests[op], metrics_get(&from->requests[op]));
    add(&to->bytes[op], metrics_get(&from->bytes[op]));
  }
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

/* ---- the connection's own counts ----
 * Every count on the request path was a locked add on a counter shared
 * by all connections of an export: four per request, 60% of what
 * counting cost after the clock (perf; bench/RESULTS.md).  A request its
 * connection's thread answers itself (exports that never wait) is
 * counted in the connection's struct metrics_local instead, which only
 * that thread writes.  A scrape adds the live connections' own counts to
 * the shared ones under conns_lock (metrics_snapshot); when transmission
 * ends the connection adds them to the shared counters and drops them,
 * under the same lock, so no scrape sees a request twice or misses it.
 * A request answered elsewhere (a worker, librbd's thread) or with an
 * error is counted in the shared counters as before. */

/* The connection whose thread this is, once it is in transmission. */
static __thread const struct conn *self;

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
  if (rc == 0) {
    struct metrics_local *l = calloc(1, sizeof *l);
    if (!l)
      return;                /* the shared counters, then */
    pthread_mutex_lock(&c->srv->conns_lock);
    c->ml = l;
    pthread_mutex_unlock(&c->srv->conns_lock);
    self = c;
  }
}

void metrics_conn_end(struct conn *c)
{
  struct metrics_local *l = c->ml;
  if (!l)
    return;
  pthread_mutex_lock(&c->srv->conns_lock);
  struct metrics_export *m = (struct metrics_export *)&c->exp->m;
  add_requests(&m->r, &l->r);
  for (int op = 0; op < METRICS_NOPS; op++)
    add_hist(&metrics.request[op], &l->hist[op]);
  c->ml = NULL;
  pthread_mutex_unlock(&c->srv->conns_lock);
  self = NULL;
  free(l);
}

/* Whether p is one of the n exports at v (compared as addresses: c->exp
 * may point into another table). */
static bool export_in(const struct export *p, const struct export *v,
                      size_t n, size_t *i)
{
  uintptr_t a = (uintptr_t)p, lo = (uintptr_t)v;
  if (a < lo || a >= lo + n * sizeof *v)
    return false;
  *i = (a - lo) / sizeof *v;
  return true;
}

int metrics_snapshot(struct server *s, const struct export_table *t,
                     struct metrics_snapshot *out)
{
  memset(out->hist, 0, sizeof out->hist);
  out->n = t->n;
  out->exp = calloc(t->n ? t->n : 1, sizeof *out->exp);
  if (!out->exp)
    return -1;
  pthread_mutex_lock(&s->conns_lock);
  for (size_t i = 0; i < t->n; i++)
    add_requests(&out->exp[i], &t->v[i].m.r);
  for (int op = 0; op < METRICS_NOPS; op++)
    add_hist(&out->hist[op], &metrics.request[op]);
  for (const struct conn *c = s->conns; c; c = c->next) {
    const struct metrics_local *l = c->ml;
    size_t i;
    if (!l)
      continue;
    for (int op = 0; op < METRICS_NOPS; op++)
      add_hist(&out->hist[op], &l->hist[op]);
    if (export_in(c->exp, t->v, t->n, &i))
      add_requests(&out->exp[i], &l->r);
  }
  pthread_mutex_unlock(&s->conns_lock);
  return 0;
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
void metrics_request(struct conn *c, uint16_t type, uint64_t count,
                     uint32_t err, int64_t t0)
{
  if (!metrics_on)
    return;
  int op = type < METRICS_OP_OTHER ? type : METRICS_OP_OTHER;
  int64_t now = ticks();
  int64_t ns = (int64_t)((double)(now - t0) * ns_per_tick);
  last_counted = now;
  struct metrics_local *l = c == self ? c->ml : NULL;
  if (l && !err) {
    bump(&l->r.requests[op], 1);
    bump(&l->r.bytes[op], count);
    observe_own(&l->hist[op], ns);
    return;
  }
  struct metrics_export *m = (struct metrics_export *)&c->exp->m;
  add(&m->r.requests[op], 1);
  if (err)
    add(&m->errors[op][err_index(err)], 1);
  else
    add(&m->r.bytes[op], count);
  observe(&metrics.request[op], ns);
}

void metrics_credential_reload(bool ok)
{
  if (!metrics_on)
    return;
  add(&metrics.cred_reloads[ok], 1);
}
