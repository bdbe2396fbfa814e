/* Option payload parsing: valid, truncated, oversized and hostile input.
 * Also the server's own options (server/config.c): every row of the
 * option table sets the same thing from the command line and from the
 * config file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "optparse.h"
#include "snbd/protocol.h"
#include "wire.h"

static struct wire_buf info_payload(const char *name, uint32_t namelen,
                                    uint16_t nreq, const uint16_t *reqs,
                                    size_t nreqs_written)
{
  struct wire_buf b;
  wire_buf_init(&b);
  wire_put_u32(&b, namelen);
  wire_put_bytes(&b, name, strlen(name));
  wire_put_u16(&b, nreq);
  for (size_t i = 0; i < nreqs_written; i++)
    wire_put_u16(&b, reqs[i]);
  return b;
}

static void test_info_valid(void **state)
{
  (void)state;
  const uint16_t reqs[] = { NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE, 999 };
  struct wire_buf b = info_payload("disk", 4, 3, reqs, 3);
  struct opt_info_req r;
  const char *why = NULL;
  assert_int_equal(optparse_info(b.data, (uint32_t)b.len, &r, &why), 0);
  assert_int_equal(r.namelen, 4);
  assert_memory_equal(r.name, "disk", 4);
  assert_true(r.want_name);
  assert_false(r.want_desc);
  assert_true(r.want_block_size);   /* unknown 999 ignored */
  wire_buf_free(&b);
}

static void test_info_malformed(void **state)
{
  (void)state;
  struct opt_info_req r;
  const char *why;
  const uint16_t reqs[] = { NBD_INFO_NAME, NBD_INFO_DESCRIPTION };
  struct wire_buf b;

  /* more information requests than bytes */
  b = info_payload("disk", 4, 3, reqs, 2);
  assert_int_equal(optparse_info(b.data, (uint32_t)b.len, &r, &why), -1);
  wire_buf_free(&b);
  /* extra bytes after the requests */
  b = info_payload("disk", 4, 1, reqs, 2);
  assert_int_equal(optparse_info(b.data, (uint32_t)b.len, &r, &why), -1);
  wire_buf_free(&b);
  /* name length larger than the option */
  b = info_payload("disk", 40, 0, NULL, 0);
  assert_int_equal(optparse_info(b.data, (uint32_t)b.len, &r, &why), -1);
  wire_buf_free(&b);
  /* name length 0xffffffff: no +1 overflow */
  b = info_payload("disk", 0xffffffff, 0, NULL, 0);
  assert_int_equal(optparse_info(b.data, (uint32_t)b.len, &r, &why), -1);
  wire_buf_free(&b);
  /* embedded NUL */
  wire_buf_init(&b);
  wire_put_u32(&b, 3);
  wire_put_bytes(&b, "a\0b", 3);
  wire_put_u16(&b, 0);
  assert_int_equal(optparse_info(b.data, (uint32_t)b.len, &r, &why), -1);
  assert_string_equal(why, "export name contains NUL");
  wire_buf_free(&b);
  /* every truncation of a valid payload fails, without reading past it */
  b = info_payload("disk", 4, 2, reqs, 2);
  for (size_t cut = 0; cut < b.len; cut++) {
    uint8_t *copy = malloc(cut ? cut : 1);
    memcpy(copy, b.data, cut);
    assert_int_equal(optparse_info(copy, (uint32_t)cut, &r, &why), -1);
    free(copy);
  }
  wire_buf_free(&b);
}

static void test_info_name_too_long(void **state)
{
  (void)state;
  char *name = malloc(NBD_MAX_STRING + 2);
  memset(name, 'x', NBD_MAX_STRING + 1);
  name[NBD_MAX_STRING + 1] = '\0';
  struct wire_buf b = info_payload(name, NBD_MAX_STRING + 1, 0, NULL, 0);
  struct opt_info_req r;
  const char *why;
  assert_int_equal(optparse_info(b.data, (uint32_t)b.len, &r, &why), -1);
  wire_buf_free(&b);
  name[NBD_MAX_STRING] = '\0';     /* exactly 4096 is fine */
  b = info_payload(name, NBD_MAX_STRING, 0, NULL, 0);
  assert_int_equal(optparse_info(b.data, (uint32_t)b.len, &r, &why), 0);
  wire_buf_free(&b);
  free(name);
}

static struct wire_buf meta_payload(const char *name, uint32_t nq,
                                    const char **queries, size_t nwritten)
{
  struct wire_buf b;
  wire_buf_init(&b);
  wire_put_string(&b, name, strlen(name));
  wire_put_u32(&b, nq);
  for (size_t i = 0; i < nwritten; i++)
    wire_put_string(&b, queries[i], strlen(queries[i]));
  return b;
}

