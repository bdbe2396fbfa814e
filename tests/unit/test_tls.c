/* Tests of common/tls.c: real GnuTLS handshakes between our server and
 * client over socketpairs (two threads), and against gnutls-cli.
 * Credentials are made at start-up by tests/lib/tls.sh (certtool, psktool)
 * in a temporary directory.  Every blocking call runs under a deadline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "tls.h"
#include "transport.h"

#ifndef SNBD_SRC_DIR
#define SNBD_SRC_DIR "."
#endif

#define SEC 1000000000LL
#define TEST_DEADLINE (10 * SEC)   /* safety net for every handshake/recv */

extern char **environ;

static char tmpdir[1024];

/* tmpdir/sub, in one of a few rotating buffers (enough for one call). */
static const char *P(const char *sub)
{
  static char bufs[8][PATH_MAX];
  static int next;
  char *b = bufs[next++ % 8];
  snprintf(b, PATH_MAX, "%s/%s", tmpdir, sub);
  return b;
}

/* ---- credentials ---- */

static struct tls_creds *server_creds(const char *certs, const char *psk,
                                      bool verify)
{
  struct tls_server_config cfg = {
    .cert_dir = certs ? P(certs) : NULL,
    .psk_file = psk ? P(psk) : NULL,
    .verify_peer = verify,
  };
  struct tls_creds *c = tls_creds_load_server(&cfg);
  if (!c)
    fail_msg("server creds: %s", get_error());
  return c;
}

static struct tls_creds *client_creds_full(const char *certs, const char *psk,
                                           const char *user, bool verify,
                                           const char *priority)
{
  struct tls_client_config cfg = {
    .cert_dir = certs ? P(certs) : NULL,
    .psk_file = psk ? P(psk) : NULL,
    .username = user,
    .verify_peer = verify,
    .priority = priority,
  };
  struct tls_creds *c = tls_creds_load_client(&cfg);
  if (!c)
    fail_msg("client creds: %s", get_error());
  return c;
}

static struct tls_creds *client_creds(const char *certs, bool verify)
{
  return client_creds_full(certs, NULL, NULL, verify, NULL);
}

static struct tls_creds *client_psk(const char *psk, const char *user)
{
  return client_creds_full(NULL, psk, user, true, NULL);
}

/* ---- a handshake on one end of a socketpair, in a thread ---- */

struct side {
  bool server;
  struct tls_creds *creds;
  int fd;
  const char *hostname;
  int64_t deadline;                /* 0: now + TEST_DEADLINE */
  struct transport *t;             /* result, NULL on failure */
  struct tls_peer peer;
  int err;
  char msg[1024];
};

static void *handshake_thread(void *arg)
{
  struct side *s = arg;
  struct transport *plain = transport_plain_new(s->fd);
  if (!plain) {
    s->err = errno;
    return NULL;
  }
  plain->deadline = s->deadline ? s->deadline : monotonic_ns() + TEST_DEADLINE;
  s->t = s->server ? tls_server_handshake(s->creds, plain, &s->peer)
                   : tls_client_handshake(s->creds, plain, s->hostname,
                                          &s->peer);
  if (!s->t) {
    s->err = get_errno();
    snprintf(s->msg, sizeof s->msg, "%s", get_error());
    /* plain is still ours; closing it makes the peer fail fast */
    transport_close(plain);
  }
  return NULL;
}

/* Runs both handshakes; true if both succeeded.  The transports are left
 * in srv->t and cli->t (each NULL on failure). */
static bool run_pair(struct tls_creds *sc, struct tls_creds *cc,
                     const char *hostname, struct side *srv, struct side *cli)
{
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  *srv = (struct side){ .server = true, .creds = sc, .fd = sv[0] };
  *cli = (struct side){ .server = false, .creds = cc, .fd = sv[1],
                        .hostname = hostname };
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, handshake_thread, srv), 0);
  handshake_thread(cli);
  pthread_join(th, NULL);
  if (!srv->t)
    print_message("  server: %s\n", srv->msg);
  if (!cli->t)
    print_message("  client: %s\n", cli->msg);
  return srv->t && cli->t;
}

static void close_pair(struct side *srv, struct side *cli)
{
  transport_close(srv->t);
  transport_close(cli->t);
  srv->t = cli->t = NULL;
}

/* Handshake that must fail on both ends. */
static void expect_refused(struct tls_creds *sc, struct tls_creds *cc,
                           const char *hostname, struct side *srv,
                           struct side *cli)
{
  bool ok = run_pair(sc, cc, hostname, srv, cli);
  assert_false(ok);
  assert_null(srv->t);
  assert_null(cli->t);
  close_pair(srv, cli);
}

/* The server refuses the client.  In TLS 1.3 the client's handshake ends
 * before the server has judged its certificate, so the client may succeed
 * and only learn of the refusal (an alert) on its first read. */
