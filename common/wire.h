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
  uint64_t count;           /* 32 bits on the wire unless extended */
};
struct nbd_opt_hdr { uint32_t option, length; };
struct nbd_opt_reply { uint32_t option, type, length; };
struct nbd_chunk_hdr {      /* decoded structured or extended chunk header */
  uint16_t flags, type;
  uint64_t cookie;
  uint64_t offset;          /* extended only (0 in a structured chunk) */
  uint64_t length;          /* 32 bits on the wire unless extended */
};

/* Decoders return false when the magic is wrong. */
bool wire_decode_opt_hdr(const uint8_t in[16], struct nbd_opt_hdr *h);
void wire_encode_opt_hdr(uint8_t out[16], uint32_t option, uint32_t length);
bool wire_decode_opt_reply(const uint8_t in[20], struct nbd_opt_reply *r);
void wire_encode_opt_reply(uint8_t out[20], uint32_t option, uint32_t type,
                           uint32_t length);

/* ---- Handshake (server) ----
 * What the server sends during negotiation, and the client flags it
 * reads (proto.md "Newstyle negotiation", "Option types", "Option reply
 * types").  Strings are the caller's: at most NBD_MAX_STRING bytes
 * (server/export.c checks names and descriptions when it loads them). */

/* The client's flags, after the greeting.  False when a bit is set that
 * the spec does not define ("the server MUST drop the TCP connection");
 * *cflags holds all of them either way. */
bool wire_decode_client_flags(const uint8_t in[4], uint32_t *cflags);
/* The reply to NBD_OPT_EXPORT_NAME: size, transmission flags, then 124
 * zero bytes unless the client set NBD_FLAG_C_NO_ZEROES.  Returns the
 * length to send (10 or 134). */
size_t wire_encode_export_name_reply(
  uint8_t out[sizeof(struct nbd_export_name_reply)], uint64_t size,
  uint16_t eflags, bool no_zeroes);
/* NBD_REP_INFO payloads ("NBD_OPT_INFO and NBD_OPT_GO"). */
void wire_encode_info_export(uint8_t out[sizeof(struct nbd_info_export)],
                             uint64_t size, uint16_t eflags);
void wire_encode_info_block_size(
  uint8_t out[sizeof(struct nbd_info_block_size)], uint32_t minimum,
  uint32_t preferred, uint32_t maximum);
/* NBD_INFO_NAME or NBD_INFO_DESCRIPTION: the type, then the text with no
 * length (the reply's length ends it). */
void wire_put_info_text(struct wire_buf *b, uint16_t info, const char *s,
                        size_t len);
/* NBD_REP_SERVER: the export name with its length, then the description
 * (len 0: none) with no length. */
void wire_put_rep_server(struct wire_buf *b, const char *name, size_t namelen,
                         const char *desc, size_t desclen);
/* NBD_REP_META_CONTEXT: the context ID (0 in reply to LIST), then the
 * context's name with no length. */
void wire_put_rep_meta_context(struct wire_buf *b, uint32_t id,
                               const char *name, size_t len);

bool wire_decode_request(const uint8_t in[28], struct nbd_req *r);
void wire_encode_request(uint8_t out[28], const struct nbd_req *r);
/* A request header in either mode (proto.md "Request message"): 28
 * bytes compact (count cut to 32 bits: the caller keeps it below 2^32),
 * 32 bytes extended (NBD_OPT_EXTENDED_HEADERS).  Decoding fails when the
 * magic is not the mode's: a compact request under extended headers,
 * or the reverse. */
#define WIRE_REQUEST_MAX sizeof(struct nbd_extended_request)
static inline size_t wire_request_len(bool ext)
{
  return ext ? sizeof(struct nbd_extended_request)
             : sizeof(struct nbd_request);
}
bool wire_decode_req(const uint8_t *in, bool ext, struct nbd_req *r);
size_t wire_encode_req(uint8_t *out, bool ext, const struct nbd_req *r);
void wire_encode_simple_reply(uint8_t out[16], uint32_t error, uint64_t cookie);
/* The simple reply magic is checked by the caller's dispatch on the first
 * four bytes (wire_peek_magic32); these decode the rest. */
