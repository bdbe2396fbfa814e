/* snbd: the plain (fd) transport and helpers over any transport. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "transport.h"

bool sockaddr_is_local(const struct sockaddr_storage *ss)
{
  if (ss->ss_family == AF_UNIX)
    return true;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
           (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
            in6->sin6_addr.s6_addr[12] == 127);
  }
  return false;
}

static bool same_host(const struct sockaddr_storage *a,
                      const struct sockaddr_storage *b)
{
  if (a->ss_family != b->ss_family)
    return false;
  if (a->ss_family == AF_INET)
    return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
           ((const struct sockaddr_in *)b)->sin_addr.s_addr;
  return a->ss_family == AF_INET6 &&
         IN6_ARE_ADDR_EQUAL(&((const struct sockaddr_in6 *)a)->sin6_addr,
                            &((const struct sockaddr_in6 *)b)->sin6_addr);
}

/* On loopback, data a socket holds unsent goes out when the peer's ACKs
 * come in, on the peer's CPU, which then runs both ends of the stack.
 * Holding at most one 64 KiB segment (loopback's GSO size) unsent makes
 * the sender push its own data.  A remote peer's ACKs arrive on the NIC's
 * interrupt, so its sockets keep the default. */
bool tcp_tune_for_peer(int fd, const struct sockaddr_storage *peer)
{
  struct sockaddr_storage got, me;
  socklen_t gl = sizeof got, ml = sizeof me;
  if (!peer) {
    if (getpeername(fd, (struct sockaddr *)&got, &gl) == -1)
      return false;
    peer = &got;
  }
  if (peer->ss_family != AF_INET && peer->ss_family != AF_INET6)
    return false;
  if (!sockaddr_is_local(peer) &&
      (getsockname(fd, (struct sockaddr *)&me, &ml) == -1 ||
       !same_host(peer, &me)))
    return false;
  int lowat = 64 * 1024;
  setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
  return true;
}

int64_t monotonic_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int transport_wait(struct transport *t, short events)
{
  /* The wake fd interrupts waiting to read, never a send: replies that are
   * on their way at shutdown must get out whole. */
  bool wake = t->wake_fd >= 0 && (events & POLLIN);
  for (;;) {
    struct pollfd p[2] = {
      { .fd = t->fd, .events = events },
      { .fd = t->wake_fd, .events = POLLIN },
    };
    int timeout = -1;
    if (t->deadline) {
      int64_t left = t->deadline - monotonic_ns();
      if (left <= 0) {
        errno = ETIMEDOUT;
        return -1;
      }
      timeout = (int)((left + 999999) / 1000000);
    }
    int r = poll(p, wake ? 2 : 1, timeout);
    if (r < 0) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (wake && (p[1].revents & POLLIN)) {
      errno = ECANCELED;
      return -1;
    }
    if (p[0].revents)
      return 0;
    /* r == 0: timeout, re-checked at the top */
  }
}

/* Without a deadline or wake fd, block in the syscall itself; otherwise
 * never block in it, and wait with poll so neither can be missed. */
static bool needs_poll(const struct transport *t)
{
  return t->deadline != 0 || t->wake_fd >= 0;
}

/* Read-ahead, off until transport_readahead(): during the handshake
 * nothing may be read past what was asked for, as bytes after
 * NBD_OPT_STARTTLS must only ever reach GnuTLS. */
#define READAHEAD_SIZE (16 * 1024)
struct plain {
  uint8_t *buf;           /* NULL: no read-ahead */
  size_t pos, len;
  bool nonblock;          /* O_NONBLOCK set (for sendfile without block) */
};

static ssize_t plain_recv_fd(struct transport *t, void *buf, size_t len)
{
  for (;;) {
    /* A wake fd is polled first, so it is never missed; with only a
     * deadline, data already there is taken without a poll. */
    if (t->wake_fd >= 0 && transport_wait(t, POLLIN) == -1)
      return -1;
    if (t->deadline && monotonic_ns() >= t->deadline) {
      errno = ETIMEDOUT;
      return -1;
    }
    ssize_t r = recv(t->fd, buf, len, needs_poll(t) ? MSG_DONTWAIT : 0);
    if (r >= 0)
      return r;
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN || transport_wait(t, POLLIN) == -1)
      return -1;
  }
}

static ssize_t plain_recv(struct transport *t, void *buf, size_t len)
{
  struct plain *p = t->priv;
  if (!p->buf || len >= READAHEAD_SIZE) {
    if (!p->buf || p->pos == p->len)
      return plain_recv_fd(t, buf, len);
  }
  if (p->pos == p->len) {
    /* Small read, buffer empty: fetch what is there, up to 16 KiB, so
     * pipelined request headers cost one recv between them. */
    ssize_t r = plain_recv_fd(t, p->buf, READAHEAD_SIZE);
    if (r <= 0)
      return r;
    p->pos = 0;
    p->len = (size_t)r;
  }
  size_t n = p->len - p->pos < len ? p->len - p->pos : len;
  memcpy(buf, p->buf + p->pos, n);
  p->pos += n;
  return (ssize_t)n;
}

