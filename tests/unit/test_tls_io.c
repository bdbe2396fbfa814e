/* Tests of the TLS transport (common/tls.c): data both ways at once with
 * one reader and one writer thread per session, orderly and truncated
 * ends, deadlines and wake_fd, clear text before the handshake, and
 * gnutls-cli (a real, independent TLS peer) against our server handshake.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "log.h"
#include "tls_fixture.h"

extern char **environ;

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
/* Reads n numbered messages (test_try_sendv) and checks each. */
struct numbered {
  struct transport *t;
  int n;
  int ok;
};

static void *read_numbered(void *arg)
{
  struct numbered *r = arg;
  uint8_t m[4113];
  for (int i = 0; i < r->n; i++) {
    if (transport_read_full(r->t, m, sizeof m) == -1)
      return NULL;
    int k;
    memcpy(&k, m, sizeof k);
    if (k != i)
      return NULL;
    for (size_t j = sizeof k; j < sizeof m; j++)
      if (m[j] != (uint8_t)(i & 0xff))
        return NULL;
  }
  r->ok = 1;
  return NULL;
}

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

/* try_sendv (the server reader's non-blocking send of a small reply):
 * with a peer that does not read, it never blocks; what the socket cannot
 * take stays buffered (send_pending), a later try_sendv refuses rather
 * than overtake it, and the next sendv writes it first: the peer reads
 * every message whole and in order. */
