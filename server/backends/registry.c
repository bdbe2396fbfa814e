/* snbd: opening a backend from its spec string.  Every kind of backend
 * is a row of one table: a plain backend opens its arguments, a filter
 * takes a fixed number of arguments and wraps the backend the rest of
 * its spec names, handed to it already open (as nbdkit's filters are
 * handed the next layer), so no backend opens another.
 */
#include <errno.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "log.h"
#ifdef SNBD_HAVE_RBD
#include "rbd.h"
#endif

/* Capabilities that only make sense on a writable backend.  A read-only
 * open drops them so the server never advertises them (the backends also
 * refuse the calls with EPERM, in case one arrives anyway). */
#define WRITE_CAPS (BACKEND_CAN_WRITE | BACKEND_CAN_FUA | BACKEND_CAN_TRIM | \
                    BACKEND_CAN_ZERO | BACKEND_CAN_FAST_ZERO)

/* Filters nest ("error:...:async:...:memory:1M"); this bounds the depth. */
#define FILTER_DEPTH_MAX 8

/* Opens "memory:SIZE". */
static struct backend *open_memory(const char *arg, bool readonly,
                                   const struct backend_keys *keys)
{
  (void)keys;
  uint64_t size;
  (void)readonly;                /* backend_open drops the write caps */
  if (parse_size(arg, &size) == -1)
    return NULL;
  return backend_memory_open(size);
}

/* Opens "file:PATH". */
static struct backend *open_file(const char *arg, bool readonly,
                                 const struct backend_keys *keys)
{
  (void)keys;
  return backend_file_open(arg, readonly);
}

struct backend_kind {
  const char *name;              /* the spec's prefix, before ':' */
  const char *usage;             /* one help line */
  struct backend *(*open)(const char *args, bool readonly,
                          const struct backend_keys *keys);
  /* A filter: its first nargs ':'-separated arguments are its own; the
   * rest of the spec is the backend it wraps. */
  int nargs;
  struct backend *(*open_filter)(const char *args, struct backend *inner);
  const char *const *keys;       /* export keys it takes, NULL-ended */
  bool test_only;                /* not in --help */
};

static const struct backend_kind kinds[] = {
  { "memory", "memory:SIZE (sparse RAM disk, e.g. memory:1G)",
    open_memory, 0, NULL, NULL, false },
  { "file", "file:PATH (regular file or block device)",
    open_file, 0, NULL, NULL, false },
#ifdef SNBD_HAVE_RBD
  { "rbd", "rbd:POOL/[NAMESPACE/]IMAGE[@SNAP] (Ceph RBD image)",
    backend_rbd_open, 0, NULL, rbd_key_names, false },
#endif
  { "error", "error:RATE:ERRNAME:SPEC (test only: fails operations)",
    NULL, 2, backend_error_open, NULL, true },
  { "async", "async:DELAY_US:SPEC (test only: completes operations "
    "later, from another thread)", NULL, 1, backend_async_open, NULL,
    true },
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

static const struct backend_kind *kind_find(const char *spec, size_t len)
{
  for (size_t i = 0; i < NKINDS; i++)
    if (strlen(kinds[i].name) == len && memcmp(kinds[i].name, spec, len) == 0)
      return &kinds[i];
  return NULL;
}

static void unknown_kind(const char *spec)
{
  char names[256] = "";
  size_t used = 0;
  for (size_t i = 0; i < NKINDS && used < sizeof names; i++) {
    const char *u = kinds[i].usage;
    int n = snprintf(names + used, sizeof names - used, "%s%.*s",
                     i == 0 ? "" : i + 1 == NKINDS ? " or " : ", ",
                     (int)strcspn(u, " "), u);
    used += n > 0 ? (size_t)n : 0;
  }
  set_error(EINVAL, "unknown backend \"%.64s\" (use %s)", spec, names);
}

static bool takes(const struct backend_kind *k, const char *key)
{
  for (const char *const *p = k->keys; p && *p; p++)
    if (strcmp(*p, key) == 0)
      return true;
  return false;
}

bool backend_key_known(const char *name)
{
  for (size_t i = 0; i < NKINDS; i++)
    if (takes(&kinds[i], name))
      return true;
  return false;
}

/* Every key of the export's own is one k takes; else the error is set. */
static bool keys_apply(const struct backend_kind *k,
                       const struct backend_keys *keys)
{
  for (size_t i = 0; keys && i < keys->n; i++)
    if (!keys->v[i].fallback && !takes(k, keys->v[i].name)) {
      set_error(EINVAL, "key %s does not apply to a %s: backend",
                keys->v[i].name, k->name);
      return false;
    }
  return true;
}

void backend_kinds_usage(char *buf, size_t len)
{
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < NKINDS && used < len; i++) {
    const char *u = kinds[i].usage;
    if (kinds[i].test_only)
      continue;
    int n = snprintf(buf + used, len - used, "%s%.*s", used ? " | " : "",
                     (int)strcspn(u, " "), u);
    used += n > 0 ? (size_t)n : 0;
  }
}

