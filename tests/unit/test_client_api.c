/* libsnbd's API without a server: settings and their checks, errors per
 * thread, and URIs that name local files (refused unless the caller
 * allows it, docs/security.md 26). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "snbd/snbd.h"

#define NOSOCK "/nonexistent/snbd-test.sock"

static void test_uri_local_files(void **state)
{
  (void)state;
  static const char *const uris[] = {
    "nbds+unix:///?socket=" NOSOCK "&tls-psk-file=/etc/shadow",
    "nbds+unix:///?socket=" NOSOCK "&tls-certificates=/root",
    "nbds://localhost:1/?tls-psk-file=/etc/passwd",
  };
  for (size_t i = 0; i < sizeof uris / sizeof uris[0]; i++) {
    struct snbd_handle *h = snbd_create();
    assert_non_null(h);
    /* Refused before any connection is attempted: EPERM, not ENOENT or
     * ECONNREFUSED. */
    assert_int_equal(snbd_connect_uri(h, uris[i]), -1);
    assert_int_equal(snbd_get_errno(), EPERM);
    assert_non_null(strstr(snbd_get_error(), "snbd_set_uri_allow_local_file"));
    snbd_close(h);

    /* Allowed: now the connection itself is attempted (and fails). */
    h = snbd_create();
    assert_int_equal(snbd_set_uri_allow_local_file(h, true), 0);
    assert_int_equal(snbd_connect_uri(h, uris[i]), -1);
    assert_int_not_equal(snbd_get_errno(), EPERM);
    snbd_close(h);
  }
}

static void test_bad_uris(void **state)
{
  (void)state;
  struct snbd_handle *h = snbd_create();
  assert_int_equal(snbd_connect_uri(h, "http://example.com/"), -1);
  assert_int_equal(snbd_get_errno(), EINVAL);
  assert_non_null(strstr(snbd_get_error(), "invalid NBD URI"));
  assert_int_equal(snbd_connect_uri(h, "nbd://h/?evil=1"), -1);
  assert_non_null(strstr(snbd_get_error(), "unknown URI query parameter"));
  /* A bad URI does not use the handle up. */
  assert_int_equal(snbd_set_export_name(h, "x"), 0);
  snbd_close(h);
}

static void test_settings(void **state)
{
  (void)state;
  struct snbd_handle *h = snbd_create();
  char name[5000];
  memset(name, 'a', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  assert_int_equal(snbd_set_export_name(h, name), -1);
  assert_int_equal(snbd_get_errno(), ENAMETOOLONG);
  assert_int_equal(snbd_set_export_name(h, "disk"), 0);
  char *got = snbd_get_export_name(h);
  assert_string_equal(got, "disk");
  free(got);
  assert_int_equal(snbd_set_tls(h, (enum snbd_tls_mode)7), -1);
  assert_int_equal(snbd_set_tls(h, SNBD_TLS_REQUIRE), 0);
  assert_int_equal(snbd_get_tls(h), SNBD_TLS_REQUIRE);
  assert_int_equal(snbd_add_meta_context(h, "nocolon"), -1);
  assert_int_equal(snbd_add_meta_context(h, "base:allocation"), 0);
  assert_int_equal(snbd_add_meta_context(h, "base:allocation"), -1);
  assert_int_equal(snbd_get_errno(), EEXIST);
  char ctx[32];
  for (int i = 1; i < 16; i++) {
    snprintf(ctx, sizeof ctx, "x-test:%d", i);
    assert_int_equal(snbd_add_meta_context(h, ctx), 0);
  }
  assert_int_equal(snbd_add_meta_context(h, "x-test:17"), -1);
  assert_int_equal(snbd_get_errno(), ENOSPC);
  /* Extended headers are asked for unless turned off. */
  assert_int_equal(snbd_get_request_extended_headers(h), 1);
  assert_int_equal(snbd_set_request_extended_headers(h, false), 0);
  assert_int_equal(snbd_get_request_extended_headers(h), 0);
  snbd_close(h);
}

static void test_not_connected(void **state)
{
  (void)state;
  struct snbd_handle *h = snbd_create();
  char buf[512];
  memset(buf, 0xaa, sizeof buf);
  assert_int_equal(snbd_pread(h, buf, sizeof buf, 0, 0), -1);
  assert_int_equal(snbd_get_errno(), ENOTCONN);
  for (size_t i = 0; i < sizeof buf; i++)
    assert_int_equal(buf[i], 0);          /* never stale, even here */
  assert_int_equal(snbd_get_size(h), -1);
  assert_int_equal(snbd_get_extended_headers_negotiated(h), -1);
  assert_int_equal(snbd_get_errno(), ENOTCONN);
  assert_int_equal(snbd_aio_flush(h, NULL, NULL, 0), -1);
  assert_int_equal(snbd_list_exports(h, NULL, NULL), -1);
  assert_int_equal(snbd_shutdown(h), -1);
  snbd_close(h);
  snbd_close(NULL);
}

static void *other_thread(void *arg)
{
  (void)arg;
  /* This thread has made no failing call: it sees no error. */
  return (void *)(intptr_t)(strcmp(snbd_get_error(), "no error") == 0);
}

static void test_errors_per_thread(void **state)
{
  (void)state;
  struct snbd_handle *h = snbd_create();
  assert_int_equal(snbd_connect_unix(h, NOSOCK), -1);
  assert_int_equal(snbd_get_errno(), ENOENT);
  assert_non_null(strstr(snbd_get_error(), "snbd_connect_unix"));
  pthread_t t;
  void *r;
  assert_int_equal(pthread_create(&t, NULL, other_thread, NULL), 0);
  pthread_join(t, &r);
  assert_true(r != NULL);
  /* A failed connect leaves the handle closed, with the reason. */
  assert_int_equal(snbd_connect_unix(h, NOSOCK), -1);
  assert_non_null(strstr(snbd_get_error(), "closed"));
  snbd_close(h);
}

static void test_command_not_found(void **state)
{
  (void)state;
  struct snbd_handle *h = snbd_create();
  char *argv[] = { "/nonexistent/snbd-server", NULL };
  assert_int_equal(snbd_connect_command(h, argv), -1);
  assert_non_null(strstr(snbd_get_error(), "closed the connection"));
  snbd_close(h);
  /* The child was reaped by snbd_close. */
  assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
  assert_int_equal(errno, ECHILD);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_uri_local_files),
    cmocka_unit_test(test_bad_uris),
    cmocka_unit_test(test_settings),
    cmocka_unit_test(test_not_connected),
    cmocka_unit_test(test_errors_per_thread),
    cmocka_unit_test(test_command_not_found),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
