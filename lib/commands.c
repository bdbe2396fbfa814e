/* libsnbd, top layer: issuing commands and collecting their results
 * (snbd_aio_*, snbd_pread...).  Each public call is checked against what
 * was negotiated (doc/proto.md "Request types", "Block size
 * constraints"), then split into wire requests no larger than the
 * server allows, registered in the in-flight table (inflight.c, so the
 * reader thread can match replies) and sent under send_lock. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cleanup.h"
#include "internal.h"
#include "wire.h"

struct cmd {
  uint16_t type, flags;
  uint64_t offset, count;
  const void *wbuf;         /* WRITE payload */
  void *rbuf;               /* READ target */
  snbd_completion_cb cb;
  void *ud;
  snbd_extent_cb ecb;
  void *eud;
};

static bool is_ranged(uint16_t type)
{
  return type != NBD_CMD_FLUSH;
}

static int check_support(struct snbd_handle *h, const struct cmd *c)
{
  static const struct { uint16_t type, flag; } needs[] = {
    { NBD_CMD_FLUSH, NBD_FLAG_SEND_FLUSH },
    { NBD_CMD_TRIM, NBD_FLAG_SEND_TRIM },
    { NBD_CMD_WRITE_ZEROES, NBD_FLAG_SEND_WRITE_ZEROES },
    { NBD_CMD_CACHE, NBD_FLAG_SEND_CACHE },
  };
  for (size_t i = 0; i < sizeof needs / sizeof needs[0]; i++)
    if (c->type == needs[i].type && !(h->eflags & needs[i].flag)) {
      lib_error(ENOTSUP, "the server does not support %s",
                nbd_cmd_name(c->type));
      return -1;
    }
  bool writes = c->type == NBD_CMD_WRITE || c->type == NBD_CMD_TRIM ||
                c->type == NBD_CMD_WRITE_ZEROES;
  if (writes && (h->eflags & NBD_FLAG_READ_ONLY)) {
    lib_error(EPERM, "the export is read-only");
    return -1;
  }
  if (c->type == NBD_CMD_BLOCK_STATUS &&
      (h->nr_ctx == 0 || !h->ctx_export ||
       strcmp(h->ctx_export, h->export_name) != 0)) {
    lib_error(ENOTSUP, "no metadata context was negotiated for this export "
              "(snbd_add_meta_context before connecting)");
    return -1;
  }
  return 0;
}

/* Command flags allowed for each command, given the export's flags. */
static int check_flags(struct snbd_handle *h, const struct cmd *c)
{
  uint32_t ok = 0;
  bool writes = c->type == NBD_CMD_WRITE || c->type == NBD_CMD_TRIM ||
                c->type == NBD_CMD_WRITE_ZEROES;
  if (writes && (h->eflags & NBD_FLAG_SEND_FUA))
    ok |= NBD_CMD_FLAG_FUA;
  if (c->type == NBD_CMD_WRITE_ZEROES) {
    ok |= NBD_CMD_FLAG_NO_HOLE;
    if (h->eflags & NBD_FLAG_SEND_FAST_ZERO)
      ok |= NBD_CMD_FLAG_FAST_ZERO;
  }
  if (c->type == NBD_CMD_READ && (h->eflags & NBD_FLAG_SEND_DF))
    ok |= NBD_CMD_FLAG_DF;
  if (c->type == NBD_CMD_BLOCK_STATUS)
    ok |= NBD_CMD_FLAG_REQ_ONE;
  if (c->flags & ~ok) {
    lib_error(EINVAL, "flags 0x%x are not valid for %s on this export",
              (unsigned)(c->flags & ~ok), nbd_cmd_name(c->type));
    return -1;
  }
  return 0;
}

static int check_range(struct snbd_handle *h, const struct cmd *c)
{
  if (!is_ranged(c->type))
    return 0;
  if (c->count == 0) {
    lib_error(EINVAL, "count must not be 0");
    return -1;
  }
  if (!wire_range_ok(c->offset, c->count, h->size)) {
    lib_error(EINVAL, "offset %llu + count %llu is beyond the end of the "
              "export (%llu bytes)", (unsigned long long)c->offset,
              (unsigned long long)c->count, (unsigned long long)h->size);
    return -1;
  }
  if (h->have_bs && (c->offset % h->bs_min || c->count % h->bs_min)) {
    lib_error(EINVAL, "offset and count must be multiples of the server's "
              "minimum block size %u", h->bs_min);
    return -1;
  }
  return 0;
}

/* Largest wire request for this command (doc/proto.md "Block size
 * constraints": the maximum binds READ, WRITE, CACHE and WRITE_ZEROES
 * without FAST_ZERO; every compact count is 32 bits).  Under extended
 * headers the commands without a payload take 64-bit effect lengths
 * ("only when length is used as an effect length will it utilize a full
 * 64-bit value"), so they are never split. */
