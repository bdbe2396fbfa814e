/* libsnbd, handshake bottom layer: sending an option and receiving its
 * replies (doc/proto.md "Option haggling"), with the bounds every reply
 * is checked against before it is read, the wording of I/O failures and
 * refusals, and the strings a reply carries.  Every handshake step calls
 * down into this file; it calls only the bottom (state.c). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wire.h"

int optio_broken(struct snbd_handle *h, int err, const char *fmt, ...)
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

int optio_io_failed(struct snbd_handle *h, const char *what)
{
  int e = errno;
  if (e == ECONNRESET || e == EPIPE)
    return optio_broken(h, e, "the server closed the connection while %s",
                        what);
  /* TLS failures (the only EPROTO and EACCES a transport gives) carry
   * their own message: an alert explained, say, where strerror would
   * only say "Protocol error". */
  if ((e == EPROTO || e == EACCES) && get_errno() == e)
    return optio_broken(h, e, "%s: %s", what, error_message());
  return optio_broken(h, e, "%s: %s", what, strerror(e));
}

int optio_send(struct snbd_handle *h, uint32_t opt, const void *data,
               uint32_t len)
{
  uint8_t hdr[sizeof(struct nbd_option)];
  wire_encode_opt_hdr(hdr, opt, len);
  struct iovec iov[2] = {
    { .iov_base = hdr, .iov_len = sizeof hdr },
    { .iov_base = (void *)data, .iov_len = len },
  };
  if (transport_sendv(h->t, iov, len ? 2 : 1, 0) == -1)
    return optio_io_failed(h, "sending an option");
  return 0;
}

int optio_recv(struct snbd_handle *h, uint32_t opt, struct nbd_opt_reply *r,
               uint8_t *buf, size_t cap)
{
  uint8_t hdr[sizeof(struct nbd_fixed_new_option_reply)];
  if (transport_read_full(h->t, hdr, sizeof hdr) == -1)
    return optio_io_failed(h, "reading an option reply");
  if (!wire_decode_opt_reply(hdr, r))
    return optio_broken(h, EPROTO, "bad option reply magic from the server");
  if (r->option != opt)
    return optio_broken(h, EPROTO, "the server answered %s (%u) while %s "
                        "was asked", nbd_opt_name(r->option), r->option,
                        nbd_opt_name(opt));
  if (r->length > cap)
    return optio_broken(h, EPROTO, "the server's %s reply to %s is %u bytes "
                        "long, more than the %zu allowed",
                        nbd_rep_name(r->type), nbd_opt_name(opt), r->length,
                        cap);
  if (r->length && transport_read_full(h->t, buf, r->length) == -1)
    return optio_io_failed(h, "reading an option reply");
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
void optio_refused(struct snbd_handle *h, uint32_t opt,
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

char *optio_string(struct snbd_handle *h, const uint8_t *p, size_t n,
                   const char *what)
{
  if (n > NBD_MAX_STRING || memchr(p, 0, n)) {
    optio_broken(h, EPROTO, "the server sent an invalid %s", what);
    return NULL;
  }
  char *s = malloc(n + 1);
  if (!s) {
    lib_error(errno, "malloc");
    return NULL;
  }
  memcpy(s, p, n);
  s[n] = '\0';
  return s;
}
