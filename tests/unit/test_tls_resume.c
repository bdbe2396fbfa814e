/* Tests of TLS session resumption (common/tls_resume.c): a client that
 * cached a session resumes it with an abbreviated handshake and is the
 * same peer as before; a session is never offered under another key;
 * reloaded server credentials (a SIGHUP) and a server without tickets
 * make a full handshake; a resumed session whose client certificate has
 * been revoked since is refused even under the key that issued it.  Real
 * GnuTLS handshakes between our server and client (tls_fixture.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "tls_creds.h"
#include "tls_fixture.h"
#include "tls_resume.h"
#include "tls_vcache.h"

#define KEY "peer=test\nhost=localhost"

/* One connection: handshake, a round trip (which brings the client the
 * server's ticket), close.  Returns whether the server saw a resumption,
 * and checks that both ends agree on it. */
static bool connect_once(struct tls_creds *sc, struct tls_creds *cc,
                         const char *key, struct tls_peer *srv_peer)
{
  struct side srv, cli;
  assert_true(run_pair_key(sc, cc, "localhost", key, &srv, &cli));
  small_roundtrip(srv.t, cli.t);
  assert_int_equal(srv.peer.resumed, cli.peer.resumed);
  if (srv_peer)
    *srv_peer = srv.peer;
  close_pair(&srv, &cli);
  return srv.peer.resumed;
}

static void test_x509_resumes_same_identity(void **state)
{
  (void)state;
  tls_resume_forget_all();
  struct tls_creds *sc = server_creds("x509", NULL, true);
  struct tls_creds *cc = client_creds("x509", true);
  struct tls_peer first, again;
  assert_false(connect_once(sc, cc, KEY, &first));
  assert_true(connect_once(sc, cc, KEY, &again));
  assert_true(again.has_cert);
  assert_string_equal(again.dn, first.dn);
  assert_string_equal(again.cn, "client1");
  assert_modern(&again);
  /* The resumed session's ticket replaces the one used: it goes on. */
  assert_true(connect_once(sc, cc, KEY, NULL));
  /* Without a key nothing is offered, and a ticket is used only once. */
  assert_false(connect_once(sc, cc, NULL, NULL));
  tls_resume_forget_all();
  assert_false(connect_once(sc, cc, KEY, NULL));
  tls_creds_unref(sc);
  tls_creds_unref(cc);
}

static void test_other_key_not_offered(void **state)
{
  (void)state;
  tls_resume_forget_all();
  struct tls_creds *sc = server_creds("x509", NULL, false);
  struct tls_creds *cc = client_creds("cacert", true);
  assert_false(connect_once(sc, cc, KEY, NULL));
  assert_false(connect_once(sc, cc, KEY "\nuser=other", NULL));
  assert_true(connect_once(sc, cc, KEY, NULL));
  tls_creds_unref(sc);
  tls_creds_unref(cc);
}

static void test_psk_resumes_same_user(void **state)
{
  (void)state;
  tls_resume_forget_all();
  struct tls_creds *sc = server_creds(NULL, "psk", false);
  struct tls_creds *cc = client_psk("psk", "alice");
  struct tls_peer p;
  assert_false(connect_once(sc, cc, KEY, &p));
  assert_true(connect_once(sc, cc, KEY, &p));
  assert_string_equal(p.psk_username, "alice");
  tls_creds_unref(sc);
  tls_creds_unref(cc);
}

/* A reload loads new credentials with a new ticket key: the tickets of
 * the old ones are refused (a full handshake follows, judged by the new
 * credentials). */
static void test_reload_refuses_old_tickets(void **state)
{
  (void)state;
  tls_resume_forget_all();
  struct tls_creds *sc = server_creds("x509", NULL, true);
  struct tls_creds *cc = client_creds("x509", true);
  assert_false(connect_once(sc, cc, KEY, NULL));
  struct tls_creds *reloaded = server_creds("x509", NULL, true);
  assert_false(connect_once(reloaded, cc, KEY, NULL));
  assert_true(connect_once(reloaded, cc, KEY, NULL));
  /* A PSK user removed by a reload cannot resume either. */
  tls_resume_forget_all();
  struct tls_creds *psk = server_creds(NULL, "psk", false);
  struct tls_creds *alice = client_psk("psk", "alice");
  assert_false(connect_once(psk, alice, KEY, NULL));
  struct tls_creds *carol_only = server_creds(NULL, "carolpsk", false);
  struct side srv, cli;
  expect_server_refused(carol_only, alice, &srv, &cli);
  tls_creds_unref(sc);
  tls_creds_unref(reloaded);
  tls_creds_unref(cc);
  tls_creds_unref(psk);
  tls_creds_unref(alice);
  tls_creds_unref(carol_only);
}

