/* libsnbd internals: the handle, commands in flight, and the functions
 * the library's files share.  Nothing here is exported (libsnbd.syms). */
#ifndef SNBD_LIB_INTERNAL_H
#define SNBD_LIB_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "snbd/protocol.h"
#include "snbd/snbd.h"
#include "log.h"
#include "tls.h"
#include "transport.h"
#include "wire.h"

#define MAX_META_CONTEXTS 16
#define HASH_BUCKETS 256
/* Largest READ/WRITE/CACHE/WRITE_ZEROES payload sent in one request when
 * the server states no smaller maximum (doc/proto.md "Block size
 * constraints": 2^25 is what every server must accept). */
#define DEFAULT_MAX_REQUEST (32u * 1024 * 1024)
/* TRIM, and WRITE_ZEROES with FAST_ZERO, are not bound by the maximum
 * block size; 1 GiB is a multiple of any minimum block size. */
#define MAX_UNBOUNDED_REQUEST (1u << 30)
/* Largest option reply accepted during the handshake: a string of
 * NBD_MAX_STRING plus its framing. */
#define MAX_OPT_REPLY (NBD_MAX_STRING + 64)

enum hstate {
  H_CREATED,       /* not connected yet */
  H_NEGOTIATING,   /* option mode: between options */
  H_READY,         /* transmission phase, reader thread running */
  H_DISCONNECTING, /* NBD_CMD_DISC sent, waiting for EOF */
  H_DEAD,          /* failed or closed: every call fails */
};

struct meta_ctx {
  char *name;
  uint32_t id;
};

/* One command as the caller sees it (one cookie); large ones are split
 * into several wire requests. */
struct op {
  struct op *next;          /* hash chain (h->ops) */
  int64_t cookie;
  uint16_t type;
  int parts_left;           /* wire requests not done, +1 while submitting */
  bool done;
  int error;                /* first error, errno value */
  char *errmsg;             /* its message */
  snbd_completion_cb cb;
  void *user_data;
  snbd_extent_cb extent_cb;
  void *extent_user_data;
  void *rbuf;               /* READ: the caller's buffer, zeroed if it fails */
  size_t rlen;
};

/* An interval list of what a structured READ reply has covered so far:
 * sorted, disjoint, merged when adjacent. */
struct cover {
  struct { uint64_t start, end; } *v;
  size_t n, cap;
};

/* One wire request in flight.  Only the reader thread reads replies into
 * it and frees it; submitters create it under h->lock. */
struct req {
  struct req *next;         /* hash chain (h->reqs) */
  uint64_t cookie;
  struct op *op;
  uint16_t type, flags;
  uint64_t offset;
  uint32_t count;
  char *buf;                /* READ target (count bytes) */
  struct cover cover;       /* READ: content chunks seen */
  uint64_t covered;         /* READ: bytes of content seen */
  unsigned content_chunks;  /* READ: for NBD_CMD_FLAG_DF */
  bool failed;              /* an error chunk arrived */
  uint32_t ctx_seen;        /* BLOCK_STATUS: bit per negotiated context */
};

struct snbd_handle {
  /* Guards everything below except the transport, which the handshake
   * uses while holding lock and, in transmission, send_lock (writing)
   * and the reader thread (reading).  Lock order: send_lock, then lock. */
  pthread_mutex_t lock;
  pthread_cond_t cond;      /* an op completed, or the state changed */
  pthread_mutex_t send_lock;

  /* Settings. */
  char *export_name;
  enum snbd_tls_mode tls_mode;
  char *tls_certificates, *tls_psk_file, *tls_username, *tls_hostname;
  char *tls_priority;
  bool tls_verify_peer;
  bool request_sr;
  bool allow_local_file;
  bool opt_mode;
  unsigned hs_timeout;
  char *want_ctx[MAX_META_CONTEXTS];
  int nr_want_ctx;

  /* Connection. */
  enum hstate state;
  struct transport *t;
  pid_t child;              /* snbd_connect_command, else -1 */
  char *tcp_host;           /* for certificate verification */
  struct tls_creds *creds;

