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

/* ---- Transmission replies: exact bytes (proto.md "Structured reply
 * chunk message types") ---- */

static const uint8_t chunk_magic[4] = { 0x66, 0x8e, 0x33, 0xef };

static void test_error_chunk(void **state)
{
  (void)state;
  uint8_t out[WIRE_ERROR_CHUNK_LEN(5)];
  size_t n = wire_encode_error_chunk(out, NBD_REPLY_FLAG_DONE, 0x1122334455667788,
                                     NBD_ENOSPC, "full!", 5);
  static const uint8_t want[] = {
    0x66, 0x8e, 0x33, 0xef, 0x00, 0x01, 0x80, 0x01,   /* DONE, ERROR */
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,   /* cookie */
    0x00, 0x00, 0x00, 0x0b,                           /* 6 + 5 */
    0x00, 0x00, 0x00, 0x1c, 0x00, 0x05,               /* ENOSPC, len */
    'f', 'u', 'l', 'l', '!',
  };
  assert_int_equal(n, sizeof want);
  assert_memory_equal(out, want, sizeof want);
  struct nbd_chunk_hdr h;                 /* the decoder agrees */
  wire_decode_chunk_hdr(out, &h);
  assert_int_equal(h.type, NBD_REPLY_TYPE_ERROR);
  assert_int_equal(h.length, n - WIRE_CHUNK_HDR_LEN);
}

static void test_offset_data_hdr(void **state)
{
  (void)state;
  uint8_t out[WIRE_OFFSET_DATA_HDR_LEN];
  assert_int_equal(wire_encode_offset_data_hdr(out, 0, 7, 1ull << 40, 4096),
                   28);
  assert_memory_equal(out, chunk_magic, 4);
  static const uint8_t want[] = {
    0x00, 0x00, 0x00, 0x01,                           /* no flags, DATA */
    0, 0, 0, 0, 0, 0, 0, 7,                           /* cookie */
    0x00, 0x00, 0x10, 0x08,                           /* 8 + 4096 */
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,   /* offset 2^40 */
  };
  assert_memory_equal(out + 4, want, sizeof want);
}

static void test_offset_hole(void **state)
{
  (void)state;
  uint8_t out[WIRE_OFFSET_HOLE_LEN];
  assert_int_equal(wire_encode_offset_hole(out, NBD_REPLY_FLAG_DONE, 9,
                                           0x10000, 0xfffff000u), 32);
  assert_memory_equal(out, chunk_magic, 4);
  static const uint8_t want[] = {
    0x00, 0x01, 0x00, 0x02,                           /* DONE, HOLE */
    0, 0, 0, 0, 0, 0, 0, 9,
    0x00, 0x00, 0x00, 0x0c,                           /* 12 */
    0, 0, 0, 0, 0, 0x01, 0x00, 0x00,                  /* offset */
    0xff, 0xff, 0xf0, 0x00,                           /* length */
  };
  assert_memory_equal(out + 4, want, sizeof want);
}

/* A length past 32 bits is split into aligned descriptors, never more
 * than max of them. */
static void test_block_status_descs(void **state)
{
  (void)state;
  struct wire_buf b;
  wire_buf_init(&b);
  wire_put_block_status_ctx(&b, 1);
  assert_int_equal(wire_put_block_desc(&b, 4096, NBD_STATE_HOLE, 10), 1);
  uint64_t big = 2ull * WIRE_BLOCK_DESC_MAX_LEN + 512;
  assert_int_equal(wire_put_block_desc(&b, big, 0, 10), 3);
  assert_int_equal(wire_put_block_desc(&b, big, 0, 2), 2);
  assert_int_equal(wire_put_block_desc(&b, 0, 0, 2), 0);
  assert_false(b.oom);
  assert_int_equal(b.len, 4 + 6 * 8);
  static const uint8_t want[] = {
    0, 0, 0, 1,                                       /* context id */
    0x00, 0x00, 0x10, 0x00, 0, 0, 0, 1,               /* 4096, HOLE */
    0xff, 0xff, 0xf0, 0x00, 0, 0, 0, 0,
    0xff, 0xff, 0xf0, 0x00, 0, 0, 0, 0,
    0x00, 0x00, 0x02, 0x00, 0, 0, 0, 0,               /* the 512 left */
  };
  assert_memory_equal(b.data, want, sizeof want);
  wire_buf_free(&b);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_request_roundtrip),
    cmocka_unit_test(test_option_header),
    cmocka_unit_test(test_cursor_truncated),
    cmocka_unit_test(test_string_bounds),
    cmocka_unit_test(test_buf_encode),
    cmocka_unit_test(test_range_ok),
    cmocka_unit_test(test_names),
    cmocka_unit_test(test_error_chunk),
    cmocka_unit_test(test_offset_data_hdr),
    cmocka_unit_test(test_offset_hole),
    cmocka_unit_test(test_block_status_descs),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
