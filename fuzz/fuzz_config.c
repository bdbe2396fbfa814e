/* fuzz: the server's INI config file parser (server/config.c over inih,
 * and export_set_key behind it).  config_load() takes a path, so the
 * input goes into a memfd read back through /proc/self/fd.  After a
 * successful load, "memory:" backends are opened too (their size parser
 * is part of reading a config); no other backend is, so a fuzz input can
 * never make the harness open a file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void broken(const char *what)
{
  fprintf(stderr, "fuzz_config: config_load broke its contract: %s\n", what);
  abort();
}

static void check_and_open(struct server *s)
{
  for (size_t i = 0; i < s->nexports; i++) {
    struct export *e = &s->exports[i];
    if (!e->name || !e->spec || strlen(e->name) > NBD_MAX_STRING)
      broken("an export without a name or backend, or a long name");
    for (size_t j = 0; j < i; j++)
      if (strcmp(s->exports[j].name, e->name) == 0)
        broken("two exports with the same name");
    if (strncmp(e->spec, "memory:", 7) == 0) {
      e->be = backend_open(e->spec, e->readonly);
      if (e->be && e->be->size > (uint64_t)INT64_MAX)
        broken("a memory backend larger than INT64_MAX");
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  static int fd = -1;
  char path[64];
  if (fd == -1 && (fd = memfd_create("fuzz_config", MFD_CLOEXEC)) == -1)
    abort();
  if (ftruncate(fd, 0) == -1 || pwrite(fd, data, size, 0) != (ssize_t)size)
    abort();
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

  struct server s = { .threads = 0, .max_inflight = 64,
                      .handshake_timeout = 10, .max_negotiating = 256,
                      .max_connections = 16384, .wake_pipe = { -1, -1 } };
  struct options o = { .port = -1 };
  clear_error();
  if (config_load(&s, &o, path) == 0)
    check_and_open(&s);
  else if (strcmp(get_error(), "no error") == 0)
    broken("failure without an error message");
  exports_close(&s);      /* closes the backends opened above */
  config_free(&s, &o);
  return 0;
}
