/* snbd-server: the fixed-newstyle handshake.  One handler per NBD_OPT_*,
 * reached through opt_table; the TLS/export yes-no comes from policy.c.
 * Spec: proto.md "Newstyle negotiation", "Option types", "TLS support". */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "log.h"
#include "optparse.h"
#include "wire.h"

#define HS_MAX_OPTIONS   1024        /* options in one handshake */
#define HS_DISCARD_BUDGET (64u * 1024 * 1024) /* bytes thrown away, total */
#define HS_INFO_MAX      (4 + NBD_MAX_STRING + 2 + 2 * 65535)
#define HS_META_MAX      (64 * 1024)

enum { HS_CONTINUE = 0, HS_GO = 1, HS_CLOSE = -1 };

typedef int (*opt_handler)(struct conn *c, uint32_t opt,
                           const uint8_t *data, uint32_t len);

/* ---- replies ---- */

/* The replies to one option are gathered and sent together once it is
 * answered (hs_flush): one send and one wake-up of the client instead of
 * one per reply (NBD_OPT_GO: two or more NBD_REP_INFO, then the ACK). */
static int hs_reply(struct conn *c, uint32_t opt, uint32_t type,
                    const void *payload, size_t len)
{
  uint8_t hdr[sizeof(struct nbd_fixed_new_option_reply)];
  wire_encode_opt_reply(hdr, opt, type, (uint32_t)len);
  wire_put_bytes(&c->hs_out, hdr, sizeof hdr);
  if (len)
    wire_put_bytes(&c->hs_out, payload, len);
  return c->hs_out.oom ? HS_CLOSE : HS_CONTINUE;
}

static int hs_flush(struct conn *c)
{
  int rc = HS_CONTINUE;
  if (c->hs_out.len &&
      transport_write_full(c->t, c->hs_out.data, c->hs_out.len, 0) == -1) {
    log_debug("%s: sending option replies: %m", c->peer);
    rc = HS_CLOSE;
  }
  wire_buf_reset(&c->hs_out);
  return rc;
}

static int hs_ack(struct conn *c, uint32_t opt)
{
  return hs_reply(c, opt, NBD_REP_ACK, NULL, 0);
}

/* An error reply with a human-readable message (never peer bytes
 * unquoted: callers pass them through quote_bytes). */
__attribute__((format(printf, 4, 5)))
static int hs_error(struct conn *c, uint32_t opt, uint32_t type,
                    const char *fmt, ...)
{
  char msg[NBD_MAX_STRING];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0)
    n = 0;
  if ((size_t)n >= sizeof msg)
    n = sizeof msg - 1;
  log_debug("%s: %s: %s: %s", c->peer, nbd_opt_name(opt), nbd_rep_name(type),
            msg);
  return hs_reply(c, opt, type, msg, (size_t)n);
}

static int hs_verdict_error(struct conn *c, uint32_t opt,
                            enum policy_verdict v, const char *what)
{
  static const char *const why[] = {
    [POLICY_TLS_REQD] = "TLS is required: send NBD_OPT_STARTTLS first",
    [POLICY_DENIED] = "not permitted by server policy",
    [POLICY_UNKNOWN] = "not available",
    [POLICY_INVALID] = "invalid in this state",
    [POLICY_UNSUP] = "not supported",
  };
  return hs_error(c, opt, policy_rep_error(v), "%s: %s", what, why[v]);
}

static struct policy_session hs_session(const struct conn *c)
{
  return (struct policy_session){
    .mode = c->srv->tls_mode, .tls = c->tls, .have_creds = c->creds != NULL,
    .peer = c->tls ? &c->tls_peer : NULL, .ext = c->ext,
  };
}

/* The policy's answer about export e (NULL: no such export), counted in
 * the metrics when it is a refusal. */
static enum policy_verdict hs_policy_export(struct conn *c,
                                            const struct policy_session *ps,
                                            const struct export *e)
{
  enum policy_verdict v = policy_export(ps, e);
  if (v == POLICY_DENIED || v == POLICY_TLS_REQD)
    metrics_policy_denied(c, e);
  return v;
}

/* Quote an export name for messages and logs. */
static const char *qname(char *buf, size_t size, const char *name,
                         size_t len)
{
  quote_bytes(buf, size, name, len);
  return buf;
}

