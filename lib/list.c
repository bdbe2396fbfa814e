/* libsnbd, handshake step: NBD_OPT_LIST, the exports a server offers
 * (doc/proto.md "Option types"). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "internal.h"
#include "wire.h"

/* NBD_REP_SERVER: u32 name length, name, then a description. */
static int list_entry(struct snbd_handle *h, const uint8_t *buf, uint32_t len,
                      snbd_list_cb cb, void *ud)
{
  struct wire_bytes n, d;
  if (!wire_decode_rep_server(buf, len, &n, &d))
    return optio_broken(h, EPROTO, "invalid NBD_REP_SERVER reply");
  CLEANUP_FREE char *name = optio_string(h, n.p, n.len, "export name");
  if (!name)
    return -1;
  CLEANUP_FREE char *desc = optio_string(h, d.p, d.len, "export description");
  if (!desc)
    return -1;
  return cb && cb(ud, name, desc) < 0 ? -1 : 0;
}

int list_run(struct snbd_handle *h, snbd_list_cb cb, void *ud)
{
  if (optio_send(h, NBD_OPT_LIST, NULL, 0) == -1)
    return -1;
  for (int n = 0; n < OPT_MAX_REPLIES; n++) {
    struct nbd_opt_reply rep;
    uint8_t buf[4 + 2 * NBD_MAX_STRING];
    if (optio_recv(h, NBD_OPT_LIST, &rep, buf, sizeof buf) == -1)
      return -1;
    if (rep.type == NBD_REP_ACK)
      return n;
    if (NBD_REP_IS_ERR(rep.type)) {
      optio_refused(h, NBD_OPT_LIST, &rep, buf);
      return -1;
    }
    if (rep.type != NBD_REP_SERVER)
      return optio_broken(h, EPROTO, "unexpected %s reply to NBD_OPT_LIST",
                          nbd_rep_name(rep.type));
    if (list_entry(h, buf, rep.length, cb, ud) == -1) {
      /* The stream is mid-list: it cannot be used for other options. */
      if (!h->broken)
        optio_broken(h, ECANCELED, "the list callback failed");
      return -1;
    }
  }
  return optio_broken(h, EPROTO, "too many replies");
}
