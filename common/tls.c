/* snbd: TLS sessions and the TLS transport (see tls.h).  Credentials are
 * loaded in tls_creds.c, the peer's identity read in tls_peer.c, session
 * resumption in tls_resume.c; GnuTLS is used in these files only.
 *
 * I/O model.  GnuTLS reads and writes the socket only through tls_pull and
 * tls_push below.  tls_pull never blocks (MSG_DONTWAIT): when the socket
 * is empty GnuTLS returns GNUTLS_E_AGAIN, which is not fatal, and we wait
 * with transport_wait() (deadline, wake_fd) outside GnuTLS.  So a timeout
 * or a wake-up while reading never invalidates the session: another thread
 * may still send on it.  tls_push blocks until it has written something,
 * waiting in transport_wait() too, because gnutls_record_uncork(WAIT)
 * would spin on GNUTLS_E_AGAIN.
 *
 * tls_pull reads ahead once transport_readahead() says so (after the NBD
 * handshake): GnuTLS asks for a record's 5-byte header and then for its
 * body, two recv calls per 16 KiB record, so each recv also fills a
 * read-ahead buffer that the next pulls are served from.  Only what
 * tls_pull hands to GnuTLS leaves that buffer: it holds ciphertext, never
 * data.  It is taken only while data flows (the last plain recv got all
 * it asked for) and freed whenever it is empty and the socket has nothing
 * more, so an idle connection holds none.
 *
 * Plain-text injection (nbdkit CVE-2021-3716): the plain transport does no
 * read-ahead, and from the handshake on every byte of the socket is read
 * by GnuTLS through tls_pull.  Bytes a peer sends in clear text before its
 * first TLS record are therefore parsed as TLS and fail the handshake;
 * they can never come back out of recv as data.
 *
 * Threads: one thread may call recv (and pending) while another calls
 * sendv (and shutdown) on the same TLS transport; GnuTLS allows one
 * receiver and one sender per session.  A TLS 1.3 KeyUpdate request seen
 * by the receiver is answered by GnuTLS on the sender's next record, so
 * the receiver never writes.  Everything else (handshake, close) needs the
 * transport to itself.  Credentials are immutable once loaded and shared
 * by any number of sessions; each session holds a reference, and its
 * gnutls_session_get_ptr() is that struct tls_creds (for the PSK lookup).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "log.h"
#include "tls_creds.h"
#include "tls_explain.h"
#include "tls_resume.h"

/* Bytes gathered by gnutls_record_cork before we flush, bounding the copy
 * GnuTLS keeps of a large payload. */
#define TLS_CORK_MAX (256 * 1024)

/* tls_pull's read-ahead buffer: a few full records. */
#define TLS_READAHEAD (64 * 1024)

/* The largest TLS record's plain text. */
#define TLS_RECORD_MAX 16384

/* tls_try_sendv takes replies up to this size (a 4 KiB read's reply, a
 * batch of small ones); the spill buffer is freed after a flush if it grew
 * beyond TLS_SPILL_KEEP, so an idle connection keeps at most that. */
#define TLS_TRY_MAX (64 * 1024)
#define TLS_SPILL_KEEP (64 * 1024)

/* Non-fatal GnuTLS results (warning alerts) tolerated in a row. */
#define TLS_SOFT_ERRORS_MAX 16

/* Per-session state, the priv of a TLS transport. */
struct tls_conn {
  gnutls_session_t s;
  struct tls_creds *creds;                    /* a reference */
  char *hostname;                             /* client: for verification */
  char *resume_key;                           /* client: where to cache the
                                                 session's ticket; NULL when
                                                 none or once cached */
  gnutls_typed_vdata_st vdata[2];
  unsigned nvdata;
  int recv_errno;                             /* set by tls_pull only */
  int send_errno;                             /* set by tls_push only */
  /* tls_pull's read-ahead (receiver only): ciphertext [ra_off, ra_len)
   * of ra, NULL while empty and the socket is drained; allowed once
   * ra_on, taken when ra_flowing (the last recv without it was full). */
  char *ra;
  size_t ra_off, ra_len;
  bool ra_on, ra_flowing;
  size_t corked;                              /* writer only */
  /* tls_try_sendv: ciphertext the socket did not take at once, written
   * out before anything else is pushed (sender only). */
  bool trying;
  char *spill;
  size_t spill_off, spill_len, spill_cap;
};