/* Who the peer is, for the log: its TLS identity, if any. */
static const char *hs_identity(const struct conn *c, char *buf, size_t size)
{
  const struct tls_peer *p = &c->tls_peer;
  char q[600];
  if (!c->tls)
    snprintf(buf, size, "no TLS");
  else if (p->psk_username[0]) {
    quote_bytes(q, sizeof q, p->psk_username, strlen(p->psk_username));
    snprintf(buf, size, "PSK user %s", q);
  }
  else if (p->dn[0]) {
    quote_bytes(q, sizeof q, p->dn, strlen(p->dn));
    snprintf(buf, size, "certificate %s", q);
  }
  else
    snprintf(buf, size, p->has_cert ? "TLS, verified client certificate"
                                    : "TLS, no client certificate");
  return buf;
}

/* A refused export, in one line an operator can act on: peer address,
 * TLS identity, option, export and why. */
static void hs_log_refusal(const struct conn *c, uint32_t opt,
                           const char *name, size_t len,
                           const struct policy_session *ps,
                           const struct export *e, enum policy_verdict v)
{
  char id[700], q[256], label[300];
  if (len == 0)
    snprintf(label, sizeof label, "(default)");
  else
    snprintf(label, sizeof label, "\"%s\"", qname(q, sizeof q, name, len));
  log_info("%s (%s): %s of export %s refused: %s", c->peer,
           hs_identity(c, id, sizeof id), nbd_opt_name(opt), label,
           policy_reason(ps, e, v));
}

/* Find export `name` and ask the policy; on refusal send the error and
 * return NULL with *rc set. */
static const struct export *hs_lookup(struct conn *c, uint32_t opt,
                                      const char *name, uint32_t len,
                                      int *rc)
{
  char q[256];
  const struct export *e = export_find(c->table, name, len);
  struct policy_session ps = hs_session(c);
  enum policy_verdict v = hs_policy_export(c, &ps, e);
  if (v != POLICY_OK)
    hs_log_refusal(c, opt, name, len, &ps, e, v);
  /* SELECTIVETLS: TLS_REQD only ever answers INFO and GO (proto.md
   * "SELECTIVETLS mode"); other options naming a TLS-only or unknown
   * export are refused by policy instead, and then both answered as
   * unknown. */
  if (v == POLICY_TLS_REQD && opt != NBD_OPT_INFO && opt != NBD_OPT_GO)
    v = POLICY_DENIED;
  if (v != POLICY_OK) {
    char what[300];
    snprintf(what, sizeof what, "export \"%s\"", qname(q, sizeof q, name, len));
    *rc = hs_verdict_error(c, opt, policy_export_answer(v), what);
    return NULL;
  }
  return e;
}

/* ---- handlers ---- */

static int send_export_info(struct conn *c, uint32_t opt,
                            const struct export *e, uint16_t eflags,
                            bool want_name, bool want_desc)
{
  uint8_t info_export[sizeof(struct nbd_info_export)];
  uint8_t info_block[sizeof(struct nbd_info_block_size)];
  struct wire_buf b;
  wire_buf_init(&b);
  wire_encode_info_export(info_export, e->be->size, eflags);
  int rc = hs_reply(c, opt, NBD_REP_INFO, info_export, sizeof info_export);
  if (rc == HS_CONTINUE && want_name) {
    wire_put_info_text(&b, NBD_INFO_NAME, e->name, strlen(e->name));
    rc = hs_reply(c, opt, NBD_REP_INFO, b.data, b.len);
  }
  if (rc == HS_CONTINUE && want_desc && e->description) {
    wire_buf_reset(&b);
    wire_put_info_text(&b, NBD_INFO_DESCRIPTION, e->description,
                       strlen(e->description));
    rc = hs_reply(c, opt, NBD_REP_INFO, b.data, b.len);
  }
  if (rc == HS_CONTINUE) {
    /* Sent whether asked or not (allowed: "MAY send information requests
     * back which are not explicitly requested"): our maximum is not the
     * default "unlimited".  Minimum 1: the backends do any alignment. */
    uint32_t pref = e->be->block_pref > 4096 ? e->be->block_pref : 4096;
    wire_encode_info_block_size(info_block, 1, pref, NBD_MAX_PAYLOAD);
    rc = hs_reply(c, opt, NBD_REP_INFO, info_block, sizeof info_block);
  }
  if (b.oom)
    rc = HS_CLOSE;
  wire_buf_free(&b);
  return rc;
}

/* Whether BLOCK_STATUS may be used on export e: a context was selected
 * for it, after structured replies or extended headers. */
static bool hs_meta_active(const struct conn *c, const struct export *e)
{
  return (c->structured || c->ext) && c->meta_base_allocation &&
         c->meta_export == e;
}

