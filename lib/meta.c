/* libsnbd, handshake step: metadata contexts, NBD_OPT_SET_META_CONTEXT
 * and NBD_OPT_LIST_META_CONTEXT (doc/proto.md "Metadata querying").
 * Each reply is checked for its exact layout. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "internal.h"
#include "wire.h"

/* Builds "u32 len, export name, u32 count, (u32 len, query)*". */
static int name_and_queries(struct snbd_handle *h, struct wire_buf *b,
                            char *const *q, int nq)
{
  wire_put_string(b, h->export_name, strlen(h->export_name));
  wire_put_u32(b, (uint32_t)nq);
  for (int i = 0; i < nq; i++)
    wire_put_string(b, q[i], strlen(q[i]));
  if (b->oom) {
    lib_error(ENOMEM, "building an option");
    return -1;
  }
  return 0;
}

static void meta_forget(struct snbd_handle *h)
{
  for (int i = 0; i < h->nr_ctx; i++)
    free(h->ctx[i].name);
  h->nr_ctx = 0;
  free(h->ctx_export);
  h->ctx_export = NULL;
}

/* One NBD_REP_META_CONTEXT reply to SET_META_CONTEXT: it must name a
 * context we asked for, once, with an id not used before. */
static int add_context(struct snbd_handle *h, const uint8_t *buf, uint32_t len)
{
  uint32_t id;
  struct wire_bytes n;
  if (!wire_decode_rep_meta_context(buf, len, &id, &n))
    return optio_broken(h, EPROTO, "short NBD_REP_META_CONTEXT reply");
  CLEANUP_FREE char *name = optio_string(h, n.p, n.len,
                                         "metadata context name");
  if (!name)
    return -1;
  bool wanted = false;
  for (int i = 0; i < h->nr_want_ctx; i++)
    wanted |= strcmp(h->want_ctx[i], name) == 0;
  for (int i = 0; i < h->nr_ctx; i++)
    if (h->ctx[i].id == id || strcmp(h->ctx[i].name, name) == 0)
      wanted = false;
  if (!wanted || h->nr_ctx >= MAX_META_CONTEXTS) {
    char q[128];
    quote_bytes(q, sizeof q, name, strlen(name));
    return optio_broken(h, EPROTO, "the server selected metadata context "
                        "\"%s\" (id %u), which was not asked for or is a "
                        "duplicate", q, id);
  }
  h->ctx[h->nr_ctx].name = TAKE(name);
  h->ctx[h->nr_ctx].id = id;
  h->nr_ctx++;
  return 0;
}

int meta_set(struct snbd_handle *h)
{
  struct wire_buf b;
  wire_buf_init(&b);
  meta_forget(h);
  int r = name_and_queries(h, &b, h->want_ctx, h->nr_want_ctx);
  if (r == 0)
    r = optio_send(h, NBD_OPT_SET_META_CONTEXT, b.data, (uint32_t)b.len);
  wire_buf_free(&b);
  for (int n = 0; r == 0 && n < OPT_MAX_REPLIES; n++) {
    struct nbd_opt_reply rep;
    uint8_t buf[MAX_OPT_REPLY];
    if (optio_recv(h, NBD_OPT_SET_META_CONTEXT, &rep, buf, sizeof buf))
      return -1;
    if (rep.type == NBD_REP_META_CONTEXT)
      r = add_context(h, buf, rep.length);
    else if (rep.type == NBD_REP_ACK) {
      h->ctx_export = strdup(h->export_name);
      return h->ctx_export ? 0 : optio_broken(h, ENOMEM, "strdup");
    }
    else if (NBD_REP_IS_ERR(rep.type)) {
      meta_forget(h);  /* doc/proto.md: disregard earlier replies */
      return 0;
    }
    else
      return optio_broken(h, EPROTO, "unexpected %s reply to "
                          "NBD_OPT_SET_META_CONTEXT", nbd_rep_name(rep.type));
  }
  return r == 0 ? optio_broken(h, EPROTO, "too many replies") : -1;
}

static int list_meta_entry(struct snbd_handle *h, const uint8_t *buf,
                           uint32_t len, snbd_context_cb cb, void *ud)
{
  uint32_t id;
  struct wire_bytes n;
  if (!wire_decode_rep_meta_context(buf, len, &id, &n))
    return optio_broken(h, EPROTO, "short NBD_REP_META_CONTEXT reply");
  /* The context id is reserved here and must be disregarded. */
  CLEANUP_FREE char *name = optio_string(h, n.p, n.len,
                                         "metadata context name");
  if (!name)
    return -1;
  if (cb && cb(ud, name) < 0)
    return optio_broken(h, ECANCELED, "the context callback failed");
  return 0;
}

/* NBD_OPT_LIST_META_CONTEXT without queries: every context the server
 * offers on the export. */
int meta_list(struct snbd_handle *h, snbd_context_cb cb, void *ud)
{
  struct wire_buf b;
  wire_buf_init(&b);
  int r = name_and_queries(h, &b, NULL, 0);
  if (r == 0)
    r = optio_send(h, NBD_OPT_LIST_META_CONTEXT, b.data, (uint32_t)b.len);
  wire_buf_free(&b);
  for (int n = 0; r == 0 && n < OPT_MAX_REPLIES; n++) {
    struct nbd_opt_reply rep;
    uint8_t buf[MAX_OPT_REPLY];
    if (optio_recv(h, NBD_OPT_LIST_META_CONTEXT, &rep, buf, sizeof buf))
      return -1;
    if (rep.type == NBD_REP_ACK)
      return n;
    if (NBD_REP_IS_ERR(rep.type)) {
      optio_refused(h, NBD_OPT_LIST_META_CONTEXT, &rep, buf);
      return -1;
    }
    if (rep.type != NBD_REP_META_CONTEXT)
      return optio_broken(h, EPROTO, "unexpected %s reply to "
                          "NBD_OPT_LIST_META_CONTEXT", nbd_rep_name(rep.type));
    r = list_meta_entry(h, buf, rep.length, cb, ud);
  }
  return r == 0 ? optio_broken(h, EPROTO, "too many replies") : -1;
}
