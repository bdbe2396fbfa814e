/* Unit tests of the wire codec: round trips, truncated and oversized input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "wire.h"

static void test_request_roundtrip(void **state)
{
  (void)state;
  struct nbd_req in = { .flags = NBD_CMD_FLAG_FUA, .type = NBD_CMD_WRITE,
                        .cookie = 0x0102030405060708, .offset = 1ull << 40,
                        .count = 4096 }, out;
  uint8_t buf[28];
  wire_encode_request(buf, &in);
  assert_int_equal(buf[0], 0x25);        /* big-endian magic first */
  assert_true(wire_decode_request(buf, &out));
  assert_int_equal(out.flags, in.flags);
  assert_int_equal(out.type, in.type);
  assert_int_equal(out.cookie, in.cookie);
  assert_int_equal(out.offset, in.offset);
  assert_int_equal(out.count, in.count);
  buf[3] ^= 1;                            /* bad magic is reported */
  assert_false(wire_decode_request(buf, &out));
}

static void test_option_header(void **state)
{
  (void)state;
  uint8_t buf[16];
  struct nbd_opt_hdr h;
  wire_encode_opt_hdr(buf, NBD_OPT_GO, 0xffffffff);
  assert_true(wire_decode_opt_hdr(buf, &h));
  assert_int_equal(h.option, NBD_OPT_GO);
  assert_int_equal(h.length, 0xffffffff);
  memcpy(buf, "NBDMAGIC", 8);
  assert_false(wire_decode_opt_hdr(buf, &h));
}

/* ---- Handshake (server) ---- */

