/* snbd-server: connection lifecycle.  One thread per connection reads;
 * the list of live connections lets shutdown wait for them and lets a
 * flood of negotiating connections be trimmed (docs/security.md 11). */
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"

static struct tls_creds *creds_get(struct server *s)
{
  pthread_mutex_lock(&s->creds_lock);
  struct tls_creds *c = s->creds ? tls_creds_ref(s->creds) : NULL;
  pthread_mutex_unlock(&s->creds_lock);
  return c;
}

/* Under conns_lock. */
static void conn_link(struct server *s, struct conn *c)
{
  c->prev = NULL;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
}

static void conn_unlink(struct server *s, struct conn *c)
{
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  s->nconns--;
  neg_leave(s, c);
  pthread_cond_broadcast(&s->conns_cond);
}

/* Closes c and drops what it holds, its export table too (conn_thread
 * drops that earlier: see there). */
static void conn_free(struct conn *c)
{
  metrics_conn_close(c);
  transport_close(c->t);
  export_table_unref(c->table);
  if (c->creds)
    tls_creds_unref(c->creds);
  pthread_mutex_destroy(&c->lock);
  pthread_cond_destroy(&c->cond);
  pthread_cond_destroy(&c->out_cond);
  pthread_mutex_destroy(&c->send_lock);
  buf_pool_destroy(&c->bufs);
  free(c);
}

/* A refused negotiation: send FIN and read what the client still sends
 * for a moment, so the kernel does not answer unread data with a reset
 * that could destroy our last reply or TLS alert before the client reads
 * it. Bounded in bytes and time. */
static void linger_close(struct conn *c)
{
  char buf[4096];
  size_t total = 0;
  shutdown(c->fd, SHUT_WR);
  int64_t end = monotonic_ns() + 200000000;
  while (total < 65536) {
    int64_t left = end - monotonic_ns();
    struct pollfd p = { .fd = c->fd, .events = POLLIN };
    if (left <= 0 || poll(&p, 1, (int)(left / 1000000) + 1) <= 0)
      break;
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0)
      break;
    total += (size_t)n;
  }
}

static void *conn_thread(void *arg)
{
  struct conn *c = arg;
  struct server *s = c->srv;

  c->t->wake_fd = s->wake_pipe[0];
  c->t->deadline = c->started + (int64_t)s->handshake_timeout * 1000000000;
  log_debug("%s: connected", c->peer);
  int rc = srv_hs_run(c);

  pthread_mutex_lock(&s->conns_lock);
  bool dropped = c->src == NULL;     /* neg_drop_one took it out */
  neg_leave(s, c);
  pthread_mutex_unlock(&s->conns_lock);
  metrics_conn_negotiated(c, rc, dropped);

  if (rc == 0) {
    c->t->deadline = 0;
    transport_readahead(c->t);
    xmit_run(c);
    metrics_conn_end(c);
    /* Soft disconnect: close_notify for TLS, then FIN. */
    if (!c->dead)
      transport_shutdown(c->t);
  }
  else
    linger_close(c);
  log_debug("%s: closed", c->peer);
  /* Its exports go before the connection leaves the list: shut_down
   * (main.c) waits for an empty list, then drops the last reference,
   * whose final flush decides the exit status.  Dropped after, by a
   * thread that lagged behind (two CPU hogs beside the tests), the
   * final flush came after main had returned, or never, and a failed one
   * did not fail the exit (tests/faults/test-error-inject.py). */
  export_table_unref(c->table);
  c->table = NULL;
  pthread_mutex_lock(&s->conns_lock);
  conn_unlink(s, c);
  /* The heap keeps freed request buffers for reuse (main.c); give them
   * back when a connection that used large ones closes (clients that
   * pinned hundreds of MiB of replies left ~940 MiB in the heap for good
   * while other connections stayed open), or once nobody is connected
   * after 64 connections' worth of small ones (not after every connection
   * of a client that connects and disconnects in a loop: that cost 4% of
   * plain handshakes/s). */
  bool big = c->big_io;
  if (++s->closed_since_trim >= 64)
    s->trim_pending = true;
  /* Close while still holding conns_lock: neglimit.c's drop may only
   * touch fds of connections still listed. */
  conn_free(c);
  bool trim = big || (s->nconns == 0 && s->trim_pending);
  if (trim) {
    s->trim_pending = false;
    s->closed_since_trim = 0;
  }
  pthread_mutex_unlock(&s->conns_lock);
  if (trim)
    malloc_trim(0);
  return NULL;
}

