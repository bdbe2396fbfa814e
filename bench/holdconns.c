/* holdconns: open N connections to one NBD export (fully negotiated, TLS
 * too when the URI says so), print "ready N", then hold them idle until
 * killed or until the time limit passes.  The benchmark measures the
 * server's memory while they are held.
 *
 *   holdconns -n N [-j THREADS] [-t MAX_SECONDS] URI
 *
 * THREADS (default 16) connect in parallel: some servers take ~40 ms per
 * handshake over TCP (Nagle against delayed ACKs), which would make
 * 1,000 sequential connections take most of a minute.
 *
 * Exit 1 if any connection fails, after printing how many succeeded. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>
#include <libnbd.h>

#include "bench.h"

/* Each connection is one descriptor; the default soft limit (often 1024)
 * would cap N long before the server does. */
static void raise_fd_limit(unsigned n)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
    return;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)n + 64)
    bench_die("holdconns: descriptor limit %llu is below %u connections",
              (unsigned long long)rl.rlim_cur, n);
}

struct hold {
  const char *uri;
  struct nbd_handle **h;
  unsigned n, threads;
  double deadline;
};

struct worker {
  struct hold *hold;
  unsigned first;
  pthread_t tid;
};

/* One connection.  A full listen backlog on a Unix socket fails connect
 * with EAGAIN at once (TCP would queue the SYN instead); a server with a
 * short backlog (nbd-server) is given time to accept, not failed. */
static struct nbd_handle *connect_one(struct hold *d, unsigned i)
{
  for (unsigned tries = 0;; tries++) {
    struct nbd_handle *h = nbd_create();
    if (!h || nbd_set_uri_allow_local_file(h, true) == -1)
      bench_die("holdconns: %s", nbd_get_error());
    if (nbd_connect_uri(h, d->uri) == 0)
      return h;
    int err = nbd_get_errno();
    if (err != EAGAIN || tries >= 500 || bench_now() > d->deadline)
      bench_die("holdconns: connection %u: %s", i + 1, nbd_get_error());
    nbd_close(h);
    usleep(10000);
  }
}

/* Connect handles first, first + threads, ...; die on any failure. */
static void *connect_some(void *arg)
{
  struct worker *w = arg;
  struct hold *d = w->hold;
  for (unsigned i = w->first; i < d->n; i += d->threads) {
    d->h[i] = connect_one(d, i);
    if (bench_now() > d->deadline)
      bench_die("holdconns: still connecting at the time limit");
  }
  return NULL;
}

static void connect_all(struct hold *d)
{
  struct worker *w = calloc(d->threads, sizeof *w);
  if (!w)
    bench_die("holdconns: out of memory");
  for (unsigned t = 0; t < d->threads; t++) {
    w[t] = (struct worker){ .hold = d, .first = t };
    if (pthread_create(&w[t].tid, NULL, connect_some, &w[t]) != 0)
      bench_die("holdconns: pthread_create failed");
  }
  for (unsigned t = 0; t < d->threads; t++)
    pthread_join(w[t].tid, NULL);
  free(w);
}

static void usage(void)
{
  bench_die("usage: holdconns -n N [-j THREADS] [-t MAX_SECONDS] URI");
}

int main(int argc, char **argv)
{
  struct hold d = { .n = 1000, .threads = 16 };
  double max_seconds = 600;
  int c;
  while ((c = getopt(argc, argv, "n:j:t:")) != -1) {
    switch (c) {
    case 'n': d.n = (unsigned)bench_positive("-n", optarg); break;
    case 'j': d.threads = (unsigned)bench_positive("-j", optarg); break;
    case 't': max_seconds = bench_positive("-t", optarg); break;
    default: usage();
    }
  }
  if (optind != argc - 1 || d.n > 100000 || d.threads > 256)
    usage();
  if (d.threads > d.n)
    d.threads = d.n;
  raise_fd_limit(d.n);

  d.uri = argv[optind];
  d.h = calloc(d.n, sizeof *d.h);
  if (!d.h)
    bench_die("holdconns: out of memory");
  double start = bench_now();
  d.deadline = start + max_seconds;
  connect_all(&d);
  printf("ready %u %.3f\n", d.n, bench_now() - start);
  fflush(stdout);

  /* Idle: nothing is sent; the server sees N quiet sessions. */
  while (bench_now() < d.deadline)
    usleep(100000);
  for (unsigned i = 0; i < d.n; i++)
    nbd_close(d.h[i]);
  free(d.h);
  return 0;
}
