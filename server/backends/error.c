/* snbd: an error-injecting filter, for tests.
 *
 * "error:RATE:ERRNAME:SPEC" wraps SPEC (opened by registry.c) and makes
 * its pread, pwrite, trim, zero and flush fail with errno ERRNAME (EIO,
 * ENOSPC, EPERM, ...) with probability RATE (0 to 1, e.g. 0.1); extents
 * and cache pass through.  A failing call does not reach SPEC, and a
 * failing read zeroes the buffer.  Of the optional operations only
 * never_waits passes through: with send_fd or map the server would bypass
 * pread and pwrite, and could never see an injected error.
 *
 * Draw number n is splitmix64 of seed + n: a shared atomic counter, so
 * worker threads need no lock.  The seed comes from SNBD_ERROR_SEED when it
 * is set (a single-threaded test then sees the same failures every run),
 * else from the clock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "log.h"

struct err_backend {
  struct backend b;              /* first, so ops can cast back */
  struct backend *inner;
  double rate;                   /* probability that a call fails */
  int err;
  const char *errname;
  uint64_t seed;
  atomic_uint_fast64_t draws;
};

static const struct { const char *name; int err; } err_names[] = {
  { "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EPERM", EPERM },
  { "EINVAL", EINVAL }, { "ENOMEM", ENOMEM }, { "ENOTSUP", ENOTSUP },
  { "EOPNOTSUPP", EOPNOTSUPP }, { "EOVERFLOW", EOVERFLOW },
  { "ESHUTDOWN", ESHUTDOWN }, { "EROFS", EROFS }, { "EDQUOT", EDQUOT },
  { "EFBIG", EFBIG }, { "EACCES", EACCES }, { "ETIMEDOUT", ETIMEDOUT },
};

static struct err_backend *eb_of(struct backend *b)
{
  return (struct err_backend *)b;
}

static uint64_t splitmix64(uint64_t x)
{
  x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
  return x ^ (x >> 31);
}

/* Whether this call is to fail; if so the error is set. */
static bool inject(struct err_backend *eb, const char *op)
{
  uint64_t n = atomic_fetch_add_explicit(&eb->draws, 1,
                                         memory_order_relaxed);
  uint64_t x = splitmix64(eb->seed + (n + 1) * UINT64_C(0x9e3779b97f4a7c15));
  double u = (double)(x >> 11) * 0x1p-53;          /* uniform in [0, 1) */
  if (u >= eb->rate)
    return false;
  set_error(eb->err, "%s: injected %s in %s", eb->b.desc, eb->errname, op);
  return true;
}

static int err_pread(struct backend *b, void *buf, size_t count,
                     uint64_t offset)
{
  struct err_backend *eb = eb_of(b);
  if (inject(eb, "pread")) {
    memset(buf, 0, count);
    return -1;
  }
  return eb->inner->ops->pread(eb->inner, buf, count, offset);
}

static int err_pwrite(struct backend *b, const void *buf, size_t count,
                      uint64_t offset, unsigned flags)
{
  struct err_backend *eb = eb_of(b);
  if (inject(eb, "pwrite"))
    return -1;
  return eb->inner->ops->pwrite(eb->inner, buf, count, offset, flags);
}

static int err_flush(struct backend *b)
{
  struct err_backend *eb = eb_of(b);
  if (inject(eb, "flush"))
    return -1;
  return eb->inner->ops->flush(eb->inner);
}

static int err_trim(struct backend *b, uint64_t count, uint64_t offset,
                    unsigned flags)
{
  struct err_backend *eb = eb_of(b);
  if (inject(eb, "trim"))
    return -1;
  return eb->inner->ops->trim(eb->inner, count, offset, flags);
}

static int err_zero(struct backend *b, uint64_t count, uint64_t offset,
                    unsigned flags)
{
  struct err_backend *eb = eb_of(b);
  if (inject(eb, "zero"))
    return -1;
  return eb->inner->ops->zero(eb->inner, count, offset, flags);
}

static int err_extents(struct backend *b, uint64_t count, uint64_t offset,
                       struct extents *e)
{
  struct err_backend *eb = eb_of(b);
  return eb->inner->ops->extents(eb->inner, count, offset, e);
}

static int err_cache(struct backend *b, uint64_t count, uint64_t offset)
{
  struct err_backend *eb = eb_of(b);
  return eb->inner->ops->cache(eb->inner, count, offset);
}

