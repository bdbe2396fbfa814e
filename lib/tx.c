/* libsnbd, middle layer: the transmission phase's lifetime.  The
 * handshake driver starts it (the reader thread, reply.c) once the
 * server has accepted an export; the handle (handle.c) ends it with
 * NBD_CMD_DISC or by stopping the reader.  Commands themselves are sent
 * by commands.c. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "wire.h"

int tx_start(struct snbd_handle *h)
{
  sigset_t all, old;
  h->t->deadline = 0;
  transport_readahead(h->t);        /* past STARTTLS: safe to read ahead */
  h->state = H_READY;
  /* Signals belong to the application's threads, not ours. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(&h->reader, NULL, reply_reader, h);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e != 0) {
    h->state = H_CREATED;   /* let h_fail_connection record it */
    return optio_broken(h, e, "cannot start the reader thread: %s",
                        strerror(e));
  }
  h->reader_running = true;
  return 0;
}

/* Stops the reader (caller holds h->lock): it fails what is in flight
 * with err and runs their callbacks before it exits. */
void tx_stop(struct snbd_handle *h, int err)
{
  if (!h->reader_running)
    return;
  if (h->state != H_DEAD)
    h_set_dead(h, err, "the handle was closed");
  shutdown(h->t->fd, SHUT_RDWR);
  h->reader_running = false;
  pthread_mutex_unlock(&h->lock);
  pthread_join(h->reader, NULL);
  pthread_mutex_lock(&h->lock);
}

/* NBD_CMD_DISC, then wait (bounded) for the server to close
 * (doc/proto.md "Terminating the transmission phase").  Caller holds
 * h->lock, nothing is in flight. */
int tx_disconnect(struct snbd_handle *h)
{
  uint8_t req[WIRE_REQUEST_MAX];
  struct nbd_req disc = { .type = NBD_CMD_DISC,
                          .cookie = h->next_wire_cookie++ };
  size_t len = wire_encode_req(req, h->eh, &disc);
  h->state = H_DISCONNECTING;
  pthread_mutex_unlock(&h->lock);
  pthread_mutex_lock(&h->send_lock);
  if (transport_write_full(h->t, req, len, 0) == 0)
    transport_shutdown(h->t);
  pthread_mutex_unlock(&h->send_lock);
  pthread_mutex_lock(&h->lock);
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += 5;
  while (h->state == H_DISCONNECTING &&
         pthread_cond_timedwait(&h->cond, &h->lock, &until) != ETIMEDOUT)
    ;
  tx_stop(h, ENOTCONN);
  return 0;
}
