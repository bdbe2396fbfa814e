/* libsnbd, top layer: the handle's life (create, shutdown, close) and its
 * settings.  Shutting down calls the handshake driver (option mode) or
 * the transmission lifetime (tx.c). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "internal.h"

struct snbd_handle *snbd_create(void)
{
  API();
  struct snbd_handle *h = calloc(1, sizeof *h);
  if (!h) {
    lib_error(errno, "calloc");
    return NULL;
  }
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_mutex_init(&h->lock, NULL);
  pthread_mutex_init(&h->send_lock, NULL);
  pthread_cond_init(&h->cond, &ca);
  pthread_condattr_destroy(&ca);
  h->export_name = strdup("");
  if (!h->export_name) {
    lib_error(errno, "strdup");
    free(h);
    return NULL;
  }
  h->tls_verify_peer = true;
  h->tls_resume = true;
  h->request_sr = true;
  h->request_eh = true;
  h->hs_timeout = 60;
  h->child = -1;
  h->next_wire_cookie = 1;
  h->next_op_cookie = 1;
  return h;
}

static void reap_child(struct snbd_handle *h)
{
  if (h->child <= 0)
    return;
  /* The server sees EOF on its stdin once the socket is closed; give it
   * a moment to exit on its own before insisting. */
  for (int i = 0; i < 200; i++) {
    pid_t r = waitpid(h->child, NULL, WNOHANG);
    if (r == h->child || (r == -1 && errno != EINTR))
      goto done;
    usleep(10000);
  }
  kill(h->child, SIGTERM);
  while (waitpid(h->child, NULL, 0) == -1 && errno == EINTR)
    ;
done:
  h->child = -1;
}

void snbd_close(struct snbd_handle *h)
{
  if (!h)
    return;
  API();
  int saved = errno;
  pthread_mutex_lock(&h->lock);
  tx_stop(h, ENOTCONN);
  pthread_mutex_unlock(&h->lock);
  transport_close(h->t);
  h->t = NULL;
  reap_child(h);
  if (h->creds)
    tls_creds_unref(h->creds);
  free(h->export_name);
  free(h->tls_certificates);
  free(h->tls_psk_file);
  free(h->tls_username);
  free(h->tls_hostname);
  free(h->tls_priority);
  for (int i = 0; i < h->nr_want_ctx; i++)
    free(h->want_ctx[i]);
  for (int i = 0; i < h->nr_ctx; i++)
    free(h->ctx[i].name);
  free(h->ctx_export);
  free(h->tcp_host);
  free(h->canonical_name);
  free(h->description);
  free(h->dead_msg);
  pthread_cond_destroy(&h->cond);
  pthread_mutex_destroy(&h->lock);
  pthread_mutex_destroy(&h->send_lock);
  free(h);
  errno = saved;
}

int snbd_shutdown(struct snbd_handle *h)
{
  API();
  pthread_mutex_lock(&h->lock);
  int r = -1;
  if (h->state == H_NEGOTIATING)
    r = chs_abort(h);
  else if (CHECK_STATE(h, H_READY) == 0) {
    while (h->nr_reqs > 0 && h->state == H_READY)
      pthread_cond_wait(&h->cond, &h->lock);
    r = CHECK_STATE(h, H_READY);
    if (r == 0)
      r = tx_disconnect(h);
  }
  pthread_mutex_unlock(&h->lock);
  return r;
}

/* ---- Settings ---- */

static int set_string(struct snbd_handle *h, char **field, const char *value,
                      bool nullable)
{
  CLEANUP_FREE char *copy = NULL;
  if (!value && !nullable) {
    lib_error(EINVAL, "the value must not be NULL");
    return -1;
  }
  if (value && !(copy = strdup(value))) {
    lib_error(errno, "strdup");
    return -1;
  }
  SCOPED_LOCK(&h->lock);
  if (CHECK_STATE(h, H_CREATED) == -1 &&
      !(field == &h->export_name && h->state == H_NEGOTIATING))
    return -1;
  free(*field);
  *field = TAKE(copy);
  return 0;
}

int snbd_set_export_name(struct snbd_handle *h, const char *name)
{
  API();
  if (name && strlen(name) > NBD_MAX_STRING) {
    lib_error(ENAMETOOLONG, "export names are at most %d bytes",
              NBD_MAX_STRING);
    return -1;
  }
  return set_string(h, &h->export_name, name, false);
}

