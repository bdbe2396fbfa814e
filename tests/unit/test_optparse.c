/* Option payload parsing: valid, truncated, oversized and hostile input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

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

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_info_valid),
    cmocka_unit_test(test_info_malformed),
    cmocka_unit_test(test_info_name_too_long),
    cmocka_unit_test(test_meta),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
