/* randio: random reads or writes of one block size at a fixed queue depth
 * against one NBD export for a fixed time, through libnbd's asynchronous
 * API.  It is the TLS counterpart of fio's nbd engine, which cannot be
 * given TLS credential files in its URI (libnbd refuses local files in a
 * URI unless the program opts in, and fio does not).  Like fio it reuses
 * one buffer for every request: the data is not checked, only counted.
 *
 *   randio [-w] [-d DEPTH] [-b BYTES] [-t SECONDS] URI
 *
 * Prints one line: "ops=N seconds=S iops=R errors=E" where ops counts the
 * requests completed before the deadline.  Exit 1 on any error. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <libnbd.h>

#include "bench.h"

struct counts {
  uint64_t done;
  uint64_t errors;
};

static int on_complete(void *user_data, int *error)
{
  struct counts *c = user_data;
  if (*error)
    c->errors++;
  else
    c->done++;
  return 1; /* retire the command: nothing else looks at it */
}

struct job {
  struct nbd_handle *h;
  bool write;
  unsigned depth;
  uint32_t bs;
  uint64_t nblocks;
  char *buf;
  unsigned long long seed;
  struct counts counts;
};

static int issue_one(struct job *j)
{
  uint64_t off = bench_rand(&j->seed) % j->nblocks * j->bs;
  nbd_completion_callback cb = { .callback = on_complete,
                                 .user_data = &j->counts };
  int64_t r = j->write ? nbd_aio_pwrite(j->h, j->buf, j->bs, off, cb, 0)
                       : nbd_aio_pread(j->h, j->buf, j->bs, off, cb, 0);
  return r == -1 ? -1 : 0;
}

/* Keep DEPTH requests in flight until the deadline; returns the number
 * completed by then, and the time it took in *secs. */
static uint64_t run_until(struct job *j, double seconds, double *secs)
{
  double start = bench_now(), deadline = start + seconds, now = start;
  while (now < deadline) {
    while ((unsigned)nbd_aio_in_flight(j->h) < j->depth)
      if (issue_one(j) == -1)
        bench_die("randio: issuing a request: %s", nbd_get_error());
    if (nbd_poll(j->h, 1000) == -1)
      bench_die("randio: nbd_poll: %s", nbd_get_error());
    if (j->counts.errors)
      bench_die("randio: the server failed a request");
    now = bench_now();
  }
  *secs = now - start;
  return j->counts.done;
}

/* Let what is still in flight finish (bounded to 10 s) so the server
 * does not see a disconnect in the middle of a reply. */
static void drain(struct job *j)
{
  double deadline = bench_now() + 10;
  while (nbd_aio_in_flight(j->h) > 0 && bench_now() < deadline)
    if (nbd_poll(j->h, 1000) == -1)
      break;
}

static void usage(void)
{
  bench_die("usage: randio [-w] [-d DEPTH] [-b BYTES] [-t SECONDS] URI");
}

static void open_export(struct job *j, const char *uri)
{
  j->h = nbd_create();
  if (!j->h || nbd_set_uri_allow_local_file(j->h, true) == -1 ||
      nbd_connect_uri(j->h, uri) == -1)
    bench_die("randio: %s: %s", uri, nbd_get_error());
  int64_t size = nbd_get_size(j->h);
  if (size == -1)
    bench_die("randio: size: %s", nbd_get_error());
  j->nblocks = (uint64_t)size / j->bs;
  if (j->nblocks == 0)
    bench_die("randio: export of %" PRId64 " bytes is smaller than a block",
              size);
}

int main(int argc, char **argv)
{
  struct job j = { .depth = 32, .bs = 4096, .seed = 0x9E3779B97F4A7C15ULL };
  double seconds = 5;
  int c;
  while ((c = getopt(argc, argv, "wd:b:t:")) != -1) {
    switch (c) {
    case 'w': j.write = true; break;
    case 'd': j.depth = (unsigned)bench_positive("-d", optarg); break;
    case 'b': j.bs = (uint32_t)bench_positive("-b", optarg); break;
    case 't': seconds = bench_positive("-t", optarg); break;
    default: usage();
    }
  }
  if (optind != argc - 1 || j.depth > 1024 || j.bs > (32u << 20))
    usage();
  j.buf = malloc(j.bs);
  if (!j.buf)
    bench_die("randio: out of memory");
  for (uint32_t i = 0; i < j.bs; i++)
    j.buf[i] = (char)bench_rand(&j.seed);
  open_export(&j, argv[optind]);

  double secs;
  uint64_t ops = run_until(&j, seconds, &secs);
  drain(&j);
  nbd_shutdown(j.h, 0);
  nbd_close(j.h);
  free(j.buf);
  printf("ops=%" PRIu64 " seconds=%.3f iops=%.0f errors=%" PRIu64 "\n", ops,
         secs, (double)ops / secs, j.counts.errors);
  return 0;
}