  /* Negotiated. */
  bool oldstyle, fixed_newstyle, no_zeroes, tls_active, sr;
  bool broken;              /* the handshake stream is out of step */
  struct tls_peer peer;
  bool have_info;           /* size and flags below are valid */
  uint64_t size;
  uint16_t eflags;
  uint32_t bs_min, bs_pref, bs_max;
  bool have_bs;
  char *canonical_name, *description;
  struct meta_ctx ctx[MAX_META_CONTEXTS];
  int nr_ctx;
  char *ctx_export;         /* export name the contexts were set for */

  /* Transmission. */
  char *dead_msg;           /* why the handle died */
  int dead_errno;
  bool server_shutdown;     /* got NBD_ESHUTDOWN: send no new commands */
  uint64_t next_wire_cookie;
  int64_t next_op_cookie;
  struct req *reqs[HASH_BUCKETS];
  struct op *ops[HASH_BUCKETS];
  unsigned nr_reqs, nr_ops;
  struct op *ready;         /* done ops whose callbacks are due */
  bool reader_running;
  pthread_t reader;
};

/* Errors.  Public entry points record their name with API(); messages
 * set deeper down are then prefixed with it, as a user would expect. */
extern __thread const char *lib_api;
#define API() (lib_api = __func__)
#define lib_error(errnum, ...) \
  set_error_at(lib_api ? lib_api : "libsnbd", (errnum), __VA_ARGS__)
/* Re-prefixes the current error (set by common code) with what failed. */
void lib_rewrap(const char *what);

/* handle.c */
int h_check_state(struct snbd_handle *h, enum hstate want, const char *func);
void h_set_dead(struct snbd_handle *h, int err, const char *msg);
/* Handshake failed: the current error becomes the handle's epitaph and
 * the socket is shut down (caller holds h->lock). */
void h_fail_connection(struct snbd_handle *h);
#define CHECK_STATE(h, s) h_check_state((h), (s), __func__)

/* connect.c */
int conn_finish(struct snbd_handle *h, int fd);

/* handshake.c */
int hs_run(struct snbd_handle *h);
int hs_send_option(struct snbd_handle *h, uint32_t opt, const void *data,
                   uint32_t len);
/* Reads one option reply to opt into buf (cap bytes).  Fails, ending the
 * session, on a bad magic, a reply to another option or a reply longer
 * than cap. */
int hs_recv_reply(struct snbd_handle *h, uint32_t opt,
                  struct nbd_opt_reply *r, uint8_t *buf, size_t cap);
void hs_reply_error(struct snbd_handle *h, uint32_t opt,
                    const struct nbd_opt_reply *r, const uint8_t *payload);
int hs_go(struct snbd_handle *h, uint32_t opt);
int hs_list(struct snbd_handle *h, snbd_list_cb cb, void *ud);
int hs_list_meta(struct snbd_handle *h, snbd_context_cb cb, void *ud);
int hs_abort(struct snbd_handle *h);
/* A protocol violation or I/O failure: sets the error and marks the
 * stream unusable. */
int hs_broken(struct snbd_handle *h, int err, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));

int hs_export_name_fallback(struct snbd_handle *h);

/* starttls.c */
int hs_starttls(struct snbd_handle *h);

/* info.c */
int hs_check_block_sizes(struct snbd_handle *h, uint32_t min, uint32_t pref,
                         uint32_t max);
int hs_set_export(struct snbd_handle *h, uint64_t size, uint16_t eflags);

/* aio.c */
int xmit_start(struct snbd_handle *h);
void xmit_stop(struct snbd_handle *h, int err);
int xmit_disconnect(struct snbd_handle *h);
/* Called by the reader with h->lock held when a wire request is done. */
void xmit_req_done(struct snbd_handle *h, struct req *r);
void xmit_op_error(struct op *op, int err, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
struct req *xmit_find_req(struct snbd_handle *h, uint64_t cookie);
struct op *xmit_find_op(struct snbd_handle *h, int64_t cookie);
void xmit_unlink_op(struct snbd_handle *h, struct op *op);
void xmit_free_op(struct op *op);
void xmit_op_part_done(struct snbd_handle *h, struct op *op);
void xmit_complete_ready(struct snbd_handle *h);

/* reply.c */
void *reply_reader(void *arg);
int reply_errno(uint32_t nbd_err);

/* cover.c helpers live in reply.c */
void cover_free(struct cover *c);

#endif
