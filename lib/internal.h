/* libsnbd internals: the handle, the commands in flight, and the
 * functions the library's files share.  Nothing here is exported
 * (libsnbd.syms).
 *
 * The files form layers; a file calls only files below it (never
 * sideways within the handshake steps, never up).  Top to bottom:
 *
 *   API        handle.c (life, settings)  connect.c  commands.c
 *   driver     handshake.c: chs_run, and the option-mode API (snbd_opt_*)
 *   steps      greeting.c starttls.c structured.c meta.c go.c list.c
 *              exportname.c                       tx.c (transmission
 *                                                 lifetime)
 *   I/O        optio.c (option send/receive)      reply.c (reader thread)
 *   data       info.c (export facts, getters)     inflight.c (commands
 *                                                 in flight)
 *                                                 cover.c (READ coverage)
 *   bottom     state.c: handle state and errors, for any file above
 *
 * The handshake runs under h->lock in the calling thread; transmission
 * replies are read by the reader thread (reply.c), which tx.c starts.
 * docs/architecture.md draws the whole project. */
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
#include "vector.h"
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
/* Most replies a server may send to one option. */
#define OPT_MAX_REPLIES 100000

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

/* What a structured READ reply has covered so far (cover.c). */
struct cover_piece {
  uint64_t start, end;
};
DEFINE_VECTOR(cover, struct cover_piece);

/* One wire request in flight.  Only the reader thread reads replies into
 * it and frees it; submitters create it under h->lock. */
struct req {
  struct req *next;         /* hash chain (h->reqs) */
  uint64_t cookie;
  struct op *op;
  uint16_t type, flags;
  uint64_t offset;
  uint64_t count;           /* 64 bits only under extended headers */
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
  bool tls_resume;          /* offer and keep TLS sessions (tls_resume.c) */
  bool request_sr;
  bool request_eh;          /* ask for NBD_OPT_EXTENDED_HEADERS */
  bool allow_local_file;
  bool opt_mode;
  unsigned hs_timeout;
  unsigned req_timeout;     /* seconds; 0: none (reply.c) */
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
  bool eh;                  /* extended headers (sr is set with it) */
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
  int64_t last_heard;       /* monotonic ns: the last reply began, or the
                               first command went out after none */
};

/* Errors.  Public entry points record their name with API(); messages
 * set deeper down are then prefixed with it, as a user would expect. */
extern __thread const char *lib_api;
#define API() (lib_api = __func__)
#define lib_error(errnum, ...) \
  set_error_at(lib_api ? lib_api : "libsnbd", (errnum), __VA_ARGS__)
/* Re-prefixes the current error (set by common code) with what failed. */
void lib_rewrap(const char *what);

/* ---- state.c (bottom) ---- */
int h_check_state(struct snbd_handle *h, enum hstate want, const char *func);
void h_set_dead(struct snbd_handle *h, int err, const char *msg);
/* Handshake failed: the current error becomes the handle's epitaph and
 * the socket is shut down (caller holds h->lock). */
void h_fail_connection(struct snbd_handle *h);
#define CHECK_STATE(h, s) h_check_state((h), (s), __func__)

/* ---- cover.c ---- */
/* Adds [start, end): 0, or -1 if it overlaps what is there or the list
 * is too fragmented (or out of memory). */
int cover_add(struct cover *c, uint64_t start, uint64_t end);

/* ---- inflight.c: everything but inflight_complete_ready expects
 * h->lock held ---- */
/* Registers a new op, a copy of *init with a fresh cookie, holding one
 * part until the submitter has sent every wire request. */
struct op *inflight_op_new(struct snbd_handle *h, const struct op *init);
/* Registers one wire request of op for *q (type, flags, offset, count
 * filled in), giving q its cookie; buf is the READ target.  On failure
 * the op records the error. */
int inflight_req_add(struct snbd_handle *h, struct op *op, struct nbd_req *q,
                     char *buf);
