/* libsnbd: the options that carry an export name (NBD_OPT_GO / INFO,
 * SET_META_CONTEXT, LIST_META_CONTEXT), NBD_OPT_LIST, and the option-mode
 * API (doc/proto.md "Option types").  Each reply is checked for its exact
 * layout; servers may send at most MAX_REPLIES replies to one option. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wire.h"

#define MAX_REPLIES 100000

/* A string from a reply: at most NBD_MAX_STRING bytes and no NUL
 * (doc/proto.md "Conventions"). */
static char *reply_string(struct snbd_handle *h, const uint8_t *p, size_t n,
                          const char *what)
{
  if (n > NBD_MAX_STRING || memchr(p, 0, n)) {
    hs_broken(h, EPROTO, "the server sent an invalid %s", what);
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

static void forget_contexts(struct snbd_handle *h)
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
  if (len < 4)
    return hs_broken(h, EPROTO, "short NBD_REP_META_CONTEXT reply");
  struct wire_cursor c = wire_cursor(buf, len);
  uint32_t id;
  wire_get_u32(&c, &id);
  char *name = reply_string(h, buf + 4, len - 4, "metadata context name");
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
    free(name);
    return hs_broken(h, EPROTO, "the server selected metadata context "
                     "\"%s\" (id %u), which was not asked for or is a "
                     "duplicate", q, id);
  }
  h->ctx[h->nr_ctx].name = name;
  h->ctx[h->nr_ctx].id = id;
  h->nr_ctx++;
  return 0;
}

static int set_meta_context(struct snbd_handle *h)
{
  struct wire_buf b;
  wire_buf_init(&b);
  forget_contexts(h);
  int r = name_and_queries(h, &b, h->want_ctx, h->nr_want_ctx);
  if (r == 0)
    r = hs_send_option(h, NBD_OPT_SET_META_CONTEXT, b.data, (uint32_t)b.len);
  wire_buf_free(&b);
  for (int n = 0; r == 0 && n < MAX_REPLIES; n++) {
    struct nbd_opt_reply rep;
    uint8_t buf[MAX_OPT_REPLY];
    if (hs_recv_reply(h, NBD_OPT_SET_META_CONTEXT, &rep, buf, sizeof buf))
      return -1;
    if (rep.type == NBD_REP_META_CONTEXT)
      r = add_context(h, buf, rep.length);
    else if (rep.type == NBD_REP_ACK) {
      h->ctx_export = strdup(h->export_name);
      return h->ctx_export ? 0 : hs_broken(h, ENOMEM, "strdup");
    }
    else if (NBD_REP_IS_ERR(rep.type)) {
      forget_contexts(h);  /* doc/proto.md: disregard earlier replies */
      return 0;
    }
    else
      return hs_broken(h, EPROTO, "unexpected %s reply to "
                       "NBD_OPT_SET_META_CONTEXT", nbd_rep_name(rep.type));
  }
  return r == 0 ? hs_broken(h, EPROTO, "too many replies") : -1;
}

struct go_state {
  bool got_export, got_bs;
  uint64_t size;
  uint16_t eflags;
  uint32_t bs[3];
};