static bool err_never_waits(struct backend *b)
{
  struct err_backend *eb = eb_of(b);
  return eb->inner->ops->never_waits &&
         eb->inner->ops->never_waits(eb->inner);
}

static void err_close(struct backend *b)      /* the layer closes inner */
{
  free(b->desc);
  free(b);
}

static const struct backend_ops err_ops = {
  .name = "error",
  .pread = err_pread,
  .pwrite = err_pwrite,
  .flush = err_flush,
  .trim = err_trim,
  .zero = err_zero,
  .extents = err_extents,
  .cache = err_cache,
  .close = err_close,
  .never_waits = err_never_waits,
};

/* RATE: a decimal number from 0 to 1 ("0.1", "1", ".5"). */
static int parse_rate(const char *s, size_t len, double *out)
{
  char buf[32], *end;

  if (len == 0 || len >= sizeof buf || strspn(s, "0123456789.") < len) {
    set_error(EINVAL, "error: rate \"%.*s\" is not a number from 0 to 1",
              (int)(len < 32 ? len : 32), s);
    return -1;
  }
  memcpy(buf, s, len);
  buf[len] = '\0';
  errno = 0;
  double r = strtod(buf, &end);
  if (errno != 0 || *end != '\0' || !(r >= 0.0 && r <= 1.0)) {
    set_error(EINVAL, "error: rate \"%s\" is not a number from 0 to 1", buf);
    return -1;
  }
  *out = r;
  return 0;
}

/* ERRNAME: one of err_names. */
static int parse_errname(const char *s, size_t len, int *err,
                         const char **name)
{
  for (size_t i = 0; i < sizeof err_names / sizeof err_names[0]; i++)
    if (strlen(err_names[i].name) == len &&
        memcmp(err_names[i].name, s, len) == 0) {
      *err = err_names[i].err;
      *name = err_names[i].name;
      return 0;
    }
  set_error(EINVAL, "error: unknown errno name \"%.*s\" (use EIO, ENOSPC, "
            "EPERM, ...)", (int)(len < 32 ? len : 32), s);
  return -1;
}

/* SNBD_ERROR_SEED if set (decimal or 0x hex), else the clock. */
static int choose_seed(uint64_t *seed)
{
  const char *env = getenv("SNBD_ERROR_SEED");
  struct timespec ts;

  if (env != NULL && *env != '\0') {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(env, &end, 0);
    if (errno != 0 || *end != '\0' || *env == '-') {
      set_error(EINVAL, "SNBD_ERROR_SEED \"%.32s\" is not a number", env);
      return -1;
    }
    *seed = v;
    return 0;
  }
  clock_gettime(CLOCK_MONOTONIC, &ts);
  *seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
          (uint64_t)getpid();
  return 0;
}

struct backend *backend_error_open(const char *args, struct backend *inner)
{
  const char *c1 = strchr(args, ':');
  struct err_backend *eb;

  if (c1 == NULL) {
    set_error(EINVAL, "error: expected error:RATE:ERRNAME:SPEC");
    return NULL;
  }
  eb = calloc(1, sizeof *eb);
  if (eb == NULL) {
    set_error(ENOMEM, "error backend: out of memory");
    return NULL;
  }
  if (parse_rate(args, (size_t)(c1 - args), &eb->rate) == -1 ||
      parse_errname(c1 + 1, strlen(c1 + 1), &eb->err, &eb->errname) == -1 ||
      choose_seed(&eb->seed) == -1) {
    free(eb);
    return NULL;
  }
  if (asprintf(&eb->b.desc, "error:%.*s:%s:%s", (int)(c1 - args), args,
               eb->errname, inner->desc) == -1) {
    free(eb);
    set_error(ENOMEM, "error backend: out of memory");
    return NULL;
  }
  eb->inner = inner;
  atomic_init(&eb->draws, 0);
  eb->b.ops = &err_ops;
  eb->b.size = inner->size;
  /* Not CHEAP_EXTENTS: the server would then skip pread for holes and
   * could never see the error injected there. */
  eb->b.caps = inner->caps & ~BACKEND_CHEAP_EXTENTS;
  eb->b.block_min = inner->block_min;
  eb->b.block_pref = inner->block_pref;
  return &eb->b;
}