static uint64_t part_limit(struct snbd_handle *h, const struct cmd *c)
{
  uint32_t server = h->have_bs && h->bs_max != UINT32_MAX
                    ? h->bs_max : MAX_UNBOUNDED_REQUEST;
  if (h->eh && c->type != NBD_CMD_READ && c->type != NBD_CMD_WRITE)
    return UINT64_MAX;
  switch (c->type) {
  case NBD_CMD_READ:
  case NBD_CMD_WRITE:
    return server < DEFAULT_MAX_REQUEST ? server : DEFAULT_MAX_REQUEST;
  case NBD_CMD_CACHE:
    return server;
  case NBD_CMD_WRITE_ZEROES:
    return (c->flags & NBD_CMD_FLAG_FAST_ZERO) ? MAX_UNBOUNDED_REQUEST : server;
  default:
    return MAX_UNBOUNDED_REQUEST;
  }
}

/* Registers one wire request (caller holds h->lock) and fills *q with
 * its header: once registered, the request belongs to the reader (a
 * hostile server may answer a cookie before it is sent), so the sender
 * works from this copy. */
static int add_req(struct snbd_handle *h, struct op *op, const struct cmd *c,
                   uint64_t off, uint64_t len, struct nbd_req *q)
{
  /* Extended headers: "the flag MUST be set for NBD_CMD_WRITE". */
  uint16_t pl = h->eh && c->type == NBD_CMD_WRITE ? NBD_CMD_FLAG_PAYLOAD_LEN
                                                  : 0;
  *q = (struct nbd_req){ .flags = c->flags | pl, .type = c->type,
                         .offset = off, .count = len };
  char *buf = c->rbuf ? (char *)c->rbuf + (off - c->offset) : NULL;
  return inflight_req_add(h, op, q, buf);
}

/* Sends one request and its payload; a failure kills the connection (the
 * reader then fails everything in flight). */
static int send_req(struct snbd_handle *h, const struct nbd_req *q,
                    const void *payload)
{
  uint8_t hdr[WIRE_REQUEST_MAX];
  size_t hlen = wire_encode_req(hdr, h->eh, q);   /* eh: set before tx */
  struct iovec iov[2] = {
    { .iov_base = hdr, .iov_len = hlen },
    { .iov_base = (void *)payload, .iov_len = payload ? q->count : 0 },
  };
  pthread_mutex_lock(&h->send_lock);
  int rc = transport_sendv(h->t, iov, payload ? 2 : 1, 0);
  int e = errno;
  pthread_mutex_unlock(&h->send_lock);
  if (rc == -1) {
    pthread_mutex_lock(&h->lock);
    if (h->state == H_READY) {
      lib_error(e, "sending %s: %s", nbd_cmd_name(q->type), strerror(e));
      h_set_dead(h, e, get_error());
      shutdown(h->t->fd, SHUT_RDWR);
    }
    pthread_mutex_unlock(&h->lock);
  }
  return rc;
}

/* Checks c and creates its op (caller holds h->lock). */
static struct op *new_op(struct snbd_handle *h, const struct cmd *c)
{
  if (CHECK_STATE(h, H_READY) == -1)
    return NULL;
  if (h->server_shutdown) {
    lib_error(ESHUTDOWN, "the server is shutting down");
    return NULL;
  }
  if (check_support(h, c) == -1 || check_flags(h, c) == -1 ||
      check_range(h, c) == -1)
    return NULL;
  struct op init = {
    .type = c->type, .cb = c->cb, .user_data = c->ud, .extent_cb = c->ecb,
    .extent_user_data = c->eud, .rbuf = c->rbuf, .rlen = c->count,
  };
  return inflight_op_new(h, &init);
}

/* A READ buffer is zeroed when the command fails, never filled twice
 * when it succeeds (docs/security.md 25: no stale data after an error). */
static int64_t refuse(struct cmd *c)
{
  if (c->rbuf)
    memset(c->rbuf, 0, c->count);
  return -1;
}

