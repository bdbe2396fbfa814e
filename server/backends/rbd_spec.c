/* snbd: the RBD backend's pure parts: its spec and keys, the errno a
 * request reports for a librbd result, and the one-line refusals at
 * start.  No librbd here (rbd.h), so they are unit-tested without a
 * cluster (tests/unit/test_backend_rbd.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "log.h"
#include "rbd.h"

const char *const rbd_key_names[] = {
  "ceph-conf", "ceph-id", "ceph-keyring", "ceph-timeout", NULL,
};

/* Copies the n bytes at s, a name, into dst; -1 if empty, too long or
 * holding a separator or control byte. */
static int take_name(char *dst, const char *s, size_t n, const char *what)
{
  if (n == 0 || n > RBD_NAME_MAX) {
    rbd_error(EINVAL, "%s name %s", what, n ? "too long" : "empty");
    return -1;
  }
  for (size_t i = 0; i < n; i++)
    if (s[i] == '/' || s[i] == '@' || (unsigned char)s[i] < 0x20) {
      rbd_error(EINVAL, "bad character in %s name", what);
      return -1;
    }
  memcpy(dst, s, n);
  dst[n] = '\0';
  return 0;
}

int rbd_spec_parse(const char *s, struct rbd_spec *out)
{
  memset(out, 0, sizeof *out);
  const char *at = strchr(s, '@');
  size_t len = at ? (size_t)(at - s) : strlen(s);
  const char *slash1 = memchr(s, '/', len);
  const char *slash2 = slash1 ? memchr(slash1 + 1, '/',
                                       len - (size_t)(slash1 + 1 - s))
                              : NULL;
  const char *image = slash2 ? slash2 + 1 : slash1 ? slash1 + 1 : NULL;
  if (image == NULL) {
    rbd_error(EINVAL, "expected POOL/IMAGE[@SNAP] or "
              "POOL/NAMESPACE/IMAGE[@SNAP], got \"%.64s\"", s);
    return -1;
  }
  if (take_name(out->pool, s, (size_t)(slash1 - s), "pool") == -1 ||
      (slash2 && take_name(out->ns, slash1 + 1,
                           (size_t)(slash2 - slash1 - 1),
                           "namespace") == -1) ||
      take_name(out->image, image, len - (size_t)(image - s),
                "image") == -1 ||
      (at && take_name(out->snap, at + 1, strlen(at + 1),
                       "snapshot") == -1))
    return -1;
  return 0;
}

int rbd_parse_timeout(const char *v, int *out)
{
  char *end;
  errno = 0;
  long n = v && *v >= '0' && *v <= '9' ? strtol(v, &end, 10) : -1;
  if (n < 1 || n > RBD_TIMEOUT_MAX || errno || *end) {
    rbd_error(EINVAL, "ceph-timeout: expected seconds from 1 to %d, "
              "got \"%.32s\"", RBD_TIMEOUT_MAX, v ? v : "");
    return -1;
  }
  *out = (int)n;
  return 0;
}

int rbd_errno(int ret)
{
  switch (-ret) {
  case ENOSPC: case EDQUOT: return ENOSPC;
  case EROFS: case EPERM: return EPERM;
  case EINVAL: return EINVAL;
  case EOPNOTSUPP: return ENOTSUP;
  default: return EIO;        /* ETIMEDOUT, ESHUTDOWN (blocklisted), ... */
  }
}

/* The user name in messages. */
static const char *user(const struct rbd_keys *k)
{
  return k->id ? k->id : "admin";
}

static void connect_error(int err, const struct rbd_keys *k)
{
  switch (err) {
  case ETIMEDOUT:
    rbd_error(err, "no Ceph monitor answered within %d s (is the "
              "cluster up? check mon_host in %s, or raise ceph-timeout)",
              k->timeout, k->conf ? k->conf : "ceph.conf");
    break;
  case EACCES: case EPERM:
    rbd_error(err, "the cluster refused client.%s's key (check "
              "ceph-id and ceph-keyring%s%s)", user(k),
              k->keyring ? ": " : "", k->keyring ? k->keyring : "");
    break;
  case ENOENT:
    rbd_error(err, "no keyring for client.%s (give ceph-keyring, or "
              "name one in %s)", user(k), k->conf ? k->conf : "ceph.conf");
    break;
  default:
    rbd_error(err, "cannot connect to the cluster as client.%s: %s "
              "(check ceph-conf, ceph-id and ceph-keyring)", user(k),
              strerror(err));
  }
}

void rbd_set_open_error(enum rbd_stage stage, int ret,
                        const struct rbd_spec *sp, const struct rbd_keys *k)
{
  int err = -ret;
  const char *ns = sp->ns[0] ? sp->ns : "", *sl = sp->ns[0] ? "/" : "";
  bool missing = err == ENOENT;
  switch (stage) {
  case RBD_STAGE_CONF:
    rbd_error(err, "cannot read %s: %s (set ceph-conf or CEPH_CONF)",
              k->conf ? k->conf : "a ceph.conf", strerror(err));
    break;
  case RBD_STAGE_CONNECT:
    connect_error(err, k);
    break;
  case RBD_STAGE_POOL:
    rbd_error(err, "%s pool \"%s\"%s", missing ? "no" : "cannot open",
              sp->pool, missing ? " (create it, or fix the spec)" : "");
    break;
  case RBD_STAGE_IMAGE:
    rbd_error(err, "%s image %s/%s%s%s%s%s",
              missing ? "no" : "cannot open", sp->pool, ns, sl, sp->image,
              missing ? "" : ": ", missing ? "" : strerror(err));
    break;
  case RBD_STAGE_SNAP:
    rbd_error(err, "%s snapshot %s/%s%s%s@%s%s%s",
              missing ? "no" : "cannot open", sp->pool, ns, sl, sp->image,
              sp->snap, missing ? "" : ": ", missing ? "" : strerror(err));
    break;
  }
}

int rbd_read_keys(const struct backend_keys *keys, struct rbd_keys *k)
{
  const char *t = backend_key_get(keys, "ceph-timeout");
  *k = (struct rbd_keys){
    .conf = backend_key_get(keys, "ceph-conf"),
    .id = backend_key_get(keys, "ceph-id"),
    .keyring = backend_key_get(keys, "ceph-keyring"),
    .timeout = RBD_TIMEOUT_DEFAULT,
  };
  return t ? rbd_parse_timeout(t, &k->timeout) : 0;
}
