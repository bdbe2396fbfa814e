/* The TLS/export policy as a table (proto.md "TLS support"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "conn.h"

enum { OFF = TLS_MODE_OFF, ON = TLS_MODE_ON, REQ = TLS_MODE_REQUIRE };

static void test_option_table(void **state)
{
  (void)state;
  static const struct {
    int mode; bool tls; uint32_t opt; enum policy_verdict want;
    bool ext;                      /* extended headers negotiated */
  } rows[] = {
    /* NOTLS: STARTTLS is refused with POLICY, never TLS_REQD */
    { OFF, false, NBD_OPT_STARTTLS, POLICY_DENIED },
    { OFF, false, NBD_OPT_GO, POLICY_OK },
    { OFF, false, NBD_OPT_LIST, POLICY_OK },
    { OFF, false, 99, POLICY_OK },                 /* unknown: UNSUP later */
    /* FORCEDTLS before TLS: all but STARTTLS/ABORT get TLS_REQD */
    { REQ, false, NBD_OPT_STARTTLS, POLICY_OK },
    { REQ, false, NBD_OPT_ABORT, POLICY_OK },
    { REQ, false, NBD_OPT_INFO, POLICY_TLS_REQD },
    { REQ, false, NBD_OPT_GO, POLICY_TLS_REQD },
    { REQ, false, NBD_OPT_LIST, POLICY_TLS_REQD },
    { REQ, false, NBD_OPT_STRUCTURED_REPLY, POLICY_TLS_REQD },
    { REQ, false, NBD_OPT_SET_META_CONTEXT, POLICY_TLS_REQD },
    { REQ, false, NBD_OPT_EXPORT_NAME, POLICY_TLS_REQD },
    { REQ, false, 99, POLICY_TLS_REQD },
    /* after TLS: never TLS_REQD; a second STARTTLS is INVALID */
    { REQ, true, NBD_OPT_STARTTLS, POLICY_INVALID },
    { REQ, true, NBD_OPT_GO, POLICY_OK },
    { REQ, true, 99, POLICY_OK },
    /* SELECTIVETLS: options pass; exports decide */
    { ON, false, NBD_OPT_STARTTLS, POLICY_OK },
    { ON, false, NBD_OPT_LIST, POLICY_OK },
    { ON, false, NBD_OPT_GO, POLICY_OK },
    { ON, true, NBD_OPT_STARTTLS, POLICY_INVALID },
    /* NBD_OPT_EXTENDED_HEADERS: an option like any other before TLS in
     * FORCEDTLS; once negotiated it takes precedence over structured
     * replies (ERR_EXT_HEADER_REQD) and EXPORT_NAME is refused (the
     * caller ends the session) */
    { OFF, false, NBD_OPT_EXTENDED_HEADERS, POLICY_OK },
    { REQ, false, NBD_OPT_EXTENDED_HEADERS, POLICY_TLS_REQD },
    { REQ, true, NBD_OPT_EXTENDED_HEADERS, POLICY_OK },
    { ON, false, NBD_OPT_EXTENDED_HEADERS, POLICY_OK },
    { OFF, false, NBD_OPT_STRUCTURED_REPLY, POLICY_EXT_HEADER_REQD, true },
    { REQ, true, NBD_OPT_STRUCTURED_REPLY, POLICY_EXT_HEADER_REQD, true },
    { OFF, false, NBD_OPT_EXPORT_NAME, POLICY_INVALID, true },
    { ON, true, NBD_OPT_EXPORT_NAME, POLICY_INVALID, true },
    { OFF, false, NBD_OPT_EXPORT_NAME, POLICY_OK, false },
    { OFF, false, NBD_OPT_EXTENDED_HEADERS, POLICY_OK, true },
    { OFF, false, NBD_OPT_GO, POLICY_OK, true },
    { OFF, false, NBD_OPT_SET_META_CONTEXT, POLICY_OK, true },
    { REQ, true, NBD_OPT_STARTTLS, POLICY_INVALID, true },
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    struct policy_session s = { .mode = (enum tls_mode)rows[i].mode, .tls = rows[i].tls,
                                .have_creds = true, .ext = rows[i].ext };
    enum policy_verdict v = policy_option(&s, rows[i].opt, rows[i].opt < 20);
    if (v != rows[i].want)
      fail_msg("row %zu: mode %d tls %d ext %d opt %u: got %d want %d", i,
               rows[i].mode, rows[i].tls, rows[i].ext, rows[i].opt, v,
               rows[i].want);
  }
  /* TLS configured on, but no credentials loaded: never ACK STARTTLS */
  struct policy_session nocreds = { .mode = TLS_MODE_ON, .have_creds = false };
  assert_int_equal(policy_option(&nocreds, NBD_OPT_STARTTLS, true),
                   POLICY_DENIED);
}

