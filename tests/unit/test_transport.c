/* Tests of the plain transport's zero-copy operations (common/transport.c)
 * that the server uses for files in RAM: take_buffered and recv_kernel
 * (a WRITE payload received into a mapping of the file), and sendfile
 * with and without blocking (READ data), try_sendv (the greeting, replies
 * sent by the reader).  The claim that matters most:
 * a page of the mapping the kernel cannot provide fails the call with
 * EFAULT, never a SIGBUS.  Also which sockets count as a peer on this
 * host (tcp_tune_for_peer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "transport.h"

#define KIB 1024

static uint8_t pattern(size_t off)
{
  return (uint8_t)(off * 7 + (off >> 9));
}

static void fill(uint8_t *p, size_t off, size_t n)
{
  for (size_t i = 0; i < n; i++)
    p[i] = pattern(off + i);
}

static void expect_pattern(const uint8_t *p, size_t off, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (p[i] != pattern(off + i))
      fail_msg("byte %zu is 0x%02x, not 0x%02x", off + i, p[i],
               pattern(off + i));
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    assert_true(w > 0);
    p += w;
    n -= (size_t)w;
  }
}

/* A socket pair whose sv[0] sends through a plain transport with a send
 * buffer of 64 KiB, so that a few MiB do not fit. */
static struct transport *small_sender(int sv[2])
{
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  int small = 64 * KIB;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  struct transport *t = transport_plain_new(sv[0]);
  assert_non_null(t);
  return t;
}

/* A file in RAM of size bytes, unlinked, or skip. */
static int ram_file(size_t size)
{
  char path[] = "/dev/shm/snbd-transport-XXXXXX";
  int fd = mkstemp(path);
  if (fd == -1)
    skip();
  unlink(path);
  assert_int_equal(ftruncate(fd, (off_t)size), 0);
  return fd;
}

/* A header, then a payload: the start of the payload comes out of the
 * read-ahead buffer through take_buffered, the rest straight from the
 * socket through recv_kernel. */
static void test_take_buffered(void **state)
{
  (void)state;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  struct transport *t = transport_plain_new(sv[0]);
  assert_non_null(t);
  const void *p;
  assert_int_equal(t->ops->take_buffered(t, &p, 100), 0);  /* no read-ahead */
  transport_readahead(t);

  const size_t hdr = 28, payload = 100 * KIB;
  uint8_t *out = malloc(hdr + payload), *in = malloc(payload);
  assert_non_null(out);
  assert_non_null(in);
  fill(out, 0, hdr + payload);
  write_all(sv[1], out, hdr + payload);

  uint8_t h[28];
  assert_int_equal(transport_read_full(t, h, hdr), 0);
  expect_pattern(h, 0, hdr);
  size_t buffered = t->ops->take_buffered(t, &p, payload);
  assert_true(buffered > 0 && buffered < payload);  /* what was read ahead */
  expect_pattern(p, hdr, buffered);
  assert_int_equal(t->ops->pending(t), 0);
  assert_int_equal(t->ops->take_buffered(t, &p, payload), 0);
  size_t got = buffered;
  while (got < payload) {
    ssize_t n = t->ops->recv_kernel(t, in + got, payload - got);
    assert_true(n > 0);
    got += (size_t)n;
  }
  expect_pattern(in + buffered, hdr + buffered, payload - buffered);
  free(out);
  free(in);
  close(sv[1]);
  transport_close(t);
}

/* recv_kernel into a shared mapping whose second page is past the end of
 * the file: the first page fills, then EFAULT, and the bytes not taken
 * stay in the socket. */
static void test_recv_kernel_efault(void **state)
{
  (void)state;
  int fd = ram_file(8 * KIB);
  uint8_t *map = mmap(NULL, 8 * KIB, PROT_READ | PROT_WRITE, MAP_SHARED,
                      fd, 0);
  assert_true(map != MAP_FAILED);
  assert_int_equal(ftruncate(fd, 4 * KIB), 0);     /* cut under the map */

  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  struct transport *t = transport_plain_new(sv[0]);
  assert_non_null(t);
  uint8_t data[8 * KIB];
  fill(data, 0, sizeof data);
  write_all(sv[1], data, sizeof data);

  size_t got = 0;
  ssize_t n;
  while ((n = t->ops->recv_kernel(t, map + got, sizeof data - got)) > 0)
    got += (size_t)n;
  assert_int_equal(n, -1);
  assert_int_equal(errno, EFAULT);
  assert_true(got <= 4 * KIB);
  uint8_t back[4 * KIB];
  assert_int_equal(pread(fd, back, got, 0), (ssize_t)got);
  expect_pattern(back, 0, got);
  /* The rest is still there to read elsewhere. */
  uint8_t rest[8 * KIB];
  assert_int_equal(transport_read_full(t, rest, sizeof data - got), 0);
  expect_pattern(rest, got, sizeof data - got);

  munmap(map, 8 * KIB);
  close(fd);
  close(sv[1]);
  transport_close(t);
}