/* ---- transport functions given to GnuTLS ---- */

static size_t ra_held(const struct tls_conn *conn)
{
  return conn->ra_len - conn->ra_off;
}

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
  struct transport *t = ptr;
  struct tls_conn *conn = t->priv;
  size_t n = ra_held(conn) < len ? ra_held(conn) : len;
  if (n > 0)
    memcpy(buf, conn->ra + conn->ra_off, n);
  conn->ra_off += n;
  if (n == len)
    return (ssize_t)n;
  /* The read-ahead is empty: what is asked for, and what follows. */
  if (!conn->ra && conn->ra_flowing && len - n < TLS_READAHEAD)
    conn->ra = malloc(TLS_READAHEAD);
  struct iovec iov[2] = { { (char *)buf + n, len - n },
                          { conn->ra, TLS_READAHEAD } };
  struct msghdr m = { .msg_iov = iov, .msg_iovlen = conn->ra ? 2 : 1 };
  for (;;) {
    ssize_t r = recvmsg(t->fd, &m, MSG_DONTWAIT);
    if (r >= 0) {
      size_t got = (size_t)r;
      if (!conn->ra)
        conn->ra_flowing = conn->ra_on && got == len - n;
      if (got > len - n) {
        conn->ra_off = 0;
        conn->ra_len = got - (len - n);
        got = len - n;
      }
      return (ssize_t)(n + got);
    }
    if (errno == EINTR)
      continue;
    int err = errno;
    free(conn->ra);                     /* empty; held again when needed */
    conn->ra = NULL;
    conn->ra_off = conn->ra_len = 0;
    conn->ra_flowing = false;
    if (n > 0)
      return (ssize_t)n;
    if (err != EAGAIN && err != EWOULDBLOCK)
      conn->recv_errno = err;
    errno = err;
    return -1;      /* GnuTLS reads errno: EAGAIN -> GNUTLS_E_AGAIN */
  }
}

/* Keeps bytes [skip, end) of iov in the spill buffer. */
static int spill_keep(struct tls_conn *conn, const giovec_t *iov, int iovcnt,
                      size_t skip)
{
  for (int i = 0; i < iovcnt; i++) {
    const char *p = iov[i].iov_base;
    size_t n = iov[i].iov_len;
    if (skip >= n) {
      skip -= n;
      continue;
    }
    p += skip;
    n -= skip;
    skip = 0;
    if (conn->spill_len + n > conn->spill_cap) {
      size_t cap = conn->spill_cap ? conn->spill_cap : 16384;
      while (cap < conn->spill_len + n)
        cap *= 2;
      char *b = realloc(conn->spill, cap);
      if (!b)
        return -1;
      conn->spill = b;
      conn->spill_cap = cap;
    }
    memcpy(conn->spill + conn->spill_len, p, n);
    conn->spill_len += n;
  }
  return 0;
}

/* In tls_try_sendv: send what the socket takes now, keep the rest (and
 * everything after it) in the spill buffer, and tell GnuTLS it all went. */
