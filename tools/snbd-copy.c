/* snbd-copy SRC DST: copy between NBD exports, files, block devices and
 * pipes, sparsely and with many requests in flight.  A thin program over
 * libsnbd: copy-endpoint.c opens things (ep-*.c, one per kind),
 * copy-worker.c moves data, copy-report.c keeps errors and progress. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "copy.h"

static void usage(FILE *f, int status)
{
  fprintf(f,
"Usage: snbd-copy [OPTIONS] SRC DST\n"
"\n"
"SRC and DST are NBD URIs (nbd://, nbds://, nbd+unix://, nbds+unix://),\n"
"files or block devices, or '-' for stdin/stdout.  DST may be null:,\n"
"which discards the data (to time or check reading SRC).\n"
"\n"
"  -C, --connections N   connections per NBD server when it allows\n"
"                        multi-conn (default 4, at most %d)\n"
"  -R, --requests N      requests in flight per connection (default 16,\n"
"                        at most %d)\n"
"  --request-size SIZE   bytes per read/write request (default 256K;\n"
"                        kept within the servers' block size limits)\n"
"  --no-sparse           copy every byte; by default runs of zeroes and\n"
"                        holes found by block status / SEEK_HOLE are\n"
"                        written as zero requests (FAST_ZERO if offered)\n"
"  --destination-is-zero skip writing zeroes: DST already reads as zero\n"
"  --flush               flush DST at the end\n"
"  -p, --progress        show progress on stderr\n"
"  --tls=MODE            off, allow or require for nbd:// URIs\n"
"  --timeout SECONDS     give up on a server that sends no reply for this\n"
"                        long while requests are in flight (default 60;\n"
"                        0: wait for ever)\n"
"  --no-extended-headers compact headers even if the server has extended ones\n"
"  --help, --version\n"
"\nExit status: 0 if everything was copied, 1 on any error, 130 when\n"
"interrupted.\n", MAX_CONNECTIONS, MAX_REQUESTS);
  exit(status);
}

static struct copy copy = {
  .lock = PTHREAD_MUTEX_INITIALIZER,
  .o = { .connections = 4, .requests = 16, .request_size = 256 * 1024,
         .sparse = true, .tls = -1, .timeout = 60 },
};
static atomic_bool interrupted;

/* Signals are taken synchronously by this thread (every other thread has
 * them blocked), so no handler runs in the middle of anything.  The first
 * Ctrl-C stops the copy cleanly; a second one ends the process. */
static void *signal_thread(void *arg)
{
  sigset_t *set = arg;
  int sig;
  for (int n = 0; sigwait(set, &sig) == 0; n++) {
    if (n > 0) {
      static const char msg[] = "snbd-copy: interrupted again, exiting\n";
      ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
      (void)r;
      _exit(130);
    }
    atomic_store(&interrupted, true);
    copy_fail(&copy, "interrupted by signal %d", sig);
  }
  return NULL;
}

static uint32_t parse_size(const char *s)
{
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  int shift = 0;
  switch (*end) {
  case 'k': case 'K': shift = 10; end++; break;
  case 'm': case 'M': shift = 20; end++; break;
  }
  if (errno || *end || v == 0 || v > (32ull << 20) >> shift) {
    fprintf(stderr, "snbd-copy: bad size \"%s\" (1 to 32M)\n", s);
    exit(EXIT_FAILURE);
  }
  return (uint32_t)(v << shift);
}

static int parse_int(const char *s, int max)
{
  char *end;
  long v = strtol(s, &end, 10);
  if (*end || v < 1 || v > max) {
    fprintf(stderr, "snbd-copy: \"%s\" is not a number from 1 to %d\n", s,
            max);
    exit(EXIT_FAILURE);
  }
  return (int)v;
}

static int parse_tls(const char *s)
{
  if (strcmp(s, "off") == 0)
    return SNBD_TLS_DISABLE;
  if (strcmp(s, "allow") == 0 || strcmp(s, "on") == 0)
    return SNBD_TLS_ALLOW;
  if (strcmp(s, "require") == 0)
    return SNBD_TLS_REQUIRE;
  fprintf(stderr, "snbd-copy: --tls takes off, allow or require\n");
  exit(EXIT_FAILURE);
}