struct req *inflight_find_req(struct snbd_handle *h, uint64_t cookie);
struct op *inflight_find_op(struct snbd_handle *h, int64_t cookie);
void inflight_unlink_op(struct snbd_handle *h, struct op *op);
void inflight_free_op(struct op *op);
/* Records the first error of an op. */
void inflight_op_error(struct op *op, int err, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
/* Drops one part of op; at zero the op is done: queued for its callback,
 * or kept for snbd_aio_wait. */
void inflight_op_part_done(struct snbd_handle *h, struct op *op);
/* A wire request is done: unlinked, its part dropped, freed. */
void inflight_req_done(struct snbd_handle *h, struct req *r);
/* Fails every request still in flight with the handle's epitaph. */
void inflight_fail_all(struct snbd_handle *h);
/* Runs the callbacks of finished ops, outside the lock (takes it). */
void inflight_complete_ready(struct snbd_handle *h);

/* ---- info.c ---- */
/* Block sizes as the server sent them: 0, or -1 with the reason. */
int info_set_block_sizes(struct snbd_handle *h, uint32_t min, uint32_t pref,
                         uint32_t max);
/* Export size and transmission flags: 0, or -1 with the reason. */
int info_set_export(struct snbd_handle *h, uint64_t size, uint16_t eflags);

/* ---- optio.c ---- */
int optio_send(struct snbd_handle *h, uint32_t opt, const void *data,
               uint32_t len);
/* Reads one option reply to opt into buf (cap bytes).  Fails, ending the
 * session, on a bad magic, a reply to another option or a reply longer
 * than cap. */
int optio_recv(struct snbd_handle *h, uint32_t opt, struct nbd_opt_reply *r,
               uint8_t *buf, size_t cap);
/* A protocol violation or I/O failure: sets the error and marks the
 * stream unusable.  Returns -1. */
int optio_broken(struct snbd_handle *h, int err, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
/* optio_broken with errno's failure while doing what. */
int optio_io_failed(struct snbd_handle *h, const char *what);
/* Sets the error for a refusal r (an NBD_REP_ERR_*) of opt; the stream
 * stays usable. */
void optio_refused(struct snbd_handle *h, uint32_t opt,
                   const struct nbd_opt_reply *r, const uint8_t *payload);
/* A string from a reply: at most NBD_MAX_STRING bytes and no NUL
 * (doc/proto.md "Conventions"), copied and NUL-terminated; NULL (the
 * stream broken) if invalid. */
char *optio_string(struct snbd_handle *h, const uint8_t *p, size_t n,
                   const char *what);

/* ---- reply.c ---- */
void *reply_reader(void *arg);

/* ---- Handshake steps: 0 or -1 (the error set; h->broken if the stream
 * is out of step) ---- */
int greeting_run(struct snbd_handle *h);     /* greeting.c */
int starttls_run(struct snbd_handle *h);     /* starttls.c */
int structured_run(struct snbd_handle *h);   /* structured.c */
int extheaders_run(struct snbd_handle *h);   /* structured.c */
int exportname_run(struct snbd_handle *h);   /* exportname.c */
/* meta.c: SET_META_CONTEXT for the contexts asked for; LIST_META_CONTEXT
 * returns the number of contexts listed. */
int meta_set(struct snbd_handle *h);
int meta_list(struct snbd_handle *h, snbd_context_cb cb, void *ud);
/* list.c: the number of exports listed. */
int list_run(struct snbd_handle *h, snbd_list_cb cb, void *ud);
/* go.c: NBD_OPT_GO or NBD_OPT_INFO on h->export_name, asking for block
 * sizes, the canonical name and the description.  A refusal leaves the
 * stream usable (option mode may try another export); GO_UNSUPPORTED:
 * the server does not know NBD_OPT_GO (NBD_REP_ERR_UNSUP). */
#define GO_UNSUPPORTED 1
int go_run(struct snbd_handle *h, uint32_t opt);

/* ---- tx.c ---- */
/* Starts the reader thread: the handle is H_READY. */
int tx_start(struct snbd_handle *h);
/* Stops the reader (caller holds h->lock): it fails what is in flight
 * with err and runs their callbacks before it exits. */
void tx_stop(struct snbd_handle *h, int err);
/* NBD_CMD_DISC and a bounded wait for EOF (caller holds h->lock). */
int tx_disconnect(struct snbd_handle *h);

/* ---- handshake.c (driver) ---- */
/* The handshake from the greeting on, on h->t; ends in H_READY, or in
 * H_NEGOTIATING with option mode. */
int chs_run(struct snbd_handle *h);
/* NBD_OPT_ABORT (option mode): the handle is closed afterwards. */
int chs_abort(struct snbd_handle *h);

#endif