struct drain { int fd; size_t want, got; uint8_t *buf; };

static void *drain_thread(void *arg)
{
  struct drain *d = arg;
  struct timespec ts = { 0, 100 * 1000 * 1000 };
  nanosleep(&ts, NULL);                 /* let the sender find it full */
  while (d->got < d->want) {
    ssize_t n = read(d->fd, d->buf + d->got, d->want - d->got);
    if (n <= 0)
      break;
    d->got += (size_t)n;
  }
  return NULL;
}

/* sendfile without blocking takes what fits and returns; with blocking
 * it sends the rest; a file that ends early is EIO. */
static void test_sendfile(void **state)
{
  (void)state;
  const size_t size = 4 * KIB * KIB;
  int fd = ram_file(size);
  uint8_t *data = malloc(size);
  assert_non_null(data);
  fill(data, 0, size);
  assert_int_equal(pwrite(fd, data, size, 0), (ssize_t)size);

  int sv[2];
  struct transport *t = small_sender(sv);

  ssize_t first = t->ops->sendfile(t, fd, 0, size, false);
  assert_true(first > 0 && (size_t)first < size);  /* never waits */
  assert_int_equal(t->ops->sendfile(t, fd, (uint64_t)first, size - first,
                                    false), 0);     /* still full */

  struct drain d = { .fd = sv[1], .want = size, .buf = malloc(size) };
  assert_non_null(d.buf);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, drain_thread, &d), 0);
  assert_int_equal(t->ops->sendfile(t, fd, (uint64_t)first, size - first,
                                    true), (ssize_t)(size - first));
  /* Now non-blocking, the other ops wait on EAGAIN instead of failing. */
  uint8_t tail[3] = { 1, 2, 3 };
  struct iovec v = { tail, sizeof tail };
  assert_int_equal(transport_sendv(t, &v, 1, 0), 0);
  pthread_join(th, NULL);
  assert_int_equal(d.got, size);
  assert_memory_equal(d.buf, data, size);
  uint8_t three[3];
  assert_int_equal(read(sv[1], three, 3), 3);
  assert_memory_equal(three, tail, 3);

  /* Past the end of the file. */
  assert_int_equal(t->ops->sendfile(t, fd, size - 10, 20, true), -1);
  assert_int_equal(errno, EIO);

  free(d.buf);
  free(data);
  close(fd);
  close(sv[1]);
  transport_close(t);
}

/* try_sendv, with which the accepting thread sends the greeting: takes
 * what fits and returns at once, 0 when the socket is full, -1 (not
 * SIGPIPE) once the peer is gone. */
static void test_try_sendv(void **state)
{
  (void)state;
  int sv[2];
  struct transport *t = small_sender(sv);
  assert_true(transport_can_try_send(t));

  uint8_t greeting[18], got[18];
  fill(greeting, 0, sizeof greeting);
  struct iovec v = { greeting, sizeof greeting };
  assert_int_equal(transport_try_sendv(t, &v, 1), (ssize_t)sizeof greeting);
  assert_int_equal(read(sv[1], got, sizeof got), (ssize_t)sizeof got);
  assert_memory_equal(got, greeting, sizeof got);

  const size_t size = 4 * KIB * KIB;
  uint8_t *big = calloc(1, size);
  assert_non_null(big);
  struct iovec b = { big, size };
  ssize_t first = transport_try_sendv(t, &b, 1);
  assert_true(first > 0 && (size_t)first < size);   /* never waits */
  assert_int_equal(transport_try_sendv(t, &b, 1), 0); /* still full */

  close(sv[1]);
  assert_int_equal(transport_try_sendv(t, &v, 1), -1);
  assert_int_equal(errno, EPIPE);
  free(big);
  transport_close(t);
}

