/* fuzz: one in-process snbd server connection per input (fuzz_server.h). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "conn.h"
#include "fuzz_server.h"
#include "log.h"
#include "peer.h"

/* Replies one input may cause before the client hangs up (peer.h). */
#define FUZZ_OUTPUT_BUDGET (64u * 1024 * 1024)

/* The file export's spec, "file=file:/proc/self/fd/N": the file is
 * unlinked as soon as it is made, so no run leaves one behind. */
static char file_spec[64];
static int file_fd = -1;

static char async_file_spec[80];

static const char *exports[] = {
  "memory:1M",
  FUZZ_EXPORT_RO "=memory:64K,readonly,description=read-only export",
  FUZZ_EXPORT_BIG "=memory:1T",
  file_spec,
};
/* The same behind the async filter: one thread completing operations in
 * the order submitted (delay 0), so the oracle's model stays exact. */
static const char *async_exports[] = {
  "async:0:memory:1M",
  FUZZ_EXPORT_RO "=async:0:memory:64K,readonly,description=read-only export",
  FUZZ_EXPORT_BIG "=async:0:memory:1T",
  async_file_spec,
};
_Static_assert(sizeof exports == sizeof async_exports, "export tables");

static struct fuzz_server_mode mode;

void fuzz_server_set_mode(struct fuzz_server_mode m)
{
  mode = m;
}

/* The file export starts as 1 MiB of holes, like the memory ones. */
static void fresh_file(void)
{
  if (ftruncate(file_fd, 0) == -1 || ftruncate(file_fd, 1024 * 1024) == -1) {
    perror("fuzz: file export");
    abort();
  }
}

void fuzz_server_init(void)
{
  /* As main() does: a hung-up client is an EPIPE, not a signal. */
  signal(SIGPIPE, SIG_IGN);
  log_init("snbd-fuzz", LOG_TO_STDERR, getenv("FUZZ_VERBOSE") != NULL);
  /* One worker: requests of one connection run in order, so a rerun of
   * an input behaves the same. */
  if (pool_start(1) == -1)
    abort();
  /* In RAM, where the server serves files with sendfile and a mapping. */
  char path[64] = "/dev/shm/snbd-fuzz-XXXXXX";
  file_fd = mkstemp(path);
  if (file_fd == -1) {
    snprintf(path, sizeof path, "/tmp/snbd-fuzz-XXXXXX");
    file_fd = mkstemp(path);
  }
  if (file_fd == -1) {
    perror("fuzz: mkstemp");
    abort();
  }
  unlink(path);
  snprintf(file_spec, sizeof file_spec,
           FUZZ_EXPORT_FILE "=file:/proc/self/fd/%d", file_fd);
  snprintf(async_file_spec, sizeof async_file_spec,
           FUZZ_EXPORT_FILE "=async:0:file:/proc/self/fd/%d", file_fd);
}

static void server_setup(struct server *s)
{
  *s = (struct server){
    .threads = 1,
    .max_inflight = 8,           /* small: back-pressure paths run too */
    .handshake_timeout = 3600,   /* EOF ends every run long before */
    .max_negotiating = 4,
    .max_connections = 4,
    .tls_mode = TLS_MODE_OFF,
    .wake_pipe = { -1, -1 },
    .xmit_workers_only = mode.workers_only,
  };
  const char **specs = mode.async ? async_exports : exports;
  pthread_mutex_init(&s->creds_lock, NULL);
  pthread_mutex_init(&s->conns_lock, NULL);
  pthread_cond_init(&s->conns_cond, NULL);
  fresh_file();
  for (size_t i = 0; i < sizeof exports / sizeof exports[0]; i++)
    if (export_parse(s, specs[i]) == -1) {
      fprintf(stderr, "fuzz: %s: %s\n", specs[i], get_error());
      abort();
    }
  if (exports_open(s, false) == -1)
    abort();
}

static void server_teardown(struct server *s)
{
  exports_close(s);
  pthread_cond_destroy(&s->conns_cond);
  pthread_mutex_destroy(&s->conns_lock);
  pthread_mutex_destroy(&s->creds_lock);
}

void fuzz_server_run(const uint8_t *pre, size_t npre, const uint8_t *data,
                     size_t ndata, const struct check_params *check)
{
  struct server s;
  struct peer p;
  int sv[2];

  if (ndata > FUZZ_MAX_INPUT)
    ndata = FUZZ_MAX_INPUT;
  server_setup(&s);
  fuzz_socketpair(sv);
  if (check)
    peer_start_reader(&p, sv[1], pre, npre, data, ndata, FUZZ_OUTPUT_BUDGET,
                      check_replies, (void *)check);
  else
    peer_start(&p, sv[1], pre, npre, data, ndata, false,
               FUZZ_OUTPUT_BUDGET);
  /* conn_start owns sv[0] from here (closes it on every path). */
  conn_start(&s, sv[0], true, "fuzz");
  pthread_mutex_lock(&s.conns_lock);
  while (s.nconns > 0)
    pthread_cond_wait(&s.conns_cond, &s.conns_lock);
  pthread_mutex_unlock(&s.conns_lock);
  peer_join(&p);
  server_teardown(&s);
}