static void test_meta(void **state)
{
  (void)state;
  struct opt_meta_req r;
  const char *why;
  const char *q1[] = { "base:allocation", "qemu:dirty-bitmap:x", "x-y:z" };
  struct wire_buf b = meta_payload("", 3, q1, 3);
  assert_int_equal(optparse_meta(b.data, (uint32_t)b.len, &r, &why), 0);
  assert_true(r.base_allocation);
  assert_false(r.base_wildcard);
  assert_int_equal(r.nqueries, 3);
  wire_buf_free(&b);

  const char *q2[] = { "base:" };
  b = meta_payload("disk", 1, q2, 1);
  assert_int_equal(optparse_meta(b.data, (uint32_t)b.len, &r, &why), 0);
  assert_true(r.base_wildcard);
  assert_false(r.base_allocation);
  wire_buf_free(&b);

  /* more queries claimed than bytes */
  b = meta_payload("disk", 1000000, q2, 1);
  assert_int_equal(optparse_meta(b.data, (uint32_t)b.len, &r, &why), -1);
  wire_buf_free(&b);
  /* a query length past the end */
  wire_buf_init(&b);
  wire_put_string(&b, "", 0);
  wire_put_u32(&b, 1);
  wire_put_u32(&b, 0xffffffff);
  wire_put_bytes(&b, "base:", 5);
  assert_int_equal(optparse_meta(b.data, (uint32_t)b.len, &r, &why), -1);
  wire_buf_free(&b);
  /* trailing garbage */
  b = meta_payload("disk", 1, q2, 1);
  wire_put_u16(&b, 7);
  assert_int_equal(optparse_meta(b.data, (uint32_t)b.len, &r, &why), -1);
  wire_buf_free(&b);
  /* truncations */
  b = meta_payload("disk", 3, q1, 3);
  for (size_t cut = 0; cut < b.len; cut++) {
    uint8_t *copy = malloc(cut ? cut : 1);
    memcpy(copy, b.data, cut);
    assert_int_equal(optparse_meta(copy, (uint32_t)cut, &r, &why), -1);
    free(copy);
  }
  wire_buf_free(&b);
}

/* ---- The server's options ---- */

/* The defaults main.c starts from. */
static void settings_init(struct server *s, struct options *o)
{
  config_defaults(s, o);
}

/* Everything an option can set, as text, so two settings compare. */
static char *settings_text(struct server *s, struct options *o)
{
  char *t = NULL, binds[256] = "";
  for (int i = 0; i < o->nbind; i++)
    snprintf(binds + strlen(binds), sizeof binds - strlen(binds), "%s;",
             o->bind[i]);
#define STR(x) ((x) ? (x) : "(null)")
  assert_true(asprintf(&t, "port=%d bind=%s unix=%s run=%s pid=%s single=%d "
      "ro=%d verbose=%d log=%d threads=%d hs=%d neg=%d/%d conns=%d/%d tls=%d/%d "
      "certs=%s psk=%s prio=%s verify=%d old=%d tickets=%d/%d tcp=%d "
      "exports=%zu metrics=%s/%d", o->port, binds,
      STR(o->unix_path), STR(o->run), STR(o->pid_file), o->single,
      o->read_only, o->verbose, o->log_to, s->threads, s->handshake_timeout,
      s->max_negotiating, s->max_negotiating_per_source, s->max_connections,
      s->max_queued_mib,
      (int)s->tls_mode, s->tls_mode_set, STR(s->tls_certs), STR(s->tls_psk),
      STR(s->tls_priority), s->tls_verify_peer, s->tls_old_versions,
      s->tls_tickets_off, s->tls_ticket_lifetime, s->tcp_timeout, s->nexports,
      STR(o->metrics), o->metrics_allow_remote) > 0);
#undef STR
  for (size_t i = 0; i < s->backend_keys.len; i++) {
    char *more = NULL;
    assert_true(asprintf(&more, "%s %s=%s", t, s->backend_keys.ptr[i].key,
                         s->backend_keys.ptr[i].value) > 0);
    free(t);
    t = more;
  }
  config_free(s, o);
  exports_close(s);
  return t;
}

/* A valid value for row r that is not its default. */
static const char *sample(const struct config_opt *r, char *buf, size_t n)
{
  switch (r->kind) {
  case CFG_INT: snprintf(buf, n, "%d", r->max); return buf;
  case CFG_STR: snprintf(buf, n, "/sample/%s", r->name); return buf;
  case CFG_FLAG: return "true";
  case CFG_ENUM: { size_t i = 0; while (r->names[i + 1]) i++;
                   return r->names[i]; }
  case CFG_FN: case CFG_KEY: return r->example;
  case CFG_CLI: break;
  }
  fail();
  return NULL;
}

