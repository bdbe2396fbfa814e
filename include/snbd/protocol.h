/* snbd: every NBD protocol constant and on-wire layout, once.
 *
 * Source: doc/proto.md of the NetworkBlockDevice/nbd repository.  All
 * multi-byte fields on the wire are big-endian.  The packed structs below
 * describe the wire layout; code copies them out with memcpy and swaps with
 * be16toh/be32toh/be64toh (see common/wire.h), never by casting a pointer
 * into a receive buffer.
 */
#ifndef SNBD_PROTOCOL_H
#define SNBD_PROTOCOL_H

#include <stdint.h>

/* ---- Handshake magics ("Handshake phase") ---- */
#define NBD_MAGIC            UINT64_C(0x4e42444d41474943) /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC       UINT64_C(0x49484156454f5054) /* "IHAVEOPT" */
#define NBD_OLD_STYLE_MAGIC  UINT64_C(0x0000420281861253)
#define NBD_REP_MAGIC        UINT64_C(0x0003e889045565a9)

/* ---- Handshake flags (server, 16 bits) ---- */
#define NBD_FLAG_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_NO_ZEROES        (1u << 1)

/* ---- Client flags (32 bits) ---- */
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES      (1u << 1)

/* ---- Transmission flags (16 bits) ---- */
#define NBD_FLAG_HAS_FLAGS          (1u << 0)
#define NBD_FLAG_READ_ONLY          (1u << 1)
#define NBD_FLAG_SEND_FLUSH         (1u << 2)
#define NBD_FLAG_SEND_FUA           (1u << 3)
#define NBD_FLAG_ROTATIONAL         (1u << 4)
#define NBD_FLAG_SEND_TRIM          (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES  (1u << 6)
#define NBD_FLAG_SEND_DF            (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN     (1u << 8)
#define NBD_FLAG_SEND_RESIZE        (1u << 9)
#define NBD_FLAG_SEND_CACHE         (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO     (1u << 11)
#define NBD_FLAG_BLOCK_STATUS_PAYLOAD (1u << 12)

/* ---- Options ("Option types") ---- */
#define NBD_OPT_EXPORT_NAME        1
#define NBD_OPT_ABORT              2
#define NBD_OPT_LIST               3
#define NBD_OPT_PEEK_EXPORT        4 /* withdrawn */
#define NBD_OPT_STARTTLS           5
#define NBD_OPT_INFO               6
#define NBD_OPT_GO                 7
#define NBD_OPT_STRUCTURED_REPLY   8
#define NBD_OPT_LIST_META_CONTEXT  9
#define NBD_OPT_SET_META_CONTEXT   10
#define NBD_OPT_EXTENDED_HEADERS   11

/* ---- Option reply types ---- */
#define NBD_REP_ERR_BIT            (UINT32_C(1) << 31)
#define NBD_REP_ACK                1
#define NBD_REP_SERVER             2
#define NBD_REP_INFO               3
#define NBD_REP_META_CONTEXT       4
#define NBD_REP_ERR_UNSUP          (NBD_REP_ERR_BIT | 1)
#define NBD_REP_ERR_POLICY         (NBD_REP_ERR_BIT | 2)
#define NBD_REP_ERR_INVALID        (NBD_REP_ERR_BIT | 3)
#define NBD_REP_ERR_PLATFORM       (NBD_REP_ERR_BIT | 4)
#define NBD_REP_ERR_TLS_REQD       (NBD_REP_ERR_BIT | 5)
#define NBD_REP_ERR_UNKNOWN        (NBD_REP_ERR_BIT | 6)
#define NBD_REP_ERR_SHUTDOWN       (NBD_REP_ERR_BIT | 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (NBD_REP_ERR_BIT | 8)
#define NBD_REP_ERR_TOO_BIG        (NBD_REP_ERR_BIT | 9)
#define NBD_REP_ERR_EXT_HEADER_REQD (NBD_REP_ERR_BIT | 10)
#define NBD_REP_IS_ERR(t)          (((t) & NBD_REP_ERR_BIT) != 0)