static ssize_t push_nonblocking(struct transport *t, const giovec_t *iov,
                                int iovcnt)
{
  struct tls_conn *conn = t->priv;
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  ssize_t w = 0;
  if (conn->spill_off == conn->spill_len) {
    struct msghdr m = { .msg_iov = (struct iovec *)iov,
                        .msg_iovlen = (size_t)iovcnt };
    do
      w = sendmsg(t->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (w == -1 && errno == EINTR);
    if (w == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
      conn->send_errno = errno;
      return -1;
    }
    if (w == -1)
      w = 0;
  }
  if ((size_t)w < total && spill_keep(conn, iov, iovcnt, (size_t)w) == -1) {
    conn->send_errno = ENOMEM;
    return -1;
  }
  return (ssize_t)total;
}

static ssize_t tls_push(gnutls_transport_ptr_t ptr, const giovec_t *iov,
                        int iovcnt)
{
  struct transport *t = ptr;
  struct tls_conn *conn = t->priv;
  if (conn->trying)
    return push_nonblocking(t, iov, iovcnt);
  struct msghdr m = { .msg_iov = (struct iovec *)iov,
                      .msg_iovlen = (size_t)iovcnt };
  for (;;) {
    ssize_t w = sendmsg(t->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w >= 0)
      return w;
    if (errno == EINTR)
      continue;
    if ((errno == EAGAIN || errno == EWOULDBLOCK) &&
        transport_wait(t, POLLOUT) == 0)
      continue;
    conn->send_errno = errno;
    return -1;
  }
}

/* Only used if GnuTLS itself waits with a timeout (we set none). */
static int tls_pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms)
{
  struct transport *t = ptr;
  if (ra_held(t->priv) > 0)
    return 1;
  struct pollfd p = { .fd = t->fd, .events = POLLIN };
  int timeout = ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : (int)ms;
  if (t->deadline) {
    int64_t left = (t->deadline - monotonic_ns() + 999999) / 1000000;
    if (left < 0)
      left = 0;
    if (timeout < 0 || left < timeout)
      timeout = (int)left;
  }
  return poll(&p, 1, timeout);
}

/* ---- errors ---- */

static const char *errno_reason(int err)
{
  return err == ETIMEDOUT ? "timed out" : strerror(err);
}

/* Turns a fatal GnuTLS result into set_error() + errno, the message
 * prefixed with func; returns -1. */
static int tls_fail(struct tls_conn *conn, int r, const char *func)
{
  switch (r) {
  case GNUTLS_E_PULL_ERROR:
    set_error_at(func, conn->recv_errno, "receiving: %s",
                 errno_reason(conn->recv_errno));
    break;
  case GNUTLS_E_PUSH_ERROR:
    set_error_at(func, conn->send_errno, "sending: %s",
                 errno_reason(conn->send_errno));
    break;
  case GNUTLS_E_PREMATURE_TERMINATION:
  case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
    set_error_at(func, ECONNRESET, "connection closed without TLS "
                 "close_notify (%s)", gnutls_strerror(r));
    break;
  case GNUTLS_E_FATAL_ALERT_RECEIVED:
    tls_explain_alert(conn->s, conn->creds, func);
    break;
  case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
    tls_explain_verify(conn->s, gnutls_session_get_verify_cert_status(conn->s),
                       conn->hostname, func);
    break;
  case GNUTLS_E_NO_CERTIFICATE_FOUND:
  case GNUTLS_E_CERTIFICATE_REQUIRED:
    set_error_at(func, EACCES, "peer sent no certificate (%s)",
                 gnutls_strerror(r));
    break;
  case GNUTLS_E_KEYFILE_ERROR:          /* our PSK lookup said no */
    set_error_at(func, EACCES, "unknown PSK user");
    break;
  default:
    set_error_at(func, EPROTO, "%s", gnutls_strerror(r));
  }
  return -1;
}

/* Tell the peer why, unless the connection itself is what failed. */
static void send_alert(struct tls_conn *conn, int r)
{
  if (r == GNUTLS_E_PULL_ERROR || r == GNUTLS_E_PUSH_ERROR ||
      r == GNUTLS_E_PREMATURE_TERMINATION ||
      r == GNUTLS_E_FATAL_ALERT_RECEIVED)
    return;
  int saved = errno;
  gnutls_alert_send_appropriate(conn->s, r);
  errno = saved;
}

/* ---- session ---- */

static int hs_fail(struct transport *t, int r)
{
  struct tls_conn *conn = t->priv;
  send_alert(conn, r);
  return tls_fail(conn, r, "tls_handshake");
}

/* Runs the handshake to completion within t->deadline (wake_fd cancels).
 * tls_pull never blocks, so GnuTLS hands back GNUTLS_E_AGAIN and we wait
 * here in the direction it was going. */