uint32_t wire_peek_magic32(const uint8_t in[4]);
void wire_decode_simple_reply(const uint8_t in[16], uint32_t *error,
                              uint64_t *cookie);
void wire_encode_chunk_hdr(uint8_t out[20], uint16_t flags, uint16_t type,
                           uint64_t cookie, uint32_t length);
void wire_decode_chunk_hdr(const uint8_t in[20], struct nbd_chunk_hdr *h);
/* The extended reply header ("Extended reply chunk message"), after the
 * caller checked its magic. */
void wire_decode_ext_chunk_hdr(const uint8_t in[32], struct nbd_chunk_hdr *h);
void wire_encode_greeting(uint8_t out[18], uint16_t gflags);

/* ---- Client-side decoding ----
 * What a server sends a client, decoded to host order (doc/proto.md, the
 * section named at each).  Each decoder takes the bytes received and
 * their length and returns false when the length does not fit the
 * layout.  Strings come back as pointer and length into the input,
 * unchecked: the caller applies NBD_MAX_STRING and refuses NULs. */
struct wire_bytes {
  const uint8_t *p;
  size_t len;
};
struct wire_export {        /* an export's size and transmission flags */
  uint64_t size;
  uint16_t eflags;
};

/* "Newstyle negotiation", "Oldstyle negotiation": every greeting starts
 * with NBDMAGIC and a second magic saying which style follows (the
 * caller refuses styles it does not know).  False: not NBDMAGIC. */
#define WIRE_GREETING_MAGICS offsetof(struct nbd_new_handshake, gflags)
bool wire_decode_greeting(const uint8_t *in, size_t len, uint64_t *version);
/* The newstyle greeting's u16 handshake flags, after the magics. */
bool wire_decode_gflags(const uint8_t *in, size_t len, uint16_t *gflags);
/* The client's reply to the greeting: u32 client flags. */
void wire_encode_client_flags(uint8_t out[4], uint32_t cflags);
/* Oldstyle, after the magics: u64 size, u32 flags (the transmission
 * flags in the low 16 bits), 124 zero bytes. */
#define WIRE_OLDSTYLE_EXPORT (8 + 4 + 124)
bool wire_decode_oldstyle_export(const uint8_t *in, size_t len,
                                 struct wire_export *e);
/* The reply to NBD_OPT_EXPORT_NAME (struct nbd_export_name_reply): u64
 * size, u16 flags, then 124 zero bytes unless NO_ZEROES was agreed. */
bool wire_decode_export_name_reply(const uint8_t *in, size_t len,
                                   struct wire_export *e);

/* NBD_REP_INFO ("Option types", NBD_OPT_INFO): u16 type, then per type.
 * False: shorter than 2 bytes, or NBD_INFO_EXPORT / NBD_INFO_BLOCK_SIZE
 * of another length than theirs (type is set whenever len >= 2).  Types
 * not known here decode to the type alone. */
struct wire_info {
  uint16_t type;                    /* NBD_INFO_* */
  struct wire_export export;        /* NBD_INFO_EXPORT */
  uint32_t bs_min, bs_pref, bs_max; /* NBD_INFO_BLOCK_SIZE */
  struct wire_bytes str;            /* NBD_INFO_NAME, _DESCRIPTION */
};
bool wire_decode_rep_info(const uint8_t *in, size_t len, struct wire_info *i);
/* NBD_REP_META_CONTEXT: u32 context id, then the name (the rest).
 * False: shorter than 4 bytes. */
bool wire_decode_rep_meta_context(const uint8_t *in, size_t len,
                                  uint32_t *id, struct wire_bytes *name);
/* NBD_REP_SERVER: u32 name length, the name, then the description (the
 * rest).  False: shorter than 4 bytes, or a name longer than the rest. */
bool wire_decode_rep_server(const uint8_t *in, size_t len,
                            struct wire_bytes *name, struct wire_bytes *desc);

/* "Structured reply types": whether a chunk of this type may carry
 * length bytes.  NONE: empty; OFFSET_DATA: u64 offset and at least one
 * byte of data; OFFSET_HOLE: u64 offset, u32 size; BLOCK_STATUS: u32
 * context id and 1 to NBD_MAX_BLOCK_STATUS_DESCS descriptors; error
 * types: at least u32 error and u16 message length.  Other types:
 * false. */
