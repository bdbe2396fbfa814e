/* snbd: the transport, a table of operations (plain fd or TLS).
 *
 * Protocol code never touches a raw fd: it reads and writes through a
 * struct transport.  NBD_OPT_STARTTLS replaces the plain transport with a
 * TLS one that wraps the same fd (common/tls.h).
 *
 * Deadline: when t->deadline is non-zero (CLOCK_MONOTONIC, nanoseconds),
 * every blocking recv/send fails with errno ETIMEDOUT once it has passed.
 * Wake fd: when t->wake_fd >= 0 and becomes readable, a blocking recv fails
 * with errno ECANCELED (the server uses it to interrupt readers at
 * shutdown).  It never interrupts a send; use transport_read_msg so it
 * only interrupts waiting for the start of a message.
 */
#ifndef SNBD_TRANSPORT_H
#define SNBD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct transport;

struct transport_ops {
  const char *name;
  /* > 0 bytes read, 0 on orderly EOF, -1 on error (errno set). */
  ssize_t (*recv)(struct transport *t, void *buf, size_t len);
  /* Writes all iovecs or fails: 0 or -1 (errno set).  more != 0 hints that
   * more data follows at once (MSG_MORE / gnutls_record_cork). */
  int (*sendv)(struct transport *t, const struct iovec *iov, int iovcnt,
               int more);
  /* Orderly end of writing (TLS close_notify, then SHUT_WR). */
  int (*shutdown)(struct transport *t);
  /* Frees the transport and closes the fd it owns. */
  void (*close)(struct transport *t);
  /* Bytes already decrypted/buffered and readable without blocking. */
  size_t (*pending)(struct transport *t);
  /* Optional: sends what fits without blocking; bytes taken (maybe 0), or
   * -1 on error.  The caller sends the rest later with sendv.  TLS takes a
   * small message whole or not at all, and may keep part of its records
   * buffered (send_pending). */
  ssize_t (*try_sendv)(struct transport *t, const struct iovec *iov,
                       int iovcnt);
  /* Optional: true if bytes taken by try_sendv are still buffered here;
   * the next sendv (even of nothing) writes them first, blocking. */
  bool (*send_pending)(struct transport *t);
  /* Optional (plain only): sends len bytes of file fd from off with
   * sendfile, so the file's pages reach the socket without a copy.  With
   * block, all of it or -1; without, what fits now (maybe 0), or -1.  A
   * file that ends early fails with EIO. */
  ssize_t (*sendfile)(struct transport *t, int fd, uint64_t off, size_t len,
                      bool block);
  /* Optional (plain only), for receiving straight into a shared mapping of
   * a file, where a page the kernel cannot provide must fail a call with
   * EFAULT rather than raise SIGBUS in user space.  take_buffered hands
   * over up to max bytes already read ahead (*p valid until the next
   * recv); once it returns less than asked, recv_kernel reads from the
   * socket into buf with the kernel alone writing it. */
  size_t (*take_buffered)(struct transport *t, const void **p, size_t max);
  ssize_t (*recv_kernel)(struct transport *t, void *buf, size_t len);
  /* Optional: from now on, read ahead of what recv asks for (see
   * transport_readahead). */
  void (*readahead)(struct transport *t);
};

struct transport {
  const struct transport_ops *ops;
  int fd;                 /* the socket (owned; closed by close) */
  int wake_fd;            /* -1, or a fd whose readability cancels recv */
  int64_t deadline;       /* 0, or CLOCK_MONOTONIC ns after which I/O fails */
  void *priv;             /* implementation data (e.g. gnutls session) */
};

struct transport *transport_plain_new(int fd);
/* Lets the transport read ahead of what recv asks for: plain buffers the
 * socket, TLS reads several records per recv.  Only once the handshake
 * (and any STARTTLS) is over: see transport.c. */
void transport_readahead(struct transport *t);

/* Helpers over the ops. */
int transport_read_full(struct transport *t, void *buf, size_t len);
                        /* 0, or -1: errno ECONNRESET on early EOF */
int transport_write_full(struct transport *t, const void *buf, size_t len,
                         int more);
/* Reads a whole message (a header): the wake fd may cancel waiting for
 * its first byte (ECANCELED, nothing consumed) but never the rest. */
int transport_read_msg(struct transport *t, void *buf, size_t len);
int transport_sendv(struct transport *t, const struct iovec *iov, int iovcnt,
                    int more);
/* Reads and throws away len bytes in bounded chunks (keeps the stream in
 * step after refusing an option or a write). */
int transport_discard(struct transport *t, uint64_t len);
void transport_close(struct transport *t);

/* What a transport can do, and its optional operations, for code outside
 * common/ (which never tests or calls the op pointers itself).  Calling an
 * optional operation the transport lacks is a bug: ask first. */
static inline size_t transport_pending(struct transport *t)
{
  return t->ops->pending(t);
}
static inline ssize_t transport_recv(struct transport *t, void *buf,
                                     size_t len)
{
  return t->ops->recv(t, buf, len);
}
static inline int transport_shutdown(struct transport *t)
{
  return t->ops->shutdown(t);
}
static inline bool transport_can_try_send(const struct transport *t)
{
  return t->ops->try_sendv != NULL;
}
static inline ssize_t transport_try_sendv(struct transport *t,
                                          const struct iovec *iov, int iovcnt)
{
  return t->ops->try_sendv(t, iov, iovcnt);
}
/* True if bytes taken by try_sendv are still buffered in the transport. */
static inline bool transport_send_pending(struct transport *t)
{
  return t->ops->send_pending && t->ops->send_pending(t);
}
static inline bool transport_can_sendfile(const struct transport *t)
{
  return t->ops->sendfile != NULL;
}
static inline ssize_t transport_sendfile(struct transport *t, int fd,
                                         uint64_t off, size_t len, bool block)
{
  return t->ops->sendfile(t, fd, off, len, block);
}
static inline bool transport_can_recv_kernel(const struct transport *t)
{
  return t->ops->recv_kernel != NULL;
}
static inline size_t transport_take_buffered(struct transport *t,
                                             const void **p, size_t max)
{
  return t->ops->take_buffered(t, p, max);
}
static inline ssize_t transport_recv_kernel(struct transport *t, void *buf,
                                            size_t len)
{
  return t->ops->recv_kernel(t, buf, len);
}

/* Wait for fd to become ready for events (POLLIN/POLLOUT), honouring
 * t->deadline and t->wake_fd.  0 ready, -1 error (ETIMEDOUT, ECANCELED). */
int transport_wait(struct transport *t, short events);

int64_t monotonic_ns(void);

struct sockaddr_storage;
/* A loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104) or a Unix
 * socket's. */
bool sockaddr_is_local(const struct sockaddr_storage *ss);
/* For a connected TCP socket whose peer is on this host (a loopback
 * address, or the socket's own address): keeps at most 64 KiB unsent
 * (docs/architecture.md "Loopback TCP") and returns true.  peer: the caller's
 * getpeername result, or NULL to look it up. */
bool tcp_tune_for_peer(int fd, const struct sockaddr_storage *peer);

#endif
