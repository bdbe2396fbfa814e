/* libsnbd: the client side of the handshake (doc/proto.md "Handshake"):
 * greeting, then STARTTLS (starttls.c), structured replies, metadata
 * contexts and NBD_OPT_GO, or NBD_OPT_EXPORT_NAME for servers without GO.
 * Every option reply is bounded before it is read. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wire.h"

int hs_broken(struct snbd_handle *h, int err, const char *fmt, ...)
{
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  h->broken = true;
  lib_error(err, "%s", msg);
  return -1;
}

static int io_failed(struct snbd_handle *h, const char *what)
{
  int e = errno;
  if (e == ECONNRESET || e == EPIPE)
    return hs_broken(h, e, "the server closed the connection while %s", what);
  return hs_broken(h, e, "%s: %s", what, strerror(e));
}

int hs_send_option(struct snbd_handle *h, uint32_t opt, const void *data,
                   uint32_t len)
{
  uint8_t hdr[16];
  wire_encode_opt_hdr(hdr, opt, len);
  struct iovec iov[2] = {
    { .iov_base = hdr, .iov_len = sizeof hdr },
    { .iov_base = (void *)data, .iov_len = len },
  };
  if (transport_sendv(h->t, iov, len ? 2 : 1, 0) == -1)
    return io_failed(h, "sending an option");
  return 0;
}

int hs_recv_reply(struct snbd_handle *h, uint32_t opt,
                  struct nbd_opt_reply *r, uint8_t *buf, size_t cap)
{
  uint8_t hdr[20];
  if (transport_read_full(h->t, hdr, sizeof hdr) == -1)
    return io_failed(h, "reading an option reply");
  if (!wire_decode_opt_reply(hdr, r))
    return hs_broken(h, EPROTO, "bad option reply magic from the server");
  if (r->option != opt)
    return hs_broken(h, EPROTO, "the server answered %s (%u) while %s was "
                     "asked", nbd_opt_name(r->option), r->option,
                     nbd_opt_name(opt));
  if (r->length > cap)
    return hs_broken(h, EPROTO, "the server's %s reply to %s is %u bytes "
                     "long, more than the %zu allowed",
                     nbd_rep_name(r->type), nbd_opt_name(opt), r->length, cap);
  if (r->length && transport_read_full(h->t, buf, r->length) == -1)
    return io_failed(h, "reading an option reply");
  return 0;
}

static int rep_errno(uint32_t type)
{
  switch (type) {
  case NBD_REP_ERR_UNSUP: return ENOTSUP;
  case NBD_REP_ERR_POLICY: return EPERM;
  case NBD_REP_ERR_INVALID: return EINVAL;
  case NBD_REP_ERR_PLATFORM: return EOPNOTSUPP;
  case NBD_REP_ERR_TLS_REQD: return EPERM;
  case NBD_REP_ERR_UNKNOWN: return ENOENT;
  case NBD_REP_ERR_SHUTDOWN: return ESHUTDOWN;
  case NBD_REP_ERR_BLOCK_SIZE_REQD: return EINVAL;
  case NBD_REP_ERR_TOO_BIG: return E2BIG;
  default: return EIO;
  }
}

/* "server refused NBD_OPT_GO: NBD_REP_ERR_UNKNOWN: "no such export"" */
void hs_reply_error(struct snbd_handle *h, uint32_t opt,
                    const struct nbd_opt_reply *r, const uint8_t *payload)
{
  char quoted[512];
  quote_bytes(quoted, sizeof quoted, payload, r->length);
  const char *hint = "";
  if (r->type == NBD_REP_ERR_TLS_REQD && !h->tls_active)
    hint = " (the server requires TLS: use an nbds:// URI or enable TLS)";
  lib_error(rep_errno(r->type), "the server refused %s: %s%s%s%s%s",
            nbd_opt_name(opt), nbd_rep_name(r->type),
            r->length ? ": \"" : "", quoted, r->length ? "\"" : "", hint);
}

static int oldstyle(struct snbd_handle *h)
{
  uint8_t rest[8 + 4 + 124];
  if (h->tls_mode == SNBD_TLS_REQUIRE)
    return hs_broken(h, EPERM, "TLS is required but the server uses the "
                     "oldstyle handshake, which cannot do TLS");
  if (transport_read_full(h->t, rest, sizeof rest) == -1)
    return io_failed(h, "reading the oldstyle greeting");
  struct wire_cursor c = wire_cursor(rest, sizeof rest);
  uint64_t size;
  uint32_t flags;
  wire_get_u64(&c, &size);
  wire_get_u32(&c, &flags);
  h->oldstyle = true;
  if (hs_set_export(h, size, (uint16_t)flags) == -1)
    return hs_broken(h, EPROTO, "%s", get_error());
  return 0;
}

/* Greeting and client flags.  In require mode a server that is not fixed
 * newstyle cannot do STARTTLS, so the session ends here (docs/security.md 21,
 * libnbd CVE-2019-14842). */
