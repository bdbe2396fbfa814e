/* A small libsnbd client the Python tests drive against scripted
 * (hostile) servers and man-in-the-middle proxies.  It connects, runs the
 * operations named on the command line, and prints one line per result:
 *
 *   connected size=N sr=0|1 tls=0|1 eh=0|1
 *   ok OP                                   the operation succeeded
 *   error OP errno=NAME msg=MESSAGE         it failed cleanly
 *   stale=N                                 after a read: bytes still
 *                                           holding the 0xAA fill
 *
 * Usage: client-driver [--tls=off|allow|require] [--opt] [--timeout=S]
 *                      [--no-eh] URI OP...
 *   OP: read:OFF:LEN[:df]  write:OFF:LEN  flush  zero:OFF:LEN
 *       trim:OFF:LEN  cache:OFF:LEN  bs:OFF:LEN[:one]  list
 *   (--no-eh: do not ask for extended headers; lengths of zero, trim,
 *   cache and bs are 64 bits, those of read and write at most 64 MiB)
 * Exit status: 0 all operations ran (whatever their result), 1 the
 * connection failed, anything else is a crash. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snbd/snbd.h"

static const char *errno_name(int e)
{
  switch (e) {
  case EPROTO: return "EPROTO";
  case EIO: return "EIO";
  case EINVAL: return "EINVAL";
  case EPERM: return "EPERM";
  case ENOTSUP: return "ENOTSUP";
  case ENOSPC: return "ENOSPC";
  case ECONNRESET: return "ECONNRESET";
  case ENOTCONN: return "ENOTCONN";
  case ENOENT: return "ENOENT";
  case ESHUTDOWN: return "ESHUTDOWN";
  case EOVERFLOW: return "EOVERFLOW";
  case ETIMEDOUT: return "ETIMEDOUT";
  case ENOMEM: return "ENOMEM";
  default: return "other";
  }
}

static void report(const char *op, int r)
{
  if (r == -1)
    printf("error %s errno=%s msg=%s\n", op, errno_name(snbd_get_errno()),
           snbd_get_error());
  else
    printf("ok %s\n", op);
  fflush(stdout);
}

static int extent_cb(void *ud, const char *ctx, uint64_t off,
                     const struct snbd_extent *e, size_t n, int *error)
{
  (void)ud;
  (void)error;
  printf("extents %s %" PRIu64 " n=%zu first=%" PRIu64 "/%u\n", ctx, off, n,
         e[0].length, e[0].flags);
  return 0;
}

static int list_cb(void *ud, const char *name, const char *desc)
{
  (void)ud;
  printf("export name=%s desc=%s\n", name, desc);
  return 0;
}

static void run_op(struct snbd_handle *h, char *op)
{
  char kind[16] = "", arg[16] = "";
  unsigned long long off = 0, len = 0;
  sscanf(op, "%15[^:]:%llu:%llu:%15s", kind, &off, &len, arg);
  bool io = strcmp(kind, "read") == 0 || strcmp(kind, "write") == 0;
  if (io && len > 64 * 1024 * 1024) {
    printf("driver: length too large\n");
    exit(2);
  }
  if (strcmp(kind, "read") == 0) {
    char *buf = malloc(len ? len : 1);
    memset(buf, 0xaa, len);
    report(op, snbd_pread(h, buf, len, off,
                          strcmp(arg, "df") == 0 ? SNBD_CMD_FLAG_DF : 0));
    size_t stale = 0;
    for (size_t i = 0; i < len; i++)
      stale += (unsigned char)buf[i] == 0xaa;
    printf("stale=%zu\n", stale);
    free(buf);
  }
  else if (strcmp(kind, "write") == 0) {
    char *buf = calloc(1, len ? len : 1);
    report(op, snbd_pwrite(h, buf, len, off, 0));
    free(buf);
  }
  else if (strcmp(kind, "flush") == 0)
    report(op, snbd_flush(h, 0));
  else if (strcmp(kind, "zero") == 0)
    report(op, snbd_zero(h, len, off, 0));
  else if (strcmp(kind, "trim") == 0)
    report(op, snbd_trim(h, len, off, 0));
  else if (strcmp(kind, "cache") == 0)
    report(op, snbd_cache(h, len, off, 0));
  else if (strcmp(kind, "bs") == 0)
    report(op, snbd_block_status(h, len, off, extent_cb, NULL,
                                 strcmp(arg, "one") == 0
                                 ? SNBD_CMD_FLAG_REQ_ONE : 0));
  else if (strcmp(kind, "list") == 0)
    report(op, snbd_list_exports(h, list_cb, NULL));
  else {
    printf("driver: unknown operation %s\n", op);
    exit(2);
  }
}

int main(int argc, char *argv[])
{
  int i = 1, tls = -1;
  unsigned timeout = 10;
  bool opt = false, eh = true;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    if (strcmp(argv[i], "--tls=off") == 0) tls = SNBD_TLS_DISABLE;
    else if (strcmp(argv[i], "--tls=allow") == 0) tls = SNBD_TLS_ALLOW;
    else if (strcmp(argv[i], "--tls=require") == 0) tls = SNBD_TLS_REQUIRE;
    else if (strcmp(argv[i], "--opt") == 0) opt = true;
    else if (strcmp(argv[i], "--no-eh") == 0) eh = false;
    else if (strncmp(argv[i], "--timeout=", 10) == 0)
      timeout = (unsigned)atoi(argv[i] + 10);
  }
  if (i >= argc) {
    fprintf(stderr, "usage: client-driver [--tls=MODE] [--opt] URI OP...\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);   /* lines survive a crash */
  struct snbd_handle *h = snbd_create();
  if (!h || snbd_set_uri_allow_local_file(h, true) == -1 ||
      snbd_add_meta_context(h, "base:allocation") == -1 ||
      snbd_set_handshake_timeout(h, timeout) == -1 ||
      (tls >= 0 && snbd_set_tls(h, tls) == -1) ||
      snbd_set_opt_mode(h, opt) == -1 ||
      snbd_set_request_extended_headers(h, eh) == -1)
    return 2;
  if (snbd_connect_uri(h, argv[i]) == -1) {
    report("connect", -1);
    snbd_close(h);
    return 1;
  }
  printf("connected size=%" PRId64 " sr=%d tls=%d eh=%d\n", snbd_get_size(h),
         snbd_get_structured_replies_negotiated(h),
         snbd_get_tls_negotiated(h), snbd_get_extended_headers_negotiated(h));
  for (i++; i < argc; i++)
    run_op(h, argv[i]);
  snbd_shutdown(h);     /* fails harmlessly if the connection is gone */
  snbd_close(h);
  return 0;
}