static void test_try_sendv(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds(NULL, "psk", false);
  struct tls_creds *cc = client_psk("psk", "alice");
  struct side srv, cli;
  assert_true(run_pair(sc, cc, "localhost", &srv, &cli));
  tls_creds_unref(sc);
  tls_creds_unref(cc);
  int small = 4096;
  setsockopt(srv.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  setsockopt(cli.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);

  /* messages of 4,113 bytes (a 4 KiB read's reply plus a header), each
   * numbered, until one is left buffered */
  enum { MSG = 4113, MAX_MSGS = 4096 };
  uint8_t msg[MSG];
  int sent = 0;
  bool pending = false;
  while (!pending && sent < MAX_MSGS) {
    memset(msg, sent & 0xff, sizeof msg);
    memcpy(msg, &sent, sizeof sent);
    struct iovec v[2] = { { msg, 16 }, { msg + 16, MSG - 16 } };
    int64_t t0 = monotonic_ns();
    assert_int_equal(srv.t->ops->try_sendv(srv.t, v, 2), MSG);
    assert_true(monotonic_ns() - t0 < 2 * SEC);     /* never blocked */
    sent++;
    pending = srv.t->ops->send_pending(srv.t);
  }
  assert_true(pending);
  /* nothing may overtake the buffered bytes */
  struct iovec v1 = { msg, MSG };
  assert_int_equal(srv.t->ops->try_sendv(srv.t, &v1, 1), 0);
  /* larger than a small reply: always left to sendv */
  static uint8_t big[128 * 1024];
  struct iovec vb = { big, sizeof big };
  assert_int_equal(srv.t->ops->try_sendv(srv.t, &vb, 1), 0);

  /* the peer reads while a blocking sendv (of nothing) flushes, then one
   * more message follows */
  pthread_t th;
  struct numbered rd = { cli.t, sent + 1, 0 };
  assert_int_equal(pthread_create(&th, NULL, read_numbered, &rd), 0);
  assert_int_equal(transport_sendv(srv.t, NULL, 0, 0), 0);
  assert_false(srv.t->ops->send_pending(srv.t));
  memset(msg, sent & 0xff, sizeof msg);
  memcpy(msg, &sent, sizeof sent);
  assert_int_equal(srv.t->ops->try_sendv(srv.t, &v1, 1), MSG);
  if (srv.t->ops->send_pending(srv.t))
    assert_int_equal(transport_sendv(srv.t, NULL, 0, 0), 0);
  pthread_join(th, NULL);
  assert_int_equal(rd.ok, 1);
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

/* A PSK session pair under the test deadline, and a pipe for a wake fd. */
static void psk_pair_with_wake(struct side *srv, struct side *cli,
                               int wake[2])
{
  struct tls_creds *sc = server_creds(NULL, "psk", false);
  struct tls_creds *cc = client_psk("psk", "alice");
  assert_true(run_pair(sc, cc, NULL, srv, cli));
  tls_creds_unref(sc);            /* sessions keep their own reference */
  tls_creds_unref(cc);
  assert_int_equal(pipe(wake), 0);
  srv->t->deadline = cli->t->deadline = monotonic_ns() + TEST_DEADLINE;
}

static void close_pair_with_wake(struct side *srv, struct side *cli,
                                 int wake[2])
{
  close(wake[0]);
  close(wake[1]);
  close_pair(srv, cli);
}

/* wake_fd cancels a blocked recv, a deadline ends one; neither breaks the
 * session. */
static void test_recv_wake_and_deadline(void **state)
{
  (void)state;
  struct side srv, cli;
  int wake[2];
  psk_pair_with_wake(&srv, &cli, wake);
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

  close_pair_with_wake(&srv, &cli, wake);
}

/* Once transport_readahead() allows it, tls_pull reads ahead: records that
 * arrived together are taken from the socket at once, count as pending,
 * and come out of recv without waiting,
 * even with the socket empty and the wake fd readable (as a plain socket's
 * queued bytes would; a reader that waited on the socket would hang, or
 * here return ECANCELED). */
static void test_readahead_pending(void **state)
{
  (void)state;
  struct side srv, cli;
  int wake[2];
  psk_pair_with_wake(&srv, &cli, wake);

  enum { N = 8, LEN = 64 };
  char m[LEN], want[LEN];
  struct pollfd p = { .fd = srv.t->fd, .events = POLLIN };
  /* Not before transport_readahead (during a handshake): one record per
   * message read, the next still in the socket. */
  memset(m, 'z', LEN);
  assert_int_equal(transport_write_full(cli.t, m, LEN, 0), 0);
  assert_int_equal(transport_write_full(cli.t, m, LEN, 0), 0);
  assert_int_equal(transport_read_msg(srv.t, want, LEN), 0);
  assert_int_equal(srv.t->ops->pending(srv.t), 0);
  assert_int_equal(poll(&p, 1, 0), 1);
  assert_int_equal(transport_read_msg(srv.t, want, LEN), 0);
  assert_memory_equal(m, want, LEN);

  transport_readahead(srv.t);
  for (int i = 0; i < N; i++) {           /* one record each */
    memset(m, 'a' + i, LEN);
    assert_int_equal(transport_write_full(cli.t, m, LEN, 0), 0);
  }
  assert_int_equal(transport_read_msg(srv.t, m, LEN), 0);
  memset(want, 'a', LEN);
  assert_memory_equal(m, want, LEN);
  assert_true(srv.t->ops->pending(srv.t) > 0);
  assert_int_equal(poll(&p, 1, 0), 0);    /* all of it was read ahead */

  srv.t->wake_fd = wake[0];
  assert_int_equal(write(wake[1], "w", 1), 1);
  for (int i = 1; i < N; i++) {
    assert_int_equal(transport_read_msg(srv.t, m, LEN), 0);
    memset(want, 'a' + i, LEN);
    assert_memory_equal(m, want, LEN);
  }
  assert_int_equal(srv.t->ops->pending(srv.t), 0);
  errno = 0;
  assert_int_equal(transport_read_msg(srv.t, m, LEN), -1);
  assert_int_equal(errno, ECANCELED);     /* now it waits, and is woken */

  srv.t->wake_fd = -1;
  small_roundtrip(srv.t, cli.t);
  close_pair_with_wake(&srv, &cli, wake);
}

/* A TLS 1.3 KeyUpdate among records read ahead, on the blocking path (no
 * deadline, no wake fd): GnuTLS handles it inside gnutls_record_recv and
 * answers GNUTLS_E_AGAIN, with the records after it already read ahead
 * and the socket empty; recv must go on with those rather than wait on
 * the socket for data that will never come. */
static void test_readahead_key_update(void **state)
{
  (void)state;
  struct side srv, cli;
  int wake[2];
  psk_pair_with_wake(&srv, &cli, wake);
  srv.t->deadline = 0;
  transport_readahead(srv.t);

  enum { N = 6 };
  uint8_t m[4113];                        /* as read_numbered reads them */
  for (int i = 0; i < N; i++) {
    if (i == 1)
      assert_int_equal(gnutls_session_key_update(tls_session(cli.t), 0), 0);
    memset(m, i & 0xff, sizeof m);
    memcpy(m, &i, sizeof i);
    assert_int_equal(transport_write_full(cli.t, m, sizeof m, 0), 0);
  }
  struct numbered r = { srv.t, N, 0 };
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, read_numbered, &r), 0);
  struct timespec limit;
  clock_gettime(CLOCK_REALTIME, &limit);
  limit.tv_sec += 5;
  if (pthread_timedjoin_np(th, NULL, &limit) != 0) {
    shutdown(srv.t->fd, SHUT_RDWR);       /* unblock it, then fail */
    pthread_join(th, NULL);
    fail_msg("recv waited on the socket with records read ahead");
  }
  assert_true(r.ok);

  small_roundtrip(srv.t, cli.t);          /* new keys both ways */
  close_pair_with_wake(&srv, &cli, wake);
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
  cs->s = (struct side){ .server = true, .creds = cs->creds, .fd = -1,
                         .peer.want_names = true };
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

  /* TLS 1.1 and 1.0 are refused (docs/security.md 2) */
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

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_bulk_both_ways),
    cmocka_unit_test(test_try_sendv),
    cmocka_unit_test(test_truncation),
    cmocka_unit_test(test_handshake_deadline),
    cmocka_unit_test(test_recv_wake_and_deadline),
    cmocka_unit_test(test_readahead_pending),
    cmocka_unit_test(test_readahead_key_update),
    cmocka_unit_test(test_plaintext_injection),
    cmocka_unit_test(test_gnutls_cli_psk),
    cmocka_unit_test(test_gnutls_cli_x509),
  };
  return tls_fixture_main("test_tls_io", tests,
                          sizeof tests / sizeof tests[0]);
}