static int greeting(struct snbd_handle *h)
{
  uint8_t g[16];
  if (transport_read_full(h->t, g, sizeof g) == -1)
    return io_failed(h, "reading the server's greeting");
  struct wire_cursor c = wire_cursor(g, sizeof g);
  uint64_t magic, version;
  wire_get_u64(&c, &magic);
  wire_get_u64(&c, &version);
  if (magic != NBD_MAGIC)
    return hs_broken(h, EPROTO, "the server's greeting is not NBDMAGIC "
                     "(is this an NBD server?)");
  if (version == NBD_OLD_STYLE_MAGIC)
    return oldstyle(h);
  if (version != NBD_OPTS_MAGIC)
    return hs_broken(h, EPROTO, "unknown handshake version in the greeting");
  uint8_t gf[2];
  if (transport_read_full(h->t, gf, sizeof gf) == -1)
    return io_failed(h, "reading the server's greeting");
  uint16_t gflags = (uint16_t)(gf[0] << 8 | gf[1]);
  h->fixed_newstyle = gflags & NBD_FLAG_FIXED_NEWSTYLE;
  h->no_zeroes = gflags & NBD_FLAG_NO_ZEROES;
  if (h->tls_mode == SNBD_TLS_REQUIRE && !h->fixed_newstyle)
    return hs_broken(h, EPERM, "TLS is required but the server is not "
                     "fixed-newstyle, so it cannot do STARTTLS");
  uint32_t cflags = (h->fixed_newstyle ? NBD_FLAG_C_FIXED_NEWSTYLE : 0) |
                    (h->no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0);
  uint8_t cf[4] = { (uint8_t)(cflags >> 24), (uint8_t)(cflags >> 16),
                    (uint8_t)(cflags >> 8), (uint8_t)cflags };
  if (transport_write_full(h->t, cf, sizeof cf, 0) == -1)
    return io_failed(h, "sending client flags");
  return 0;
}

static int structured_reply(struct snbd_handle *h)
{
  struct nbd_opt_reply r;
  uint8_t buf[MAX_OPT_REPLY];
  if (hs_send_option(h, NBD_OPT_STRUCTURED_REPLY, NULL, 0) == -1 ||
      hs_recv_reply(h, NBD_OPT_STRUCTURED_REPLY, &r, buf, sizeof buf) == -1)
    return -1;
  if (r.type == NBD_REP_ACK && r.length == 0) {
    h->sr = true;
    return 0;
  }
  if (!NBD_REP_IS_ERR(r.type))
    return hs_broken(h, EPROTO, "unexpected %s reply to "
                     "NBD_OPT_STRUCTURED_REPLY", nbd_rep_name(r.type));
  if (r.type == NBD_REP_ERR_TLS_REQD) {
    hs_reply_error(h, NBD_OPT_STRUCTURED_REPLY, &r, buf);
    h->broken = true;
    return -1;
  }
  h->sr = false;    /* an older server: simple replies only */
  return 0;
}

/* NBD_OPT_EXPORT_NAME: the server either answers with the export or hangs
 * up (doc/proto.md), so there is no error message to report. */
static int export_name(struct snbd_handle *h)
{
  uint8_t buf[8 + 2 + 124];
  size_t len = h->no_zeroes ? 10 : sizeof buf;
  if (hs_send_option(h, NBD_OPT_EXPORT_NAME, h->export_name,
                     (uint32_t)strlen(h->export_name)) == -1)
    return -1;
  if (transport_read_full(h->t, buf, len) == -1) {
    if (errno == ECONNRESET)
      return hs_broken(h, ENOENT, "the server closed the connection after "
                       "NBD_OPT_EXPORT_NAME (no export named \"%s\"?)",
                       h->export_name);
    return io_failed(h, "reading the export");
  }
  struct wire_cursor c = wire_cursor(buf, len);
  uint64_t size;
  uint16_t eflags;
  wire_get_u64(&c, &size);
  wire_get_u16(&c, &eflags);
  if (hs_set_export(h, size, eflags) == -1)
    return hs_broken(h, EPROTO, "%s", get_error());
  return 0;
}

int hs_run(struct snbd_handle *h)
{
  if (greeting(h) == -1)
    return -1;
  if (h->oldstyle)
    return xmit_start(h);
  if (!h->fixed_newstyle) {
    if (h->opt_mode)
      return hs_broken(h, ENOTSUP, "the server is not fixed-newstyle, so "
                       "option mode is not possible");
    if (export_name(h) == -1)
      return -1;
    return xmit_start(h);
  }
  if (h->tls_mode != SNBD_TLS_DISABLE && hs_starttls(h) == -1)
    return -1;
  if (h->request_sr && structured_reply(h) == -1)
    return -1;
  if (h->opt_mode) {
    h->state = H_NEGOTIATING;
    return 0;
  }
  return hs_go(h, NBD_OPT_GO);
}

/* Used by NBD_OPT_GO when the server does not know it: allowed only once
 * TLS is up if TLS is required (never EXPORT_NAME in clear text then). */
int hs_export_name_fallback(struct snbd_handle *h)
{
  if (h->tls_mode == SNBD_TLS_REQUIRE && !h->tls_active)
    return hs_broken(h, EPERM, "refusing NBD_OPT_EXPORT_NAME before TLS");
  if (export_name(h) == -1)
    return -1;
  return xmit_start(h);
}

int hs_abort(struct snbd_handle *h)
{
  struct nbd_opt_reply r;
  uint8_t buf[MAX_OPT_REPLY];
  /* The reply is optional (doc/proto.md NBD_OPT_ABORT): a server that
   * just hangs up is fine. */
  if (!h->broken && hs_send_option(h, NBD_OPT_ABORT, NULL, 0) == 0)
    (void)hs_recv_reply(h, NBD_OPT_ABORT, &r, buf, sizeof buf);
  transport_shutdown(h->t);
  clear_error();
  h_set_dead(h, ENOTCONN, "the connection was shut down");
  return 0;
}
