/* fuzz: the far end of a socketpair (see peer.h). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer.h"

static void die(const char *what)
{
  perror(what);
  abort();
}

void fuzz_socketpair(int sv[2])
{
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
    die("socketpair");
}

/* The next bytes to write, or NULL when none are allowed yet. */
static const uint8_t *next_chunk(struct peer *p, size_t *off, size_t *left,
                                 bool gate_open)
{
  if (*off < p->npre) {
    *left = p->npre - *off;
    return p->pre + *off;
  }
  if (!gate_open)
    return NULL;
  size_t o = *off - p->npre;
  *left = p->npost - o;
  return *left ? p->post + o : NULL;
}

static bool drain(struct peer *p)
{
  char buf[65536];
  for (;;) {
    ssize_t n = recv(p->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
      p->received += (uint64_t)n;
      if (p->received > p->budget) {
        p->hung_up = true;
        shutdown(p->fd, SHUT_RDWR);
        return false;
      }
      continue;
    }
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return true;
    return false;                 /* EOF or error: reading is over */
  }
}

static void *peer_thread(void *arg)
{
  struct peer *p = arg;
  size_t off = 0, total = p->npre + p->npost;
  bool reading = !p->reader, writing = true, gate_open = !p->gated;

  while (reading || writing) {
    size_t left = 0;
    const uint8_t *chunk = writing ? next_chunk(p, &off, &left, gate_open)
                                   : NULL;
    if (writing && off == total) {
      shutdown(p->fd, SHUT_WR);
      writing = false;
      continue;
    }
    struct pollfd fds[2] = {
      { .fd = p->fd, .events = (short)((reading ? POLLIN : 0) |
                                       (chunk ? POLLOUT : 0)) },
      { .fd = gate_open ? -1 : p->gate[0], .events = POLLIN },
    };
    if (poll(fds, 2, -1) == -1) {
      if (errno == EINTR)
        continue;
      die("poll");
    }
    if (fds[1].revents)
      gate_open = true;
    if (reading && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
      reading = drain(p);
    if (p->hung_up)
      break;
    if (chunk && (fds[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = send(p->fd, chunk, left, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0)
        off += (size_t)n;
      else if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK &&
               errno != EINTR)
        writing = false;          /* the endpoint hung up (EPIPE) */
    }
  }
  return NULL;
}

static void *reader_thread(void *arg)
{
  struct peer *p = arg;
  p->reader(p, p->reader_ud);
  return NULL;
}

static void start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
  int e = pthread_create(t, NULL, fn, arg);
  if (e != 0) {
    errno = e;
    die("pthread_create");
  }
}

void peer_start(struct peer *p, int fd, const uint8_t *pre, size_t npre,
                const uint8_t *post, size_t npost, bool gated,
                uint64_t budget)
{
  *p = (struct peer){ .fd = fd, .pre = pre, .npre = npre, .post = post,
                      .npost = npost, .gated = gated, .budget = budget };
  if (pipe2(p->gate, O_CLOEXEC) == -1)
    die("pipe2");
  start_thread(&p->thread, peer_thread, p);
}

void peer_start_reader(struct peer *p, int fd, const uint8_t *pre,
                       size_t npre, const uint8_t *post, size_t npost,
                       uint64_t budget,
                       void (*reader)(struct peer *p, void *ud), void *ud)
{
  *p = (struct peer){ .fd = fd, .pre = pre, .npre = npre, .post = post,
                      .npost = npost, .budget = budget, .reader = reader,
                      .reader_ud = ud };
  if (pipe2(p->gate, O_CLOEXEC) == -1)
    die("pipe2");
  start_thread(&p->thread, peer_thread, p);
  start_thread(&p->reader_thread, reader_thread, p);
}

bool peer_read(struct peer *p, void *buf, size_t n)
{
  size_t got = 0;
  if (p->hung_up)
    return false;
  if (p->received + n > p->budget) {
    p->hung_up = true;
    shutdown(p->fd, SHUT_RDWR);
    return false;
  }
  while (got < n) {
    ssize_t r = recv(p->fd, (char *)buf + got, n - got, 0);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0) {
      p->partial = got > 0;
      return false;
    }
    got += (size_t)r;
  }
  p->received += n;
  return true;
}

void peer_discard_rest(struct peer *p)
{
  char buf[65536];
  while (!p->hung_up) {
    ssize_t r = recv(p->fd, buf, sizeof buf, 0);
    if (r == -1 && errno == EINTR)
      continue;
    if (r <= 0)
      return;
    p->received += (uint64_t)r;
    if (p->received > p->budget) {
      p->hung_up = true;
      shutdown(p->fd, SHUT_RDWR);
    }
  }
}

void peer_open_gate(struct peer *p)
{
  if (p->gate[1] != -1) {
    if (write(p->gate[1], "g", 1) != 1)
      die("gate");
    close(p->gate[1]);
    p->gate[1] = -1;
  }
}

void peer_join(struct peer *p)
{
  peer_open_gate(p);
  pthread_join(p->thread, NULL);
  if (p->reader)
    pthread_join(p->reader_thread, NULL);
  close(p->gate[0]);
  close(p->fd);
}
