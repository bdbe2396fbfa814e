/* libsnbd, handshake step: NBD_OPT_STRUCTURED_REPLY and
 * NBD_OPT_EXTENDED_HEADERS (doc/proto.md "Option types"), the two ways
 * to replies in chunks.  A refusal means an older server and the next
 * way down (extended headers -> structured replies -> simple replies),
 * except NBD_REP_ERR_TLS_REQD, which ends the session. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wire.h"

/* Sends opt (no data); 1 if the server acknowledged it, 0 if it refused,
 * -1 if the session ends. */
static int ask(struct snbd_handle *h, uint32_t opt)
{
  struct nbd_opt_reply r;
  uint8_t buf[MAX_OPT_REPLY];
  if (optio_send(h, opt, NULL, 0) == -1 ||
      optio_recv(h, opt, &r, buf, sizeof buf) == -1)
    return -1;
  if (r.type == NBD_REP_ACK && r.length == 0)
    return 1;
  if (!NBD_REP_IS_ERR(r.type))
    return optio_broken(h, EPROTO, "unexpected %s reply to %s",
                        nbd_rep_name(r.type), nbd_opt_name(opt));
  if (r.type == NBD_REP_ERR_TLS_REQD) {
    optio_refused(h, opt, &r, buf);
    h->broken = true;
    return -1;
  }
  return 0;
}

int structured_run(struct snbd_handle *h)
{
  int r = ask(h, NBD_OPT_STRUCTURED_REPLY);
  if (r == -1)
    return -1;
  h->sr = r == 1;    /* refused: an older server, simple replies only */
  return 0;
}

/* Extended headers imply structured replies (every reply is a chunk), so
 * sr is set with eh and the caller does not ask for structured replies
 * once eh is on. */
int extheaders_run(struct snbd_handle *h)
{
  int r = ask(h, NBD_OPT_EXTENDED_HEADERS);
  if (r == -1)
    return -1;
  h->eh = r == 1;
  if (h->eh)
    h->sr = true;
  return 0;
}