static void test_no_tickets(void **state)
{
  (void)state;
  tls_resume_forget_all();
  struct tls_server_config cfg = { .cert_dir = P("x509"), .no_tickets = true };
  struct tls_creds *sc = tls_creds_load_server(&cfg);
  assert_non_null(sc);
  struct tls_creds *cc = client_creds("cacert", true);
  assert_false(connect_once(sc, cc, KEY, NULL));
  assert_false(connect_once(sc, cc, KEY, NULL));
  tls_creds_unref(sc);
  tls_creds_unref(cc);
}

/* Defence in depth: even if a ticket outlived a revocation (here: the
 * same ticket key under credentials with the new CRL, which a reload
 * never does), the certificate restored from it is verified again and
 * the session refused. */
static void test_resumed_cert_verified_again(void **state)
{
  (void)state;
  tls_resume_forget_all();
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "set -e; . '%s/tests/lib/tls.sh'; cd '%s'; "
           "rm -rf revnone; cp -r rev revnone; _tls_crl revnone",
           tls_fixture_src(), P(""));
  assert_int_equal(system(cmd), 0);
  struct tls_creds *before = server_creds("revnone", NULL, true);
  struct tls_creds *after = server_creds("rev", NULL, true);
  struct tls_creds *cc = client_creds("revcli", true);
  assert_false(connect_once(before, cc, KEY, NULL));
  assert_true(connect_once(before, cc, KEY, NULL));
  gnutls_free(after->ticket_key.data);
  after->ticket_key.data = gnutls_malloc(before->ticket_key.size);
  assert_non_null(after->ticket_key.data);
  memcpy(after->ticket_key.data, before->ticket_key.data,
         before->ticket_key.size);
  after->ticket_key.size = before->ticket_key.size;
  struct side srv, cli;
  run_pair_key(after, cc, "localhost", KEY, &srv, &cli);
  assert_null(srv.t);
  print_message("  server: %s\n", srv.msg);
  assert_non_null(strstr(srv.msg, "no longer verifies"));
  close_pair(&srv, &cli);
  tls_creds_unref(before);
  tls_creds_unref(after);
  tls_creds_unref(cc);
}

/* A chain verified on one resumption is not verified again on the next
 * (the server's cache of verified chains), and the identity is the same. */
static void test_verified_chain_remembered(void **state)
{
  (void)state;
  tls_resume_forget_all();
  struct tls_creds *sc = server_creds("x509", NULL, true);
  struct tls_creds *cc = client_creds("x509", true);
  assert_non_null(sc->vcache);
  assert_true(sc->trust_until > 0);
  struct tls_peer first, second, third;
  assert_false(connect_once(sc, cc, KEY, &first));
  assert_int_equal(tls_vcache_hits(sc->vcache), 0);   /* full: no lookup */
  assert_true(connect_once(sc, cc, KEY, &second));
  assert_int_equal(tls_vcache_hits(sc->vcache), 0);   /* verified, kept */
  assert_true(connect_once(sc, cc, KEY, &third));
  assert_int_equal(tls_vcache_hits(sc->vcache), 1);
  assert_true(third.has_cert);
  assert_true(third.resumed);
  assert_string_equal(third.dn, first.dn);   /* names from the cache */
  assert_string_equal(third.cn, "client1");
  /* libsnbd's side: the server's chain, checked against "localhost". */
  assert_non_null(cc->vcache);
  assert_int_equal(tls_vcache_hits(cc->vcache), 1);
  /* No entry outlives the CA or the CRL (trust_until): with that date
   * passed, a chain is verified again every time. */
  struct tls_creds *sc2 = server_creds("x509", NULL, true);
  sc2->trust_until = (int64_t)time(NULL) - 1;
  tls_resume_forget_all();
  assert_false(connect_once(sc2, cc, KEY, NULL));
  assert_true(connect_once(sc2, cc, KEY, NULL));
  assert_true(connect_once(sc2, cc, KEY, NULL));
  assert_int_equal(tls_vcache_hits(sc2->vcache), 0);
  tls_creds_unref(sc2);
  tls_creds_unref(sc);
  tls_creds_unref(cc);
}

/* An entry holds until its time and not a second longer, for its own
 * chain only, with names only if it has them; the oldest goes first. */