static void test_client_flags(void **state)
{
  (void)state;
  uint32_t f;
  const uint8_t both[4] = { 0, 0, 0, 3 };
  assert_true(wire_decode_client_flags(both, &f));
  assert_int_equal(f, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
  const uint8_t none[4] = { 0, 0, 0, 0 };
  assert_true(wire_decode_client_flags(none, &f));
  assert_int_equal(f, 0);
  /* any undefined bit, low or high, is refused; the value is kept for
   * the log */
  const uint8_t bit2[4] = { 0, 0, 0, 5 };
  assert_false(wire_decode_client_flags(bit2, &f));
  assert_int_equal(f, 5);
  const uint8_t top[4] = { 0x80, 0, 0, 1 };
  assert_false(wire_decode_client_flags(top, &f));
  assert_int_equal(f, 0x80000001);
}

static void test_export_name_reply(void **state)
{
  (void)state;
  uint8_t out[sizeof(struct nbd_export_name_reply)];
  const uint8_t head[10] = { 0, 0, 0, 1, 2, 3, 4, 5, 0x01, 0x03 };

  memset(out, 0xaa, sizeof out);
  assert_int_equal(wire_encode_export_name_reply(out, 0x0102030405ull,
                                                 0x0103, true), 10);
  assert_memory_equal(out, head, 10);
  assert_int_equal(out[10], 0xaa);        /* nothing written past 10 */

  memset(out, 0xaa, sizeof out);
  assert_int_equal(wire_encode_export_name_reply(out, 0x0102030405ull,
                                                 0x0103, false), 134);
  assert_memory_equal(out, head, 10);
  for (size_t i = 10; i < sizeof out; i++)
    assert_int_equal(out[i], 0);
}

static void test_info_fixed(void **state)
{
  (void)state;
  uint8_t e[sizeof(struct nbd_info_export)];
  const uint8_t want_e[12] = { 0, NBD_INFO_EXPORT,
                               0, 0, 0, 0x10, 0, 0, 0, 0,  /* 64 GiB */
                               0x01, 0x8d };
  wire_encode_info_export(e, 1ull << 36, 0x018d);
  assert_memory_equal(e, want_e, sizeof want_e);

  uint8_t b[sizeof(struct nbd_info_block_size)];
  const uint8_t want_b[14] = { 0, NBD_INFO_BLOCK_SIZE,
                               0, 0, 0, 1,
                               0, 0, 0x10, 0,
                               0x02, 0, 0, 0 };
  wire_encode_info_block_size(b, 1, 4096, NBD_MAX_PAYLOAD);
  assert_memory_equal(b, want_b, sizeof want_b);
}

static void test_handshake_payloads(void **state)
{
  (void)state;
  struct wire_buf b;
  wire_buf_init(&b);

  wire_put_info_text(&b, NBD_INFO_DESCRIPTION, "disk", 4);
  assert_int_equal(b.len, 6);
  assert_memory_equal(b.data, "\0\2disk", 6);

  wire_buf_reset(&b);                 /* name framed, description not */
  wire_put_rep_server(&b, "ab", 2, "xyz", 3);
  assert_int_equal(b.len, 9);
  assert_memory_equal(b.data, "\0\0\0\2abxyz", 9);
  wire_buf_reset(&b);                 /* no description */
  wire_put_rep_server(&b, "", 0, NULL, 0);
  assert_int_equal(b.len, 4);
  assert_memory_equal(b.data, "\0\0\0\0", 4);

  wire_buf_reset(&b);
  wire_put_rep_meta_context(&b, 1, NBD_META_BASE_ALLOCATION,
                            strlen(NBD_META_BASE_ALLOCATION));
  assert_int_equal(b.len, 4 + 15);
  assert_memory_equal(b.data, "\0\0\0\1base:allocation", 19);
  assert_false(b.oom);
  wire_buf_free(&b);
}

static void test_cursor_truncated(void **state)
{
  (void)state;
  const uint8_t data[5] = { 0, 0, 0, 9, 'x' };
  struct wire_cursor c = wire_cursor(data, sizeof data);
  uint64_t v64;
  assert_false(wire_get_u64(&c, &v64));   /* only 5 bytes */
  assert_int_equal(v64, 0);
  assert_true(c.bad);
  /* sticky: a later small read fails too */
  uint16_t v16;
  assert_false(wire_get_u16(&c, &v16));
}

static void test_string_bounds(void **state)
{
  (void)state;
  const char *s;
  uint32_t len;
  /* length larger than the bytes that remain */
  const uint8_t a[] = { 0, 0, 0, 9, 'a', 'b' };
  struct wire_cursor c = wire_cursor(a, sizeof a);
  assert_false(wire_get_string(&c, &s, &len, 4096));
  assert_null(s);
  /* length 0xffffffff: no +1 overflow anywhere */
  const uint8_t b[] = { 0xff, 0xff, 0xff, 0xff, 'a' };
  c = wire_cursor(b, sizeof b);
  assert_false(wire_get_string(&c, &s, &len, 4096));
  /* over the cap */
  const uint8_t d[] = { 0, 0, 0, 3, 'a', 'b', 'c' };
  c = wire_cursor(d, sizeof d);
  assert_false(wire_get_string(&c, &s, &len, 2));
  c = wire_cursor(d, sizeof d);
  assert_true(wire_get_string(&c, &s, &len, 3));
  assert_int_equal(len, 3);
  assert_memory_equal(s, "abc", 3);
  assert_int_equal(c.left, 0);
}

static void test_buf_encode(void **state)
{
  (void)state;
  struct wire_buf b;
  wire_buf_init(&b);
  wire_put_u16(&b, NBD_INFO_EXPORT);
  wire_put_u64(&b, 1ull << 30);
  wire_put_u16(&b, NBD_FLAG_HAS_FLAGS);
  assert_false(b.oom);
  assert_int_equal(b.len, sizeof(struct nbd_info_export));
  struct wire_cursor c = wire_cursor(b.data, b.len);
  uint16_t info = 0, fl = 0;
  uint64_t size = 0;
  assert_true(wire_get_u16(&c, &info) && wire_get_u64(&c, &size) &&
              wire_get_u16(&c, &fl));
  assert_int_equal(size, 1ull << 30);
  assert_int_equal(fl, NBD_FLAG_HAS_FLAGS);
  /* growth past the first allocation keeps earlier bytes */
  for (int i = 0; i < 10000; i++)
    wire_put_u32(&b, (uint32_t)i);
  assert_int_equal(b.len, 12 + 40000);
  c = wire_cursor(b.data + 12 + 4 * 9999, 4);
  uint32_t last;
  assert_true(wire_get_u32(&c, &last));
  assert_int_equal(last, 9999);
  wire_buf_free(&b);
}

static void test_range_ok(void **state)
{
  (void)state;
  assert_true(wire_range_ok(0, 10, 10));
  assert_false(wire_range_ok(1, 10, 10));
  assert_false(wire_range_ok(UINT64_MAX, 2, 10));   /* off+len wraps */
  assert_false(wire_range_ok(5, UINT64_MAX, 10));
  assert_true(wire_range_ok(10, 0, 10));
  assert_false(wire_range_ok(11, 0, 10));
}

static void test_names(void **state)
{
  (void)state;
  assert_string_equal(nbd_opt_name(NBD_OPT_STARTTLS), "NBD_OPT_STARTTLS");
  assert_string_equal(nbd_rep_name(NBD_REP_ERR_TLS_REQD),
                      "NBD_REP_ERR_TLS_REQD");
  assert_string_equal(nbd_opt_name(12345), "unknown option");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_request_roundtrip),
    cmocka_unit_test(test_option_header),
    cmocka_unit_test(test_client_flags),
    cmocka_unit_test(test_export_name_reply),
    cmocka_unit_test(test_info_fixed),
    cmocka_unit_test(test_handshake_payloads),
    cmocka_unit_test(test_cursor_truncated),
    cmocka_unit_test(test_string_bounds),
    cmocka_unit_test(test_buf_encode),
    cmocka_unit_test(test_range_ok),
    cmocka_unit_test(test_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