static char *dup_locked(struct snbd_handle *h, const char *s)
{
  char *r = NULL;
  pthread_mutex_lock(&h->lock);
  if (s && !(r = strdup(s)))
    lib_error(errno, "strdup");
  pthread_mutex_unlock(&h->lock);
  return r;
}

char *snbd_get_export_name(struct snbd_handle *h)
{
  API();
  return dup_locked(h, h->export_name);
}

int snbd_set_tls_certificates(struct snbd_handle *h, const char *dir)
{
  API();
  return set_string(h, &h->tls_certificates, dir, true);
}

int snbd_set_tls_psk_file(struct snbd_handle *h, const char *file)
{
  API();
  return set_string(h, &h->tls_psk_file, file, true);
}

int snbd_set_tls_username(struct snbd_handle *h, const char *username)
{
  API();
  return set_string(h, &h->tls_username, username, true);
}

int snbd_set_tls_hostname(struct snbd_handle *h, const char *hostname)
{
  API();
  return set_string(h, &h->tls_hostname, hostname, true);
}

int snbd_set_tls_priority(struct snbd_handle *h, const char *priority)
{
  API();
  return set_string(h, &h->tls_priority, priority, true);
}

/* Boolean and small settings share one shape. */
#define SETTER(fn, type, field, check)                                  \
  int fn(struct snbd_handle *h, type v)                                 \
  {                                                                     \
    API();                                                              \
    if (!(check)) {                                                     \
      lib_error(EINVAL, "invalid value");                               \
      return -1;                                                        \
    }                                                                   \
    pthread_mutex_lock(&h->lock);                                       \
    int r = CHECK_STATE(h, H_CREATED);                                  \
    if (r == 0)                                                         \
      h->field = v;                                                     \
    pthread_mutex_unlock(&h->lock);                                     \
    return r;                                                           \
  }

SETTER(snbd_set_tls, enum snbd_tls_mode, tls_mode,
       v == SNBD_TLS_DISABLE || v == SNBD_TLS_ALLOW || v == SNBD_TLS_REQUIRE)
SETTER(snbd_set_tls_verify_peer, bool, tls_verify_peer, true)
SETTER(snbd_set_tls_session_resumption, bool, tls_resume, true)
SETTER(snbd_set_request_structured_replies, bool, request_sr, true)
SETTER(snbd_set_request_extended_headers, bool, request_eh, true)
SETTER(snbd_set_uri_allow_local_file, bool, allow_local_file, true)
SETTER(snbd_set_handshake_timeout, unsigned, hs_timeout, v < 86400 * 365)
SETTER(snbd_set_request_timeout, unsigned, req_timeout, v < 86400 * 365)
SETTER(snbd_set_opt_mode, bool, opt_mode, true)

int snbd_get_request_extended_headers(struct snbd_handle *h)
{
  API();
  SCOPED_LOCK(&h->lock);
  return h->request_eh;
}

int snbd_get_tls(struct snbd_handle *h)
{
  API();
  pthread_mutex_lock(&h->lock);
  int r = (int)h->tls_mode;
  pthread_mutex_unlock(&h->lock);
  return r;
}

int snbd_add_meta_context(struct snbd_handle *h, const char *name)
{
  API();
  if (!name || !*name || strlen(name) > NBD_MAX_STRING || !strchr(name, ':')) {
    lib_error(EINVAL, "a metadata context is \"namespace:name\", at most "
              "%d bytes", NBD_MAX_STRING);
    return -1;
  }
  CLEANUP_FREE char *copy = strdup(name);
  if (!copy) {
    lib_error(errno, "strdup");
    return -1;
  }
  SCOPED_LOCK(&h->lock);
  if (CHECK_STATE(h, H_CREATED) == -1)
    return -1;
  if (h->nr_want_ctx >= MAX_META_CONTEXTS) {
    lib_error(ENOSPC, "at most %d metadata contexts", MAX_META_CONTEXTS);
    return -1;
  }
  for (int i = 0; i < h->nr_want_ctx; i++)
    if (strcmp(h->want_ctx[i], name) == 0) {
      lib_error(EEXIST, "metadata context %s was already added", name);
      return -1;
    }
  h->want_ctx[h->nr_want_ctx++] = TAKE(copy);
  return 0;
}