static int64_t submit(struct snbd_handle *h, struct cmd *c)
{
  if ((c->type == NBD_CMD_READ && !c->rbuf) ||
      (c->type == NBD_CMD_WRITE && !c->wbuf)) {
    lib_error(EINVAL, "no buffer given");
    return -1;
  }
  pthread_mutex_lock(&h->lock);
  struct op *op = new_op(h, c);
  pthread_mutex_unlock(&h->lock);
  if (!op)
    return refuse(c);
  uint64_t limit = part_limit(h, c), done = 0;
  int sent = 0;
  do {
    uint64_t len = c->count - done;
    if (len > limit)
      len = limit;
    struct nbd_req q;
    pthread_mutex_lock(&h->lock);
    int r = h->state == H_READY
            ? add_req(h, op, c, c->offset + done, len, &q) : -1;
    if (r == -1 && h->state != H_READY)
      inflight_op_error(op, h->dead_errno ? h->dead_errno : ENOTCONN,
                        "the connection is closed: %s",
                        h->dead_msg ? h->dead_msg : "unknown reason");
    pthread_mutex_unlock(&h->lock);
    if (r == -1)
      break;
    sent++;
    const void *payload = c->wbuf ? (const char *)c->wbuf + done : NULL;
    if (send_req(h, &q, payload) == -1)
      break;
    done += len;
  } while (done < c->count);

  pthread_mutex_lock(&h->lock);
  int64_t cookie = op->cookie;
  if (sent == 0) {            /* nothing went out: plain failure */
    set_error_at(lib_api, op->error ? op->error : EIO, "%s",
                 op->errmsg ? op->errmsg : "the command was not sent");
    inflight_unlink_op(h, op);
    pthread_mutex_unlock(&h->lock);
    inflight_free_op(op);
    return refuse(c);
  }
  inflight_op_part_done(h, op);
  pthread_mutex_unlock(&h->lock);
  inflight_complete_ready(h);
  return cookie;
}

/* ---- Collecting results ---- */

/* Collects a finished op (caller holds h->lock): 0 or -1 with its error. */
static int retire(struct snbd_handle *h, struct op *op)
{
  inflight_unlink_op(h, op);
  int r = 0;
  if (op->error) {
    set_error_at(lib_api, op->error, "%s",
                 op->errmsg ? op->errmsg : strerror(op->error));
    r = -1;
  }
  inflight_free_op(op);
  return r;
}

static struct op *lookup(struct snbd_handle *h, int64_t cookie)
{
  struct op *op = inflight_find_op(h, cookie);
  if (!op)
    lib_error(EINVAL, "no command with cookie %lld is waiting to be "
              "collected", (long long)cookie);
  else if (op->cb) {
    lib_error(EINVAL, "command %lld has a completion callback",
              (long long)cookie);
    op = NULL;
  }
  return op;
}

static int wait_op(struct snbd_handle *h, int64_t cookie)
{
  SCOPED_LOCK(&h->lock);
  struct op *op = lookup(h, cookie);
  if (!op)
    return -1;
  while (!op->done)
    pthread_cond_wait(&h->cond, &h->lock);
  return retire(h, op);
}

int snbd_aio_wait(struct snbd_handle *h, int64_t cookie)
{
  API();
  return wait_op(h, cookie);
}

int snbd_aio_command_completed(struct snbd_handle *h, int64_t cookie)
{
  API();
  SCOPED_LOCK(&h->lock);
  struct op *op = lookup(h, cookie);
  if (!op)
    return -1;
  if (!op->done)
    return 0;
  return retire(h, op) == 0 ? 1 : -1;
}

int snbd_aio_in_flight(struct snbd_handle *h)
{
  API();
  SCOPED_LOCK(&h->lock);
  return (int)h->nr_ops;
}

/* ---- The public commands: asynchronous, and synchronous (the same
 * command, then wait for it) ---- */

static int64_t aio(struct snbd_handle *h, struct cmd *c, uint32_t flags)
{
  if (flags > 0xffff) {
    lib_error(EINVAL, "unknown flags 0x%x", (unsigned)flags);
    return refuse(c);
  }
  c->flags = (uint16_t)flags;
  if (c->type == NBD_CMD_BLOCK_STATUS) {
    if (!c->ecb) {
      lib_error(EINVAL, "no extent callback");
      return -1;
    }
    /* A hint, never split: one request, one reply per context; 64 bits
     * under extended headers. */
    if (!h->eh && c->count > MAX_UNBOUNDED_REQUEST)
      c->count = MAX_UNBOUNDED_REQUEST;
  }
  return submit(h, c);
}

static int sync_cmd(struct snbd_handle *h, struct cmd *c, uint32_t flags)
{
  int64_t cookie = aio(h, c, flags);
  return cookie == -1 ? -1 : wait_op(h, cookie);
}

#define READ_CMD(b, n, o) \
  { .type = NBD_CMD_READ, .rbuf = (b), .count = (n), .offset = (o) }
#define WRITE_CMD(b, n, o) \
  { .type = NBD_CMD_WRITE, .wbuf = (b), .count = (n), .offset = (o) }
#define RANGE_CMD(t, n, o) \
  { .type = (t), .count = (n), .offset = (o) }

