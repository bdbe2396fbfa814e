/* Unit tests of NBD URI parsing (common/uri.c): a table of good URIs with
 * every field they should yield, and a table of bad ones that must fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "log.h"
#include "uri.h"

struct good {
  const char *uri;
  bool tls, unix_socket;
  const char *host, *port, *socket, *export_name, *username;
  const char *certs, *psk, *hostname;
  int verify;
  enum uri_tls_type type;
};

static const struct good goods[] = {
  /* The export-name table of doc/uri.md. */
  { "nbd://example.com/disk", false, false, "example.com", "10809", NULL,
    "disk", NULL, NULL, NULL, NULL, -1, 0 },
  { "nbd+unix:///disk?socket=sock", false, true, NULL, NULL, "sock",
    "disk", NULL, NULL, NULL, NULL, -1, 0 },
  { "nbd://example.com/", false, false, "example.com", "10809", NULL,
    "", NULL, NULL, NULL, NULL, -1, 0 },
  { "nbd://example.com", false, false, "example.com", "10809", NULL,
    "", NULL, NULL, NULL, NULL, -1, 0 },
  { "nbd://example.com//disk", false, false, "example.com", "10809", NULL,
    "/disk", NULL, NULL, NULL, NULL, -1, 0 },
  { "nbd://example.com/hello%20world", false, false, "example.com", "10809",
    NULL, "hello world", NULL, NULL, NULL, NULL, -1, 0 },
  /* Ports, IPv6 literals, schemes. */
  { "nbd://127.0.0.1:1234/a/b", false, false, "127.0.0.1", "1234", NULL,
    "a/b", NULL, NULL, NULL, NULL, -1, 0 },
  { "nbds://[::1]:10810/x", true, false, "::1", "10810", NULL, "x",
    NULL, NULL, NULL, NULL, -1, 0 },
  { "NBDS://[2001:DB8::2]/", true, false, "2001:DB8::2", "10809", NULL,
    "", NULL, NULL, NULL, NULL, -1, 0 },
  { "nbds+unix:///?socket=/run/a%20b.sock&tls-hostname=srv.example",
    true, true, NULL, NULL, "/run/a b.sock", "", NULL, NULL, NULL,
    "srv.example", -1, 0 },
  /* TLS parameters and user names, percent-decoded. */
  { "nbds://alice@h/e?tls-psk-file=/k%2Fpsk&tls-type=psk", true, false,
    "h", "10809", NULL, "e", "alice", NULL, "/k/psk", NULL, -1,
    URI_TLS_TYPE_PSK },
  { "nbds://h/?tls-username=b%40b&tls-certificates=/etc/pki&tls-verify-peer=0",
    true, false, "h", "10809", NULL, "", "b@b", "/etc/pki", NULL, NULL, 0,
    0 },
  { "nbds://h/?tls-verify-peer=1&tls-type=x509&x-future=yes", true, false,
    "h", "10809", NULL, "", NULL, NULL, NULL, NULL, 1, URI_TLS_TYPE_X509 },
  { "nbd://h/a+b?x-plus=1", false, false, "h", "10809", NULL, "a+b",
    NULL, NULL, NULL, NULL, -1, 0 },
};

static void check_str(const char *want, const char *got, const char *uri)
{
  if (!want) {
    if (got)
      fail_msg("%s: expected NULL, got \"%s\"", uri, got);
    return;
  }
  if (!got)
    fail_msg("%s: expected \"%s\", got NULL", uri, want);
  assert_string_equal(want, got);
}

static void test_good(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof goods / sizeof goods[0]; i++) {
    const struct good *g = &goods[i];
    struct nbd_uri u;
    if (uri_parse(g->uri, &u) == -1)
      fail_msg("%s: %s", g->uri, get_error());
    assert_int_equal(u.tls, g->tls);
    assert_int_equal(u.unix_socket, g->unix_socket);
    check_str(g->host, u.host, g->uri);
    check_str(g->port, u.port, g->uri);
    check_str(g->socket, u.socket, g->uri);
    check_str(g->export_name, u.export_name, g->uri);
    check_str(g->username, u.username, g->uri);
    check_str(g->certs, u.tls_certificates, g->uri);
    check_str(g->psk, u.tls_psk_file, g->uri);
    check_str(g->hostname, u.tls_hostname, g->uri);
    assert_int_equal(u.tls_verify_peer, g->verify);
    assert_int_equal(u.tls_type, g->type);
    uri_free(&u);
  }
}

struct bad { const char *uri, *why; };

static const struct bad bads[] = {
  { "", "unknown URI scheme" },
  { "http://example.com/", "unknown URI scheme" },
  { "nbd:disk", "no authority" },
  { "nbd+unix:/disk?socket=s", "no authority" },
  { "nbd:///disk", "no host" },
  { "nbd://h:0/", "bad port" },
  { "nbd://h:65536/", "bad port" },
  { "nbd://h:123456/", "bad port" },
  { "nbd://h/?socket=/s", "only allowed with nbd+unix" },
  { "nbd+unix:///e", "needs ?socket" },
  { "nbd+unix://host/e?socket=s", "must not name a host" },
  { "nbd://h/a%00b", "escaped NUL" },
  { "nbd+unix:///?socket=%00abstract", "escaped NUL" },
  { "nbd://user:secret@h/", "passwords" },
  { "nbd://u@h/?tls-username=v", "given both" },
  { "nbd://h/?tls-verify-peer=yes", "must be 0 or 1" },
  { "nbd://h/?tls-verify-peer=1&tls-verify-peer=0", "given twice" },
  { "nbd://h/?tls-psk-file=a&tls-psk-file=b", "given twice" },
  { "nbd://h/?tls-psk-file", "has no value" },
  { "nbd://h/?tls-type=anon", "x509 or psk" },
  { "nbd://h/?bogus=1", "unknown URI query parameter" },
  { "nbd://h/#frag", "no fragment" },
  { "nbd://h/a b", "cannot parse" },
};

static void test_bad(void **state)
{
  (void)state;
  for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
    struct nbd_uri u;
    clear_error();
    if (uri_parse(bads[i].uri, &u) == 0)
      fail_msg("\"%s\" parsed but should have failed", bads[i].uri);
    if (!strstr(get_error(), bads[i].why))
      fail_msg("\"%s\": error \"%s\" does not mention \"%s\"", bads[i].uri,
               get_error(), bads[i].why);
    assert_null(u.host);
    assert_null(u.export_name);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_good),
    cmocka_unit_test(test_bad),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
