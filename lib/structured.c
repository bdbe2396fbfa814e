/* libsnbd, handshake step: NBD_OPT_STRUCTURED_REPLY (doc/proto.md
 * "Structured replies").  A refusal means an older server and simple
 * replies, except NBD_REP_ERR_TLS_REQD, which ends the session. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wire.h"

int structured_run(struct snbd_handle *h)
{
  struct nbd_opt_reply r;
  uint8_t buf[MAX_OPT_REPLY];
  if (optio_send(h, NBD_OPT_STRUCTURED_REPLY, NULL, 0) == -1 ||
      optio_recv(h, NBD_OPT_STRUCTURED_REPLY, &r, buf, sizeof buf) == -1)
    return -1;
  if (r.type == NBD_REP_ACK && r.length == 0) {
    h->sr = true;
    return 0;
  }
  if (!NBD_REP_IS_ERR(r.type))
    return optio_broken(h, EPROTO, "unexpected %s reply to "
                        "NBD_OPT_STRUCTURED_REPLY", nbd_rep_name(r.type));
  if (r.type == NBD_REP_ERR_TLS_REQD) {
    optio_refused(h, NBD_OPT_STRUCTURED_REPLY, &r, buf);
    h->broken = true;
    return -1;
  }
  h->sr = false;    /* an older server: simple replies only */
  return 0;
}