static int handshake_loop(struct transport *t)
{
  struct tls_conn *conn = t->priv;
  int soft = 0;
  for (;;) {
    int r = gnutls_handshake(conn->s);
    if (r == GNUTLS_E_SUCCESS)
      return 0;
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
      short ev = gnutls_record_get_direction(conn->s) ? POLLOUT : POLLIN;
      if (transport_wait(t, ev) == -1) {
        set_error_at("tls_handshake", errno, "%s", errno_reason(errno));
        return -1;
      }
      continue;
    }
    if (!gnutls_error_is_fatal(r) && ++soft < TLS_SOFT_ERRORS_MAX)
      continue;                 /* e.g. a warning alert */
    return hs_fail(t, r);
  }
}

static void conn_free(struct tls_conn *conn)
{
  free(conn->ra);
  free(conn->spill);
  if (conn->s)
    gnutls_deinit(conn->s);
  tls_creds_unref(conn->creds);
  free(conn->hostname);
  free(conn->resume_key);
  free(conn);
}

static const struct transport_ops tls_ops;

/* A TLS transport over plain's fd with a configured session; plain is not
 * touched.  tickets: session tickets (resumption) on this session. */
static struct transport *tls_new(struct tls_creds *c,
                                 const struct transport *plain, bool tickets)
{
  struct transport *t = calloc(1, sizeof *t);
  struct tls_conn *conn = calloc(1, sizeof *conn);
  if (!t || !conn) {
    set_error(ENOMEM, "out of memory");
    goto err;
  }
  conn->creds = tls_creds_ref(c);
  t->ops = &tls_ops;
  t->fd = plain->fd;
  t->wake_fd = plain->wake_fd;
  t->deadline = plain->deadline;
  t->priv = conn;
  /* A client sends one key share, for the first group (X25519,
   * TLS_GROUPS), not GnuTLS's default two: the second, SECP256R1, cost a
   * P-256 key generation per connection that a server preferring X25519
   * never used.  A server without X25519 asks again (HelloRetryRequest),
   * one round trip more. */
  unsigned flags = c->server ? GNUTLS_SERVER
                             : GNUTLS_CLIENT | GNUTLS_KEY_SHARE_TOP;
  int r = gnutls_init(&conn->s, flags | (tickets ? 0 : GNUTLS_NO_TICKETS));
  if (r < 0) {
    conn->s = NULL;
    set_error(ENOMEM, "gnutls_init: %s", gnutls_strerror(r));
    goto err;
  }
  gnutls_session_set_ptr(conn->s, c);
  if ((r = gnutls_priority_set(conn->s, c->prio)) < 0 ||
      (c->cert && (r = gnutls_credentials_set(conn->s, GNUTLS_CRD_CERTIFICATE,
                                              c->cert)) < 0) ||
      (c->psk_server && (r = gnutls_credentials_set(conn->s, GNUTLS_CRD_PSK,
                                                    c->psk_server)) < 0) ||
      (c->psk_client && (r = gnutls_credentials_set(conn->s, GNUTLS_CRD_PSK,
                                                    c->psk_client)) < 0)) {
    set_error(EINVAL, "TLS session setup: %s", gnutls_strerror(r));
    goto err;
  }
  if (c->server && tickets &&
      tls_tickets_enable(conn->s, &c->ticket_key, c->ticket_lifetime) == -1)
    goto err;
  gnutls_transport_set_ptr(conn->s, t);
  gnutls_transport_set_pull_function(conn->s, tls_pull);
  gnutls_transport_set_vec_push_function(conn->s, tls_push);
  gnutls_transport_set_pull_timeout_function(conn->s, tls_pull_timeout);
  gnutls_handshake_set_timeout(conn->s, 0);   /* t->deadline rules */
  return t;
err:
  if (conn)
    conn_free(conn);
  free(t);
  return NULL;
}

/* Frees a TLS transport that never got to its caller; the fd stays open. */
static void tls_discard(struct transport *t)
{
  conn_free(t->priv);
  free(t);
}

/* Free plain without closing the fd, which the TLS transport now owns. */
static void detach_plain(struct transport *plain)
{
  plain->fd = -1;
  transport_close(plain);
}

