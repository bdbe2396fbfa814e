/* libsnbd, handshake step: the server's greeting (doc/proto.md
 * "Newstyle negotiation", "Oldstyle negotiation") and the client flags.
 * An oldstyle server sends the export with its greeting: the handshake
 * is then over. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wire.h"

static int oldstyle(struct snbd_handle *h)
{
  uint8_t rest[WIRE_OLDSTYLE_EXPORT];
  struct wire_export e;
  if (h->tls_mode == SNBD_TLS_REQUIRE)
    return optio_broken(h, EPERM, "TLS is required but the server uses the "
                        "oldstyle handshake, which cannot do TLS");
  if (transport_read_full(h->t, rest, sizeof rest) == -1)
    return optio_io_failed(h, "reading the oldstyle greeting");
  wire_decode_oldstyle_export(rest, sizeof rest, &e);
  h->oldstyle = true;
  if (info_set_export(h, e.size, e.eflags) == -1)
    return optio_broken(h, EPROTO, "%s", get_error());
  return 0;
}

/* Greeting and client flags.  In require mode a server that is not fixed
 * newstyle cannot do STARTTLS, so the session ends here (docs/security.md 21,
 * libnbd CVE-2019-14842). */
int greeting_run(struct snbd_handle *h)
{
  uint8_t g[WIRE_GREETING_MAGICS];
  uint64_t version;
  if (transport_read_full(h->t, g, sizeof g) == -1)
    return optio_io_failed(h, "reading the server's greeting");
  if (!wire_decode_greeting(g, sizeof g, &version))
    return optio_broken(h, EPROTO, "the server's greeting is not NBDMAGIC "
                        "(is this an NBD server?)");
  if (version == NBD_OLD_STYLE_MAGIC)
    return oldstyle(h);
  if (version != NBD_OPTS_MAGIC)
    return optio_broken(h, EPROTO, "unknown handshake version in the "
                        "greeting");
  uint8_t gf[sizeof(struct nbd_new_handshake) - WIRE_GREETING_MAGICS];
  uint16_t gflags;
  if (transport_read_full(h->t, gf, sizeof gf) == -1)
    return optio_io_failed(h, "reading the server's greeting");
  wire_decode_gflags(gf, sizeof gf, &gflags);
  h->fixed_newstyle = gflags & NBD_FLAG_FIXED_NEWSTYLE;
  h->no_zeroes = gflags & NBD_FLAG_NO_ZEROES;
  if (h->tls_mode == SNBD_TLS_REQUIRE && !h->fixed_newstyle)
    return optio_broken(h, EPERM, "TLS is required but the server is not "
                        "fixed-newstyle, so it cannot do STARTTLS");
  uint32_t cflags = (h->fixed_newstyle ? NBD_FLAG_C_FIXED_NEWSTYLE : 0) |
                    (h->no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0);
  uint8_t cf[4];
  wire_encode_client_flags(cf, cflags);
  if (transport_write_full(h->t, cf, sizeof cf, 0) == -1)
    return optio_io_failed(h, "sending client flags");
  return 0;
}