static void expect_server_refused(struct tls_creds *sc, struct tls_creds *cc,
                                  struct side *srv, struct side *cli)
{
  run_pair(sc, cc, "localhost", srv, cli);
  assert_null(srv->t);
  if (cli->t) {
    char ch;
    assert_int_equal(cli->t->ops->recv(cli->t, &ch, 1), -1);
    assert_int_equal(errno, EPROTO);
    print_message("  client, first recv: %s\n", get_error());
  }
  close_pair(srv, cli);
}

static void assert_modern(const struct tls_peer *p)
{
  print_message("  negotiated %s %s kx=%s\n", p->version, p->cipher, p->kx);
  assert_string_equal(p->version, "TLS1.3");
  assert_non_null(strstr(p->cipher, "AES"));
  assert_non_null(strstr(p->cipher, "GCM"));
}

static void small_roundtrip(struct transport *a, struct transport *b)
{
  char buf[16];
  assert_int_equal(transport_write_full(a, "ping", 4, 0), 0);
  assert_int_equal(transport_read_full(b, buf, 4), 0);
  assert_memory_equal(buf, "ping", 4);
  assert_int_equal(transport_write_full(b, "pong!", 5, 0), 0);
  assert_int_equal(transport_read_full(a, buf, 5), 0);
  assert_memory_equal(buf, "pong!", 5);
}

/* ---- X.509 ---- */

static void test_x509_server_only(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds("x509", NULL, false);
  struct tls_creds *cc = client_creds("cacert", true);
  struct side srv, cli;
  assert_false(tls_creds_is_psk(sc));
  assert_true(run_pair(sc, cc, "localhost", &srv, &cli));
  assert_modern(&srv.peer);
  assert_modern(&cli.peer);
  assert_string_equal(srv.peer.cipher, cli.peer.cipher);
  assert_false(srv.peer.has_cert);            /* client sent none */
  assert_string_equal(srv.peer.dn, "");
  assert_true(cli.peer.has_cert);             /* server cert verified */
  assert_string_equal(cli.peer.cn, "localhost");
  assert_non_null(strstr(cli.peer.dn, "CN=localhost"));
  assert_string_equal(srv.peer.psk_username, "");
  assert_int_equal(strncmp(srv.peer.kx, "ECDHE-", 6), 0);
  small_roundtrip(srv.t, cli.t);
  close_pair(&srv, &cli);
  tls_creds_unref(sc);
  tls_creds_unref(cc);
}

static void test_x509_client_cert(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds("x509", NULL, true);
  struct tls_creds *sc_opt = server_creds("x509", NULL, false);
  struct tls_creds *cc = client_creds("x509", true);
  struct side srv, cli;

  assert_true(run_pair(sc, cc, "localhost", &srv, &cli));
  assert_true(srv.peer.has_cert);
  assert_string_equal(srv.peer.cn, "client1");
  assert_non_null(strstr(srv.peer.dn, "CN=client1"));
  assert_non_null(strstr(srv.peer.dn, "O=snbd"));
  assert_modern(&srv.peer);
  small_roundtrip(cli.t, srv.t);
  close_pair(&srv, &cli);

  /* verify_peer off: a good certificate still gives an identity */
  assert_true(run_pair(sc_opt, cc, "localhost", &srv, &cli));
  assert_true(srv.peer.has_cert);
  assert_string_equal(srv.peer.cn, "client1");
  close_pair(&srv, &cli);
  tls_creds_unref(sc);
  tls_creds_unref(sc_opt);
  tls_creds_unref(cc);
}

static void test_x509_client_cert_missing(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds("x509", NULL, true);
  struct tls_creds *cc = client_creds("cacert", true);
  struct side srv, cli;
  expect_server_refused(sc, cc, &srv, &cli);
  assert_int_equal(srv.err, EACCES);
  tls_creds_unref(sc);
  tls_creds_unref(cc);
}

static void test_x509_wrong_ca(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds("x509", NULL, true);
  struct tls_creds *sc_opt = server_creds("x509", NULL, false);
  struct tls_creds *other = client_creds("other", true);       /* other CA */
  struct tls_creds *other_nov = client_creds("other", false);
  struct tls_creds *wrongcli = client_creds("wrongcli", true);
  struct side srv, cli;

  /* the client does not trust the server's CA */
  expect_refused(sc_opt, other, "localhost", &srv, &cli);
  assert_int_equal(cli.err, EACCES);
  assert_non_null(strstr(cli.msg, "issuer is unknown"));

  /* the server does not trust the client's CA */
  expect_server_refused(sc, wrongcli, &srv, &cli);
  assert_int_equal(srv.err, EACCES);

  /* without verify_peer that client gets in, but without an identity */
  assert_true(run_pair(sc_opt, wrongcli, "localhost", &srv, &cli));
  assert_false(srv.peer.has_cert);
  assert_string_equal(srv.peer.cn, "");
  close_pair(&srv, &cli);

  /* a client told not to verify accepts the server, says it did not */
  assert_true(run_pair(sc_opt, other_nov, "localhost", &srv, &cli));
  assert_false(cli.peer.has_cert);
  close_pair(&srv, &cli);

  tls_creds_unref(sc);
  tls_creds_unref(sc_opt);
  tls_creds_unref(other);
  tls_creds_unref(other_nov);
  tls_creds_unref(wrongcli);
}