int64_t snbd_aio_pread(struct snbd_handle *h, void *buf, size_t count,
                       uint64_t offset, snbd_completion_cb cb, void *ud,
                       uint32_t flags)
{
  API();
  struct cmd c = READ_CMD(buf, count, offset);
  c.cb = cb;
  c.ud = ud;
  return aio(h, &c, flags);
}

int64_t snbd_aio_pwrite(struct snbd_handle *h, const void *buf, size_t count,
                        uint64_t offset, snbd_completion_cb cb, void *ud,
                        uint32_t flags)
{
  API();
  struct cmd c = WRITE_CMD(buf, count, offset);
  c.cb = cb;
  c.ud = ud;
  return aio(h, &c, flags);
}

static int64_t aio_ranged(struct snbd_handle *h, uint16_t type,
                          uint64_t count, uint64_t offset,
                          snbd_completion_cb cb, void *ud, uint32_t flags)
{
  struct cmd c = RANGE_CMD(type, count, offset);
  c.cb = cb;
  c.ud = ud;
  return aio(h, &c, flags);
}

int64_t snbd_aio_flush(struct snbd_handle *h, snbd_completion_cb cb,
                       void *ud, uint32_t flags)
{
  API();
  return aio_ranged(h, NBD_CMD_FLUSH, 0, 0, cb, ud, flags);
}

int64_t snbd_aio_trim(struct snbd_handle *h, uint64_t count, uint64_t offset,
                      snbd_completion_cb cb, void *ud, uint32_t flags)
{
  API();
  return aio_ranged(h, NBD_CMD_TRIM, count, offset, cb, ud, flags);
}

int64_t snbd_aio_zero(struct snbd_handle *h, uint64_t count, uint64_t offset,
                      snbd_completion_cb cb, void *ud, uint32_t flags)
{
  API();
  return aio_ranged(h, NBD_CMD_WRITE_ZEROES, count, offset, cb, ud, flags);
}

int64_t snbd_aio_cache(struct snbd_handle *h, uint64_t count, uint64_t offset,
                       snbd_completion_cb cb, void *ud, uint32_t flags)
{
  API();
  return aio_ranged(h, NBD_CMD_CACHE, count, offset, cb, ud, flags);
}

int64_t snbd_aio_block_status(struct snbd_handle *h, uint64_t count,
                              uint64_t offset, snbd_extent_cb ecb, void *eud,
                              snbd_completion_cb cb, void *ud, uint32_t flags)
{
  API();
  struct cmd c = RANGE_CMD(NBD_CMD_BLOCK_STATUS, count, offset);
  c.cb = cb;
  c.ud = ud;
  c.ecb = ecb;
  c.eud = eud;
  return aio(h, &c, flags);
}

int snbd_pread(struct snbd_handle *h, void *buf, size_t count,
               uint64_t offset, uint32_t flags)
{
  API();
  struct cmd c = READ_CMD(buf, count, offset);
  return sync_cmd(h, &c, flags);
}

int snbd_pwrite(struct snbd_handle *h, const void *buf, size_t count,
                uint64_t offset, uint32_t flags)
{
  API();
  struct cmd c = WRITE_CMD(buf, count, offset);
  return sync_cmd(h, &c, flags);
}

int snbd_flush(struct snbd_handle *h, uint32_t flags)
{
  API();
  struct cmd c = RANGE_CMD(NBD_CMD_FLUSH, 0, 0);
  return sync_cmd(h, &c, flags);
}

int snbd_trim(struct snbd_handle *h, uint64_t count, uint64_t offset,
              uint32_t flags)
{
  API();
  struct cmd c = RANGE_CMD(NBD_CMD_TRIM, count, offset);
  return sync_cmd(h, &c, flags);
}

int snbd_zero(struct snbd_handle *h, uint64_t count, uint64_t offset,
              uint32_t flags)
{
  API();
  struct cmd c = RANGE_CMD(NBD_CMD_WRITE_ZEROES, count, offset);
  return sync_cmd(h, &c, flags);
}

int snbd_cache(struct snbd_handle *h, uint64_t count, uint64_t offset,
               uint32_t flags)
{
  API();
  struct cmd c = RANGE_CMD(NBD_CMD_CACHE, count, offset);
  return sync_cmd(h, &c, flags);
}

int snbd_block_status(struct snbd_handle *h, uint64_t count, uint64_t offset,
                      snbd_extent_cb cb, void *ud, uint32_t flags)
{
  API();
  struct cmd c = RANGE_CMD(NBD_CMD_BLOCK_STATUS, count, offset);
  c.ecb = cb;
  c.eud = ud;
  return sync_cmd(h, &c, flags);
}