static void test_export_table(void **state)
{
  (void)state;
  char *allow_cn[] = { "cn=client1", NULL };
  char *allow_psk[] = { "psk:alice", NULL };
  char *allow_dn[] = { "CN=client1,O=snbd", NULL };
  struct export plain = { .name = "plain" };
  struct export tlsonly = { .name = "secret", .tls_only = true };
  struct export bycn = { .name = "cn", .allow = allow_cn };
  struct export bypsk = { .name = "psk", .allow = allow_psk };
  struct export bydn = { .name = "dn", .allow = allow_dn };
  struct tls_peer cert = { .has_cert = true, .cn = "client1",
                           .dn = "CN=client1,O=snbd" };
  struct tls_peer other = { .has_cert = true, .cn = "client2",
                            .dn = "CN=client2,O=snbd" };
  struct tls_peer psk = { .psk_username = "alice" };
  struct tls_peer nocert = { 0 };
  static const struct tls_peer *none = NULL;
  struct {
    int mode; bool tls; const struct tls_peer *peer; const struct export *e;
    enum policy_verdict want;
    const char *why;            /* in policy_reason's answer */
  } rows[] = {
    { OFF, false, none, &plain, POLICY_OK, "allowed" },
    { OFF, false, none, NULL, POLICY_UNKNOWN, "no such export" },
    { OFF, false, none, &tlsonly, POLICY_DENIED, "tls-only and TLS is off" },
    { OFF, false, none, &bycn, POLICY_DENIED, "allow= list and TLS is off" },
    { REQ, false, none, &plain, POLICY_TLS_REQD,
      "TLS is required and the client did not start it" },
    { REQ, false, none, NULL, POLICY_TLS_REQD, "TLS is required" },
    { REQ, true, &nocert, &plain, POLICY_OK, "allowed" },
    { REQ, true, &nocert, NULL, POLICY_UNKNOWN, "no such export" },
    /* SELECTIVETLS */
    { ON, false, none, &plain, POLICY_OK, "allowed" },
    { ON, false, none, &tlsonly, POLICY_TLS_REQD,
      "the export is tls-only and the client did not start TLS" },
    { ON, false, none, NULL, POLICY_TLS_REQD, "TLS is required" },
    { ON, true, &nocert, &tlsonly, POLICY_OK, "allowed" },
    { ON, true, &nocert, NULL, POLICY_UNKNOWN, "no such export" },
    /* identities */
    { REQ, true, &cert, &bycn, POLICY_OK, "allowed" },
    { REQ, true, &other, &bycn, POLICY_DENIED,
      "allow= list does not name this client" },
    { REQ, true, &nocert, &bycn, POLICY_DENIED, "does not name this client" },
    { REQ, true, &psk, &bycn, POLICY_DENIED, "does not name this client" },
    { REQ, true, &psk, &bypsk, POLICY_OK, "allowed" },
    { REQ, true, &cert, &bypsk, POLICY_DENIED, "does not name this client" },
    { REQ, true, &cert, &bydn, POLICY_OK, "allowed" },
    { REQ, true, &other, &bydn, POLICY_DENIED, "does not name this client" },
    { ON, false, none, &bycn, POLICY_TLS_REQD,
      "allow= list, which needs TLS, and the client did not start it" },
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    struct policy_session s = { .mode = (enum tls_mode)rows[i].mode, .tls = rows[i].tls,
                                .have_creds = true, .peer = rows[i].peer };
    enum policy_verdict v = policy_export(&s, rows[i].e);
    if (v != rows[i].want)
      fail_msg("row %zu: got %d want %d", i, v, rows[i].want);
    /* The reason the server logs for it (handshake.c hs_log_refusal). */
    const char *why = policy_reason(&s, rows[i].e, v);
    if (!strstr(why, rows[i].why))
      fail_msg("row %zu: reason \"%s\" lacks \"%s\"", i, why, rows[i].why);
  }
  /* Only allow lists that name certificates make the server parse them. */
  char *allow_both[] = { "PSK:bob", "cn=client1", NULL };
  assert_false(policy_needs_cert_names(NULL));
  assert_false(policy_needs_cert_names(allow_psk));
  assert_true(policy_needs_cert_names(allow_cn));
  assert_true(policy_needs_cert_names(allow_dn));
  assert_true(policy_needs_cert_names(allow_both));
}

static void test_rep_errors(void **state)
{
  (void)state;
  assert_int_equal(policy_rep_error(POLICY_TLS_REQD), NBD_REP_ERR_TLS_REQD);
  assert_int_equal(policy_rep_error(POLICY_DENIED), NBD_REP_ERR_POLICY);
  /* An export refused by policy is answered as one that does not exist
   * (docs/security.md 34); the other verdicts are told as they are. */
  assert_int_equal(policy_export_answer(POLICY_DENIED), POLICY_UNKNOWN);
  assert_int_equal(policy_export_answer(POLICY_UNKNOWN), POLICY_UNKNOWN);
  assert_int_equal(policy_export_answer(POLICY_TLS_REQD), POLICY_TLS_REQD);
  assert_int_equal(policy_export_answer(POLICY_OK), POLICY_OK);
  assert_int_equal(policy_rep_error(POLICY_UNKNOWN), NBD_REP_ERR_UNKNOWN);
  assert_int_equal(policy_rep_error(POLICY_EXT_HEADER_REQD),
                   NBD_REP_ERR_EXT_HEADER_REQD);
  assert_int_equal(policy_rep_error(POLICY_INVALID), NBD_REP_ERR_INVALID);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_option_table),
    cmocka_unit_test(test_export_table),
    cmocka_unit_test(test_rep_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