static void test_x509_hostname(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds("x509", NULL, false);
  struct tls_creds *cc = client_creds("cacert", true);
  struct side srv, cli;

  expect_refused(sc, cc, "example.com", &srv, &cli);
  assert_int_equal(cli.err, EACCES);
  assert_true(run_pair(sc, cc, "127.0.0.1", &srv, &cli));   /* SAN ip */
  close_pair(&srv, &cli);
  assert_true(run_pair(sc, cc, "::1", &srv, &cli));
  close_pair(&srv, &cli);
  expect_refused(sc, cc, "127.0.0.2", &srv, &cli);

  /* verify_peer without a host name is refused before any I/O */
  struct transport *plain = transport_plain_new(-1);
  assert_non_null(plain);
  assert_null(tls_client_handshake(cc, plain, NULL, NULL));
  assert_int_equal(get_errno(), EINVAL);
  transport_close(plain);
  tls_creds_unref(sc);
  tls_creds_unref(cc);
}

static void test_x509_expired_revoked(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds("x509", NULL, true);
  struct tls_creds *rev = server_creds("rev", NULL, true);
  struct tls_creds *rev_opt = server_creds("rev", NULL, false);
  struct tls_creds *expired = client_creds("expired", true);
  struct tls_creds *revoked = client_creds("revcli", true);
  struct tls_creds *good = client_creds("rev", true);
  struct side srv, cli;

  expect_server_refused(sc, expired, &srv, &cli);
  assert_int_equal(srv.err, EACCES);
  assert_non_null(strstr(srv.msg, "expired"));
  expect_server_refused(rev, revoked, &srv, &cli);
  assert_int_equal(srv.err, EACCES);
  assert_non_null(strstr(srv.msg, "revoked"));
  /* the CRL does not hurt a certificate it does not list */
  assert_true(run_pair(rev, good, "localhost", &srv, &cli));
  assert_string_equal(srv.peer.cn, "client1");
  close_pair(&srv, &cli);
  /* without verify_peer a revoked certificate is no identity */
  assert_true(run_pair(rev_opt, revoked, "localhost", &srv, &cli));
  assert_false(srv.peer.has_cert);
  close_pair(&srv, &cli);

  tls_creds_unref(sc);
  tls_creds_unref(rev);
  tls_creds_unref(rev_opt);
  tls_creds_unref(expired);
  tls_creds_unref(revoked);
  tls_creds_unref(good);
}

static void test_versions(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds("x509", NULL, false);
  struct tls_creds *v11 = client_creds_full("cacert", NULL, NULL, true,
                                            "NORMAL:-VERS-ALL:+VERS-TLS1.1");
  struct tls_creds *v10 = client_creds_full("cacert", NULL, NULL, true,
                                            "NORMAL:-VERS-ALL:+VERS-TLS1.0");
  struct tls_creds *v12 = client_creds_full("cacert", NULL, NULL, true,
                                            "NORMAL:-VERS-ALL:+VERS-TLS1.2");
  struct side srv, cli;

  expect_refused(sc, v11, "localhost", &srv, &cli);
  expect_refused(sc, v10, "localhost", &srv, &cli);
  assert_true(run_pair(sc, v12, "localhost", &srv, &cli));
  assert_string_equal(srv.peer.version, "TLS1.2");
  assert_non_null(strstr(srv.peer.cipher, "GCM"));
  assert_string_equal(srv.peer.kx, "ECDHE-ECDSA");
  small_roundtrip(srv.t, cli.t);
  close_pair(&srv, &cli);

  /* TLS 1.2 with a PSK */
  struct tls_creds *psk_sc = server_creds(NULL, "psk", false);
  struct tls_creds *psk12 = client_creds_full(NULL, "psk", "alice", true,
                                              "NORMAL:-VERS-ALL:+VERS-TLS1.2");
  assert_true(run_pair(psk_sc, psk12, NULL, &srv, &cli));
  assert_string_equal(srv.peer.version, "TLS1.2");
  assert_string_equal(srv.peer.psk_username, "alice");
  print_message("  TLS1.2 PSK: %s %s\n", srv.peer.cipher, srv.peer.kx);
  small_roundtrip(srv.t, cli.t);
  close_pair(&srv, &cli);
  tls_creds_unref(psk_sc);
  tls_creds_unref(psk12);
  tls_creds_unref(sc);
  tls_creds_unref(v11);
  tls_creds_unref(v10);
  tls_creds_unref(v12);
}

/* ---- PSK ---- */