/* The command line, argv[1..] = args (NULL-terminated). */
static char *from_argv(const char *const *args)
{
  struct server s;
  struct options o;
  settings_init(&s, &o);
  char *argv[8] = { (char *)"snbd-server" };
  int argc = 1;
  for (; args[argc - 1]; argc++)
    argv[argc] = (char *)args[argc - 1];
  argv[argc] = NULL;
  assert_int_equal(config_parse_args(&s, &o, argc, argv), 0);
  return settings_text(&s, &o);
}

static char *write_config(const char *text)
{
  char *path = strdup("/tmp/snbd-test-config.XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return path;
}

/* The config file's [server] section, one key. */
static char *from_config_key(const char *key, const char *value)
{
  char text[256];
  snprintf(text, sizeof text, "[server]\n%s = %s\n", key, value);
  char *path = write_config(text);
  struct server s;
  struct options o;
  settings_init(&s, &o);
  assert_int_equal(config_load(&s, &o, path), 0);
  unlink(path);
  free(path);
  return settings_text(&s, &o);
}

static void test_server_options_round_trip(void **state)
{
  (void)state;
  struct server s0;
  struct options o0;
  settings_init(&s0, &o0);
  char *defaults = settings_text(&s0, &o0);
  for (size_t i = 0; i < config_nopts; i++) {
    const struct config_opt *r = &config_opts[i];
    if (r->kind == CFG_CLI)
      continue;
    char buf[64], lopt[64], sopt[3] = { '-', r->letter, 0 };
    const char *v = sample(r, buf, sizeof buf);
    bool flag = r->kind == CFG_FLAG;
    snprintf(lopt, sizeof lopt, "--%s", r->name);
    char *cfg = from_config_key(r->name, v);
    char *cli = from_argv((const char *[]){ lopt, flag ? NULL : v, NULL });
    assert_string_equal(cfg, cli);
    assert_string_not_equal(cfg, defaults);   /* the row sets something */
    free(cli);
    if (r->letter) {
      cli = from_argv((const char *[]){ sopt, flag ? NULL : v, NULL });
      assert_string_equal(cfg, cli);
      free(cli);
    }
    if (r->alias) {
      snprintf(lopt, sizeof lopt, "--%s", r->alias);
      cli = from_argv((const char *[]){ lopt, flag ? NULL : v, NULL });
      assert_string_equal(cfg, cli);
      free(cli);
    }
    free(cfg);
  }
  free(defaults);
}

static void test_server_options_rejected(void **state)
{
  (void)state;
  struct server s;
  struct options o;
  settings_init(&s, &o);
  /* command-line only, an alias, and nonsense are not [server] keys */
  const char *keys[] = { "config", "version", "help", "readonly", "nope" };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    assert_int_equal(config_set(&s, &o, keys[i], "1"), -1);
    assert_non_null(strstr(get_error(), "unknown option"));
  }
  assert_int_equal(config_set(&s, &o, "port", "65536"), -1);
  assert_int_equal(config_set(&s, &o, "threads", "0"), -1);
  assert_int_equal(config_set(&s, &o, "single", "maybe"), -1);
  assert_int_equal(config_set(&s, &o, "tls", "sometimes"), -1);
  assert_non_null(strstr(get_error(), "tls: expected off, on or require"));
  assert_int_equal(config_set(&s, &o, "log", "file"), -1);
  assert_non_null(strstr(get_error(), "log: expected stderr or syslog"));
  config_free(&s, &o);
}

/* -c is read first wherever it is, so the command line wins; the
 * command line's exports come before the file's. */
static void test_server_options_precedence(void **state)
{
  (void)state;
  char *path = write_config("[server]\nport = 1\nthreads = 3\n"
                            "[export disk]\nbackend = memory:1M\n");
  char *cli = from_argv((const char *[]){ "--port", "2", "memory:2M", "-c",
                                          path, NULL });
  unlink(path);
  free(path);
  assert_non_null(strstr(cli, "port=2 "));
  assert_non_null(strstr(cli, "threads=3 "));
  assert_non_null(strstr(cli, "exports=2"));
  free(cli);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_info_valid),
    cmocka_unit_test(test_info_malformed),
    cmocka_unit_test(test_info_name_too_long),
    cmocka_unit_test(test_meta),
    cmocka_unit_test(test_server_options_round_trip),
    cmocka_unit_test(test_server_options_rejected),
    cmocka_unit_test(test_server_options_precedence),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
