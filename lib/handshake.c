/* libsnbd, handshake driver: runs the client side of the handshake
 * (doc/proto.md "Handshake") by calling its steps in order: greeting,
 * STARTTLS, structured replies, metadata contexts and NBD_OPT_GO (or
 * NBD_OPT_EXPORT_NAME for servers without GO), then starts transmission
 * (tx.c).  The option-mode API (snbd_opt_*) drives the same steps one
 * call at a time.  Steps call down (optio.c, info.c), never into each
 * other or back up here. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "wire.h"

/* Metadata contexts, then NBD_OPT_GO or NBD_OPT_INFO; a server that
 * does not know NBD_OPT_GO gets NBD_OPT_EXPORT_NAME instead, but only
 * once TLS is up if TLS is required (never EXPORT_NAME in clear text
 * then).  After GO, transmission starts. */
static int chs_go(struct snbd_handle *h, uint32_t opt)
{
  if (h->sr && h->nr_want_ctx > 0 && meta_set(h) == -1)
    return -1;
  int r = go_run(h, opt);
  /* "if the server has acknowledged a client's request for
   * NBD_OPT_EXTENDED_HEADERS, the server MUST NOT fail NBD_OPT_GO with
   * NBD_REP_ERR_UNSUP", and the client "MUST NOT use NBD_OPT_EXPORT_NAME"
   * then (proto.md "Option types"). */
  if (r == GO_UNSUPPORTED && h->eh)
    return optio_broken(h, EPROTO, "the server refused NBD_OPT_GO as "
                        "unsupported after agreeing to extended headers");
  if (r == GO_UNSUPPORTED) {
    if (h->tls_mode == SNBD_TLS_REQUIRE && !h->tls_active)
      return optio_broken(h, EPERM, "refusing NBD_OPT_EXPORT_NAME before "
                          "TLS");
    r = exportname_run(h);
  }
  if (r == -1 || opt != NBD_OPT_GO)
    return r;
  return tx_start(h);
}

int chs_run(struct snbd_handle *h)
{
  if (greeting_run(h) == -1)
    return -1;
  if (h->oldstyle)
    return tx_start(h);
  if (!h->fixed_newstyle) {
    if (h->opt_mode)
      return optio_broken(h, ENOTSUP, "the server is not fixed-newstyle, "
                          "so option mode is not possible");
    if (exportname_run(h) == -1)
      return -1;
    return tx_start(h);
  }
  if (h->tls_mode != SNBD_TLS_DISABLE && starttls_run(h) == -1)
    return -1;
  /* Extended headers first, structured replies if they were refused. */
  if (h->request_eh && extheaders_run(h) == -1)
    return -1;
  if (h->request_sr && !h->eh && structured_run(h) == -1)
    return -1;
  if (h->opt_mode) {
    h->state = H_NEGOTIATING;
    return 0;
  }
  return chs_go(h, NBD_OPT_GO);
}

int chs_abort(struct snbd_handle *h)
{
  struct nbd_opt_reply r;
  uint8_t buf[MAX_OPT_REPLY];
  /* The reply is optional (doc/proto.md NBD_OPT_ABORT): a server that
   * just hangs up is fine. */
  if (!h->broken && optio_send(h, NBD_OPT_ABORT, NULL, 0) == 0)
    (void)optio_recv(h, NBD_OPT_ABORT, &r, buf, sizeof buf);
  transport_shutdown(h->t);
  clear_error();
  h_set_dead(h, ENOTCONN, "the connection was shut down");
  return 0;
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
  return opt_leave(h, list_run(h, cb, ud));
}

int snbd_opt_list_meta_context(struct snbd_handle *h, snbd_context_cb cb,
                               void *ud)
{
  API();
  if (opt_enter(h) == -1)
    return -1;
  int r = h->sr ? meta_list(h, cb, ud) : -1;
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
  return opt_leave(h, chs_go(h, NBD_OPT_INFO));
}

int snbd_opt_go(struct snbd_handle *h)
{
  API();
  if (opt_enter(h) == -1)
    return -1;
  return opt_leave(h, chs_go(h, NBD_OPT_GO));
}

int snbd_opt_abort(struct snbd_handle *h)
{
  API();
  if (opt_enter(h) == -1)
    return -1;
  return opt_leave(h, chs_abort(h));
}
