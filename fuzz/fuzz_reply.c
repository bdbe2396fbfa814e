/* fuzz: libsnbd's reply parsing, through its public API.  The harness is
 * the server: a peer (peer.h) on a socketpair handed to
 * snbd_connect_socket().  Byte 0 of the input picks a mode:
 *
 * Bit 7 clear, transmission: the peer sends a valid handshake chosen by
 * the mode bits, the harness then issues the commands below with
 * snbd_aio_*, and only then (the gate) does the peer send the rest of the
 * input: the fuzz bytes are replies to requests really in flight.
 *   bit 0  structured replies         bit 1  context base:allocation (id 1)
 *   bit 2  context fuzz:ctx (id 2)    bit 3  maximum block size 4096, so
 *                                            the 16 KiB READ is split
 *   bit 4  extended headers (asked for and acknowledged: the replies are
 *          32-byte extended chunks; bit 0 is then moot) 
 * Wire cookies are 1, 2, ... in the order of `cmds` below, skipping the
 * commands the handshake did not allow (fuzz/gen_corpus.py lists them).
 *
 * Bit 7 set, handshake: the rest of the input is the whole server stream
 * from the greeting on (greeting, option replies, NBD_REP_INFO...).
 *   bit 0  request structured replies bits 1, 2 as above (asked for)
 *   bit 4  request extended headers (first, before structured replies)
 *   bit 5  TLS required (with a PSK file that does not exist, so an ACK
 *          to STARTTLS ends at loading credentials: no TLS handshake)
 *   bit 6  option mode: list exports, list contexts, INFO, then GO
 *
 * Anything the library promises its caller is checked here and aborts if
 * broken: extent callbacks get 1..n extents of nonzero length for a
 * context that was negotiated, one extent with REQ_ONE, at the request's
 * offset; a READ that fails, or is not sent, leaves its buffer all
 * zeroes (the buffers start filled with 0xa5): never stale or partial
 * data. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"
#include "snbd/protocol.h"
#include "snbd/snbd.h"
#include "wire.h"

#define EXPORT_SIZE (1024 * 1024)
#define MAX_INPUT (64 * 1024)
#define CTX2 "fuzz:ctx"

static bool verbose;           /* FUZZ_VERBOSE: say how each command ended */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum kind { READ, WRITE, FLUSH, TRIM, ZERO, CACHE, STATUS };

static const struct cmd {
  enum kind kind;
  uint32_t count;
  uint64_t offset;
  uint32_t flags;
} cmds[] = {
  { READ, 4096, 0, 0 },
  { READ, 4096, 8192, SNBD_CMD_FLAG_DF },
  { WRITE, 512, 0, SNBD_CMD_FLAG_FUA },
  { FLUSH, 0, 0, 0 },
  { TRIM, 4096, 0, 0 },
  { ZERO, 4096, 4096, 0 },
  { ZERO, 4096, 0, SNBD_CMD_FLAG_FAST_ZERO | SNBD_CMD_FLAG_NO_HOLE },
  { STATUS, 65536, 0, 0 },
  { STATUS, 65536, 0, SNBD_CMD_FLAG_REQ_ONE },
  { CACHE, 4096, 0, 0 },
  { READ, 16384, 65536, 0 },
};
#define NCMDS (sizeof cmds / sizeof cmds[0])

struct status_check {
  const struct cmd *cmd;
  uint8_t mode;
};

static void broken(const char *what)
{
  fprintf(stderr, "fuzz_reply: libsnbd broke its promise: %s\n", what);
  abort();
}

static int extent_cb(void *ud, const char *context, uint64_t offset,
                     const struct snbd_extent *ext, size_t n, int *error)
{
  const struct status_check *sc = ud;
  (void)error;
  if (strcmp(context, NBD_META_BASE_ALLOCATION) != 0 &&
      strcmp(context, CTX2) != 0)
    broken("extents for a context never asked for");
  if (strcmp(context, CTX2) == 0 && !(sc->mode & 4))
    broken("extents for a context not negotiated");
  if (offset != sc->cmd->offset)
    broken("extents at another offset than the request's");
  if (n == 0)
    broken("an empty extent list");
  if ((sc->cmd->flags & SNBD_CMD_FLAG_REQ_ONE) && n != 1)
    broken("more than one extent with REQ_ONE");
  for (size_t i = 0; i < n; i++)
    if (ext[i].length == 0)
      broken("an extent of length 0");
  return 0;
}

