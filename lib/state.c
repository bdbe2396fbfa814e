/* libsnbd, bottom layer: the handle's state machine and the error
 * convention (the per-thread error, prefixed with the public function the
 * caller called).  Every other file of the library calls down into this
 * one; it calls no other file of the library. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

__thread const char *lib_api;

const char *snbd_get_error(void)
{
  return get_error();
}

int snbd_get_errno(void)
{
  return get_errno();
}

void lib_rewrap(const char *what)
{
  char msg[768];
  int e = get_errno();
  const char *m = get_error();
  const char *colon = strstr(m, ": ");

  /* Common code prefixes its own function name; drop it. */
  if (colon && !memchr(m, ' ', (size_t)(colon - m)))
    m = colon + 2;
  snprintf(msg, sizeof msg, "%s", m);
  lib_error(e ? e : EIO, "%s: %s", what, msg);
}

/* Fails unless the handle is in state want (caller holds h->lock). */
int h_check_state(struct snbd_handle *h, enum hstate want, const char *func)
{
  static const char *const names[] = {
    [H_CREATED] = "not connected", [H_NEGOTIATING] = "negotiating",
    [H_READY] = "connected", [H_DISCONNECTING] = "disconnecting",
    [H_DEAD] = "closed",
  };
  if (h->state == want)
    return 0;
  if (h->state == H_DEAD && h->dead_msg)
    set_error_at(func, h->dead_errno ? h->dead_errno : ENOTCONN,
                 "the connection is closed: %s", h->dead_msg);
  else
    set_error_at(func, h->state == H_CREATED ? ENOTCONN : EINVAL,
                 "the handle is %s, it needs to be %s", names[h->state],
                 names[want]);
  return -1;
}

/* Records why the handle can no longer be used (caller holds h->lock);
 * the first reason wins. */
void h_set_dead(struct snbd_handle *h, int err, const char *msg)
{
  if (!h->dead_msg) {
    h->dead_msg = strdup(msg);
    h->dead_errno = err;
  }
  h->state = H_DEAD;
  pthread_cond_broadcast(&h->cond);
}

void h_fail_connection(struct snbd_handle *h)
{
  h_set_dead(h, get_errno(), get_error());
  if (h->t)
    shutdown(h->t->fd, SHUT_RDWR);
}