/* One NBD_REP_INFO: known types must have their exact length. */
static int go_info(struct snbd_handle *h, struct go_state *g,
                   const uint8_t *buf, uint32_t len)
{
  struct wire_cursor c = wire_cursor(buf, len);
  uint16_t type;
  if (!wire_get_u16(&c, &type))
    return hs_broken(h, EPROTO, "short NBD_REP_INFO reply");
  switch (type) {
  case NBD_INFO_EXPORT:
    if (len != 12)
      return hs_broken(h, EPROTO, "NBD_INFO_EXPORT of length %u", len);
    wire_get_u64(&c, &g->size);
    wire_get_u16(&c, &g->eflags);
    g->got_export = true;
    return 0;
  case NBD_INFO_BLOCK_SIZE:
    if (len != 14)
      return hs_broken(h, EPROTO, "NBD_INFO_BLOCK_SIZE of length %u", len);
    for (int i = 0; i < 3; i++)
      wire_get_u32(&c, &g->bs[i]);
    g->got_bs = true;
    return 0;
  case NBD_INFO_NAME:
  case NBD_INFO_DESCRIPTION: {
    char *s = reply_string(h, buf + 2, len - 2u, "export name or description");
    if (!s)
      return -1;
    char **field = type == NBD_INFO_NAME ? &h->canonical_name : &h->description;
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
    return hs_broken(h, EPROTO, "the server accepted %s without sending "
                     "NBD_INFO_EXPORT", nbd_opt_name(opt));
  if (hs_set_export(h, g->size, g->eflags) == -1)
    return hs_broken(h, EPROTO, "%s", get_error());
  h->have_bs = false;
  if (g->got_bs &&
      hs_check_block_sizes(h, g->bs[0], g->bs[1], g->bs[2]) == -1)
    return hs_broken(h, EPROTO, "%s", get_error());
  if (opt == NBD_OPT_GO)
    return xmit_start(h);
  return 0;
}

/* NBD_OPT_GO or NBD_OPT_INFO on h->export_name, asking for block sizes,
 * the canonical name and the description.  A refusal leaves the stream
 * usable (option mode may try another export). */
int hs_go(struct snbd_handle *h, uint32_t opt)
{
  if (h->sr && h->nr_want_ctx > 0 && set_meta_context(h) == -1)
    return -1;
  static const uint16_t infos[] = {
    NBD_INFO_BLOCK_SIZE, NBD_INFO_NAME, NBD_INFO_DESCRIPTION,
  };
  struct wire_buf b;
  wire_buf_init(&b);
  wire_put_string(&b, h->export_name, strlen(h->export_name));
  wire_put_u16(&b, 3);
  for (int i = 0; i < 3; i++)
    wire_put_u16(&b, infos[i]);
  int r = b.oom ? hs_broken(h, ENOMEM, "building an option")
                : hs_send_option(h, opt, b.data, (uint32_t)b.len);
  wire_buf_free(&b);
  free(h->canonical_name);
  free(h->description);
  h->canonical_name = h->description = NULL;
  h->have_info = false;
  struct go_state g = { 0 };
  for (int n = 0; r == 0 && n < MAX_REPLIES; n++) {
    struct nbd_opt_reply rep;
    uint8_t buf[MAX_OPT_REPLY];
    if (hs_recv_reply(h, opt, &rep, buf, sizeof buf) == -1)
      return -1;
    if (rep.type == NBD_REP_INFO)
      r = go_info(h, &g, buf, rep.length);
    else if (rep.type == NBD_REP_ACK)
      return rep.length ? hs_broken(h, EPROTO, "NBD_REP_ACK with a payload")
                        : go_ack(h, &g, opt);
    else if (rep.type == NBD_REP_ERR_UNSUP && opt == NBD_OPT_GO)
      return hs_export_name_fallback(h);
    else if (NBD_REP_IS_ERR(rep.type)) {
      hs_reply_error(h, opt, &rep, buf);
      return -1;
    }
    else
      return hs_broken(h, EPROTO, "unexpected %s reply to %s",
                       nbd_rep_name(rep.type), nbd_opt_name(opt));
  }
  return r == 0 ? hs_broken(h, EPROTO, "too many replies") : -1;
}

/* NBD_REP_SERVER: u32 name length, name, then a description. */
static int list_entry(struct snbd_handle *h, const uint8_t *buf, uint32_t len,
                      snbd_list_cb cb, void *ud)
{
  struct wire_cursor c = wire_cursor(buf, len);
  uint32_t n;
  if (!wire_get_u32(&c, &n) || n > len - 4)
    return hs_broken(h, EPROTO, "invalid NBD_REP_SERVER reply");
  char *name = reply_string(h, buf + 4, n, "export name");
  char *desc = name ? reply_string(h, buf + 4 + n, len - 4 - n,
                                   "export description") : NULL;
  int r = -1;
  if (name && desc)
    r = cb ? cb(ud, name, desc) : 0;
  free(name);
  free(desc);
  return r < 0 ? -1 : 0;
}

int hs_list(struct snbd_handle *h, snbd_list_cb cb, void *ud)
{
  if (hs_send_option(h, NBD_OPT_LIST, NULL, 0) == -1)
    return -1;
  for (int n = 0; n < MAX_REPLIES; n++) {
    struct nbd_opt_reply rep;
    uint8_t buf[4 + 2 * NBD_MAX_STRING];
    if (hs_recv_reply(h, NBD_OPT_LIST, &rep, buf, sizeof buf) == -1)
      return -1;
    if (rep.type == NBD_REP_ACK)
      return n;
    if (NBD_REP_IS_ERR(rep.type)) {
      hs_reply_error(h, NBD_OPT_LIST, &rep, buf);
      return -1;
    }
    if (rep.type != NBD_REP_SERVER)
      return hs_broken(h, EPROTO, "unexpected %s reply to NBD_OPT_LIST",
                       nbd_rep_name(rep.type));
    if (list_entry(h, buf, rep.length, cb, ud) == -1) {
      /* The stream is mid-list: it cannot be used for other options. */
      if (!h->broken)
        hs_broken(h, ECANCELED, "the list callback failed");
      return -1;
    }
  }
  return hs_broken(h, EPROTO, "too many replies");
}

static int list_meta_entry(struct snbd_handle *h, const uint8_t *buf,
                           uint32_t len, snbd_context_cb cb, void *ud)
{
  if (len < 4)
    return hs_broken(h, EPROTO, "short NBD_REP_META_CONTEXT reply");
  /* The context id is reserved here and must be disregarded. */
  char *name = reply_string(h, buf + 4, len - 4, "metadata context name");
  if (!name)
    return -1;
  int r = cb ? cb(ud, name) : 0;
  free(name);
  if (r < 0)
    return hs_broken(h, ECANCELED, "the context callback failed");
  return 0;
}

/* NBD_OPT_LIST_META_CONTEXT without queries: every context the server
 * offers on the export. */
int hs_list_meta(struct snbd_handle *h, snbd_context_cb cb, void *ud)
{
  struct wire_buf b;
  wire_buf_init(&b);
  int r = name_and_queries(h, &b, NULL, 0);
  if (r == 0)
    r = hs_send_option(h, NBD_OPT_LIST_META_CONTEXT, b.data, (uint32_t)b.len);
  wire_buf_free(&b);
  for (int n = 0; r == 0 && n < MAX_REPLIES; n++) {
    struct nbd_opt_reply rep;
    uint8_t buf[MAX_OPT_REPLY];
    if (hs_recv_reply(h, NBD_OPT_LIST_META_CONTEXT, &rep, buf, sizeof buf))
      return -1;
    if (rep.type == NBD_REP_ACK)
      return n;
    if (NBD_REP_IS_ERR(rep.type)) {
      hs_reply_error(h, NBD_OPT_LIST_META_CONTEXT, &rep, buf);
      return -1;
    }
    if (rep.type != NBD_REP_META_CONTEXT)
      return hs_broken(h, EPROTO, "unexpected %s reply to "
                       "NBD_OPT_LIST_META_CONTEXT", nbd_rep_name(rep.type));
    r = list_meta_entry(h, buf, rep.length, cb, ud);
  }
  return r == 0 ? hs_broken(h, EPROTO, "too many replies") : -1;
}

/* ---- Option mode API ---- */

static int opt_enter(struct snbd_handle *h)
{
  pthread_mutex_lock(&h->lock);
  if (CHECK_STATE(h, H_NEGOTIATING) == -1) {
    pthread_mutex_unlock(&h->lock);
    return -1;
  }
  h->t->deadline = h->hs_timeout
                   ? monotonic_ns() + (int64_t)h->hs_timeout * 1000000000
                   : 0;
  return 0;
}

static int opt_leave(struct snbd_handle *h, int r)
{
  if (h->state == H_NEGOTIATING)
    h->t->deadline = 0;
  if (h->broken && h->state != H_DEAD)
    h_fail_connection(h);
  pthread_mutex_unlock(&h->lock);
  return r;
}

int snbd_list_exports(struct snbd_handle *h, snbd_list_cb cb, void *ud)
{
  API();
  if (opt_enter(h) == -1)
    return -1;
  return opt_leave(h, hs_list(h, cb, ud));
}

int snbd_opt_list_meta_context(struct snbd_handle *h, snbd_context_cb cb,
                               void *ud)
{
  API();
  if (opt_enter(h) == -1)
    return -1;
  int r = h->sr ? hs_list_meta(h, cb, ud) : -1;
  if (!h->sr)
    lib_error(ENOTSUP, "metadata contexts need structured replies, which "
              "the server did not agree to");
  return opt_leave(h, r);
}

int snbd_opt_info(struct snbd_handle *h)
{
  API();
  if (opt_enter(h) == -1)
    return -1;
  return opt_leave(h, hs_go(h, NBD_OPT_INFO));
}

int snbd_opt_go(struct snbd_handle *h)
{
  API();
  if (opt_enter(h) == -1)
    return -1;
  return opt_leave(h, hs_go(h, NBD_OPT_GO));
}

int snbd_opt_abort(struct snbd_handle *h)
{
  API();
  if (opt_enter(h) == -1)
    return -1;
  return opt_leave(h, hs_abort(h));
}
