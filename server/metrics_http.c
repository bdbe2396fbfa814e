/* snbd-server: --metrics, the counters of metrics.c served as Prometheus
 * text (exposition format 0.0.4) at GET /metrics.  HTTP is
 * libmicrohttpd's, on its one internal thread; we bind the socket
 * ourselves (TCP through listen.c, or a Unix socket, which MHD takes as
 * MHD_OPTION_LISTEN_SOCKET like any other).  A scrape reads atomics and
 * takes conns_lock to add the connections' own request counts
 * (metrics_snapshot) and, with each conn.lock in the documented order,
 * to add up the bytes queued; nothing the server does waits for HTTP. */
#include <errno.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "config.h"
#include "conn.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"

/* At most this many scrapers at once, each given this long. */
#define HTTP_MAX_CONNECTIONS 16
#define HTTP_TIMEOUT_S 10

static struct MHD_Daemon *daemon_;
static struct server *srv;
static char *unix_path;       /* to unlink at stop */

/* ---- the exposition ---- */

/* A label value, escaped as the format says: backslash, double quote and
 * newline (export names are whatever the operator chose). */
static void put_label(FILE *f, const char *name, const char *v)
{
  fprintf(f, "%s=\"", name);
  for (; *v; v++)
    if (*v == '\\')
      fputs("\\\\", f);
    else if (*v == '"')
      fputs("\\\"", f);
    else if (*v == '\n')
      fputs("\\n", f);
    else
      fputc(*v, f);
  fputc('"', f);
}

