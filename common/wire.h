/* snbd: the wire codec.  Pure encode/decode of NBD messages: no I/O, no
 * allocation beyond the growable buffer the caller owns.  Every decode is
 * bounds-checked against the bytes that remain.
 */
#ifndef SNBD_WIRE_H
#define SNBD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snbd/protocol.h"

/* ---- Decoding: a cursor over received bytes ---- */
struct wire_cursor {
  const uint8_t *p;
  size_t left;
  bool bad;          /* set once any read ran past the end; sticky */
};

static inline struct wire_cursor wire_cursor(const void *p, size_t len)
{
  return (struct wire_cursor){ .p = p, .left = len, .bad = false };
}

/* Each getter returns false (and sets c->bad, writing 0 to *v) when fewer
 * bytes remain than it needs. */
bool wire_get_u16(struct wire_cursor *c, uint16_t *v);
bool wire_get_u32(struct wire_cursor *c, uint32_t *v);
bool wire_get_u64(struct wire_cursor *c, uint64_t *v);
bool wire_get_bytes(struct wire_cursor *c, void *dst, size_t len);
/* A length-prefixed (u32) string: *s points into the cursor's buffer (not
 * NUL-terminated), *len its length.  Fails when the length exceeds the
 * bytes left or maxlen. */
bool wire_get_string(struct wire_cursor *c, const char **s, uint32_t *len,
                     uint32_t maxlen);

/* ---- Encoding: a growable buffer ---- */
struct wire_buf {
  uint8_t *data;
  size_t len, cap;
  bool oom;          /* sticky: an allocation failed; data is incomplete */
};

void wire_buf_init(struct wire_buf *b);
void wire_buf_free(struct wire_buf *b);
void wire_buf_reset(struct wire_buf *b);   /* len = 0, keeps memory */
void wire_put_u16(struct wire_buf *b, uint16_t v);
void wire_put_u32(struct wire_buf *b, uint32_t v);
void wire_put_u64(struct wire_buf *b, uint64_t v);
void wire_put_bytes(struct wire_buf *b, const void *p, size_t len);
void wire_put_string(struct wire_buf *b, const char *s, size_t len); /* u32 len + bytes */

/* ---- Fixed-size message headers, host order in, wire order out ---- */
struct nbd_req {            /* decoded request header */
  uint16_t flags, type;
  uint64_t cookie, offset;
  uint32_t count;
};
struct nbd_opt_hdr { uint32_t option, length; };
struct nbd_opt_reply { uint32_t option, type, length; };
struct nbd_chunk_hdr {      /* decoded structured reply chunk header */
  uint16_t flags, type;
  uint64_t cookie;
  uint32_t length;
};

/* Decoders return false when the magic is wrong. */
bool wire_decode_opt_hdr(const uint8_t in[16], struct nbd_opt_hdr *h);
void wire_encode_opt_hdr(uint8_t out[16], uint32_t option, uint32_t length);
bool wire_decode_opt_reply(const uint8_t in[20], struct nbd_opt_reply *r);
void wire_encode_opt_reply(uint8_t out[20], uint32_t option, uint32_t type,
                           uint32_t length);
bool wire_decode_request(const uint8_t in[28], struct nbd_req *r);
void wire_encode_request(uint8_t out[28], const struct nbd_req *r);
void wire_encode_simple_reply(uint8_t out[16], uint32_t error, uint64_t cookie);
/* The simple reply magic is checked by the caller's dispatch on the first
 * four bytes (wire_peek_magic32); these decode the rest. */
uint32_t wire_peek_magic32(const uint8_t in[4]);
void wire_decode_simple_reply(const uint8_t in[16], uint32_t *error,
                              uint64_t *cookie);
void wire_encode_chunk_hdr(uint8_t out[20], uint16_t flags, uint16_t type,
                           uint64_t cookie, uint32_t length);
void wire_decode_chunk_hdr(const uint8_t in[20], struct nbd_chunk_hdr *h);
void wire_encode_greeting(uint8_t out[18], uint16_t gflags);

/* Range check that cannot overflow: len > 0 ... is the caller's business;
 * this says whether [off, off+len) lies inside [0, size). */
static inline bool wire_range_ok(uint64_t off, uint64_t len, uint64_t size)
{
  return off <= size && len <= size - off;
}

/* ---- Transmission replies ----
 * The server's reply pieces (doc/proto.md "Structured reply chunk message
 * types").  Each encoder writes into out, which has room for the size
 * it returns (the WIRE_*_LEN below), so callers never spell an offset;
 * extended headers will add variants with a 32-byte chunk header and
 * 64-bit block status descriptors beside these. */
#define WIRE_SIMPLE_REPLY_LEN    sizeof(struct nbd_simple_reply)
#define WIRE_CHUNK_HDR_LEN       sizeof(struct nbd_structured_reply)
#define WIRE_OFFSET_DATA_HDR_LEN (WIRE_CHUNK_HDR_LEN + 8)
#define WIRE_OFFSET_HOLE_LEN     (WIRE_CHUNK_HDR_LEN + 12)
#define WIRE_ERROR_CHUNK_LEN(msglen) (WIRE_CHUNK_HDR_LEN + 6 + (size_t)(msglen))
/* The longest length one 32-bit block descriptor carries, 4 KiB aligned
 * so every piece but the last stays aligned. */
#define WIRE_BLOCK_DESC_MAX_LEN  0xfffff000u

/* An ERROR chunk: error, then the message (msglen bytes, no NUL). */
size_t wire_encode_error_chunk(uint8_t *out, uint16_t flags, uint64_t cookie,
                               uint32_t error, const char *msg,
                               uint16_t msglen);
/* An OFFSET_DATA chunk's header for datalen bytes at offset; the data
 * follows it on the wire. */
size_t wire_encode_offset_data_hdr(uint8_t *out, uint16_t flags,
                                   uint64_t cookie, uint64_t offset,
                                   uint32_t datalen);
/* An OFFSET_HOLE chunk: length bytes of zeroes at offset. */
size_t wire_encode_offset_hole(uint8_t *out, uint16_t flags, uint64_t cookie,
                               uint64_t offset, uint32_t length);
/* A BLOCK_STATUS chunk's payload: the metadata context id, then the
 * descriptors.  wire_put_block_desc appends descriptors covering length
 * bytes with status flags (several when length does not fit in one), at
 * most max of them; it returns how many it appended. */
void wire_put_block_status_ctx(struct wire_buf *b, uint32_t context_id);
size_t wire_put_block_desc(struct wire_buf *b, uint64_t length,
                           uint32_t flags, size_t max);

#endif