/* ---- NBD_REP_INFO types ---- */
#define NBD_INFO_EXPORT            0
#define NBD_INFO_NAME              1
#define NBD_INFO_DESCRIPTION       2
#define NBD_INFO_BLOCK_SIZE        3

/* ---- Transmission: request types ---- */
#define NBD_REQUEST_MAGIC          UINT32_C(0x25609513)
#define NBD_EXTENDED_REQUEST_MAGIC UINT32_C(0x21e41c71)
#define NBD_CMD_READ               0
#define NBD_CMD_WRITE              1
#define NBD_CMD_DISC               2
#define NBD_CMD_FLUSH              3
#define NBD_CMD_TRIM               4
#define NBD_CMD_CACHE              5
#define NBD_CMD_WRITE_ZEROES       6
#define NBD_CMD_BLOCK_STATUS       7
#define NBD_CMD_RESIZE             8

/* ---- Command flags (16 bits) ---- */
#define NBD_CMD_FLAG_FUA           (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE       (1u << 1)
#define NBD_CMD_FLAG_DF            (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE       (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO     (1u << 4)
#define NBD_CMD_FLAG_PAYLOAD_LEN   (1u << 5)

/* ---- Replies ---- */
#define NBD_SIMPLE_REPLY_MAGIC     UINT32_C(0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC UINT32_C(0x668e33ef)
#define NBD_EXTENDED_REPLY_MAGIC   UINT32_C(0x6e8a278c)
#define NBD_REPLY_FLAG_DONE        (1u << 0)

#define NBD_REPLY_TYPE_ERR_BIT     (1u << 15)
#define NBD_REPLY_TYPE_NONE        0
#define NBD_REPLY_TYPE_OFFSET_DATA 1
#define NBD_REPLY_TYPE_OFFSET_HOLE 2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_BLOCK_STATUS_EXT 6
#define NBD_REPLY_TYPE_ERROR       (NBD_REPLY_TYPE_ERR_BIT | 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET (NBD_REPLY_TYPE_ERR_BIT | 2)
#define NBD_REPLY_TYPE_IS_ERR(t)   (((t) & NBD_REPLY_TYPE_ERR_BIT) != 0)

/* ---- Error values ("Error values") ---- */
#define NBD_SUCCESS     0
#define NBD_EPERM       1
#define NBD_EIO         5
#define NBD_ENOMEM      12
#define NBD_EINVAL      22
#define NBD_ENOSPC      28
#define NBD_EOVERFLOW   75
#define NBD_ENOTSUP     95
#define NBD_ESHUTDOWN   108

/* ---- Metadata contexts ---- */
#define NBD_META_BASE_ALLOCATION   "base:allocation"
#define NBD_STATE_HOLE             (1u << 0)
#define NBD_STATE_ZERO             (1u << 1)

/* ---- Limits ---- */
#define NBD_MAX_STRING             4096      /* names, descriptions, contexts */
#define NBD_MAX_OPTION_LEN         (64u * 1024 * 1024)  /* hard cap, any option */
/* The largest READ or WRITE payload served, in both header modes, and
 * advertised in NBD_INFO_BLOCK_SIZE: nbdkit's limit, so clients that send
 * 64 MiB requests without asking for block sizes are served. */
#define NBD_MAX_PAYLOAD            (64u * 1024 * 1024)
#define NBD_MAX_BLOCK_STATUS_DESCS (1u << 20)
#define NBD_DEFAULT_PORT           10809

/* ---- On-wire layouts ---- */
struct nbd_new_handshake {      /* server greeting, newstyle */
  uint64_t nbdmagic;            /* NBD_MAGIC */
  uint64_t version;             /* NBD_OPTS_MAGIC */
  uint16_t gflags;
} __attribute__((packed));

struct nbd_option {             /* client option header */
  uint64_t version;             /* NBD_OPTS_MAGIC */
  uint32_t option;
  uint32_t optlen;
} __attribute__((packed));