/* Verification data: key purpose, plus the host name on the client. */
static void set_vdata(struct tls_conn *conn, bool server)
{
  conn->vdata[0].type = GNUTLS_DT_KEY_PURPOSE_OID;
  conn->vdata[0].data = (unsigned char *)(server ? GNUTLS_KP_TLS_WWW_CLIENT
                                                 : GNUTLS_KP_TLS_WWW_SERVER);
  conn->nvdata = 1;
  if (conn->hostname) {
    conn->vdata[1].type = GNUTLS_DT_DNS_HOSTNAME;
    conn->vdata[1].data = (unsigned char *)conn->hostname;
    conn->nvdata = 2;
  }
}

/* ---- the TLS transport ---- */

/* Decrypted bytes, or else ciphertext read ahead (readable at once, though
 * perhaps not yet a whole record). */
static size_t tls_pending(struct transport *t)
{
  struct tls_conn *conn = t->priv;
  size_t n = gnutls_record_check_pending(conn->s);
  return n ? n : ra_held(conn);
}

static bool needs_poll(const struct transport *t)
{
  return t->deadline != 0 || t->wake_fd >= 0;
}

static ssize_t tls_recv(struct transport *t, void *buf, size_t len)
{
  struct tls_conn *conn = t->priv;
  int soft = 0;
  for (;;) {
    /* Decrypted data already held is returned without waiting, as a plain
     * socket would; otherwise deadline and wake_fd come first. */
    if (needs_poll(t) && tls_pending(t) == 0 &&
        transport_wait(t, POLLIN) == -1)
      return -1;
    ssize_t r = gnutls_record_recv(conn->s, buf, len);
    if (conn->resume_key && tls_resume_save(conn->s, conn->resume_key)) {
      free(conn->resume_key);   /* a TLS 1.3 ticket arrived, or a TLS */
      conn->resume_key = NULL;  /* 1.2 session: cached for next time */
    }
    if (r >= 0)
      return r;                 /* 0: the peer's close_notify */
    if (r == GNUTLS_E_AGAIN) {
      /* Not only an empty socket: GnuTLS also asks to be called again
       * after a post-handshake message (a TLS 1.3 KeyUpdate), maybe with
       * records behind it read ahead. */
      if (!needs_poll(t) && tls_pending(t) == 0 &&
          transport_wait(t, POLLIN) == -1)
        return -1;
      continue;
    }
    if (r == GNUTLS_E_INTERRUPTED)
      continue;
    if (r == GNUTLS_E_REHANDSHAKE) {
      /* TLS 1.2 renegotiation: NBD never needs it, refuse. */
      set_error(EPROTO, "TLS: peer asked for renegotiation");
      return -1;
    }
    if (!gnutls_error_is_fatal((int)r) && ++soft < TLS_SOFT_ERRORS_MAX)
      continue;
    return tls_fail(conn, (int)r, "tls_recv");
  }
}

/* Writes out the spilled ciphertext of an earlier tls_try_sendv: waiting
 * for the socket if block, else stopping when it is full.  0 when nothing
 * is left, 1 when some is (not block), -1 on error. */
static int spill_flush(struct transport *t, bool block)
{
  struct tls_conn *conn = t->priv;
  while (conn->spill_off < conn->spill_len) {
    ssize_t w = send(t->fd, conn->spill + conn->spill_off,
                     conn->spill_len - conn->spill_off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w >= 0) {
      conn->spill_off += (size_t)w;
      continue;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!block)
        return 1;
      if (transport_wait(t, POLLOUT) == 0)
        continue;
    }
    set_error(errno, "tls_send: sending: %s", errno_reason(errno));
    return -1;
  }
  conn->spill_off = conn->spill_len = 0;
  if (conn->spill_cap > TLS_SPILL_KEEP) {
    free(conn->spill);
    conn->spill = NULL;
    conn->spill_cap = 0;
  }
  return 0;
}

/* Sends everything corked so far as full-size records. */
static int tls_flush(struct transport *t)
{
  struct tls_conn *conn = t->priv;
  int r;
  do
    r = (int)gnutls_record_uncork(conn->s, GNUTLS_RECORD_WAIT);
  while (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_AGAIN);
  if (r < 0)
    return tls_fail(conn, r, "tls_send");
  conn->corked = 0;
  return 0;
}

/* One gnutls_record_send of len bytes at *p, into the cork buffer if
 * cork; advances *p, *n (and conn->corked).  A soft error (AGAIN,
 * INTERRUPTED) advances nothing, for the caller to try again.  -1 if
 * fatal. */
