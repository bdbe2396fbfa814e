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
                               0x04, 0, 0, 0 };
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

/* ---- Client-side decoding ---- */

static void test_client_greeting(void **state)
{
  (void)state;
  uint8_t g[18], cf[4];
  uint64_t version;
  uint16_t gflags;
  wire_encode_greeting(g, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  assert_true(wire_decode_greeting(g, WIRE_GREETING_MAGICS, &version));
  assert_int_equal(version, NBD_OPTS_MAGIC);
  assert_true(wire_decode_gflags(g + WIRE_GREETING_MAGICS, 2, &gflags));
  assert_int_equal(gflags, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  assert_false(wire_decode_gflags(g + WIRE_GREETING_MAGICS, 1, &gflags));
  assert_false(wire_decode_greeting(g, 15, &version));   /* truncated */
  g[0] ^= 1;                                 /* not NBDMAGIC */
  assert_false(wire_decode_greeting(g, WIRE_GREETING_MAGICS, &version));
  wire_encode_client_flags(cf, NBD_FLAG_C_FIXED_NEWSTYLE);
  assert_memory_equal(cf, "\0\0\0\1", 4);
}

static void test_client_export(void **state)
{
  (void)state;
  uint8_t old[WIRE_OLDSTYLE_EXPORT] = { 0 };
  struct wire_export e;
  old[7] = 0x10;                             /* size 16 */
  old[9] = 0x7f;                             /* high flag bits: dropped */
  old[11] = NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY;
  assert_true(wire_decode_oldstyle_export(old, sizeof old, &e));
  assert_int_equal(e.size, 16);
  assert_int_equal(e.eflags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY);
  assert_false(wire_decode_oldstyle_export(old, 12, &e));

  uint8_t rep[134] = { 0 };
  rep[0] = 0x80;                             /* size 2^63 */
  rep[9] = NBD_FLAG_HAS_FLAGS;
  assert_true(wire_decode_export_name_reply(rep, 10, &e));   /* NO_ZEROES */
  assert_int_equal(e.size, 1ull << 63);
  assert_int_equal(e.eflags, NBD_FLAG_HAS_FLAGS);
  assert_true(wire_decode_export_name_reply(rep, sizeof rep, &e));
  assert_false(wire_decode_export_name_reply(rep, 9, &e));
  assert_false(wire_decode_export_name_reply(rep, 11, &e));
}

static void test_client_rep_info(void **state)
{
  (void)state;
  struct wire_buf b;
  struct wire_info i;
  wire_buf_init(&b);
  wire_put_u16(&b, NBD_INFO_EXPORT);
  wire_put_u64(&b, 1ull << 40);
  wire_put_u16(&b, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH);
  assert_true(wire_decode_rep_info(b.data, b.len, &i));
  assert_int_equal(i.type, NBD_INFO_EXPORT);
  assert_int_equal(i.export.size, 1ull << 40);
  assert_int_equal(i.export.eflags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH);
  assert_false(wire_decode_rep_info(b.data, b.len - 1, &i));
  assert_int_equal(i.type, NBD_INFO_EXPORT);  /* set for the message */

  wire_buf_reset(&b);
  wire_put_u16(&b, NBD_INFO_BLOCK_SIZE);
  wire_put_u32(&b, 512);
  wire_put_u32(&b, 4096);
  wire_put_u32(&b, 1u << 25);
  assert_true(wire_decode_rep_info(b.data, b.len, &i));
  assert_int_equal(i.bs_min, 512);
  assert_int_equal(i.bs_pref, 4096);
  assert_int_equal(i.bs_max, 1u << 25);
  wire_put_u16(&b, 0);                       /* 16 bytes: too long */
  assert_false(wire_decode_rep_info(b.data, b.len, &i));

  wire_buf_reset(&b);
  wire_put_u16(&b, NBD_INFO_DESCRIPTION);
  wire_put_bytes(&b, "disk", 4);
  assert_true(wire_decode_rep_info(b.data, b.len, &i));
  assert_int_equal(i.str.len, 4);
  assert_memory_equal(i.str.p, "disk", 4);

  wire_buf_reset(&b);
  wire_put_u16(&b, 0x7777);                  /* unknown: ignored, fine */
  wire_put_u32(&b, 1);
  assert_true(wire_decode_rep_info(b.data, b.len, &i));
  assert_int_equal(i.type, 0x7777);
  assert_false(wire_decode_rep_info(b.data, 1, &i));
  wire_buf_free(&b);
}

static void test_client_rep_names(void **state)
{
  (void)state;
  const uint8_t meta[] = { 0, 0, 0, 9, 'b', 'a', 's', 'e', ':', 'x' };
  uint32_t id;
  struct wire_bytes name, desc;
  assert_true(wire_decode_rep_meta_context(meta, sizeof meta, &id, &name));
  assert_int_equal(id, 9);
  assert_int_equal(name.len, 6);
  assert_memory_equal(name.p, "base:x", 6);
  assert_false(wire_decode_rep_meta_context(meta, 3, &id, &name));

  const uint8_t server[] = { 0, 0, 0, 2, 'a', 'b', 'd', 'e', 's', 'c' };
  assert_true(wire_decode_rep_server(server, sizeof server, &name, &desc));
  assert_int_equal(name.len, 2);
  assert_memory_equal(name.p, "ab", 2);
  assert_int_equal(desc.len, 4);
  assert_memory_equal(desc.p, "desc", 4);
  assert_true(wire_decode_rep_server(server, 6, &name, &desc));
  assert_int_equal(desc.len, 0);
  assert_false(wire_decode_rep_server(server, 5, &name, &desc));
  assert_false(wire_decode_rep_server(server, 3, &name, &desc));
}

static void test_client_chunk_lengths(void **state)
{
  (void)state;
  static const struct { uint16_t type; uint32_t len; bool ok; } t[] = {
    { NBD_REPLY_TYPE_NONE, 0, true },
    { NBD_REPLY_TYPE_NONE, 1, false },
    { NBD_REPLY_TYPE_OFFSET_DATA, 8, false },
    { NBD_REPLY_TYPE_OFFSET_DATA, 9, true },
    { NBD_REPLY_TYPE_OFFSET_DATA, UINT32_MAX, true },
    { NBD_REPLY_TYPE_OFFSET_HOLE, 11, false },
    { NBD_REPLY_TYPE_OFFSET_HOLE, 12, true },
    { NBD_REPLY_TYPE_OFFSET_HOLE, 13, false },
    { NBD_REPLY_TYPE_BLOCK_STATUS, 4, false },
    { NBD_REPLY_TYPE_BLOCK_STATUS, 12, true },
    { NBD_REPLY_TYPE_BLOCK_STATUS, 16, false },
    { NBD_REPLY_TYPE_BLOCK_STATUS, 4 + 8 * NBD_MAX_BLOCK_STATUS_DESCS, true },
    { NBD_REPLY_TYPE_BLOCK_STATUS, 12 + 8 * NBD_MAX_BLOCK_STATUS_DESCS,
      false },
    { NBD_REPLY_TYPE_BLOCK_STATUS, 2, false },   /* no wrap-around */
    { NBD_REPLY_TYPE_ERROR, 5, false },
    { NBD_REPLY_TYPE_ERROR, 6, true },
    { NBD_REPLY_TYPE_ERROR_OFFSET, 14, true },
    { NBD_REPLY_TYPE_ERR_BIT | 99, 6, true },    /* unknown error type */
    { 99, 0, false },                            /* unknown type */
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    assert_int_equal(wire_chunk_length_ok(t[i].type, t[i].len), t[i].ok);
}

static void test_client_chunk_payloads(void **state)
{
  (void)state;
  const uint8_t off[12] = { 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 2, 0 };
  struct wire_offset_chunk o;
  assert_true(wire_decode_offset_data(off, 8, 8 + 512, &o));
  assert_int_equal(o.offset, 4096);
  assert_int_equal(o.length, 512);
  assert_false(wire_decode_offset_data(off, 8, 8, &o));  /* no data */
  assert_false(wire_decode_offset_data(off, 7, 9, &o));
  assert_true(wire_decode_offset_hole(off, 12, &o));
  assert_int_equal(o.offset, 4096);
  assert_int_equal(o.length, 512);
  assert_false(wire_decode_offset_hole(off, 11, &o));

  const uint8_t bs[] = { 0, 0, 0, 3, 0, 0, 2, 0, 0, 0, 0, 1,
                         0, 0, 0, 1, 0, 0, 0, 2 };
  uint32_t id;
  size_t n;
  struct wire_extent ext[2];
  assert_true(wire_decode_block_status(bs, 4, sizeof bs, &id, &n));
  assert_int_equal(id, 3);
  assert_int_equal(n, 2);
  assert_false(wire_decode_block_status(bs, 4, sizeof bs - 1, &id, &n));
  assert_true(wire_decode_block_descs(bs + 4, 16, ext, 2));
  assert_int_equal(ext[0].length, 512);
  assert_int_equal(ext[0].flags, NBD_STATE_HOLE);
  assert_int_equal(ext[1].length, 1);
  assert_int_equal(ext[1].flags, NBD_STATE_ZERO);
  assert_false(wire_decode_block_descs(bs + 4, 15, ext, 2));
}

static void test_client_error_chunk(void **state)
{
  (void)state;
  /* NBD_EIO, message "bad", offset 7 */
  const uint8_t c[] = { 0, 0, 0, 5, 0, 3, 'b', 'a', 'd',
                        0, 0, 0, 0, 0, 0, 0, 7 };
  struct wire_error_chunk e;
  uint64_t offset;
  assert_true(wire_decode_error_chunk(c, sizeof c, &e));
  assert_int_equal(e.error, NBD_EIO);
  assert_int_equal(e.msg.len, 3);
  assert_memory_equal(e.msg.p, "bad", 3);
  assert_int_equal(e.rest.len, 8);
  assert_true(wire_decode_error_offset(&e, &offset));
  assert_int_equal(offset, 7);
  assert_true(wire_decode_error_chunk(c, 9, &e));    /* plain ERROR */
  assert_int_equal(e.rest.len, 0);
  assert_false(wire_decode_error_offset(&e, &offset));
  assert_false(wire_decode_error_chunk(c, 8, &e));   /* message cut */
  assert_int_equal(e.msg.len, 3);                    /* for the message */
  assert_false(wire_decode_error_chunk(c, 5, &e));

  uint8_t big[6 + NBD_MAX_STRING + 1] = { 0, 0, 0, 5, 0x10, 0x01 };
  assert_false(wire_decode_error_chunk(big, sizeof big, &e));
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
  uint8_t out[WIRE_CHUNK_HDR_LEN + 6 + 5];
  struct wire_reply_to to = { .cookie = 0x1122334455667788 };
  size_t n = wire_encode_error_chunk(out, &to, NBD_REPLY_FLAG_DONE,
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
  uint8_t out[WIRE_CHUNK_HDR_LEN + 8];
  struct wire_reply_to to = { .cookie = 7 };
  assert_int_equal(wire_encode_offset_data_hdr(out, &to, 0, 1ull << 40, 4096),
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
  uint8_t out[WIRE_CHUNK_HDR_LEN + 12];
  struct wire_reply_to to = { .cookie = 9 };
  assert_int_equal(wire_encode_offset_hole(out, &to, NBD_REPLY_FLAG_DONE,
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

/* ---- Extended headers (proto.md "Request message", "Extended reply
 * chunk message", NBD_REPLY_TYPE_BLOCK_STATUS_EXT) ---- */

/* A 32-byte request with a 64-bit length; a compact magic is refused in
 * extended mode and an extended one in compact mode. */
static void test_ext_request(void **state)
{
  (void)state;
  struct nbd_req in = { .flags = NBD_CMD_FLAG_PAYLOAD_LEN,
                        .type = NBD_CMD_WRITE, .cookie = 5,
                        .offset = 1ull << 44, .count = (1ull << 42) + 1 };
  struct nbd_req out;
  uint8_t buf[WIRE_REQUEST_MAX];
  assert_int_equal(wire_encode_req(buf, true, &in), 32);
  static const uint8_t want[] = {
    0x21, 0xe4, 0x1c, 0x71, 0x00, 0x20, 0x00, 0x01,
    0, 0, 0, 0, 0, 0, 0, 5,
    0x00, 0x00, 0x10, 0x00, 0, 0, 0, 0,
    0x00, 0x00, 0x04, 0x00, 0, 0, 0, 1,
  };
  assert_memory_equal(buf, want, sizeof want);
  assert_true(wire_decode_req(buf, true, &out));
  assert_int_equal(out.count, in.count);
  assert_int_equal(out.offset, in.offset);
  assert_int_equal(out.flags, in.flags);
  assert_false(wire_decode_req(buf, false, &out));
  in.count = 512;
  assert_int_equal(wire_encode_req(buf, false, &in), 28);
  assert_true(wire_decode_req(buf, false, &out));
  assert_false(wire_decode_req(buf, true, &out));
  assert_int_equal(wire_request_len(true), 32);
  assert_int_equal(wire_request_len(false), 28);
}

/* Every extended chunk: 32-byte header with the request's offset and a
 * 64-bit length; the payloads are those of structured replies. */
static void test_ext_chunks(void **state)
{
  (void)state;
  struct wire_reply_to to = { .ext = true, .cookie = 0x0102,
                              .offset = 0x1000000000ull };
  uint8_t out[64];
  assert_int_equal(wire_encode_chunk(out, &to, NBD_REPLY_FLAG_DONE,
                                     NBD_REPLY_TYPE_NONE, 0), 32);
  static const uint8_t want[] = {
    0x6e, 0x8a, 0x27, 0x8c, 0x00, 0x01, 0x00, 0x00,
    0, 0, 0, 0, 0, 0, 0x01, 0x02,
    0, 0, 0, 0x10, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0,
  };
  assert_memory_equal(out, want, sizeof want);
  struct nbd_chunk_hdr h;
  assert_int_equal(wire_encode_offset_hole(out, &to, 0, 0x1000000200ull, 512),
                   44);
  wire_decode_ext_chunk_hdr(out, &h);
  assert_int_equal(h.type, NBD_REPLY_TYPE_OFFSET_HOLE);
  assert_int_equal(h.offset, to.offset);
  assert_int_equal(h.length, 12);
  struct wire_offset_chunk o;
  assert_true(wire_decode_offset_hole(out + 32, 12, &o));
  assert_int_equal(o.offset, 0x1000000200ull);
  assert_int_equal(wire_encode_error_chunk(out, &to, NBD_REPLY_FLAG_DONE,
                                           NBD_EINVAL, "no", 2), 40);
  wire_decode_ext_chunk_hdr(out, &h);
  assert_int_equal(h.length, 8);
  assert_int_equal(wire_encode_offset_data_hdr(out, &to, 0, to.offset, 9),
                   40);
  wire_decode_ext_chunk_hdr(out, &h);
  assert_int_equal(h.length, 17);
}

/* BLOCK_STATUS_EXT: id, count, 64-bit lengths and status; the count must
 * agree with the length and be nonzero; at most 2^20 descriptors. */
static void test_block_status_ext(void **state)
{
  (void)state;
  struct wire_buf b;
  wire_buf_init(&b);
  wire_put_block_status_ext_hdr(&b, 1, 2);
  wire_put_block_desc_ext(&b, 1ull << 44, NBD_STATE_HOLE | NBD_STATE_ZERO);
  wire_put_block_desc_ext(&b, 4096, 0);
  assert_false(b.oom);
  assert_int_equal(b.len, 8 + 2 * 16);
  uint32_t id;
  size_t n;
  assert_true(wire_decode_block_status_ext(b.data, 8, b.len, &id, &n));
  assert_int_equal(id, 1);
  assert_int_equal(n, 2);
  struct wire_extent64 e[2];
  assert_true(wire_decode_block_descs_ext(b.data + 8, 32, e, 2));
  assert_int_equal(e[0].length, 1ull << 44);
  assert_int_equal(e[0].flags, 3);
  assert_int_equal(e[1].length, 4096);
  assert_false(wire_decode_block_status_ext(b.data, 8, b.len + 16, &id, &n));
  assert_int_equal(n, 0);                 /* count disagrees with length */
  b.data[7] = 0;                          /* count 0 */
  assert_false(wire_decode_block_status_ext(b.data, 8, b.len, &id, &n));
  assert_false(wire_chunk_length_ok(NBD_REPLY_TYPE_BLOCK_STATUS_EXT, 8));
  assert_false(wire_chunk_length_ok(NBD_REPLY_TYPE_BLOCK_STATUS_EXT, 8 + 12));
  assert_true(wire_chunk_length_ok(NBD_REPLY_TYPE_BLOCK_STATUS_EXT,
                                   8 + 16ull * NBD_MAX_BLOCK_STATUS_DESCS));
  assert_false(wire_chunk_length_ok(NBD_REPLY_TYPE_BLOCK_STATUS_EXT,
                                    8 + 16ull * (NBD_MAX_BLOCK_STATUS_DESCS
                                                 + 1)));
  assert_false(wire_chunk_length_ok(NBD_REPLY_TYPE_ERROR, 1ull << 32));
  wire_buf_free(&b);
}

/* The payload form of BLOCK_STATUS: effect length, then the ids. */
static void test_bs_payload(void **state)
{
  (void)state;
  struct wire_buf b;
  uint32_t ids[] = { 1, 7 };
  uint64_t effect;
  size_t n;
  wire_buf_init(&b);
  wire_put_bs_payload(&b, 1ull << 40, ids, 2);
  assert_int_equal(b.len, 16);
  assert_true(wire_decode_bs_payload(b.data, b.len, &effect, &n));
  assert_int_equal(effect, 1ull << 40);
  assert_int_equal(n, 2);
  assert_int_equal(wire_bs_payload_id(b.data, 1), 7);
  assert_false(wire_decode_bs_payload(b.data, 8, &effect, &n));  /* no id */
  assert_false(wire_decode_bs_payload(b.data, 14, &effect, &n));
  assert_false(wire_decode_bs_payload(b.data, 4, &effect, &n));
  wire_buf_free(&b);
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
    cmocka_unit_test(test_client_greeting),
    cmocka_unit_test(test_client_export),
    cmocka_unit_test(test_client_rep_info),
    cmocka_unit_test(test_client_rep_names),
    cmocka_unit_test(test_client_chunk_lengths),
    cmocka_unit_test(test_client_chunk_payloads),
    cmocka_unit_test(test_client_error_chunk),
    cmocka_unit_test(test_range_ok),
    cmocka_unit_test(test_names),
    cmocka_unit_test(test_error_chunk),
    cmocka_unit_test(test_offset_data_hdr),
    cmocka_unit_test(test_offset_hole),
    cmocka_unit_test(test_block_status_descs),
    cmocka_unit_test(test_ext_request),
    cmocka_unit_test(test_ext_chunks),
    cmocka_unit_test(test_block_status_ext),
    cmocka_unit_test(test_bs_payload),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
