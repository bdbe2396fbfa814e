/* snbd: the Ceph RBD backend's internal interface (rbd.c, rbd_cluster.c,
 * rbd_spec.c).  rbd_spec.c is pure (no librbd), so the unit test
 * tests/unit/test_backend_rbd.c runs without a cluster or librbd.
 */
#ifndef SNBD_RBD_H
#define SNBD_RBD_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"

/* set_error with the prefix "rbd" (not the function's name): the refusals
 * at start are read by people. */
#define rbd_error(errnum, ...) set_error_at("rbd", (errnum), __VA_ARGS__)

/* Longest pool, namespace, image or snapshot name accepted (Ceph's own
 * limits are lower: an image name is at most 95 bytes). */
#define RBD_NAME_MAX 255

/* "POOL/IMAGE[@SNAP]" or "POOL/NAMESPACE/IMAGE[@SNAP]". */
struct rbd_spec {
  char pool[RBD_NAME_MAX + 1];
  char ns[RBD_NAME_MAX + 1];      /* "" for the default namespace */
  char image[RBD_NAME_MAX + 1];
  char snap[RBD_NAME_MAX + 1];    /* "" when the export is the image */
};

/* 0, or -1 with the error set, saying what is wrong with s. */
int rbd_spec_parse(const char *s, struct rbd_spec *out);

/* The export keys (registry.c's rbd row) and their values. */
struct rbd_keys {
  const char *conf;               /* ceph-conf: NULL = CEPH_CONF or
                                     librados's search path */
  const char *id;                 /* ceph-id: cephx user without "client." */
  const char *keyring;            /* ceph-keyring: NULL = ceph.conf's */
  int timeout;                    /* ceph-timeout: seconds */
};
#define RBD_TIMEOUT_DEFAULT 30
#define RBD_TIMEOUT_MAX 3600
extern const char *const rbd_key_names[];   /* NULL-terminated */

/* ceph-timeout's value: 0, or -1 with set_error(). */
int rbd_parse_timeout(const char *v, int *out);

/* The export's keys into k, with the defaults where one is not given: 0,
 * or -1 with the error set (a bad ceph-timeout). */
struct backend_keys;
int rbd_read_keys(const struct backend_keys *keys, struct rbd_keys *k);

/* Opens the export args, already parsed into spec and keys: rbd.c, in
 * the module rbd.so, which module.c loads the first time an rbd: export
 * opens (backend_rbd_open). */
struct backend;
__attribute__((visibility("default")))
struct backend *rbd_module_open(const char *args, const struct rbd_spec *spec,
                                const struct rbd_keys *keys, bool readonly);

/* The errno a request reports for librbd's result ret (< 0): ENOSPC for
 * a full pool or quota, EPERM for a write refused as read-only, EINVAL
 * for a range librbd refused, ENOTSUP where it cannot do the operation,
 * EIO for everything else (timeouts, a lost cluster, corruption). */
int rbd_errno(int ret);

/* Where opening an export failed: the one line snbd-server prints says
 * what and how to fix it. */
enum rbd_stage {
  RBD_STAGE_CONF,       /* reading ceph-conf */
  RBD_STAGE_CONNECT,    /* rados_connect: monitors, cephx */
  RBD_STAGE_POOL,       /* rados_ioctx_create */
  RBD_STAGE_IMAGE,      /* rbd_open */
  RBD_STAGE_SNAP,       /* rbd_snap_set */
};
/* Sets the error for librbd/librados result ret (< 0) at stage. */
void rbd_set_open_error(enum rbd_stage stage, int ret,
                        const struct rbd_spec *sp, const struct rbd_keys *k);

#endif