/* ---- the server's side of the handshake (transmission mode) ---- */

static void put_reply(struct wire_buf *b, uint32_t opt, uint32_t type,
                      const struct wire_buf *payload)
{
  wire_put_u64(b, NBD_REP_MAGIC);
  wire_put_u32(b, opt);
  wire_put_u32(b, type);
  wire_put_u32(b, payload ? (uint32_t)payload->len : 0);
  if (payload)
    wire_put_bytes(b, payload->data, payload->len);
}

static void put_context(struct wire_buf *b, uint32_t id, const char *name)
{
  struct wire_buf p;
  wire_buf_init(&p);
  wire_put_u32(&p, id);
  wire_put_bytes(&p, name, strlen(name));
  put_reply(b, NBD_OPT_SET_META_CONTEXT, NBD_REP_META_CONTEXT, &p);
  wire_buf_free(&p);
}

static void server_handshake(struct wire_buf *b, uint8_t mode)
{
  struct wire_buf p;
  bool eh = mode & 0x10;
  bool sr = (mode & 1) || eh;
  wire_buf_init(&p);
  wire_put_u64(b, NBD_MAGIC);
  wire_put_u64(b, NBD_OPTS_MAGIC);
  wire_put_u16(b, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  if (eh)
    put_reply(b, NBD_OPT_EXTENDED_HEADERS, NBD_REP_ACK, NULL);
  else if (sr)
    put_reply(b, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NULL);
  if (sr && (mode & 6)) {
    if (mode & 2)
      put_context(b, 1, NBD_META_BASE_ALLOCATION);
    if (mode & 4)
      put_context(b, 2, CTX2);
    put_reply(b, NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK, NULL);
  }
  wire_put_u16(&p, NBD_INFO_EXPORT);
  wire_put_u64(&p, EXPORT_SIZE);
  wire_put_u16(&p, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
                   NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
                   NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_DF |
                   NBD_FLAG_SEND_CACHE | NBD_FLAG_SEND_FAST_ZERO);
  put_reply(b, NBD_OPT_GO, NBD_REP_INFO, &p);
  wire_buf_reset(&p);
  wire_put_u16(&p, NBD_INFO_BLOCK_SIZE);
  wire_put_u32(&p, 1);
  wire_put_u32(&p, 4096);
  wire_put_u32(&p, (mode & 8) ? 4096 : 32 * 1024 * 1024);
  put_reply(b, NBD_OPT_GO, NBD_REP_INFO, &p);
  put_reply(b, NBD_OPT_GO, NBD_REP_ACK, NULL);
  wire_buf_free(&p);
}

/* ---- the client ---- */

static struct snbd_handle *new_handle(uint8_t mode)
{
  struct snbd_handle *h = snbd_create();
  if (!h)
    abort();
  snbd_set_handshake_timeout(h, 0);   /* EOF ends every run */
  snbd_set_request_structured_replies(h, mode & 1);
  snbd_set_request_extended_headers(h, (mode & 0x10) != 0);
  if (mode & 2)
    snbd_add_meta_context(h, NBD_META_BASE_ALLOCATION);
  if (mode & 4)
    snbd_add_meta_context(h, CTX2);
  return h;
}

static int64_t issue(struct snbd_handle *h, const struct cmd *c, char *buf,
                     struct status_check *sc)
{
  switch (c->kind) {
  case READ:
    return snbd_aio_pread(h, buf, c->count, c->offset, NULL, NULL, c->flags);
  case WRITE:
    return snbd_aio_pwrite(h, buf, c->count, c->offset, NULL, NULL,
                           c->flags);
  case FLUSH:
    return snbd_aio_flush(h, NULL, NULL, c->flags);
  case TRIM:
    return snbd_aio_trim(h, c->count, c->offset, NULL, NULL, c->flags);
  case ZERO:
    return snbd_aio_zero(h, c->count, c->offset, NULL, NULL, c->flags);
  case CACHE:
    return snbd_aio_cache(h, c->count, c->offset, NULL, NULL, c->flags);
  case STATUS:
    return snbd_aio_block_status(h, c->count, c->offset, extent_cb, sc,
                                 NULL, NULL, c->flags);
  }
  return -1;
}

static void transmission(uint8_t mode, const uint8_t *data, size_t size)
{
  struct wire_buf hs;
  struct peer p;
  int sv[2];
  int64_t cookies[NCMDS];
  char *bufs[NCMDS];
  struct status_check sc[NCMDS];

  wire_buf_init(&hs);
  server_handshake(&hs, mode);
  if (hs.oom)
    abort();
  struct snbd_handle *h = new_handle(mode);
  fuzz_socketpair(sv);
  peer_start(&p, sv[1], hs.data, hs.len, data, size, true, UINT64_MAX);
  if (snbd_connect_socket(h, sv[0]) == 0) {
    for (size_t i = 0; i < NCMDS; i++) {
      bufs[i] = malloc(cmds[i].count ? cmds[i].count : 1);
      if (!bufs[i])
        abort();
      memset(bufs[i], 0xa5, cmds[i].count);
      sc[i] = (struct status_check){ &cmds[i], mode };
      cookies[i] = issue(h, &cmds[i], bufs[i], &sc[i]);
    }
    peer_open_gate(&p);
    for (size_t i = 0; i < NCMDS; i++) {
      int rc = cookies[i] > 0 ? snbd_aio_wait(h, cookies[i]) : -1;
      if (verbose)
        fprintf(stderr, "fuzz_reply: command %zu: %s\n", i,
                cookies[i] <= 0 ? "not sent" : rc == 0 ? "ok"
                : snbd_get_error());
      if (cmds[i].kind == READ && rc == -1)
        for (size_t j = 0; j < cmds[i].count; j++)
          if (bufs[i][j] != 0)
            broken("a failed READ left bytes in its buffer");
      free(bufs[i]);
    }
  }
  else
    /* The canned handshake must always work: a failure is a harness (or
     * library) bug that would make every input useless. */
    broken(snbd_get_error());
  snbd_close(h);
  peer_join(&p);
  wire_buf_free(&hs);
}

/* ---- handshake mode ---- */

static int list_cb(void *ud, const char *name, const char *desc)
{
  (void)ud;
  if (!name || !desc || strlen(name) > NBD_MAX_STRING)
    broken("a bad export list entry");
  return 0;
}

static int ctx_cb(void *ud, const char *name)
{
  (void)ud;
  if (!name || strlen(name) > NBD_MAX_STRING)
    broken("a bad context name");
  return 0;
}

static void query(struct snbd_handle *h)
{
  free(snbd_get_canonical_export_name(h));
  free(snbd_get_export_description(h));
  free(snbd_get_protocol(h));
  int64_t size = snbd_get_size(h);
  int64_t bmin = snbd_get_block_size(h, SNBD_SIZE_MINIMUM);
  int64_t bmax = snbd_get_block_size(h, SNBD_SIZE_MAXIMUM);
  if (size < -1 || (bmin > 0 && (bmin & (bmin - 1))) || bmax == 0)
    broken("an unchecked export size or block size");
  snbd_can_meta_context(h, NBD_META_BASE_ALLOCATION);
  for (int i = 0, n = snbd_get_nr_meta_contexts(h); i < n; i++)
    free(snbd_get_meta_context(h, i));
}

static void handshake(uint8_t mode, const uint8_t *data, size_t size)
{
  struct peer p;
  int sv[2];
  struct snbd_handle *h = new_handle(mode);
  if (mode & 0x20) {
    snbd_set_tls(h, SNBD_TLS_REQUIRE);
    snbd_set_tls_psk_file(h, "/nonexistent/snbd-fuzz.psk");
  }
  if (mode & 0x40)
    snbd_set_opt_mode(h, true);
  fuzz_socketpair(sv);
  peer_start(&p, sv[1], data, size, NULL, 0, false, UINT64_MAX);
  if (snbd_connect_socket(h, sv[0]) == 0) {
    if (mode & 0x40) {
      snbd_list_exports(h, list_cb, NULL);
      snbd_opt_list_meta_context(h, ctx_cb, NULL);
      snbd_opt_info(h);
      query(h);
      snbd_opt_go(h);
    }
    query(h);
  }
  else if (verbose)
    fprintf(stderr, "fuzz_reply: connect: %s\n", snbd_get_error());
  snbd_close(h);
  peer_join(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static bool init;
  if (!init) {
    signal(SIGPIPE, SIG_IGN);
    verbose = getenv("FUZZ_VERBOSE") != NULL;
    init = true;
  }
  if (size < 1)
    return 0;
  if (size > MAX_INPUT)
    size = MAX_INPUT;
  if (data[0] & 0x80)
    handshake(data[0], data + 1, size - 1);
  else
    transmission(data[0], data + 1, size - 1);
  return 0;
}