static int plain_sendv(struct transport *t, const struct iovec *iov,
                       int iovcnt, int more)
{
  struct iovec local[64];
  int n = iovcnt < 64 ? iovcnt : 64;

  if (iovcnt > 64) {
    /* Rare: split into batches of 64. */
    for (int i = 0; i < iovcnt; i += 64) {
      int c = iovcnt - i < 64 ? iovcnt - i : 64;
      if (plain_sendv(t, iov + i, c, more || i + c < iovcnt) == -1)
        return -1;
    }
    return 0;
  }
  for (int i = 0; i < n; i++)
    local[i] = iov[i];
  struct iovec *v = local;
  while (n > 0) {
    struct msghdr m = { .msg_iov = v, .msg_iovlen = (size_t)n };
    ssize_t w = sendmsg(t->fd, &m, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN) {
        if (transport_wait(t, POLLOUT) == -1)
          return -1;
        continue;
      }
      return -1;
    }
    while (n > 0 && (size_t)w >= v->iov_len) {
      w -= (ssize_t)v->iov_len;
      v++;
      n--;
    }
    if (n > 0) {
      v->iov_base = (char *)v->iov_base + w;
      v->iov_len -= (size_t)w;
    }
  }
  return 0;
}

static ssize_t plain_try_sendv(struct transport *t, const struct iovec *iov,
                               int iovcnt)
{
  struct msghdr m = { .msg_iov = (struct iovec *)iov,
                      .msg_iovlen = (size_t)iovcnt };
  for (;;) {
    ssize_t w = sendmsg(t->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w >= 0)
      return w;
    if (errno == EINTR)
      continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
  }
}

/* sendfile has no MSG_DONTWAIT: a send that must not block needs the
 * socket non-blocking, which it then stays (every plain op waits with
 * poll on EAGAIN). */
static ssize_t plain_sendfile(struct transport *t, int fd, uint64_t off,
                              size_t len, bool block)
{
  struct plain *p = t->priv;
  size_t done = 0;
  if (!block && !p->nonblock) {
    int fl = fcntl(t->fd, F_GETFL);
    if (fl == -1 || fcntl(t->fd, F_SETFL, fl | O_NONBLOCK) == -1)
      return -1;
    p->nonblock = true;
  }
  while (done < len) {
    off_t o = (off_t)(off + done);
    ssize_t w = sendfile(t->fd, fd, &o, len - done);
    if (w > 0) {
      done += (size_t)w;
      continue;
    }
    if (w == 0) {                 /* the file ends early */
      errno = EIO;
      return -1;
    }
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN)
      return -1;
    if (!block)
      break;
    if (transport_wait(t, POLLOUT) == -1)
      return -1;
  }
  return (ssize_t)done;
}

static size_t plain_take_buffered(struct transport *t, const void **p,
                                  size_t max)
{
  struct plain *pl = t->priv;
  size_t n = pl->len - pl->pos < max ? pl->len - pl->pos : max;
  *p = pl->buf ? pl->buf + pl->pos : NULL;
  pl->pos += n;
  return n;
}

static int plain_shutdown(struct transport *t)
{
  return shutdown(t->fd, SHUT_WR);
}

static void plain_close(struct transport *t)
{
  struct plain *p = t->priv;
  if (t->fd >= 0)
    close(t->fd);
  free(p->buf);
  free(p);
  free(t);
}

static size_t plain_pending(struct transport *t)
{
  struct plain *p = t->priv;
  return p->len - p->pos;
}

static void plain_readahead(struct transport *t)
{
  struct plain *p = t->priv;
  if (!p->buf)
    p->buf = malloc(READAHEAD_SIZE);   /* without it: plain reads */
}

static const struct transport_ops plain_ops = {
  .name = "plain",
  .recv = plain_recv,
  .sendv = plain_sendv,
  .shutdown = plain_shutdown,
  .close = plain_close,
  .pending = plain_pending,
  .try_sendv = plain_try_sendv,
  .sendfile = plain_sendfile,
  .take_buffered = plain_take_buffered,
  .recv_kernel = plain_recv_fd,
  .readahead = plain_readahead,
};

struct transport *transport_plain_new(int fd)
{
  struct transport *t = calloc(1, sizeof *t);
  struct plain *p = calloc(1, sizeof *p);
  if (!t || !p) {
    free(t);
    free(p);
    set_error(ENOMEM, "calloc");
    return NULL;
  }
  t->priv = p;
  t->ops = &plain_ops;
  t->fd = fd;
  t->wake_fd = -1;
  return t;
}

void transport_readahead(struct transport *t)
{
  if (t->ops->readahead)
    t->ops->readahead(t);
}

int transport_read_full(struct transport *t, void *buf, size_t len)
{
  char *p = buf;
  while (len > 0) {
    ssize_t r = t->ops->recv(t, p, len);
    if (r < 0)
      return -1;
    if (r == 0) {
      errno = ECONNRESET;
      return -1;
    }
    p += r;
    len -= (size_t)r;
  }
  return 0;
}

int transport_sendv(struct transport *t, const struct iovec *iov, int iovcnt,
                    int more)
{
  return t->ops->sendv(t, iov, iovcnt, more);
}

int transport_write_full(struct transport *t, const void *buf, size_t len,
                         int more)
{
  struct iovec v = { .iov_base = (void *)buf, .iov_len = len };
  return t->ops->sendv(t, &v, 1, more);
}

int transport_discard(struct transport *t, uint64_t len)
{
  char buf[16384];
  while (len > 0) {
    size_t n = len < sizeof buf ? (size_t)len : sizeof buf;
    if (transport_read_full(t, buf, n) == -1)
      return -1;
    len -= n;
  }
  return 0;
}

int transport_read_msg(struct transport *t, void *buf, size_t len)
{
  /* Wait for the first byte with the wake fd armed; then read the whole
   * message without it, so a shutdown never leaves half a header or
   * payload read and the stream out of step. */
  if (t->ops->pending(t) == 0 && transport_wait(t, POLLIN) == -1)
    return -1;
  int wake = t->wake_fd;
  t->wake_fd = -1;
  int r = transport_read_full(t, buf, len);
  t->wake_fd = wake;
  return r;
}

void transport_close(struct transport *t)
{
  if (t)
    t->ops->close(t);
}