static int record_send(struct tls_conn *conn, const char **p, size_t *n,
                       size_t len, bool cork)
{
  if (cork)
    gnutls_record_cork(conn->s);
  ssize_t r = gnutls_record_send(conn->s, *p, len);
  if (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_AGAIN)
    return 0;
  if (r < 0)
    return tls_fail(conn, (int)r, "tls_send");
  *p += r;
  *n -= (size_t)r;
  if (cork)
    conn->corked += (size_t)r;
  return 0;
}

/* Cork, append each iovec, flush unless more follows: a reply header and
 * its data go out in the same records.  Corked bytes are flushed every
 * TLS_CORK_MAX so a large payload is not copied whole. */
static int tls_sendv(struct transport *t, const struct iovec *iov, int iovcnt,
                     int more)
{
  struct tls_conn *conn = t->priv;
  if (!conn->trying && spill_flush(t, true) == -1)
    return -1;
  for (int i = 0; i < iovcnt; i++) {
    const char *p = iov[i].iov_base;
    size_t n = iov[i].iov_len;
    while (n > 0) {
      if (!conn->trying && n >= 2 * TLS_RECORD_MAX) {
        /* Bulk data (a large read's payload): finish the record being
         * corked (a reply header shares it with the data's start), then
         * encrypt straight from the caller's buffer a record at a time,
         * instead of copying it all into GnuTLS's cork buffer first. */
        size_t part = conn->corked % TLS_RECORD_MAX;
        if (part) {
          if (record_send(conn, &p, &n, TLS_RECORD_MAX - part, true) == -1)
            return -1;
          continue;
        }
        if (conn->corked && tls_flush(t) == -1)
          return -1;
        while (n >= TLS_RECORD_MAX)
          if (record_send(conn, &p, &n, n - n % TLS_RECORD_MAX, false) == -1)
            return -1;
        continue;
      }
      size_t room = TLS_CORK_MAX - conn->corked;
      if (record_send(conn, &p, &n, n < room ? n : room, true) == -1)
        return -1;
      if (conn->corked >= TLS_CORK_MAX && tls_flush(t) == -1)
        return -1;
    }
  }
  if (!more && conn->corked)
    return tls_flush(t);
  return 0;
}

/* The reader's non-blocking send (transport.h): GnuTLS encrypts the whole
 * of a small reply at once; what the socket does not take stays in the
 * spill buffer for the next sendv, so GnuTLS never sees GNUTLS_E_AGAIN
 * (after which it would insist on the same call again).  Large replies,
 * and any while an earlier spill is still queued, are left to sendv. */
static ssize_t tls_try_sendv(struct transport *t, const struct iovec *iov,
                             int iovcnt)
{
  struct tls_conn *conn = t->priv;
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  if (total > TLS_TRY_MAX)
    return 0;
  int f = spill_flush(t, false);
  if (f != 0)
    return f == 1 ? 0 : -1;
  conn->trying = true;
  int r = tls_sendv(t, iov, iovcnt, 0);
  conn->trying = false;
  return r == -1 ? -1 : (ssize_t)total;
}

static bool tls_send_pending(struct transport *t)
{
  struct tls_conn *conn = t->priv;
  return conn->spill_off < conn->spill_len;
}

static int tls_shutdown(struct transport *t)
{
  struct tls_conn *conn = t->priv;
  int ret = spill_flush(t, true) == -1 ? -1 : tls_flush(t);
  if (ret == 0) {
    int r, tries = 0;
    do
      r = gnutls_bye(conn->s, GNUTLS_SHUT_WR);
    while ((r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_AGAIN) &&
           ++tries < TLS_SOFT_ERRORS_MAX);
    if (r < 0)
      ret = tls_fail(conn, r, "tls_shutdown");
  }
  if (shutdown(t->fd, SHUT_WR) == -1 && ret == 0) {
    set_error(errno, "shutdown: %s", strerror(errno));
    ret = -1;
  }
  return ret;
}

static void tls_close(struct transport *t)
{
  conn_free(t->priv);
  if (t->fd >= 0)
    close(t->fd);
  free(t);
}