struct nbd_fixed_new_option_reply {
  uint64_t magic;               /* NBD_REP_MAGIC */
  uint32_t option;
  uint32_t reply;
  uint32_t replylen;
} __attribute__((packed));

struct nbd_export_name_reply {  /* reply to NBD_OPT_EXPORT_NAME */
  uint64_t exportsize;
  uint16_t eflags;
  char zeroes[124];             /* omitted with NO_ZEROES */
} __attribute__((packed));

struct nbd_info_export {        /* NBD_REP_INFO, NBD_INFO_EXPORT */
  uint16_t info;
  uint64_t exportsize;
  uint16_t eflags;
} __attribute__((packed));

struct nbd_info_block_size {    /* NBD_REP_INFO, NBD_INFO_BLOCK_SIZE */
  uint16_t info;
  uint32_t minimum;
  uint32_t preferred;
  uint32_t maximum;
} __attribute__((packed));

struct nbd_request {
  uint32_t magic;               /* NBD_REQUEST_MAGIC */
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint64_t offset;
  uint32_t count;
} __attribute__((packed));

struct nbd_extended_request {  /* after NBD_OPT_EXTENDED_HEADERS */
  uint32_t magic;               /* NBD_EXTENDED_REQUEST_MAGIC */
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint64_t offset;
  uint64_t count;               /* payload length (NBD_CMD_FLAG_PAYLOAD_LEN)
                                   or effect length */
} __attribute__((packed));

struct nbd_simple_reply {
  uint32_t magic;               /* NBD_SIMPLE_REPLY_MAGIC */
  uint32_t error;
  uint64_t cookie;
} __attribute__((packed));

struct nbd_structured_reply {
  uint32_t magic;               /* NBD_STRUCTURED_REPLY_MAGIC */
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint32_t length;
} __attribute__((packed));

struct nbd_extended_reply {     /* every reply chunk, extended headers */
  uint32_t magic;               /* NBD_EXTENDED_REPLY_MAGIC */
  uint16_t flags;
  uint16_t type;
  uint64_t cookie;
  uint64_t offset;              /* the request's offset, echoed */
  uint64_t length;
} __attribute__((packed));

struct nbd_block_descriptor_ext { /* NBD_REPLY_TYPE_BLOCK_STATUS_EXT entry */
  uint64_t length;
  uint64_t status_flags;
} __attribute__((packed));

struct nbd_block_descriptor {   /* NBD_REPLY_TYPE_BLOCK_STATUS entry */
  uint32_t length;
  uint32_t status_flags;
} __attribute__((packed));

_Static_assert(sizeof(struct nbd_new_handshake) == 18, "greeting");
_Static_assert(sizeof(struct nbd_option) == 16, "option header");
_Static_assert(sizeof(struct nbd_fixed_new_option_reply) == 20, "option reply");
_Static_assert(sizeof(struct nbd_export_name_reply) == 134, "export name reply");
_Static_assert(sizeof(struct nbd_info_export) == 12, "info export");
_Static_assert(sizeof(struct nbd_info_block_size) == 14, "info block size");
_Static_assert(sizeof(struct nbd_request) == 28, "request");
_Static_assert(sizeof(struct nbd_extended_request) == 32, "extended request");
_Static_assert(sizeof(struct nbd_simple_reply) == 16, "simple reply");
_Static_assert(sizeof(struct nbd_structured_reply) == 20, "structured reply");
_Static_assert(sizeof(struct nbd_extended_reply) == 32, "extended reply");
_Static_assert(sizeof(struct nbd_block_descriptor) == 8, "block descriptor");
_Static_assert(sizeof(struct nbd_block_descriptor_ext) == 16,
               "extended block descriptor");

/* Name tables for logs (common/names.c); they return "unknown" rather than
 * NULL so a caller can always print the result. */
const char *nbd_opt_name(uint32_t opt);
const char *nbd_rep_name(uint32_t rep);
const char *nbd_cmd_name(uint16_t cmd);
const char *nbd_reply_type_name(uint16_t type);
const char *nbd_err_name(uint32_t err);

#endif /* SNBD_PROTOCOL_H */
