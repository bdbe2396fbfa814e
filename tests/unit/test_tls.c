/* Tests of common/tls.c and tls_creds.c: identities and refusals.  Real
 * GnuTLS handshakes between our server and client (tls_fixture.h): X.509
 * with and without client certificates, wrong CA, host names, expired and
 * revoked certificates, TLS versions, PSK, and credential loading errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "tls_fixture.h"

/* ---- the client's hello ---- */

static unsigned be16(const uint8_t *p)
{
  return (unsigned)p[0] << 8 | p[1];
}

/* The number of key shares in a ClientHello record (rec, n bytes), or -1
 * if it has no key_share extension or does not parse (RFC 8446 4.1.2,
 * 4.2.8). */
static int key_shares(const uint8_t *rec, size_t n)
{
  size_t i = 5 + 4 + 2 + 32;       /* record, handshake headers, version,
                                      random */
  if (n < i + 1)
    return -1;
  i += 1 + rec[i];                          /* session id */
  if (n < i + 2)
    return -1;
  i += 2 + be16(rec + i);                   /* cipher suites */
  if (n < i + 1)
    return -1;
  i += 1 + rec[i];                          /* compression methods */
  if (n < i + 2)
    return -1;
  size_t end = i + 2 + be16(rec + i);
  for (i += 2; end <= n && i + 4 <= end; i += 4 + be16(rec + i + 2)) {
    if (be16(rec + i) != 51)                /* key_share */
      continue;
    size_t j = i + 4 + 2, stop = j + be16(rec + i + 4);
    int count = 0;
    for (; j + 4 <= stop && stop <= end; j += 4 + be16(rec + j + 2))
      count++;
    return count;
  }
  return -1;
}

/* The client sends one key share, X25519's (GNUTLS_KEY_SHARE_TOP): GnuTLS
 * sends two by default (X25519 and SECP256R1), and the unused one cost a
 * P-256 key generation per connection, a tenth of a reconnecting client's
 * CPU (docs/architecture.md "Where the CPU goes"). */
static void test_one_key_share(void **state)
{
  (void)state;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  struct side cli = { .server = false, .creds = client_creds("x509", true),
                      .fd = sv[1], .hostname = "localhost" };
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, handshake_thread, &cli), 0);
  uint8_t rec[16384];
  size_t got = 0;
  while (got < 5 || got < 5 + be16(rec + 3)) {
    ssize_t r = recv(sv[0], rec + got, sizeof rec - got, 0);
    assert_true(r > 0);
    got += (size_t)r;
  }
  close(sv[0]);                    /* the client's handshake fails */
  pthread_join(th, NULL);
  assert_null(cli.t);
  assert_int_equal(rec[0], 22);                 /* handshake record */
  assert_int_equal(rec[5], 1);                  /* ClientHello */
  assert_int_equal(key_shares(rec, got), 1);
  tls_creds_unref(cli.creds);
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
  assert_string_equal(srv.peer.sni, "localhost");
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
  /* RFC 4514, as `certtool -i` prints the subject */
  assert_string_equal(srv.peer.dn, "CN=client1,O=snbd");
  assert_modern(&srv.peer);
  small_roundtrip(cli.t, srv.t);
  close_pair(&srv, &cli);

  /* verify_peer off: a good certificate still gives an identity */
  assert_true(run_pair(sc_opt, cc, "localhost", &srv, &cli));
  assert_true(srv.peer.has_cert);
  assert_string_equal(srv.peer.cn, "client1");
  close_pair(&srv, &cli);

  /* Names not wanted (no allow= names them): the certificate still
   * counts as verified, but is not parsed for its names. */
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  srv = (struct side){ .server = true, .creds = sc, .fd = sv[0] };
  memset(srv.peer.dn, 'x', sizeof srv.peer.dn - 1);  /* must be cleared */
  cli = (struct side){ .server = false, .creds = cc, .fd = sv[1],
                       .hostname = "localhost" };
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, handshake_thread, &srv), 0);
  handshake_thread(&cli);
  pthread_join(th, NULL);
  assert_non_null(srv.t);
  assert_non_null(cli.t);
  assert_true(srv.peer.has_cert);
  assert_false(srv.peer.want_names);
  assert_string_equal(srv.peer.cn, "");
  assert_string_equal(srv.peer.dn, "");
  small_roundtrip(cli.t, srv.t);
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
  assert_string_equal(srv.peer.sni, "");       /* no SNI for addresses */
  close_pair(&srv, &cli);
  assert_true(run_pair(sc, cc, "::1", &srv, &cli));
  close_pair(&srv, &cli);
  expect_refused(sc, cc, "127.0.0.2", &srv, &cli);

  /* verify_peer without a host name is refused before any I/O */
  struct transport *plain = transport_plain_new(-1);
  assert_non_null(plain);
  assert_null(tls_client_handshake(cc, plain, NULL, NULL, NULL));
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

/* A client limited to an old version: only with allow_old_versions, as
 * the floor is appended to any priority string (docs/security.md 2). */
static struct tls_creds *old_client(const char *priority)
{
  struct tls_client_config cfg = {
    .cert_dir = P("cacert"), .verify_peer = true, .priority = priority,
  };
  assert_null(tls_creds_load_client(&cfg));
  cfg.allow_old_versions = true;
  struct tls_creds *c = tls_creds_load_client(&cfg);
  if (!c)
    fail_msg("client creds: %s", get_error());
  return c;
}

static void test_versions(void **state)
{
  (void)state;
  struct tls_creds *sc = server_creds("x509", NULL, false);
  struct tls_creds *v11 = old_client("NORMAL:-VERS-ALL:+VERS-TLS1.1");
  struct tls_creds *v10 = old_client("NORMAL:-VERS-ALL:+VERS-TLS1.0");
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

/* ---- credential errors ---- */

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

  write_file(P("bad1.psk"), "alice:00112233445566778899aabbccddeeff\n"
             "bob:0123456789abcdef0123456789abcdef0\n");
  server_load_fails(NULL, P("bad1.psk"), false, "bad1.psk line 2",
                    "0123456789abcdef");
  /* Keys under 128 bits are refused, with the user and the size. */
  write_file(P("short.psk"), "alice:00112233445566778899aabbccddeeff\n"
             "bob:00112233445566778899aabbccddee\n");
  server_load_fails(NULL, P("short.psk"), false,
                    "short.psk line 2: user \"bob\": the key has 120 bits; "
                    "at least 128 are needed", "00112233");
  write_file(P("bad2.psk"), "alice:zz112233445566778899aabbccddeeff\n");
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

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_one_key_share),
    cmocka_unit_test(test_x509_server_only),
    cmocka_unit_test(test_x509_client_cert),
    cmocka_unit_test(test_x509_client_cert_missing),
    cmocka_unit_test(test_x509_wrong_ca),
    cmocka_unit_test(test_x509_hostname),
    cmocka_unit_test(test_x509_expired_revoked),
    cmocka_unit_test(test_versions),
    cmocka_unit_test(test_psk),
    cmocka_unit_test(test_psk_and_x509),
    cmocka_unit_test(test_creds_errors),
  };
  return tls_fixture_main("test_tls", tests, sizeof tests / sizeof tests[0]);
}
