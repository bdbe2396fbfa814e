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
  uint8_t rest[8 + 4 + 124];
  if (h->tls_mode == SNBD_TLS_REQUIRE)
    return optio_broken(h, EPERM, "TLS is required but the server uses the "
                        "oldstyle handshake, which cannot do TLS");
  if (transport_read_full(h->t, rest, sizeof rest) == -1)
    return optio_io_failed(h, "reading the oldstyle greeting");
  struct wire_cursor c = wire_cursor(rest, sizeof rest);
  uint64_t size;
  uint32_t flags;
  wire_get_u64(&c, &size);
  wire_get_u32(&c, &flags);
  h->oldstyle = true;
  if (info_set_export(h, size, (uint16_t)flags) == -1)
    return optio_broken(h, EPROTO, "%s", get_error());
  return 0;
}

/* Greeting and client flags.  In require mode a server that is not fixed
 * newstyle cannot do STARTTLS, so the session ends here (docs/security.md 21,
 * libnbd CVE-2019-14842). */
int greeting_run(struct snbd_handle *h)
{
  uint8_t g[16];
  if (transport_read_full(h->t, g, sizeof g) == -1)
    return optio_io_failed(h, "reading the server's greeting");
  struct wire_cursor c = wire_cursor(g, sizeof g);
  uint64_t magic, version;
  wire_get_u64(&c, &magic);
  wire_get_u64(&c, &version);
  if (magic != NBD_MAGIC)
    return optio_broken(h, EPROTO, "the server's greeting is not NBDMAGIC "
                        "(is this an NBD server?)");
  if (version == NBD_OLD_STYLE_MAGIC)
    return oldstyle(h);
  if (version != NBD_OPTS_MAGIC)
    return optio_broken(h, EPROTO, "unknown handshake version in the "
                        "greeting");
  uint8_t gf[2];
  if (transport_read_full(h->t, gf, sizeof gf) == -1)
    return optio_io_failed(h, "reading the server's greeting");
  uint16_t gflags = (uint16_t)(gf[0] << 8 | gf[1]);
  h->fixed_newstyle = gflags & NBD_FLAG_FIXED_NEWSTYLE;
  h->no_zeroes = gflags & NBD_FLAG_NO_ZEROES;
  if (h->tls_mode == SNBD_TLS_REQUIRE && !h->fixed_newstyle)
    return optio_broken(h, EPERM, "TLS is required but the server is not "
                        "fixed-newstyle, so it cannot do STARTTLS");
  uint32_t cflags = (h->fixed_newstyle ? NBD_FLAG_C_FIXED_NEWSTYLE : 0) |
                    (h->no_zeroes ? NBD_FLAG_C_NO_ZEROES : 0);
  uint8_t cf[4] = { (uint8_t)(cflags >> 24), (uint8_t)(cflags >> 16),
                    (uint8_t)(cflags >> 8), (uint8_t)cflags };
  if (transport_write_full(h->t, cf, sizeof cf, 0) == -1)
    return optio_io_failed(h, "sending client flags");
  return 0;
}