bool wire_chunk_length_ok(uint16_t type, uint64_t length);
/* BLOCK_STATUS_EXT (extended headers only): u32 context id, u32
 * descriptor count, then that many 16-byte descriptors (1 to
 * NBD_MAX_BLOCK_STATUS_DESCS); wire_chunk_length_ok knows its lengths. */
struct wire_offset_chunk {  /* OFFSET_DATA or OFFSET_HOLE */
  uint64_t offset;
  uint32_t length;          /* bytes of data, or of the hole */
};
/* OFFSET_DATA: in holds the chunk's first WIRE_OFFSET_DATA_HDR bytes,
 * the data follows on the wire; o->length is the data's length in a
 * chunk of chunk_length bytes. */
#define WIRE_OFFSET_DATA_HDR 8
bool wire_decode_offset_data(const uint8_t *in, size_t len,
                             uint32_t chunk_length,
                             struct wire_offset_chunk *o);
/* OFFSET_HOLE: exactly WIRE_OFFSET_HOLE_PAYLOAD bytes. */
#define WIRE_OFFSET_HOLE_PAYLOAD 12
bool wire_decode_offset_hole(const uint8_t *in, size_t len,
                             struct wire_offset_chunk *o);
/* BLOCK_STATUS: in holds the chunk's first WIRE_BLOCK_STATUS_HDR bytes
 * (the context id); *n is the number of descriptors that follow in a
 * chunk of chunk_length bytes. */
#define WIRE_BLOCK_STATUS_HDR 4
bool wire_decode_block_status(const uint8_t *in, size_t len,
                              uint32_t chunk_length, uint32_t *ctx_id,
                              size_t *n);
struct wire_extent {        /* struct nbd_block_descriptor */
  uint32_t length, flags;
};
/* n descriptors; false unless len is exactly n descriptors. */
bool wire_decode_block_descs(const uint8_t *in, size_t len,
                             struct wire_extent *out, size_t n);
/* BLOCK_STATUS_EXT: in holds the chunk's first WIRE_BLOCK_STATUS_EXT_HDR
 * bytes (context id, descriptor count).  False when chunk_length is not
 * a valid length for the type or the count disagrees with it ("MUST
 * correspond to the number of subsequent descriptors"); *n is then 0. */
#define WIRE_BLOCK_STATUS_EXT_HDR 8
bool wire_decode_block_status_ext(const uint8_t *in, size_t len,
                                  uint64_t chunk_length, uint32_t *ctx_id,
                                  size_t *n);
struct wire_extent64 {      /* struct nbd_block_descriptor_ext */
  uint64_t length, flags;
};
bool wire_decode_block_descs_ext(const uint8_t *in, size_t len,
                                 struct wire_extent64 *out, size_t n);
/* Error chunks: u32 error, u16 message length, the message, then fields
 * that depend on the type.  False: shorter than 6 bytes, or a message
 * longer than the bytes after it or than NBD_MAX_STRING (error and
 * msg.len are still set then, when len >= 6). */
struct wire_error_chunk {
  uint32_t error;
  struct wire_bytes msg;
  struct wire_bytes rest;   /* the type's own fields, after the message */
};
bool wire_decode_error_chunk(const uint8_t *in, size_t len,
                             struct wire_error_chunk *e);
/* NBD_REPLY_TYPE_ERROR_OFFSET's u64 offset: false unless exactly 8
 * bytes follow the message. */
bool wire_decode_error_offset(const struct wire_error_chunk *e,
                              uint64_t *offset);

/* Range check that cannot overflow: len > 0 ... is the caller's business;
 * this says whether [off, off+len) lies inside [0, size). */
static inline bool wire_range_ok(uint64_t off, uint64_t len, uint64_t size)
{
  return off <= size && len <= size - off;
}

/* ---- Transmission replies ----
 * The server's reply pieces (doc/proto.md "Structured reply chunk
 * message", "Extended reply chunk message", "Structured reply types").
 * Every chunk header is written for one request (struct wire_reply_to):
 * a 20-byte structured header, or under extended headers a 32-byte one
 * echoing the request's offset.  Each encoder writes into out, which has
 * room for the size it returns (the wire_*_len below), so callers never
 * spell an offset. */