static void head(FILE *f, const char *name, const char *type,
                 const char *help)
{
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One histogram's series; labels: "" or 'op="read",' (with the comma). */
static void put_hist(FILE *f, const char *name, const char *labels,
                     const struct metrics_hist *h)
{
  uint64_t cum = 0;
  for (int i = 0; i < METRICS_NBUCKETS; i++) {
    cum += metrics_get(&h->bucket[i]);
    fprintf(f, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels,
            (double)metrics_bucket_ns[i] / 1e9, (unsigned long long)cum);
  }
  cum += metrics_get(&h->bucket[METRICS_NBUCKETS]);
  fprintf(f, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels,
          (unsigned long long)cum);
  /* The same labels in braces without the comma, or none at all. */
  char plain[64] = "";
  size_t n = strlen(labels);
  if (n)
    snprintf(plain, sizeof plain, "{%.*s}", (int)n - 1, labels);
  fprintf(f, "%s_sum%s %.9f\n%s_count%s %llu\n", name, plain,
          (double)metrics_get(&h->sum_ns) / 1e9, name, plain,
          (unsigned long long)cum);
}

static void put_connections(FILE *f)
{
  static const char *const states[] = { "negotiating", "transmission" };
  static const char *const transports[] = { "tcp", "unix" };
  head(f, "snbd_connections", "gauge", "Open client connections.");
  for (int s = 0; s < 2; s++)
    for (int t = 0; t < METRICS_NTRANSPORTS; t++)
      for (int tls = 0; tls < 2; tls++)
        fprintf(f, "snbd_connections{state=\"%s\",transport=\"%s\","
                "tls=\"%s\"} %llu\n", states[s], transports[t],
                tls ? "yes" : "no",
                (unsigned long long)metrics_get(&metrics.conns[s][t][tls]));
  head(f, "snbd_handshakes_total", "counter",
       "Handshakes ended, by how they ended.");
  for (int r = 0; r < METRICS_HS_NRESULTS; r++)
    fprintf(f, "snbd_handshakes_total{result=\"%s\"} %llu\n",
            metrics_hs_names[r],
            (unsigned long long)metrics_get(&metrics.handshakes[r]));
  head(f, "snbd_tls_handshake_duration_seconds", "histogram",
       "Time the TLS handshakes took, failed ones too.");
  put_hist(f, "snbd_tls_handshake_duration_seconds", "",
           &metrics.tls_handshake);
}

/* A scrape walks the current export table, holding a reference so that
 * a reload that replaces it meanwhile cannot free it under the walk.  The
 * counters belong to the export objects of that table: a reload makes new
 * ones, so an export's counters start again from zero after a SIGHUP (a
 * counter reset, which Prometheus's rate() and increase() allow for).
 * The request counters come from a snapshot (metrics_snapshot: the
 * shared counts and the live connections' own). */
static void put_export_counter(FILE *f, const struct export_table *t,
                               const struct metrics_snapshot *snap,
                               const char *name, const char *help,
                               size_t field)
{
  head(f, name, "counter", help);
  for (size_t i = 0; i < t->n; i++) {
    const struct export *e = &t->v[i];
    const metrics_counter *v =
      (const metrics_counter *)((const char *)&snap->exp[i] + field);
    for (int op = 0; op < METRICS_NOPS; op++) {
      uint64_t n = metrics_get(&v[op]);
      if (op == NBD_CMD_DISC || (op == METRICS_OP_OTHER && n == 0))
        continue;            /* DISC gets no reply; "other" when seen */
      fprintf(f, "%s{", name);
      put_label(f, "export", e->name);
      fprintf(f, ",op=\"%s\"} %llu\n", metrics_op_names[op],
              (unsigned long long)n);
    }
  }
}

static void put_exports(FILE *f, const struct export_table *t,
                        const struct metrics_snapshot *snap)
{
  put_export_counter(f, t, snap, "snbd_requests_total", "Requests answered.",
                     offsetof(struct metrics_requests, requests));
  put_export_counter(f, t, snap, "snbd_request_bytes_total",
                     "Bytes covered by successful requests (READ and WRITE: "
                     "their payload).",
                     offsetof(struct metrics_requests, bytes));
  head(f, "snbd_request_errors_total", "counter",
       "Requests answered with an error, by NBD error.");
  for (size_t i = 0; i < t->n; i++) {
    const struct export *e = &t->v[i];
    for (int op = 0; op < METRICS_NOPS; op++)
      for (int er = 0; er < METRICS_NERRS; er++) {
        uint64_t n = metrics_get(&e->m.errors[op][er]);
        if (n == 0)
          continue;          /* series appear with their first error */
        fputs("snbd_request_errors_total{", f);
        put_label(f, "export", e->name);
        fprintf(f, ",op=\"%s\",error=\"%s\"} %llu\n", metrics_op_names[op],
                metrics_err_names[er], (unsigned long long)n);
      }
  }
  head(f, "snbd_policy_denials_total", "counter",
       "Times the TLS/export policy refused a client this export.");
  for (size_t i = 0; i < t->n; i++) {
    fputs("snbd_policy_denials_total{", f);
    put_label(f, "export", t->v[i].name);
    fprintf(f, "} %llu\n",
            (unsigned long long)metrics_get(&t->v[i].m.policy_denials));
  }
  head(f, "snbd_export_size_bytes", "gauge", "Size of each export.");
  for (size_t i = 0; i < t->n; i++) {
    const struct export *e = &t->v[i];
    fputs("snbd_export_size_bytes{", f);
    put_label(f, "export", e->name);
    fprintf(f, "} %llu\n", (unsigned long long)(e->be ? e->be->size : 0));
  }
}

static void put_request_durations(FILE *f,
                                  const struct metrics_snapshot *snap)
{
  head(f, "snbd_request_duration_seconds", "histogram",
       "Time from a request's header to its reply being queued.");
  for (int op = 0; op < METRICS_NOPS; op++) {
    const struct metrics_hist *h = &snap->hist[op];
    uint64_t n = 0;
    for (int i = 0; i <= METRICS_NBUCKETS; i++)
      n += metrics_get(&h->bucket[i]);
    if (n == 0)
      continue;              /* an op's series appear with its first use */
    char labels[64];
    snprintf(labels, sizeof labels, "op=\"%s\",", metrics_op_names[op]);
    put_hist(f, "snbd_request_duration_seconds", labels, h);
  }
}

/* Bytes of READ/WRITE payload held for requests not yet answered. */
static uint64_t queued_bytes(void)
{
  uint64_t sum = 0;
  SCOPED_LOCK(&srv->conns_lock);
  for (struct conn *c = srv->conns; c; c = c->next) {
    pthread_mutex_lock(&c->lock);
    sum += c->inflight_bytes;
    pthread_mutex_unlock(&c->lock);
  }
  return sum;
}

static void put_server(FILE *f)
{
  head(f, "snbd_credential_reloads_total", "counter",
       "SIGHUP reloads of the TLS credentials.");
  fprintf(f, "snbd_credential_reloads_total{result=\"ok\"} %llu\n"
          "snbd_credential_reloads_total{result=\"failed\"} %llu\n",
          (unsigned long long)metrics_get(&metrics.cred_reloads[1]),
          (unsigned long long)metrics_get(&metrics.cred_reloads[0]));
  pthread_mutex_lock(&srv->creds_lock);
  struct tls_creds *creds = srv->creds ? tls_creds_ref(srv->creds) : NULL;
  pthread_mutex_unlock(&srv->creds_lock);
  int64_t expiry = creds ? tls_creds_cert_expiry(creds) : -1;
  if (creds)
    tls_creds_unref(creds);
  if (expiry >= 0) {
    head(f, "snbd_certificate_expiry_timestamp_seconds", "gauge",
         "When the server certificate in use expires (Unix time).");
    fprintf(f, "snbd_certificate_expiry_timestamp_seconds %lld\n",
            (long long)expiry);
  }
  head(f, "snbd_memory_queued_bytes", "gauge",
       "READ/WRITE payload bytes of requests not yet answered.");
  fprintf(f, "snbd_memory_queued_bytes %llu\n",
          (unsigned long long)queued_bytes());
}

/* The whole page, malloc'd; NULL when out of memory. */
static char *exposition(size_t *len)
{
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  if (!f)
    return NULL;
  put_connections(f);
  struct export_table *t = exports_get(srv);
  static const struct export_table none;
  struct metrics_snapshot snap;
  if (metrics_snapshot(srv, t ? t : &none, &snap) == -1) {
    export_table_unref(t);
    fclose(f);
    free(buf);
    return NULL;
  }
  if (t)
    put_exports(f, t, &snap);
  export_table_unref(t);
  put_request_durations(f, &snap);
  free(snap.exp);
  put_server(f);
  if (fclose(f) != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

/* ---- HTTP ---- */

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status,
                              char *body, size_t len, const char *type)
{
  struct MHD_Response *r =
    MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
  if (!r) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  enum MHD_Result ret = MHD_queue_response(conn, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result answer_text(struct MHD_Connection *conn,
                                   unsigned status, const char *msg)
{
  char *body = strdup(msg);
  return body ? answer(conn, status, body, strlen(body), "text/plain")
              : MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version,
                                  const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
  (void)cls;
  (void)version;
  (void)upload_data;
  (void)con_cls;
  *upload_size = 0;          /* a body, if any, is ignored */
  bool get = !strcmp(method, MHD_HTTP_METHOD_GET) ||
             !strcmp(method, MHD_HTTP_METHOD_HEAD);
  if (strcmp(url, "/metrics") != 0)
    return answer_text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n");
  if (!get)
    return answer_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only\n");
  size_t len;
  char *body = exposition(&len);
  if (!body)
    return MHD_NO;
  return answer(conn, MHD_HTTP_OK, body, len,
                "text/plain; version=0.0.4; charset=utf-8");
}

/* ---- start and stop ---- */

/* HOST:PORT ([v6]:PORT) or unix:PATH, bound and listening; -1 logged. */
static int bind_addr(const char *addr, bool allow_remote)
{
  struct listener l;
  int n = 0;
  if (!strncmp(addr, "unix:", 5)) {
    if (listen_unix(addr + 5, &l) == -1 || !(unix_path = strdup(addr + 5)))
      return -1;
    return l.fd;
  }
  CLEANUP_FREE char *host = strdup(addr);
  char *colon = host ? strrchr(host, ':') : NULL, *end;
  long port = colon ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || colon == host || !colon[1] || *end || port < 0 ||
      port > 65535) {
    log_error("--metrics %s: expected HOST:PORT or unix:PATH", addr);
    return -1;
  }
  *colon = '\0';
  char *h = host;
  if (h[0] == '[' && colon[-1] == ']') {
    h++;
    colon[-1] = '\0';
  }
  if (!strcmp(h, "localhost"))
    h = "127.0.0.1";
  /* Checked before binding: nothing listens beyond loopback unasked. */
  if (!allow_remote && !addr_is_local(h)) {
    log_error("--metrics %s: not a numeric loopback address; the metrics "
              "would be readable by anyone who can reach it (give "
              "--metrics-allow-remote to accept that)", addr);
    return -1;
  }
  if (listen_tcp(h, (int)port, &l, 1, &n) == -1)
    return -1;
  return l.fd;
}

int metrics_start(struct server *s, const char *addr, bool allow_remote)
{
  int fd = bind_addr(addr, allow_remote);
  if (fd == -1)
    return -1;
  srv = s;
  metrics_clock_init();
  metrics_on = true;
  /* The HTTP thread inherits a mask blocking every signal: they are the
   * accept loop's (listen.c). */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  daemon_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
                             MHD_USE_POLL, 0, NULL, NULL, on_request, NULL,
                             MHD_OPTION_LISTEN_SOCKET, fd,
                             MHD_OPTION_CONNECTION_LIMIT,
                             (unsigned)HTTP_MAX_CONNECTIONS,
                             MHD_OPTION_CONNECTION_TIMEOUT,
                             (unsigned)HTTP_TIMEOUT_S, MHD_OPTION_END);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (!daemon_) {
    close(fd);
    log_error("--metrics %s: cannot start the HTTP server", addr);
    return -1;
  }
  log_debug("metrics on http://%s/metrics", addr);
  return 0;
}

void metrics_stop(void)
{
  if (daemon_)
    MHD_stop_daemon(daemon_);   /* joins its thread, closes the socket */
  daemon_ = NULL;
  if (unix_path)
    unlink(unix_path);
  free(unix_path);
  unix_path = NULL;
}
