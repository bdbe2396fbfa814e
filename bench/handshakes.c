/* handshakes: connect, negotiate (TLS too when the URI says nbds) and
 * disconnect cleanly in a loop, one connection at a time, for a fixed
 * time or count, through libnbd.
 *
 *   handshakes [-t SECONDS] [-n MAX] URI
 *
 * Prints "handshakes=N seconds=S rate=R".  Exit 1 if any connection
 * fails: a refused handshake must not look like a fast one. */
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <libnbd.h>

#include "bench.h"

static void one_handshake(const char *uri)
{
  struct nbd_handle *h = nbd_create();
  if (!h || nbd_set_uri_allow_local_file(h, true) == -1 ||
      nbd_connect_uri(h, uri) == -1)
    bench_die("handshakes: %s: %s", uri, nbd_get_error());
  /* NBD_CMD_DISC then close, as a well-behaved client ends a session. */
  if (nbd_shutdown(h, 0) == -1)
    bench_die("handshakes: shutdown: %s", nbd_get_error());
  nbd_close(h);
}

int main(int argc, char **argv)
{
  double seconds = 5;
  uint64_t max = 10000000;
  int c;
  while ((c = getopt(argc, argv, "t:n:")) != -1) {
    switch (c) {
    case 't': seconds = bench_positive("-t", optarg); break;
    case 'n': max = (uint64_t)bench_positive("-n", optarg); break;
    default: bench_die("usage: handshakes [-t SECONDS] [-n MAX] URI");
    }
  }
  if (optind != argc - 1)
    bench_die("usage: handshakes [-t SECONDS] [-n MAX] URI");

  double start = bench_now(), now = start;
  uint64_t n = 0;
  while (n < max && now - start < seconds) {
    one_handshake(argv[optind]);
    n++;
    now = bench_now();
  }
  printf("handshakes=%llu seconds=%.3f rate=%.1f\n", (unsigned long long)n,
         now - start, (double)n / (now - start));
  return 0;
}
