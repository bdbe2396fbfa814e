/* handshakes: connect, negotiate (TLS too when the URI says nbds),
 * optionally read, and disconnect cleanly in a loop, one connection at a
 * time, for a fixed time or count.  Built twice: through libnbd
 * (`handshakes`) and, with -DUSE_LIBSNBD, through libsnbd
 * (`snbd-handshakes`), so each client library meets its own server.
 *
 *   handshakes [-t SECONDS] [-n MAX] [-r BYTES] URI
 *
 * -r BYTES: read BYTES at offset 0 on each connection (a client that
 * connects, reads a little and goes: the reconnect loop).  Prints
 * "handshakes=N seconds=S rate=R".  Exit 1 if any connection fails: a
 * refused handshake must not look like a fast one. */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "bench.h"

#ifdef USE_LIBSNBD
#include <snbd/snbd.h>
#define LIB(name) snbd_##name
#define SHUTDOWN(h) snbd_shutdown(h)
#else
#include <libnbd.h>
#define LIB(name) nbd_##name
#define SHUTDOWN(h) nbd_shutdown((h), 0)
#endif

static char buf[1 << 20];

static void one_handshake(const char *uri, size_t bytes)
{
  struct LIB(handle) *h = LIB(create)();
  if (!h || LIB(set_uri_allow_local_file)(h, true) == -1 ||
      LIB(connect_uri)(h, uri) == -1)
    bench_die("handshakes: %s: %s", uri, LIB(get_error)());
  if (bytes && LIB(pread)(h, buf, bytes, 0, 0) == -1)
    bench_die("handshakes: read: %s", LIB(get_error)());
  /* NBD_CMD_DISC then close, as a well-behaved client ends a session. */
  if (SHUTDOWN(h) == -1)
    bench_die("handshakes: shutdown: %s", LIB(get_error)());
  LIB(close)(h);
}

int main(int argc, char **argv)
{
  double seconds = 5;
  uint64_t max = 10000000;
  size_t bytes = 0;
  int c;
  while ((c = getopt(argc, argv, "t:n:r:")) != -1) {
    switch (c) {
    case 't': seconds = bench_positive("-t", optarg); break;
    case 'n': max = (uint64_t)bench_positive("-n", optarg); break;
    case 'r':
      bytes = (size_t)bench_positive("-r", optarg);
      if (bytes > sizeof buf)
        bench_die("-r: at most %zu bytes", sizeof buf);
      break;
    default: bench_die("usage: handshakes [-t SECONDS] [-n MAX] [-r BYTES] URI");
    }
  }
  if (optind != argc - 1)
    bench_die("usage: handshakes [-t SECONDS] [-n MAX] [-r BYTES] URI");

  double start = bench_now(), now = start;
  uint64_t n = 0;
  while (n < max && now - start < seconds) {
    one_handshake(argv[optind], bytes);
    n++;
    now = bench_now();
  }
  printf("handshakes=%llu seconds=%.3f rate=%.1f\n", (unsigned long long)n,
         now - start, (double)n / (now - start));
  return 0;
}