static void test_vcache_entries(void **state)
{
  (void)state;
  struct tls_vcache *v = tls_vcache_new();
  assert_non_null(v);
  gnutls_datum_t a = { (unsigned char *)"chain a", 7 };
  gnutls_datum_t b[2] = { { (unsigned char *)"chain", 5 },
                          { (unsigned char *)" a", 2 } };
  struct tls_vcache_key ka, kb;
  assert_int_equal(tls_vcache_key(&a, 1, NULL, 0, &ka), 0);
  assert_int_equal(tls_vcache_key(b, 2, NULL, 0, &kb), 0);
  assert_memory_not_equal(&ka, &kb, sizeof ka);   /* boundaries count */
  /* What the chain was checked against is part of the key (a client's
   * host name). */
  gnutls_typed_vdata_st host = { GNUTLS_DT_DNS_HOSTNAME,
                                 (unsigned char *)"localhost", 0 };
  struct tls_vcache_key kh;
  assert_int_equal(tls_vcache_key(&a, 1, &host, 1, &kh), 0);
  assert_memory_not_equal(&ka, &kh, sizeof ka);
  struct tls_vcache_names names = { .filled = true, .dn = "CN=a",
                                    .cn = "a" }, got;
  tls_vcache_put(v, &ka, 1000, &names);
  assert_true(tls_vcache_get(v, &ka, 999, true, &got));
  assert_string_equal(got.dn, "CN=a");
  assert_false(tls_vcache_get(v, &kb, 999, false, &got));
  assert_false(tls_vcache_get(v, &ka, 1000, false, &got));    /* expired */
  assert_false(tls_vcache_get(v, &ka, 10, false, &got));      /* and gone */
  tls_vcache_put(v, &kb, 1000, NULL);
  assert_true(tls_vcache_get(v, &kb, 10, false, &got));
  assert_false(tls_vcache_get(v, &kb, 10, true, &got));       /* no names */
  tls_vcache_put(v, &ka, 0, &names);                          /* no time */
  assert_false(tls_vcache_get(v, &ka, 10, false, &got));
  /* TLS_VCACHE_ENTRIES other chains push kb out. */
  for (unsigned i = 0; i < TLS_VCACHE_ENTRIES; i++) {
    char buf[16];
    gnutls_datum_t d = { (unsigned char *)buf,
                         (unsigned)snprintf(buf, sizeof buf, "other %u", i) };
    struct tls_vcache_key k;
    assert_int_equal(tls_vcache_key(&d, 1, NULL, 0, &k), 0);
    tls_vcache_put(v, &k, 1000, NULL);
  }
  assert_false(tls_vcache_get(v, &kb, 10, false, &got));
  assert_int_equal(tls_vcache_hits(v), 2);
  tls_vcache_free(v);
}

/* Client credentials are loaded once per process and settings, and
 * loaded again when a file changes. */
static void test_client_creds_shared(void **state)
{
  (void)state;
  struct tls_client_config cfg = { .cert_dir = P("x509"),
                                   .verify_peer = true };
  struct tls_creds *a = tls_creds_load_client_shared(&cfg);
  struct tls_creds *b = tls_creds_load_client_shared(&cfg);
  assert_non_null(a);
  assert_ptr_equal(a, b);
  struct tls_client_config other = cfg;
  other.verify_peer = false;
  struct tls_creds *c = tls_creds_load_client_shared(&other);
  assert_ptr_not_equal(a, c);
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s.new' && mv '%s.new' '%s'",
           P("x509/client-cert.pem"), P("x509/client-cert.pem"),
           P("x509/client-cert.pem"), P("x509/client-cert.pem"));
  assert_int_equal(system(cmd), 0);          /* a new inode */
  struct tls_creds *d = tls_creds_load_client_shared(&cfg);
  assert_ptr_not_equal(a, d);
  /* Still a working set of credentials. */
  struct tls_creds *sc = server_creds("x509", NULL, true);
  struct side srv, cli;
  assert_true(run_pair(sc, d, "localhost", &srv, &cli));
  assert_string_equal(srv.peer.cn, "client1");
  close_pair(&srv, &cli);
  tls_creds_unref(a);
  tls_creds_unref(b);
  tls_creds_unref(c);
  tls_creds_unref(d);
  tls_creds_unref(sc);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_x509_resumes_same_identity),
    cmocka_unit_test(test_other_key_not_offered),
    cmocka_unit_test(test_psk_resumes_same_user),
    cmocka_unit_test(test_reload_refuses_old_tickets),
    cmocka_unit_test(test_no_tickets),
    cmocka_unit_test(test_resumed_cert_verified_again),
    cmocka_unit_test(test_verified_chain_remembered),
    cmocka_unit_test(test_vcache_entries),
    cmocka_unit_test(test_client_creds_shared),
  };
  return tls_fixture_main("test_tls_resume", tests,
                          sizeof tests / sizeof tests[0]);
}