static void test_psk(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds(NULL, "psk", false);
  struct tls_creds *alice = client_psk("psk", "alice");
  struct tls_creds *bob = client_psk("psk", "bob");
  struct tls_creds *wrong = client_psk("wrongpsk", "alice");
  struct tls_creds *carol = client_psk("carolpsk", "carol");
  struct tls_creds *x509only = server_creds("x509", NULL, false);
  struct side srv, cli;

  assert_true(tls_creds_is_psk(sc));
  assert_true(tls_creds_is_psk(alice));
  assert_true(run_pair(sc, alice, "localhost", &srv, &cli));
  assert_string_equal(srv.peer.psk_username, "alice");
  assert_string_equal(cli.peer.psk_username, "alice");
  assert_modern(&srv.peer);
  /* AES-256-GCM is SHA-384, which a SHA-256 PSK cannot use; the next
   * choice must be AES-128-GCM, not CHACHA20 */
  assert_string_equal(srv.peer.cipher, "AES-128-GCM");
  assert_string_equal(cli.peer.cipher, "AES-128-GCM");
  assert_string_equal(srv.peer.kx, "ECDHE-PSK");     /* forward secrecy */
  assert_false(srv.peer.has_cert);
  small_roundtrip(srv.t, cli.t);
  close_pair(&srv, &cli);

  assert_true(run_pair(sc, bob, NULL, &srv, &cli));
  assert_string_equal(srv.peer.psk_username, "bob");
  close_pair(&srv, &cli);

  expect_refused(sc, wrong, "localhost", &srv, &cli);      /* wrong key */
  expect_refused(sc, carol, "localhost", &srv, &cli);      /* unknown user */
  /* a PSK client never settles for a certificate it cannot check */
  expect_refused(x509only, alice, "localhost", &srv, &cli);

  tls_creds_unref(sc);
  tls_creds_unref(alice);
  tls_creds_unref(bob);
  tls_creds_unref(wrong);
  tls_creds_unref(carol);
  tls_creds_unref(x509only);
}

/* Server with both: each client gets the method it offers. */
static void test_psk_and_x509(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds("x509", "psk", true);
  struct tls_creds *alice = client_psk("psk", "alice");
  struct tls_creds *cert = client_creds("x509", true);
  struct side srv, cli;
  assert_true(run_pair(sc, alice, "localhost", &srv, &cli));
  assert_string_equal(srv.peer.psk_username, "alice");
  assert_false(srv.peer.has_cert);
  close_pair(&srv, &cli);
  assert_true(run_pair(sc, cert, "localhost", &srv, &cli));
  assert_string_equal(srv.peer.cn, "client1");
  assert_string_equal(srv.peer.psk_username, "");
  close_pair(&srv, &cli);
  tls_creds_unref(sc);
  tls_creds_unref(alice);
  tls_creds_unref(cert);
}

/* ---- data ---- */

static uint8_t pattern(uint64_t off, uint8_t seed)
{
  return (uint8_t)(off ^ (off >> 8) ^ (off >> 19) ^ seed);
}

struct stream {
  struct transport *t;
  size_t total;
  uint8_t seed;
  int result;                     /* 0 ok, -1 failed */
};

/* Sends total bytes of pattern(seed) with sendv: each call has several
 * iovecs of odd sizes, and every other call says more follows. */
static void *send_stream(void *arg)
{
  struct stream *s = arg;
  size_t chunk = 3 * 65536 + 13;
  uint8_t *buf = malloc(chunk);
  uint64_t off = 0;
  s->result = -1;
  if (!buf)
    return NULL;
  for (int call = 0; off < s->total; call++) {
    size_t n = s->total - off < chunk ? s->total - off : chunk;
    for (size_t i = 0; i < n; i++)
      buf[i] = pattern(off + i, s->seed);
    size_t a = n < 16 ? n : 16, b = (n - a) / 3;
    struct iovec iov[3] = {
      { buf, a }, { buf + a, b }, { buf + a + b, n - a - b },
    };
    bool last = off + n == s->total;
    if (transport_sendv(s->t, iov, 3, !last && call % 2) == -1)
      goto out;
    off += n;
  }
  s->result = 0;
out:
  free(buf);
  return NULL;
}

/* Reads total bytes in uneven pieces and checks them. */
static void *recv_stream(void *arg)
{
  struct stream *s = arg;
  uint8_t buf[40000];
  uint64_t off = 0;
  s->result = -1;
  while (off < s->total) {
    size_t want = s->total - off < sizeof buf ? s->total - off : sizeof buf;
    ssize_t r = s->t->ops->recv(s->t, buf, want - (off % 7));
    if (r <= 0)
      return NULL;
    for (ssize_t i = 0; i < r; i++)
      if (buf[i] != pattern(off + (uint64_t)i, s->seed))
        return NULL;
    off += (uint64_t)r;
  }
  s->result = 0;
  return NULL;
}