static void *late_writer(void *arg)
{
  int fd = *(int *)arg;
  struct timespec ts = { 0, 100 * 1000 * 1000 };
  nanosleep(&ts, NULL);
  ssize_t w = write(fd, "late", 4);
  (void)w;
  return NULL;
}

static int64_t thread_cpu_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A recv on the socket made non-blocking, with nothing to read yet and
 * no deadline: sleeps in poll until the data comes.  Retrying recv at
 * once on EAGAIN (as it did) burns this thread's CPU for the whole
 * 100 ms; sleeping uses next to none, whatever the machine's load (this
 * thread's own CPU time, not a speed measure). */
static void test_recv_waits_when_nonblocking(void **state)
{
  (void)state;
  int fd = ram_file(4 * KIB);
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  struct transport *t = transport_plain_new(sv[0]);
  assert_non_null(t);
  assert_int_equal(t->ops->sendfile(t, fd, 0, 4 * KIB, false), 4 * KIB);
  uint8_t sink[4 * KIB];
  assert_int_equal(read(sv[1], sink, sizeof sink), (ssize_t)sizeof sink);

  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, late_writer, &sv[1]), 0);
  char buf[4];
  int64_t cpu = thread_cpu_ns();
  assert_int_equal(transport_read_full(t, buf, 4), 0);
  cpu = thread_cpu_ns() - cpu;
  assert_memory_equal(buf, "late", 4);
  if (cpu > 30 * 1000 * 1000)
    fail_msg("waiting 100 ms for data took %lld ms of CPU",
             (long long)(cpu / 1000000));
  pthread_join(th, NULL);
  close(fd);
  close(sv[1]);
  transport_close(t);
}

static int lowat(int fd)
{
  int v = -1;
  socklen_t l = sizeof v;
  assert_int_equal(getsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &v, &l), 0);
  return v;
}

/* Both ends of a TCP connection on 127.0.0.1 are tuned (64 KiB unsent at
 * most), whether the peer's address is looked up or given; a remote peer
 * is not; a Unix socket is not TCP; an address is local by its range. */
static void test_tcp_tune_for_peer(void **state)
{
  (void)state;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = { .sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  socklen_t al = sizeof a;
  assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(ls, 1), 0);
  assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &al), 0);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof a), 0);
  struct sockaddr_storage peer;
  socklen_t pl = sizeof peer;
  int s = accept(ls, (struct sockaddr *)&peer, &pl);
  assert_true(s >= 0);
  int before = lowat(s);
  assert_int_not_equal(before, 64 * 1024);
  struct sockaddr_storage far = peer;         /* a peer on another host */
  ((struct sockaddr_in *)&far)->sin_addr.s_addr = htonl(0xc0a80001);
  assert_false(tcp_tune_for_peer(s, &far));
  assert_int_equal(lowat(s), before);
  assert_true(tcp_tune_for_peer(s, &peer));
  assert_true(tcp_tune_for_peer(c, NULL));
  assert_int_equal(lowat(s), 64 * 1024);
  assert_int_equal(lowat(c), 64 * 1024);
  assert_false(tcp_tune_for_peer(ls, NULL));      /* listening: no peer */
  close(s);
  close(c);
  close(ls);

  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  assert_false(tcp_tune_for_peer(sv[0], NULL));
  close(sv[0]);
  close(sv[1]);

  struct sockaddr_storage ss;
  struct sockaddr_in *in = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  memset(&ss, 0, sizeof ss);
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = htonl(0x7f000002);            /* 127.0.0.2 */
  assert_true(sockaddr_is_local(&ss));
  in->sin_addr.s_addr = htonl(0xc0a80001);            /* 192.168.0.1 */
  assert_false(sockaddr_is_local(&ss));
  memset(&ss, 0, sizeof ss);
  in6->sin6_family = AF_INET6;
  in6->sin6_addr = in6addr_loopback;
  assert_true(sockaddr_is_local(&ss));
  assert_int_equal(inet_pton(AF_INET6, "::ffff:127.1.2.3", &in6->sin6_addr), 1);
  assert_true(sockaddr_is_local(&ss));
  assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &in6->sin6_addr), 1);
  assert_false(sockaddr_is_local(&ss));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_take_buffered),
    cmocka_unit_test(test_recv_kernel_efault),
    cmocka_unit_test(test_sendfile),
    cmocka_unit_test(test_try_sendv),
    cmocka_unit_test(test_recv_waits_when_nonblocking),
    cmocka_unit_test(test_tcp_tune_for_peer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