/* The transmission flags this session gets for export e.  The payload
 * form of BLOCK_STATUS only with extended headers ("MUST NOT advertise
 * this bit unless ...") and a context selected ("SHOULD NOT ... if the
 * client does not negotiate metacontexts"): proto.md "Transmission
 * flags". */
static uint16_t hs_eflags(const struct conn *c, const struct export *e)
{
  uint16_t f = export_eflags(e, c->structured || c->ext);
  if (c->ext && hs_meta_active(c, e))
    f |= NBD_FLAG_BLOCK_STATUS_PAYLOAD;
  return f;
}

/* Transmission is about to start on export e. */
static void hs_choose(struct conn *c, const struct export *e)
{
  c->exp = e;
  c->eflags = hs_eflags(c, e);
  c->meta_active = hs_meta_active(c, e);
  atomic_store(&c->chosen, true);
}

static int opt_info_go(struct conn *c, uint32_t opt, const uint8_t *data,
                       uint32_t len)
{
  struct opt_info_req req;
  const char *why;
  int rc = HS_CONTINUE;

  if (optparse_info(data, len, &req, &why) == -1)
    return hs_error(c, opt, NBD_REP_ERR_INVALID, "%s", why);
  const struct export *e = hs_lookup(c, opt, req.name, req.namelen, &rc);
  if (!e)
    return rc;
  uint16_t eflags = hs_eflags(c, e);
  rc = send_export_info(c, opt, e, eflags, req.want_name, req.want_desc);
  if (rc == HS_CONTINUE)
    rc = hs_ack(c, opt);
  if (rc == HS_CONTINUE && opt == NBD_OPT_GO) {
    hs_choose(c, e);
    return HS_GO;
  }
  return rc;
}

static int opt_export_name(struct conn *c, uint32_t opt, const uint8_t *data,
                           uint32_t len)
{
  const char *name = (const char *)data;
  const struct export *e = optparse_has_nul(name, len) ? NULL
                           : export_find(c->table, name, len);
  struct policy_session ps = hs_session(c);
  enum policy_verdict v = hs_policy_export(c, &ps, e);
  (void)opt;
  /* NBD_OPT_EXPORT_NAME cannot be answered with an error: the spec says
   * the server MUST terminate the session. */
  if (v != POLICY_OK) {
    hs_log_refusal(c, opt, name, len, &ps, e, v);
    return HS_CLOSE;
  }
  hs_choose(c, e);
  uint8_t reply[sizeof(struct nbd_export_name_reply)];
  size_t n = wire_encode_export_name_reply(reply, e->be->size, c->eflags,
                                           c->no_zeroes);
  return transport_write_full(c->t, reply, n, 0) == -1 ? HS_CLOSE : HS_GO;
}

static int opt_list(struct conn *c, uint32_t opt, const uint8_t *data,
                    uint32_t len)
{
  struct policy_session ps = hs_session(c);
  struct wire_buf b;
  int rc = HS_CONTINUE;
  (void)data;
  (void)len;
  wire_buf_init(&b);
  for (size_t i = 0; i < c->table->n && rc == HS_CONTINUE; i++) {
    const struct export *e = &c->table->v[i];
    /* Exports a client may not use are not listed (docs/security.md 8). */
    if (policy_export(&ps, e) != POLICY_OK)
      continue;
    wire_buf_reset(&b);
    wire_put_rep_server(&b, e->name, strlen(e->name), e->description,
                        e->description ? strlen(e->description) : 0);
    rc = b.oom ? HS_CLOSE : hs_reply(c, opt, NBD_REP_SERVER, b.data, b.len);
  }
  wire_buf_free(&b);
  return rc == HS_CONTINUE ? hs_ack(c, opt) : rc;
}

static int opt_structured_reply(struct conn *c, uint32_t opt,
                                const uint8_t *data, uint32_t len)
{
  (void)data;
  (void)len;
  c->structured = true;
  return hs_ack(c, opt);
}

/* NBD_OPT_EXTENDED_HEADERS: 32-byte requests and replies from GO on
 * (proto.md "Extended reply chunk message"); the policy refused it where
 * it may not be answered (FORCEDTLS before TLS), and the table refuses
 * it with data (ERR_INVALID, the data consumed). */
