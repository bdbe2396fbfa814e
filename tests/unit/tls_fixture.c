/* Shared by the TLS unit tests (test_tls, test_tls_io): credentials made
 * by tests/lib/tls.sh in a temporary directory, and handshakes between our
 * server and client on the two ends of a socketpair (see tls_fixture.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "tls_fixture.h"

#ifndef SNBD_SRC_DIR
#define SNBD_SRC_DIR "."
#endif

static char tmpdir[1024];

const char *P(const char *sub)
{
  static char bufs[8][PATH_MAX];
  static int next;
  char *b = bufs[next++ % 8];
  snprintf(b, PATH_MAX, "%s/%s", tmpdir, sub);
  return b;
}

void write_file(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

struct tls_creds *server_creds(const char *certs, const char *psk,
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

struct tls_creds *client_creds_full(const char *certs, const char *psk,
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

struct tls_creds *client_creds(const char *certs, bool verify)
{
  return client_creds_full(certs, NULL, NULL, verify, NULL);
}

struct tls_creds *client_psk(const char *psk, const char *user)
{
  return client_creds_full(NULL, psk, user, true, NULL);
}

/* ---- a handshake on one end of a socketpair, in a thread ---- */


void *handshake_thread(void *arg)
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
                                          s->resume_key, &s->peer);
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
bool run_pair(struct tls_creds *sc, struct tls_creds *cc,
              const char *hostname, struct side *srv, struct side *cli)
{
  return run_pair_key(sc, cc, hostname, NULL, srv, cli);
}

bool run_pair_key(struct tls_creds *sc, struct tls_creds *cc,
                  const char *hostname, const char *key, struct side *srv,
                  struct side *cli)
{
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  *srv = (struct side){ .server = true, .creds = sc, .fd = sv[0],
                        .peer.want_names = true };
  *cli = (struct side){ .server = false, .creds = cc, .fd = sv[1],
                        .hostname = hostname, .resume_key = key };
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

void close_pair(struct side *srv, struct side *cli)
{
  transport_close(srv->t);
  transport_close(cli->t);
  srv->t = cli->t = NULL;
}

/* Handshake that must fail on both ends. */
void expect_refused(struct tls_creds *sc, struct tls_creds *cc,
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
void expect_server_refused(struct tls_creds *sc, struct tls_creds *cc,
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

void assert_modern(const struct tls_peer *p)
{
  print_message("  negotiated %s %s kx=%s\n", p->version, p->cipher, p->kx);
  assert_string_equal(p->version, "TLS1.3");
  assert_non_null(strstr(p->cipher, "AES"));
  assert_non_null(strstr(p->cipher, "GCM"));
}

void small_roundtrip(struct transport *a, struct transport *b)
{
  char buf[16];
  assert_int_equal(transport_write_full(a, "ping", 4, 0), 0);
  assert_int_equal(transport_read_full(b, buf, 4), 0);
  assert_memory_equal(buf, "ping", 4);
  assert_int_equal(transport_write_full(b, "pong!", 5, 0), 0);
  assert_int_equal(transport_read_full(a, buf, 5), 0);
  assert_memory_equal(buf, "pong!", 5);
}

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

const char *tls_fixture_src(void)
{
  return getenv("SNBD_SRC") ? getenv("SNBD_SRC") : SNBD_SRC_DIR;
}

int tls_fixture_main(const char *name, const struct CMUnitTest *tests,
                     size_t n)
{
  const char *src = tls_fixture_src();
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
    r = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
  char cmd[PATH_MAX + 16];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmpdir);
  return r;
}