void conn_start(struct server *s, int fd, bool tcp_loopback, const char *peer)
{
  struct conn *c = calloc(1, sizeof *c);
  if (!c || !(c->t = transport_plain_new(fd))) {
    log_error("%s: out of memory", peer);
    free(c);
    close(fd);
    return;
  }
  c->srv = s;
  c->fd = fd;
  c->tcp_loopback = tcp_loopback;
  c->started = monotonic_ns();
  snprintf(c->peer, sizeof c->peer, "%s", peer);
  pthread_mutex_init(&c->lock, NULL);
  pthread_cond_init(&c->cond, NULL);
  pthread_cond_init(&c->out_cond, NULL);
  pthread_mutex_init(&c->send_lock, NULL);
  buf_pool_init(&c->bufs, &s->buf_pools);
  if (s->tls_mode != TLS_MODE_OFF)
    c->creds = creds_get(s);
  c->table = exports_get(s);
  if (!c->table) {              /* not serving yet, or any more */
    conn_free(c);
    return;
  }

  pthread_mutex_lock(&s->conns_lock);
  if (s->nconns >= s->max_connections) {
    pthread_mutex_unlock(&s->conns_lock);
    log_info("%s: connection limit (%d) reached; refusing", peer,
             s->max_connections);
    conn_free(c);
    return;
  }
  if (neg_enter(s, c) == -1) {
    pthread_mutex_unlock(&s->conns_lock);
    log_error("%s: out of memory", peer);
    conn_free(c);
    return;
  }
  conn_link(s, c);
  metrics_conn_open(c);
  /* The thread start was on the critical path of every handshake: now
   * the client reads the greeting and answers meanwhile. */
  srv_hs_greet(c);

  pthread_attr_t attr;
  pthread_t tid;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  int err = pthread_create(&tid, &attr, conn_thread, c);
  pthread_attr_destroy(&attr);
  if (err != 0) {
    log_error("%s: cannot start a thread: %s", peer, strerror(err));
    conn_unlink(s, c);
    conn_free(c);
  }
  pthread_mutex_unlock(&s->conns_lock);
}

/* Shutdown has been signalled through wake_pipe; wait for connections to
 * finish, then cut those still there.  Returns how many did not end even
 * then (each named in the log): their threads wait on a backend that has
 * not answered, and still hold their exports. */
int conns_shutdown_wait(struct server *s, int seconds)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += seconds;
  pthread_mutex_lock(&s->conns_lock);
  while (s->nconns > 0 &&
         pthread_cond_timedwait(&s->conns_cond, &s->conns_lock, &ts) == 0)
    ;
  if (s->nconns > 0) {
    log_warn("%d connection(s) still open after %d s; closing them",
             s->nconns, seconds);
    for (struct conn *c = s->conns; c; c = c->next)
      shutdown(c->fd, SHUT_RDWR);
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    while (s->nconns > 0 &&
           pthread_cond_timedwait(&s->conns_cond, &s->conns_lock, &ts) == 0)
      ;
    for (struct conn *c = s->conns; c; c = c->next)
      if (c->exp)
        log_error("%s: still busy 5 s after it was closed (a request its "
                  "backend has not answered); export " EXPORT_FMT " is not "
                  "flushed", c->peer, EXPORT_ARGS(c->exp->name));
      else
        log_error("%s: still busy 5 s after it was closed", c->peer);
  }
  int left = s->nconns;
  pthread_mutex_unlock(&s->conns_lock);
  return left;
}