static int opt_extended_headers(struct conn *c, uint32_t opt,
                                const uint8_t *data, uint32_t len)
{
  (void)data;
  (void)len;
  c->ext = true;
  return hs_ack(c, opt);
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: the only
 * context is base:allocation (proto.md "The base: metadata namespace"). */
static int opt_meta_context(struct conn *c, uint32_t opt, const uint8_t *data,
                            uint32_t len)
{
  struct opt_meta_req req;
  const char *why;
  bool set = opt == NBD_OPT_SET_META_CONTEXT;
  int rc = HS_CONTINUE;

  if (set) {     /* "replaces all previously-set contexts, even on failure" */
    c->meta_base_allocation = false;
    c->meta_export = NULL;
  }
  if (optparse_meta(data, len, &req, &why) == -1)
    return hs_error(c, opt, NBD_REP_ERR_INVALID, "%s", why);
  if (set && !c->structured && !c->ext)
    return hs_error(c, opt, NBD_REP_ERR_INVALID,
                    "structured replies or extended headers must be "
                    "negotiated first");
  const struct export *e = hs_lookup(c, opt, req.name, req.namelen, &rc);
  if (!e)
    return rc;
  /* LIST: no queries lists everything, and "base:" is a wildcard; SET
   * ignores "base:" (proto.md "The base: metadata namespace"). */
  bool base_alloc = req.base_allocation ||
                    (!set && (req.nqueries == 0 || req.base_wildcard));
  if (base_alloc) {
    struct wire_buf b;
    wire_buf_init(&b);
    /* LIST: the ID is reserved, zero; SET: base:allocation is 1. */
    wire_put_rep_meta_context(&b, set ? 1 : 0, NBD_META_BASE_ALLOCATION,
                              strlen(NBD_META_BASE_ALLOCATION));
    rc = b.oom ? HS_CLOSE : hs_reply(c, opt, NBD_REP_META_CONTEXT,
                                     b.data, b.len);
    wire_buf_free(&b);
  }
  if (set) {
    c->meta_base_allocation = base_alloc;
    c->meta_export = e;
  }
  return rc == HS_CONTINUE ? hs_ack(c, opt) : rc;
}

static int opt_starttls(struct conn *c, uint32_t opt, const uint8_t *data,
                        uint32_t len)
{
  (void)data;
  (void)len;
  if (hs_ack(c, opt) != HS_CONTINUE || hs_flush(c) != HS_CONTINUE)
    return HS_CLOSE;
  /* The plain transport reads nothing ahead, so whatever the client sent
   * after the STARTTLS option is still in the socket and can only be read
   * by GnuTLS as (invalid) TLS records: plain-text injection is never
   * parsed as NBD (CVE-2021-3716). */
  struct tls_peer peer = { .want_names = log_verbose() };
  for (size_t i = 0; i < c->table->n && !peer.want_names; i++)
    peer.want_names = policy_needs_cert_names(c->table->v[i].allow);
  int64_t t0 = metrics_clock();
  struct transport *t = tls_server_handshake(c->creds, c->t, &peer);
  metrics_tls_handshake(c, t0, t != NULL);
  if (!t) {
    log_info("%s: TLS handshake failed: %s", c->peer, error_message());
    return HS_CLOSE;
  }
  c->t = t;
  c->tls = true;
  c->tls_peer = peer;
  conn_progress(c);
  /* Forget all negotiated state (proto.md NBD_OPT_STARTTLS). */
  c->structured = false;
  c->ext = false;
  c->meta_base_allocation = false;
  c->meta_export = NULL;
  c->exp = NULL;
  log_debug("%s: TLS %s %s %s%s%s%s%s%s", c->peer, peer.version,
            peer.cipher, peer.kx, peer.cn[0] ? " cn=" : "", peer.cn,
            peer.psk_username[0] ? " psk:" : "", peer.psk_username,
            peer.resumed ? " (resumed session)" : "");
  return HS_CONTINUE;
}

static const struct opt_entry {
  uint32_t opt;
  uint32_t max_len;        /* longer payloads are discarded and refused */
  uint32_t too_long;       /* ... with this error (meta contexts: TOO_BIG) */
  opt_handler fn;
} opt_table[] = {
  { NBD_OPT_EXPORT_NAME, NBD_MAX_STRING, NBD_REP_ERR_INVALID,
    opt_export_name },
  { NBD_OPT_LIST, 0, NBD_REP_ERR_INVALID, opt_list },
  { NBD_OPT_STARTTLS, 0, NBD_REP_ERR_INVALID, opt_starttls },
  { NBD_OPT_INFO, HS_INFO_MAX, NBD_REP_ERR_INVALID, opt_info_go },
  { NBD_OPT_GO, HS_INFO_MAX, NBD_REP_ERR_INVALID, opt_info_go },
  { NBD_OPT_STRUCTURED_REPLY, 0, NBD_REP_ERR_INVALID, opt_structured_reply },
  { NBD_OPT_EXTENDED_HEADERS, 0, NBD_REP_ERR_INVALID, opt_extended_headers },
  { NBD_OPT_LIST_META_CONTEXT, HS_META_MAX, NBD_REP_ERR_TOO_BIG,
    opt_meta_context },
  { NBD_OPT_SET_META_CONTEXT, HS_META_MAX, NBD_REP_ERR_TOO_BIG,
    opt_meta_context },
};

static const struct opt_entry *opt_lookup(uint32_t opt)
{
  for (size_t i = 0; i < sizeof opt_table / sizeof opt_table[0]; i++)
    if (opt_table[i].opt == opt)
      return &opt_table[i];
  return NULL;
}

/* Throw away an option's payload, within the handshake's budget. */
static int hs_discard(struct conn *c, uint32_t len)
{
  if (len > HS_DISCARD_BUDGET - c->discarded) {
    log_info("%s: client sent more than %u bytes of refused options; "
             "closing", c->peer, HS_DISCARD_BUDGET);
    return HS_CLOSE;
  }
  c->discarded += len;
  return transport_discard(c->t, len) == -1 ? HS_CLOSE : HS_CONTINUE;
}

/* Everything that is refused before the handler runs: payload consumed so
 * the stream stays in step (docs/security.md 4), then one error reply. */
static int hs_refuse(struct conn *c, uint32_t opt, uint32_t len,
                     uint32_t type, const char *msg)
{
  if (opt == NBD_OPT_EXPORT_NAME) {
    log_info("%s: NBD_OPT_EXPORT_NAME refused (%s): %s; closing", c->peer,
             nbd_rep_name(type), msg);
    return HS_CLOSE;
  }
  if (hs_discard(c, len) != HS_CONTINUE)
    return HS_CLOSE;
  return hs_error(c, opt, type, "%s: %s", nbd_opt_name(opt), msg);
}

static int hs_dispatch(struct conn *c, const struct nbd_opt_hdr *hp);

static int hs_option(struct conn *c)
{
  uint8_t hdr[sizeof(struct nbd_option)];
  struct nbd_opt_hdr h;

  if (transport_read_msg(c->t, hdr, sizeof hdr) == -1) {
    if (errno == ECANCELED && !c->srv->shutting_down)
      return HS_CLOSE;
    if (errno == ECANCELED) {
      /* Shutdown began: keep answering for a moment, with ERR_SHUTDOWN. */
      c->t->wake_fd = -1;
      c->t->deadline = monotonic_ns() + 2000000000LL;
      return HS_CONTINUE;
    }
    log_debug("%s: handshake: %s", c->peer,
              errno == ETIMEDOUT ? "deadline passed" : strerror(errno));
    if (errno == ETIMEDOUT && !c->srv->shutting_down)
      log_info("%s: handshake not finished in %d s; closing", c->peer,
               c->srv->handshake_timeout);
    return HS_CLOSE;
  }
  if (!wire_decode_opt_hdr(hdr, &h)) {
    log_info("%s: bad option magic; closing", c->peer);
    return HS_CLOSE;
  }
  conn_progress(c);
  /* Once an option has begun, shutdown does not interrupt it: its payload
   * is read whole and it gets its reply. */
  int wake = c->t->wake_fd;
  c->t->wake_fd = -1;
  int rc = hs_dispatch(c, &h);
  if (hs_flush(c) != HS_CONTINUE)
    rc = HS_CLOSE;
  c->t->wake_fd = wake;     /* c->t may be the new TLS transport */
  return rc;
}

static int hs_dispatch(struct conn *c, const struct nbd_opt_hdr *hp)
{
  struct nbd_opt_hdr h = *hp;
  if (++c->noptions > HS_MAX_OPTIONS) {
    log_info("%s: more than %d options; closing", c->peer, HS_MAX_OPTIONS);
    return HS_CLOSE;
  }
  log_debug("%s: %s (%u), length %u", c->peer, nbd_opt_name(h.option),
            h.option, h.length);
  if (!c->fixed && h.option != NBD_OPT_EXPORT_NAME) {
    /* Non-fixed newstyle: EXPORT_NAME is the only valid option. */
    log_info("%s: option %u from a non-fixed-newstyle client; closing",
             c->peer, h.option);
    return HS_CLOSE;
  }
  if (h.option == NBD_OPT_ABORT) {
    /* "SHOULD ignore any data"; reply ACK, then close either way. */
    if (hs_discard(c, h.length) == HS_CONTINUE)
      hs_ack(c, h.option);
    return HS_CLOSE;
  }
  const struct opt_entry *ent = opt_lookup(h.option);
  struct policy_session ps = hs_session(c);
  enum policy_verdict v = policy_option(&ps, h.option, ent != NULL);
  if (v != POLICY_OK) {
    if (v == POLICY_TLS_REQD || v == POLICY_DENIED)
      metrics_policy_denied(c, NULL);
    static const char *const why[] = {
      [POLICY_TLS_REQD] = "TLS is required: send NBD_OPT_STARTTLS first",
      [POLICY_DENIED] = "TLS is not enabled on this server",
      [POLICY_INVALID] = "TLS is already active",
      [POLICY_UNKNOWN] = "unknown", [POLICY_UNSUP] = "unsupported",
      [POLICY_EXT_HEADER_REQD] = "extended headers are already negotiated",
    };
    if (v == POLICY_TLS_REQD && !c->tls_reqd_logged) {
      c->tls_reqd_logged = true;   /* once: a client tries several */
      log_info("%s (no TLS): %s refused: TLS is required and the client "
               "did not start it", c->peer, nbd_opt_name(h.option));
    }
    const char *msg = v == POLICY_INVALID && h.option != NBD_OPT_STARTTLS
                      ? "not valid after NBD_OPT_EXTENDED_HEADERS" : why[v];
    return hs_refuse(c, h.option, h.length, policy_rep_error(v), msg);
  }
  if (c->srv->shutting_down)
    return hs_refuse(c, h.option, h.length, NBD_REP_ERR_SHUTDOWN,
                     "the server is shutting down");
  if (!ent)
    return hs_refuse(c, h.option, h.length, NBD_REP_ERR_UNSUP,
                     "option not supported");
  if (h.length > 0 && ent->max_len == 0)
    return hs_refuse(c, h.option, h.length, NBD_REP_ERR_INVALID,
                     "this option takes no data");
  if (h.length > ent->max_len)
    return hs_refuse(c, h.option, h.length, ent->too_long,
                     "option data too long");
  uint8_t *data = malloc(h.length + 1);    /* +1: never malloc(0) */
  if (!data)
    return HS_CLOSE;
  int rc = transport_read_full(c->t, data, h.length) == -1 ? HS_CLOSE
           : ent->fn(c, h.option, data, h.length);
  free(data);
  return rc;
}

/* The fixed-newstyle greeting every connection gets (proto.md "Newstyle
 * negotiation"). */
static void encode_greeting(uint8_t out[sizeof(struct nbd_new_handshake)])
{
  wire_encode_greeting(out, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
}

void srv_hs_greet(struct conn *c)
{
  uint8_t greeting[sizeof(struct nbd_new_handshake)];
  struct iovec v = { .iov_base = greeting, .iov_len = sizeof greeting };
  encode_greeting(greeting);
  ssize_t n = transport_can_try_send(c->t) ? transport_try_sendv(c->t, &v, 1)
              : 0;
  c->greeted = n > 0 ? (size_t)n : 0;
}

int srv_hs_run(struct conn *c)
{
  uint8_t greeting[sizeof(struct nbd_new_handshake)], cflags_be[4];
  uint32_t cflags;

  encode_greeting(greeting);
  if ((c->greeted < sizeof greeting &&
       transport_write_full(c->t, greeting + c->greeted,
                            sizeof greeting - c->greeted, 0) == -1) ||
      transport_read_msg(c->t, cflags_be, sizeof cflags_be) == -1) {
    if (errno == ETIMEDOUT)
      log_info("%s: no client flags within %d s; closing", c->peer,
               c->srv->handshake_timeout);
    return -1;
  }
  if (!wire_decode_client_flags(cflags_be, &cflags)) {
    log_info("%s: unknown client flags 0x%x; closing", c->peer, cflags);
    return -1;
  }
  c->fixed = cflags & NBD_FLAG_C_FIXED_NEWSTYLE;
  c->no_zeroes = cflags & NBD_FLAG_C_NO_ZEROES;
  conn_progress(c);
  int rc;
  do
    rc = hs_option(c);
  while (rc == HS_CONTINUE);
  wire_buf_free(&c->hs_out);
  return rc == HS_GO ? 0 : -1;
}
