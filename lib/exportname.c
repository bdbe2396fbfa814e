/* libsnbd, handshake step: NBD_OPT_EXPORT_NAME, the way into
 * transmission for servers that are not fixed newstyle or do not know
 * NBD_OPT_GO (doc/proto.md "Option types"). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wire.h"

/* NBD_OPT_EXPORT_NAME: the server either answers with the export or hangs
 * up (doc/proto.md), so there is no error message to report. */
int exportname_run(struct snbd_handle *h)
{
  uint8_t buf[sizeof(struct nbd_export_name_reply)];
  size_t len = h->no_zeroes ? offsetof(struct nbd_export_name_reply, zeroes)
                            : sizeof buf;
  struct wire_export e;
  if (optio_send(h, NBD_OPT_EXPORT_NAME, h->export_name,
                 (uint32_t)strlen(h->export_name)) == -1)
    return -1;
  if (transport_read_full(h->t, buf, len) == -1) {
    if (errno == ECONNRESET)
      return optio_broken(h, ENOENT, "the server closed the connection after "
                          "NBD_OPT_EXPORT_NAME (no export named \"%s\"?)",
                          h->export_name);
    return optio_io_failed(h, "reading the export");
  }
  wire_decode_export_name_reply(buf, len, &e);
  if (info_set_export(h, e.size, e.eflags) == -1)
    return optio_broken(h, EPROTO, "%s", get_error());
  return 0;
}