/* Opens a filter's inner spec, then the filter around it. */
static struct backend *open_filter(const struct backend_kind *k,
                                   const char *args, bool readonly,
                                   const struct backend_keys *keys,
                                   int depth);

static struct backend *open_spec(const char *spec, bool readonly,
                                 const struct backend_keys *keys, int depth)
{
  const char *colon = spec ? strchr(spec, ':') : NULL;
  const struct backend_kind *k;
  struct backend *b;

  if (spec == NULL) {
    set_error(EINVAL, "no backend given");
    return NULL;
  }
  if (colon == NULL || (k = kind_find(spec, (size_t)(colon - spec))) == NULL) {
    unknown_kind(spec);
    return NULL;
  }
  if (k->open_filter)
    b = open_filter(k, colon + 1, readonly, keys, depth);
  else if (!keys_apply(k, keys))
    return NULL;
  else
    b = k->open(colon + 1, readonly, keys);
  if (b != NULL && readonly)
    b->caps &= ~WRITE_CAPS;
  return b;
}

static struct backend *open_filter(const struct backend_kind *k,
                                   const char *args, bool readonly,
                                   const struct backend_keys *keys,
                                   int depth)
{
  const char *rest = args;
  for (int i = 0; i < k->nargs && rest; i++)
    if ((rest = strchr(rest, ':')) != NULL)
      rest++;
  if (rest == NULL) {
    set_error(EINVAL, "%s: expected %s", k->name, k->usage);
    return NULL;
  }
  if (depth >= FILTER_DEPTH_MAX) {
    set_error(EINVAL, "%s: filters nested too deep", k->name);
    return NULL;
  }
  struct backend *inner = open_spec(rest, readonly, keys, depth + 1);
  if (inner == NULL)
    return NULL;
  char *own = strndup(args, (size_t)(rest - 1 - args));
  struct backend *b = own ? k->open_filter(own, inner) : NULL;
  free(own);
  if (b == NULL) {
    if (!own)
      set_error(ENOMEM, "%s: out of memory", k->name);
    backend_close(inner);
    return NULL;
  }
  b->inner = inner;
  return b;
}

struct backend *backend_open_keys(const char *spec, bool readonly,
                                  const struct backend_keys *keys)
{
  return open_spec(spec, readonly, keys, 0);
}

struct backend *backend_open(const char *spec, bool readonly)
{
  return open_spec(spec, readonly, NULL, 0);
}

void backend_close(struct backend *b)
{
  while (b != NULL) {
    struct backend *inner = b->inner;
    b->ops->close(b);
    b = inner;
  }
}

/* The largest size accepted anywhere: NBD sizes and off_t are signed
 * 64-bit quantities. */
#define SIZE_LIMIT ((uint64_t)INT64_MAX)

/* The power of two a size suffix stands for, or 0 if c is not one. */
static unsigned size_suffix_shift(char c)
{
  switch (c) {
  case 'k': case 'K': return 10;
  case 'm': case 'M': return 20;
  case 'g': case 'G': return 30;
  case 't': case 'T': return 40;
  case 'p': case 'P': return 50;
  case 'e': case 'E': return 60;
  default: return 0;
  }
}

int parse_size(const char *s, uint64_t *out)
{
  const char *p = s;
  uint64_t v = 0;

  if (s == NULL || *s < '0' || *s > '9') {   /* empty, sign, space */
    set_error(EINVAL, "size \"%.40s\" is not a size (use e.g. 512M, 1G)",
              s ? s : "");
    return -1;
  }
  for (; *p >= '0' && *p <= '9'; p++) {
    unsigned d = (unsigned)(*p - '0');
    if (v > (SIZE_LIMIT - d) / 10) {
      set_error(ERANGE, "size \"%.40s\": larger than %" PRId64, s,
                INT64_MAX);
      return -1;
    }
    v = v * 10 + d;
  }
  if (*p != '\0') {
    unsigned shift = size_suffix_shift(*p);
    if (shift == 0 || p[1] != '\0') {
      set_error(EINVAL, "size \"%.40s\": bad suffix (use K M G T P E)", s);
      return -1;
    }
    if (v > (SIZE_LIMIT >> shift)) {
      set_error(ERANGE, "size \"%.40s\": larger than %" PRId64, s,
                INT64_MAX);
      return -1;
    }
    v <<= shift;
  }
  *out = v;
  return 0;
}