static void parse_args(int argc, char *argv[], const char **src,
                       const char **dst)
{
  enum { OPT_RS = 256, OPT_NOSPARSE, OPT_ISZERO, OPT_FLUSH, OPT_TLS,
         OPT_TIMEOUT, OPT_NO_EH, OPT_VERSION };
  static const struct option longopts[] = {
    { "connections", required_argument, NULL, 'C' },
    { "requests", required_argument, NULL, 'R' },
    { "request-size", required_argument, NULL, OPT_RS },
    { "no-sparse", no_argument, NULL, OPT_NOSPARSE },
    { "destination-is-zero", no_argument, NULL, OPT_ISZERO },
    { "flush", no_argument, NULL, OPT_FLUSH },
    { "progress", no_argument, NULL, 'p' },
    { "tls", required_argument, NULL, OPT_TLS },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "no-extended-headers", no_argument, NULL, OPT_NO_EH },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, OPT_VERSION },
    { NULL, 0, NULL, 0 },
  };
  struct copy_opts *o = &copy.o;
  int c;
  while ((c = getopt_long(argc, argv, "C:R:ph", longopts, NULL)) != -1) {
    switch (c) {
    case 'C': o->connections = parse_int(optarg, MAX_CONNECTIONS); break;
    case 'R': o->requests = parse_int(optarg, MAX_REQUESTS); break;
    case OPT_RS: o->request_size = parse_size(optarg); break;
    case OPT_NOSPARSE: o->sparse = false; break;
    case OPT_ISZERO: o->dst_is_zero = true; break;
    case OPT_FLUSH: o->flush = true; break;
    case 'p': o->progress = true; break;
    case OPT_TLS: o->tls = parse_tls(optarg); break;
    case OPT_TIMEOUT:
      o->timeout = strcmp(optarg, "0") == 0 ? 0
                   : (unsigned)parse_int(optarg, 86400);
      break;
    case OPT_NO_EH: o->no_eh = true; break;
    case 'h': usage(stdout, EXIT_SUCCESS); break;
    case OPT_VERSION: printf("snbd-copy %s\n", SNBD_VERSION); exit(0);
    default: usage(stderr, EXIT_FAILURE);
    }
  }
  if (optind != argc - 2)
    usage(stderr, EXIT_FAILURE);
  *src = argv[optind];
  *dst = argv[optind + 1];
}

/* Request size within both servers' limits and a multiple of both
 * minimum block sizes; how many workers; how much work at a time. */
static void plan(struct copy *c)
{
  uint32_t align = c->src.min_block > c->dst.min_block ? c->src.min_block
                                                       : c->dst.min_block;
  uint32_t rs = c->o.request_size;
  if (rs > c->src.max_block)
    rs = c->src.max_block;
  if (rs > c->dst.max_block)
    rs = c->dst.max_block;
  rs -= rs % align;
  c->o.request_size = rs ? rs : align;
  int n = c->o.connections;
  if (!c->src.can_multi_conn || !c->dst.can_multi_conn)
    n = 1;
  c->nworkers = n;
  uint64_t unit = c->total / ((uint64_t)n * 4);
  if (unit > 64u << 20)
    unit = 64u << 20;
  unit -= unit % c->o.request_size;
  c->unit = unit ? unit : c->o.request_size;
}

static int prepare(struct copy *c)
{
  bool sized = !c->src.ops->stream;   /* else copied until its end */
  if (sized)
    c->total = (uint64_t)c->src.size;
  if (sized && c->dst.ops->fixed_size && (uint64_t)c->dst.size < c->total) {
    copy_fail(c, "%s (%" PRId64 " bytes) is smaller than %s (%" PRIu64
              " bytes)", c->dst.name, c->dst.size, c->src.name, c->total);
    return -1;
  }
  if (sized && c->dst.ops->truncate &&
      c->dst.ops->truncate(c, &c->dst, c->total) == -1)
    return -1;
  plan(c);
  struct endpoint *es[] = { &c->src, &c->dst };
  for (size_t i = 0; i < 2; i++)
    if (es[i]->ops->open_more &&
        es[i]->ops->open_more(c, es[i], c->nworkers) == -1)
      return -1;
  return 0;
}

/* A failed copy leaves no half-written file it created; a file that was
 * there before is left (its old contents are partly overwritten, and
 * removing it would lose the rest), and the user is told which. */
static void clean_up_destination(struct endpoint *e)
{
  if (!e->regular || !strcmp(e->name, "-"))
    return;
  if (!e->created)
    fprintf(stderr, "snbd-copy: %s was there before the copy, so it is "
            "left as it is: partly overwritten\n", e->name);
  else if (unlink(e->name) == 0)
    fprintf(stderr, "snbd-copy: removed %s, which the failed copy had "
            "created\n", e->name);
  else
    fprintf(stderr, "snbd-copy: could not remove %s, which the failed "
            "copy had created: %s\n", e->name, strerror(errno));
}

static void close_endpoint(struct endpoint *e)
{
  if (e->ops)                 /* NULL: never opened */
    e->ops->close(e);
}

int main(int argc, char *argv[])
{
  const char *src, *dst;
  parse_args(argc, argv, &src, &dst);

  static sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  signal(SIGPIPE, SIG_IGN);   /* a closed stdout is an error, not a death */
  pthread_t st;
  if (pthread_create(&st, NULL, signal_thread, &sigs) != 0) {
    fprintf(stderr, "snbd-copy: cannot start the signal thread\n");
    return EXIT_FAILURE;
  }
  pthread_detach(st);

  struct copy *c = &copy;
  if (ep_open(c, &c->src, src, true) == 0 &&
      ep_open(c, &c->dst, dst, false) == 0 && prepare(c) == 0 &&
      copy_run(c) == 0 && c->o.flush && c->dst.ops->flush)
    c->dst.ops->flush(c, &c->dst);
  close_endpoint(&c->src);
  close_endpoint(&c->dst);
  pthread_mutex_lock(&c->lock);
  char *err = c->err;
  pthread_mutex_unlock(&c->lock);
  if (err) {
    fprintf(stderr, "snbd-copy: %s\n", err);
    clean_up_destination(&c->dst);
    return atomic_load(&interrupted) ? 130 : EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