/* 8 MiB each way at once: one reader and one writer thread per session. */
static void test_bulk_both_ways(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds("x509", NULL, false);
  struct tls_creds *cc = client_creds("cacert", true);
  struct side srv, cli;
  assert_true(run_pair(sc, cc, "localhost", &srv, &cli));
  /* sessions keep their own reference */
  tls_creds_unref(sc);
  tls_creds_unref(cc);

  const size_t total = 8 << 20;
  struct stream s_out = { srv.t, total, 1, -1 }, c_in = { cli.t, total, 1, -1 };
  struct stream c_out = { cli.t, total, 2, -1 }, s_in = { srv.t, total, 2, -1 };
  pthread_t th[3];
  assert_int_equal(pthread_create(&th[0], NULL, send_stream, &s_out), 0);
  assert_int_equal(pthread_create(&th[1], NULL, send_stream, &c_out), 0);
  assert_int_equal(pthread_create(&th[2], NULL, recv_stream, &s_in), 0);
  recv_stream(&c_in);
  for (int i = 0; i < 3; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(s_out.result, 0);
  assert_int_equal(c_out.result, 0);
  assert_int_equal(s_in.result, 0);
  assert_int_equal(c_in.result, 0);
  assert_int_equal(srv.t->ops->pending(srv.t), 0);

  /* orderly end: close_notify reads as EOF on the other side */
  char ch;
  assert_int_equal(srv.t->ops->shutdown(srv.t), 0);
  assert_int_equal(cli.t->ops->recv(cli.t, &ch, 1), 0);
  assert_int_equal(transport_write_full(cli.t, "x", 1, 0), 0);
  assert_int_equal(srv.t->ops->recv(srv.t, &ch, 1), 1);
  assert_int_equal(cli.t->ops->shutdown(cli.t), 0);
  assert_int_equal(srv.t->ops->recv(srv.t, &ch, 1), 0);
  close_pair(&srv, &cli);
}

/* A TCP close without close_notify is not an orderly EOF. */
static void test_truncation(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds(NULL, "psk", false);
  struct tls_creds *cc = client_psk("psk", "alice");
  struct side srv, cli;
  char ch;
  assert_true(run_pair(sc, cc, NULL, &srv, &cli));
  assert_int_equal(transport_write_full(cli.t, "y", 1, 0), 0);
  shutdown(cli.t->fd, SHUT_RDWR);
  assert_int_equal(srv.t->ops->recv(srv.t, &ch, 1), 1);
  assert_int_equal(srv.t->ops->recv(srv.t, &ch, 1), -1);
  assert_int_equal(errno, ECONNRESET);
  close_pair(&srv, &cli);
  tls_creds_unref(sc);
  tls_creds_unref(cc);
}

/* ---- deadline, wake_fd ---- */

/* A peer that never speaks: the handshake ends with ETIMEDOUT at the
 * deadline, on either side. */
static void test_handshake_deadline(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds("x509", NULL, false);
  struct tls_creds *cc = client_creds("cacert", true);
  for (int server = 1; server >= 0; server--) {
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int64_t start = monotonic_ns();
    struct side s = { .server = server, .creds = server ? sc : cc,
                      .fd = sv[0], .hostname = "localhost",
                      .deadline = start + SEC / 4 };
    handshake_thread(&s);
    int64_t took = monotonic_ns() - start;
    assert_null(s.t);
    assert_int_equal(s.err, ETIMEDOUT);
    assert_true(took >= SEC / 4 - SEC / 100);
    assert_true(took < 3 * SEC);
    close(sv[1]);
  }
  tls_creds_unref(sc);
  tls_creds_unref(cc);
}

struct blocked_recv {
  struct transport *t;
  ssize_t r;
  int err;
};

static void *do_recv(void *arg)
{
  struct blocked_recv *b = arg;
  char buf[16];
  b->r = b->t->ops->recv(b->t, buf, sizeof buf);
  b->err = errno;
  return NULL;
}

/* wake_fd cancels a blocked recv, a deadline ends one; neither breaks the
 * session. */
static void test_recv_wake_and_deadline(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds(NULL, "psk", false);
  struct tls_creds *cc = client_psk("psk", "alice");
  struct side srv, cli;
  int wake[2];
  assert_true(run_pair(sc, cc, NULL, &srv, &cli));
  assert_int_equal(pipe(wake), 0);
  srv.t->deadline = cli.t->deadline = monotonic_ns() + TEST_DEADLINE;
  srv.t->wake_fd = wake[0];

  struct blocked_recv b = { srv.t, 0, 0 };
  pthread_t th;
  int64_t start = monotonic_ns();
  assert_int_equal(pthread_create(&th, NULL, do_recv, &b), 0);
  /* not synchronisation: the recv gets ECANCELED whether or not it has
   * blocked yet; the pause only makes "blocked" the likely case */
  struct timespec pause = { 0, 50 * 1000000 };
  nanosleep(&pause, NULL);
  assert_int_equal(write(wake[1], "w", 1), 1);
  pthread_join(th, NULL);
  assert_int_equal(b.r, -1);
  assert_int_equal(b.err, ECANCELED);
  assert_true(monotonic_ns() - start < 5 * SEC);

  /* the session still works both ways */
  srv.t->wake_fd = -1;
  small_roundtrip(srv.t, cli.t);

  /* a deadline in the past fails recv at once with ETIMEDOUT */
  cli.t->deadline = monotonic_ns() + SEC / 10;
  b = (struct blocked_recv){ cli.t, 0, 0 };
  do_recv(&b);
  assert_int_equal(b.r, -1);
  assert_int_equal(b.err, ETIMEDOUT);
  cli.t->deadline = monotonic_ns() + TEST_DEADLINE;
  small_roundtrip(srv.t, cli.t);

  close(wake[0]);
  close(wake[1]);
  close_pair(&srv, &cli);
  tls_creds_unref(sc);
  tls_creds_unref(cc);
}

/* Clear text sent before the ClientHello is parsed as TLS (and refused),
 * never returned as data (nbdkit CVE-2021-3716). */
static void test_plaintext_injection(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds(NULL, "psk", false);
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  static const char inject[] = "IHAVEOPT\0\0\0\x01\0\0\0\0";
  assert_int_equal(write(sv[1], inject, sizeof inject - 1),
                   (ssize_t)sizeof inject - 1);
  struct side s = { .server = true, .creds = sc, .fd = sv[0] };
  handshake_thread(&s);
  assert_null(s.t);
  assert_int_not_equal(s.err, ETIMEDOUT);   /* refused, not waited out */
  close(sv[1]);
  tls_creds_unref(sc);
}

/* ---- credential errors ---- */

static void write_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* Loading fails with an error that contains want (and not secret). */
static void server_load_fails(const char *certs, const char *psk,
                              bool verify, const char *want,
                              const char *secret)
{
  struct tls_server_config cfg = { .cert_dir = certs, .psk_file = psk,
                                   .verify_peer = verify };
  assert_null(tls_creds_load_server(&cfg));
  if (!strstr(get_error(), want))
    fail_msg("error \"%s\" lacks \"%s\"", get_error(), want);
  if (secret)
    assert_null(strstr(get_error(), secret));
}

static void test_creds_errors(void **state)
{
  (void)state;
  char longline[3000];
  server_load_fails(NULL, NULL, false, "certificate directory", NULL);
  server_load_fails(P("nonexistent"), NULL, false, "server-cert.pem", NULL);
  assert_int_equal(get_errno(), ENOENT);
  server_load_fails(P("nonexistent"), NULL, true, "ca-cert.pem", NULL);
  server_load_fails(P("badkey"), NULL, false, "server-key.pem", NULL);
  server_load_fails(NULL, P("nonexistent.psk"), false, "nonexistent.psk",
                    NULL);

  write_file(P("bad1.psk"), "alice:00ff\nbob:0123456789abcdef0\n");
  server_load_fails(NULL, P("bad1.psk"), false, "bad1.psk line 2",
                    "0123456789abcdef");
  write_file(P("bad2.psk"), "alice:zz\n");
  server_load_fails(NULL, P("bad2.psk"), false, "not hex", NULL);
  write_file(P("bad3.psk"), ":00ff\n");
  server_load_fails(NULL, P("bad3.psk"), false, "line 1", NULL);
  write_file(P("empty.psk"), "\n");
  server_load_fails(NULL, P("empty.psk"), false, "no user:key", NULL);
  memset(longline, 'a', sizeof longline - 1);
  longline[sizeof longline - 1] = '\0';
  longline[5] = ':';
  write_file(P("long.psk"), longline);
  server_load_fails(NULL, P("long.psk"), false, "longer than", NULL);

  struct tls_server_config prio = { .psk_file = P("psk"),
                                    .priority = "NORMAL:+NOSUCHTHING" };
  assert_null(tls_creds_load_server(&prio));
  assert_non_null(strstr(get_error(), "NOSUCHTHING"));

  struct tls_client_config both = { .cert_dir = P("x509"),
                                    .psk_file = P("psk") };
  assert_null(tls_creds_load_client(&both));
  assert_int_equal(get_errno(), EINVAL);
  struct tls_client_config nouser = { .psk_file = P("psk"),
                                      .username = "mallory" };
  assert_null(tls_creds_load_client(&nouser));
  assert_non_null(strstr(get_error(), "mallory"));
  struct tls_client_config halfpair = { .cert_dir = P("halfpair") };
  assert_null(tls_creds_load_client(&halfpair));
  assert_non_null(strstr(get_error(), "client-key.pem"));
}

/* ---- against a real peer: gnutls-cli ---- */

struct cli_server {
  int lfd;
  struct tls_creds *creds;
  struct side s;
  ssize_t last_recv;              /* recv after the handshake: 0 = EOF */
};

/* Accepts one connection, handshakes, then reads until the peer ends. */
static void *cli_server_thread(void *arg)
{
  struct cli_server *cs = arg;
  struct pollfd p = { .fd = cs->lfd, .events = POLLIN };
  cs->s = (struct side){ .server = true, .creds = cs->creds, .fd = -1 };
  if (poll(&p, 1, (int)(TEST_DEADLINE / 1000000)) != 1)
    return NULL;
  cs->s.fd = accept4(cs->lfd, NULL, NULL, SOCK_CLOEXEC);
  if (cs->s.fd == -1)
    return NULL;
  handshake_thread(&cs->s);
  if (cs->s.t) {
    char buf[256];
    cs->last_recv = cs->s.t->ops->recv(cs->s.t, buf, sizeof buf);
    transport_close(cs->s.t);
    cs->s.t = NULL;
  }
  return NULL;
}

/* Runs gnutls-cli against our server handshake on an ephemeral loopback
 * port; returns gnutls-cli's exit status. */
static int gnutls_cli(struct cli_server *cs, const char *const *args)
{
  struct sockaddr_in sa = { .sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  socklen_t len = sizeof sa;
  cs->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  assert_true(cs->lfd >= 0);
  assert_int_equal(bind(cs->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(cs->lfd, 1), 0);
  assert_int_equal(getsockname(cs->lfd, (struct sockaddr *)&sa, &len), 0);
  char port[16];
  snprintf(port, sizeof port, "%d", ntohs(sa.sin_port));

  const char *argv[32] = { "gnutls-cli", "-p", port, "127.0.0.1" };
  int n = 4;
  for (int i = 0; args[i] && n < 31; i++)
    argv[n++] = args[i];
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, P("gnutls-cli.log"),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);

  pthread_t th;
  pid_t pid;
  assert_int_equal(pthread_create(&th, NULL, cli_server_thread, cs), 0);
  int r = posix_spawnp(&pid, "gnutls-cli", &fa, NULL, (char **)argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  int status = -1;
  if (r == 0) {
    /* bounded wait for gnutls-cli to finish, then make sure it has */
    int64_t end = monotonic_ns() + TEST_DEADLINE;
    while (waitpid(pid, &status, WNOHANG) == 0 && monotonic_ns() < end) {
      struct timespec tick = { 0, 10 * 1000000 };
      nanosleep(&tick, NULL);
    }
    if (monotonic_ns() >= end) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
  }
  shutdown(cs->lfd, SHUT_RDWR);
  pthread_join(th, NULL);
  close(cs->lfd);
  if (cs->s.msg[0])
    print_message("  server: %s\n", cs->s.msg);
  assert_int_equal(r, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static bool have_gnutls_cli(void)
{
  return system("command -v gnutls-cli >/dev/null 2>&1") == 0;
}

static void psk_key_of(const char *file, const char *user, char *key,
                       size_t len)
{
  char line[1024];
  FILE *f = fopen(file, "r");
  assert_non_null(f);
  key[0] = '\0';
  while (fgets(line, sizeof line, f))
    if (strncmp(line, user, strlen(user)) == 0 && line[strlen(user)] == ':') {
      snprintf(key, len, "%s", line + strlen(user) + 1);
      key[strcspn(key, "\n")] = '\0';
    }
  fclose(f);
  assert_true(key[0] != '\0');
}

/* gnutls-cli with the priority nbdkit and libnbd use for PSK prefers
 * CHACHA20 to AES-128-GCM; our server must still pick AES-128-GCM. */
static void test_gnutls_cli_psk(void **state)
{
  (void)state;
  if (!have_gnutls_cli())
    skip();
  char key[1024];
  psk_key_of(P("psk"), "alice", key, sizeof key);
  struct cli_server cs = { .creds = server_creds(NULL, "psk", false),
                           .last_recv = -2 };
  const char *args[] = { "--pskusername", "alice", "--pskkey", key,
                         "--priority", "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK",
                         NULL };
  assert_int_equal(gnutls_cli(&cs, args), 0);
  assert_string_equal(cs.s.peer.version, "TLS1.3");
  assert_string_equal(cs.s.peer.cipher, "AES-128-GCM");
  assert_string_equal(cs.s.peer.psk_username, "alice");
  assert_int_equal(cs.last_recv, 0);        /* its close_notify is EOF */

  /* TLS 1.2: gnutls-cli offers certificate suites too, which a PSK-only
   * server must not pick.  Only our side is checked: gnutls-cli 3.7.9
   * crashes after TLS 1.2 PSK handshakes (against gnutls-serv as well). */
  const char *args12[] = { "--pskusername", "alice", "--pskkey", key,
                           "--priority",
                           "NORMAL:-VERS-ALL:+VERS-TLS1.2:+ECDHE-PSK:"
                           "+DHE-PSK:+PSK", NULL };
  cs.s.msg[0] = '\0';
  gnutls_cli(&cs, args12);
  assert_string_equal(cs.s.msg, "");
  assert_string_equal(cs.s.peer.version, "TLS1.2");
  assert_string_equal(cs.s.peer.psk_username, "alice");
  tls_creds_unref(cs.creds);
}

static void test_gnutls_cli_x509(void **state)
{
  (void)state;
  if (!have_gnutls_cli())
    skip();
  struct cli_server cs = { .creds = server_creds("x509", NULL, true),
                           .last_recv = -2 };
  const char *ca = P("x509/ca-cert.pem"), *cert = P("x509/client-cert.pem"),
             *key = P("x509/client-key.pem");
  const char *good[] = { "--x509cafile", ca, "--x509certfile", cert,
                         "--x509keyfile", key, NULL };
  assert_int_equal(gnutls_cli(&cs, good), 0);
  assert_string_equal(cs.s.peer.version, "TLS1.3");
  assert_string_equal(cs.s.peer.cn, "client1");
  assert_int_equal(cs.last_recv, 0);

  /* TLS 1.1 and 1.0 are refused (SECURITY.md 2) */
  const char *vers[] = { "NORMAL:-VERS-ALL:+VERS-TLS1.1",
                         "NORMAL:-VERS-ALL:+VERS-TLS1.0" };
  for (int i = 0; i < 2; i++) {
    const char *old[] = { "--x509cafile", ca, "--x509certfile", cert,
                          "--x509keyfile", key, "--priority", vers[i], NULL };
    cs.s.msg[0] = '\0';
    assert_int_not_equal(gnutls_cli(&cs, old), 0);
    assert_true(cs.s.msg[0] != '\0');       /* our handshake failed */
    assert_int_equal(cs.last_recv, 0);      /* untouched since the 1st */
  }
  tls_creds_unref(cs.creds);
}

/* ---- main ---- */

static const char setup_script[] =
  "set -e\n"
  "source \"$1/tests/lib/tls.sh\"\n"
  "cd \"$2\"\n"
  "make_x509 x509\n"
  "make_x509 other\n"
  "make_client_dir x509 cacert\n"
  "make_client_dir x509 wrongcli\n"
  "cp other/client-cert.pem other/client-key.pem wrongcli/\n"
  "make_client_expired x509 expired\n"
  "make_x509 rev\n"
  "make_client_revoked rev revcli\n"
  "make_psk psk alice\n"
  "make_psk psk bob\n"
  "make_psk wrongpsk alice\n"
  "make_psk carolpsk carol\n"
  "mkdir badkey\n"
  "cp x509/ca-cert.pem x509/server-cert.pem badkey/\n"
  "echo garbage >badkey/server-key.pem\n"
  "make_client_dir x509 halfpair\n"
  "cp x509/client-cert.pem halfpair/\n";

static int run_script(const char *script, const char *arg1, const char *arg2)
{
  char cmd[3 * PATH_MAX];
  write_file(P("setup.sh"), script);
  snprintf(cmd, sizeof cmd, "bash '%s' '%s' '%s'", P("setup.sh"), arg1, arg2);
  return system(cmd);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_x509_server_only),
    cmocka_unit_test(test_x509_client_cert),
    cmocka_unit_test(test_x509_client_cert_missing),
    cmocka_unit_test(test_x509_wrong_ca),
    cmocka_unit_test(test_x509_hostname),
    cmocka_unit_test(test_x509_expired_revoked),
    cmocka_unit_test(test_versions),
    cmocka_unit_test(test_psk),
    cmocka_unit_test(test_psk_and_x509),
    cmocka_unit_test(test_bulk_both_ways),
    cmocka_unit_test(test_truncation),
    cmocka_unit_test(test_handshake_deadline),
    cmocka_unit_test(test_recv_wake_and_deadline),
    cmocka_unit_test(test_plaintext_injection),
    cmocka_unit_test(test_creds_errors),
    cmocka_unit_test(test_gnutls_cli_psk),
    cmocka_unit_test(test_gnutls_cli_x509),
  };
  const char *src = getenv("SNBD_SRC") ? getenv("SNBD_SRC") : SNBD_SRC_DIR;
  const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

  if (system("command -v certtool >/dev/null && "
             "command -v psktool >/dev/null") != 0) {
    printf("certtool or psktool not installed\n");
    return 77;
  }
  snprintf(tmpdir, sizeof tmpdir, "%s/test_tls.XXXXXX", tmp);
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  int r = 1;
  if (run_script(setup_script, src, tmpdir) != 0)
    fprintf(stderr, "making credentials with tests/lib/tls.sh failed\n");
  else if (tls_global_init() == -1)
    fprintf(stderr, "tls_global_init: %s\n", get_error());
  else
    r = cmocka_run_group_tests(tests, NULL, NULL);
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmpdir);
  return r;
}