struct wire_reply_to {
  bool ext;                 /* extended headers negotiated */
  uint64_t cookie;
  uint64_t offset;          /* the request's offset ("MUST match") */
};
#define WIRE_SIMPLE_REPLY_LEN    sizeof(struct nbd_simple_reply)
#define WIRE_CHUNK_HDR_LEN       sizeof(struct nbd_structured_reply)
#define WIRE_EXT_CHUNK_HDR_LEN   sizeof(struct nbd_extended_reply)
static inline size_t wire_chunk_hdr_len(bool ext)
{
  return ext ? WIRE_EXT_CHUNK_HDR_LEN : WIRE_CHUNK_HDR_LEN;
}
static inline size_t wire_offset_data_hdr_len(bool ext)
{
  return wire_chunk_hdr_len(ext) + WIRE_OFFSET_DATA_HDR;
}
static inline size_t wire_offset_hole_len(bool ext)
{
  return wire_chunk_hdr_len(ext) + WIRE_OFFSET_HOLE_PAYLOAD;
}
static inline size_t wire_error_chunk_len(bool ext, size_t msglen)
{
  return wire_chunk_hdr_len(ext) + 6 + msglen;
}
/* Room for any single-piece READ reply header (simple, or OFFSET_DATA in
 * either mode). */
#define WIRE_REPLY_HDR_MAX       (WIRE_EXT_CHUNK_HDR_LEN + WIRE_OFFSET_DATA_HDR)
/* The longest length one 32-bit block descriptor carries, 4 KiB aligned
 * so every piece but the last stays aligned. */
#define WIRE_BLOCK_DESC_MAX_LEN  0xfffff000u

/* A chunk header of the mode: flags, type and payload length. */
size_t wire_encode_chunk(uint8_t *out, const struct wire_reply_to *to,
                         uint16_t flags, uint16_t type, uint64_t length);
/* An ERROR chunk: error, then the message (msglen bytes, no NUL). */
size_t wire_encode_error_chunk(uint8_t *out, const struct wire_reply_to *to,
                               uint16_t flags, uint32_t error,
                               const char *msg, uint16_t msglen);
/* An OFFSET_DATA chunk's header for datalen bytes at offset; the data
 * follows it on the wire. */
size_t wire_encode_offset_data_hdr(uint8_t *out,
                                   const struct wire_reply_to *to,
                                   uint16_t flags, uint64_t offset,
                                   uint32_t datalen);
/* An OFFSET_HOLE chunk: length bytes of zeroes at offset. */
size_t wire_encode_offset_hole(uint8_t *out, const struct wire_reply_to *to,
                               uint16_t flags, uint64_t offset,
                               uint32_t length);
/* A BLOCK_STATUS chunk's payload: the metadata context id, then the
 * descriptors.  wire_put_block_desc appends descriptors covering length
 * bytes with status flags (several when length does not fit in one), at
 * most max of them; it returns how many it appended. */
void wire_put_block_status_ctx(struct wire_buf *b, uint32_t context_id);
size_t wire_put_block_desc(struct wire_buf *b, uint64_t length,
                           uint32_t flags, size_t max);
/* A BLOCK_STATUS_EXT chunk's payload: context id and descriptor count,
 * then ndesc descriptors of 64-bit length and status, one per extent. */
void wire_put_block_status_ext_hdr(struct wire_buf *b, uint32_t context_id,
                                   uint32_t ndesc);
void wire_put_block_desc_ext(struct wire_buf *b, uint64_t length,
                             uint64_t status);
/* The payload form of BLOCK_STATUS (NBD_FLAG_BLOCK_STATUS_PAYLOAD): u64
 * effect length, then n u32 context ids, n = (len - 8) / 4.  False when
 * len is not 8 + 4n with n >= 1. */
#define WIRE_BS_PAYLOAD_HDR 8
bool wire_decode_bs_payload(const uint8_t *in, size_t len, uint64_t *effect,
                            size_t *nids);
uint32_t wire_bs_payload_id(const uint8_t *in, size_t i);
void wire_put_bs_payload(struct wire_buf *b, uint64_t effect,
                         const uint32_t *ids, size_t n);

#endif