static void tls_readahead(struct transport *t)
{
  struct tls_conn *conn = t->priv;
  conn->ra_on = true;
}

static const struct transport_ops tls_ops;

void *tls_session(struct transport *t)
{
  return t->ops == &tls_ops ? ((struct tls_conn *)t->priv)->s : NULL;
}

static const struct transport_ops tls_ops = {
  .name = "tls",
  .recv = tls_recv,
  .sendv = tls_sendv,
  .shutdown = tls_shutdown,
  .close = tls_close,
  .pending = tls_pending,
  .try_sendv = tls_try_sendv,
  .send_pending = tls_send_pending,
  .readahead = tls_readahead,
};

/* ---- handshakes ---- */

/* Runs the handshake on t, fills peer; on success plain is freed and t
 * returned, on failure t is discarded and plain left as it was. */
static struct transport *finish(struct transport *t, struct transport *plain,
                                struct tls_peer *peer)
{
  struct tls_peer local = { .want_names = false };
  if (!peer)
    peer = &local;
  struct tls_conn *conn = t->priv;
  if (handshake_loop(t) == -1) {
    tls_discard(t);
    return NULL;
  }
  struct tls_peer_ctx x = { conn->s, conn->creds, conn->vdata, conn->nvdata,
                            gnutls_session_is_resumed(conn->s) != 0 };
  if (tls_fill_peer(&x, peer) == -1) {
    send_alert(conn, GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR);
    tls_discard(t);
    return NULL;
  }
  detach_plain(plain);
  return t;
}

struct transport *tls_server_handshake(struct tls_creds *c,
                                       struct transport *plain,
                                       struct tls_peer *peer)
{
  if (!c->server) {
    set_error(EINVAL, "client credentials used for a server handshake");
    return NULL;
  }
  struct transport *t = tls_new(c, plain, c->ticket_key.data != NULL);
  if (!t)
    return NULL;
  struct tls_conn *conn = t->priv;
  set_vdata(conn, true);
  if (c->cert) {
    /* REQUEST even without verify_peer: a certificate the client offers
     * can still give it an identity (peer.has_cert/dn/cn). */
    gnutls_certificate_server_set_request(conn->s, c->verify_peer
                                                   ? GNUTLS_CERT_REQUIRE
                                                   : GNUTLS_CERT_REQUEST);
    if (c->verify_peer)
      gnutls_session_set_verify_cert2(conn->s, conn->vdata, conn->nvdata, 0);
  }
  return finish(t, plain, peer);
}

static bool is_ip_literal(const char *host)
{
  unsigned char addr[16];
  return inet_pton(AF_INET, host, addr) == 1 ||
         inet_pton(AF_INET6, host, addr) == 1;
}

struct transport *tls_client_handshake(struct tls_creds *c,
                                       struct transport *plain,
                                       const char *hostname,
                                       const char *resume_key,
                                       struct tls_peer *peer)
{
  if (c->server) {
    set_error(EINVAL, "server credentials used for a client handshake");
    return NULL;
  }
  if (c->cert && c->verify_peer && (!hostname || !hostname[0])) {
    set_error(EINVAL, "verifying the server certificate needs a host name");
    return NULL;
  }
  struct transport *t = tls_new(c, plain, resume_key != NULL);
  if (!t)
    return NULL;
  struct tls_conn *conn = t->priv;
  if ((hostname && !(conn->hostname = strdup(hostname))) ||
      (resume_key && !(conn->resume_key = strdup(resume_key)))) {
    set_error(ENOMEM, "out of memory");
    tls_discard(t);
    return NULL;
  }
  set_vdata(conn, false);
  /* RFC 6066 section 3: SNI carries DNS names only, never addresses. */
  if (hostname && hostname[0] && !is_ip_literal(hostname))
    gnutls_server_name_set(conn->s, GNUTLS_NAME_DNS, hostname,
                           strlen(hostname));
  if (c->cert && c->verify_peer)
    gnutls_session_set_verify_cert2(conn->s, conn->vdata, conn->nvdata, 0);
  if (resume_key)
    tls_resume_offer(conn->s, resume_key);
  return finish(t, plain, peer);
}
