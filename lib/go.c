/* libsnbd, handshake step: NBD_OPT_GO and NBD_OPT_INFO (doc/proto.md
 * "Option types"), with the NBD_REP_INFO replies that describe the
 * export.  Each reply is checked for its exact layout. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wire.h"

struct go_state {
  bool got_export, got_bs;
  struct wire_export export;
  uint32_t bs[3];
};

/* One NBD_REP_INFO: known types must have their exact length. */
static int go_info(struct snbd_handle *h, struct go_state *g,
                   const uint8_t *buf, uint32_t len)
{
  struct wire_info info;
  if (!wire_decode_rep_info(buf, len, &info)) {
    if (len < 2)
      return optio_broken(h, EPROTO, "short NBD_REP_INFO reply");
    return optio_broken(h, EPROTO, "%s of length %u",
                        info.type == NBD_INFO_EXPORT ? "NBD_INFO_EXPORT"
                                                     : "NBD_INFO_BLOCK_SIZE",
                        len);
  }
  switch (info.type) {
  case NBD_INFO_EXPORT:
    g->export = info.export;
    g->got_export = true;
    return 0;
  case NBD_INFO_BLOCK_SIZE:
    g->bs[0] = info.bs_min;
    g->bs[1] = info.bs_pref;
    g->bs[2] = info.bs_max;
    g->got_bs = true;
    return 0;
  case NBD_INFO_NAME:
  case NBD_INFO_DESCRIPTION: {
    char *s = optio_string(h, info.str.p, info.str.len,
                           "export name or description");
    if (!s)
      return -1;
    char **field = info.type == NBD_INFO_NAME ? &h->canonical_name
                                              : &h->description;
    free(*field);
    *field = s;
    return 0;
  }
  default:
    return 0;   /* doc/proto.md: ignore information types not understood */
  }
}

static int go_ack(struct snbd_handle *h, struct go_state *g, uint32_t opt)
{
  if (!g->got_export)
    return optio_broken(h, EPROTO, "the server accepted %s without sending "
                        "NBD_INFO_EXPORT", nbd_opt_name(opt));
  if (info_set_export(h, g->export.size, g->export.eflags) == -1)
    return optio_broken(h, EPROTO, "%s", get_error());
  h->have_bs = false;
  if (g->got_bs &&
      info_set_block_sizes(h, g->bs[0], g->bs[1], g->bs[2]) == -1)
    return optio_broken(h, EPROTO, "%s", get_error());
  return 0;
}

int go_run(struct snbd_handle *h, uint32_t opt)
{
  static const uint16_t infos[] = {
    NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME, NBD_INFO_DESCRIPTION,
  };
  struct wire_buf b;
  wire_buf_init(&b);
  wire_put_string(&b, h->export_name, strlen(h->export_name));
  wire_put_u16(&b, 3);
  for (int i = 0; i < 3; i++)
    wire_put_u16(&b, infos[i]);
  int r = b.oom ? optio_broken(h, ENOMEM, "building an option")
                : optio_send(h, opt, b.data, (uint32_t)b.len);
  wire_buf_free(&b);
  free(h->canonical_name);
  free(h->description);
  h->canonical_name = h->description = NULL;
  h->have_info = false;
  struct go_state g = { 0 };
  for (int n = 0; r == 0 && n < OPT_MAX_REPLIES; n++) {
    struct nbd_opt_reply rep;
    uint8_t buf[MAX_OPT_REPLY];
    if (optio_recv(h, opt, &rep, buf, sizeof buf) == -1)
      return -1;
    if (rep.type == NBD_REP_INFO)
      r = go_info(h, &g, buf, rep.length);
    else if (rep.type == NBD_REP_ACK)
      return rep.length ? optio_broken(h, EPROTO, "NBD_REP_ACK with a payload")
                        : go_ack(h, &g, opt);
    else if (rep.type == NBD_REP_ERR_UNSUP && opt == NBD_OPT_GO)
      return GO_UNSUPPORTED;
    else if (NBD_REP_IS_ERR(rep.type)) {
      optio_refused(h, opt, &rep, buf);
      return -1;
    }
    else
      return optio_broken(h, EPROTO, "unexpected %s reply to %s",
                          nbd_rep_name(rep.type), nbd_opt_name(opt));
  }
  return r == 0 ? optio_broken(h, EPROTO, "too many replies") : -1;
}
