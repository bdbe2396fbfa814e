/* snbd: the RBD backend's cluster connections.  One librados connection
 * per (ceph-conf, ceph-id) in the process, made when the first export
 * that names it is opened (at start, before serving) and shared by every
 * export that names the same pair; the last export closed shuts it down.
 *
 * librados waits about 300 s for an unreachable monitor unless
 * client_mount_timeout says otherwise, and by default waits for ever on
 * an OSD that is down: ceph-timeout sets client_mount_timeout,
 * rados_mon_op_timeout and rados_osd_op_timeout, so a connection at
 * start and every request later fail within it instead of hanging.  (A
 * full cluster: see rbd.c open_image.)
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rados/librados.h>

#include "cleanup.h"
#include "log.h"
#include "rbd.h"
#include "rbd_cluster.h"

struct rbd_cluster {
  char *conf, *id, *keyring;    /* as given; conf/keyring may be NULL */
  int timeout;
  rados_t rados;
  int refs;
  struct rbd_cluster *next;
};

/* The connections: a leaf lock, held while connecting (at start only). */
static pthread_mutex_t clusters_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rbd_cluster *clusters;

static bool same(const char *a, const char *b)
{
  return a == b || (a && b && strcmp(a, b) == 0);
}

/* Sets librados option name to value; -1 with the error set. */
static int conf_set(rados_t r, const char *name, const char *value)
{
  int ret = rados_conf_set(r, name, value);
  if (ret < 0)
    rbd_error(-ret, "cannot set %s=%s: %s", name, value,
              strerror(-ret));
  return ret < 0 ? -1 : 0;
}

/* Reads ceph.conf and applies the keys; -1 with the error set. */
static int configure(rados_t r, const struct rbd_keys *k,
                     const struct rbd_spec *sp)
{
  char t[16];
  int ret = rados_conf_read_file(r, k->conf);
  if (ret < 0) {
    rbd_set_open_error(RBD_STAGE_CONF, ret, sp, k);
    return -1;
  }
  ret = rados_conf_parse_env(r, NULL);         /* CEPH_ARGS */
  if (ret < 0) {
    rbd_error(-ret, "bad CEPH_ARGS: %s", strerror(-ret));
    return -1;
  }
  snprintf(t, sizeof t, "%d", k->timeout);
  if ((k->keyring && conf_set(r, "keyring", k->keyring) == -1) ||
      conf_set(r, "client_mount_timeout", t) == -1 ||
      conf_set(r, "rados_mon_op_timeout", t) == -1 ||
      conf_set(r, "rados_osd_op_timeout", t) == -1 ||
      /* The server keeps a WRITE's buffer untouched until its completion
       * (backend.h), so librbd may send it without copying it first. */
      conf_set(r, "rbd_disable_zero_copy_writes", "false") == -1)
    return -1;
  return 0;
}

static struct rbd_cluster *connect_new(const struct rbd_keys *k,
                                       const struct rbd_spec *sp)
{
  struct rbd_cluster *c = calloc(1, sizeof *c);
  if (!c || (k->conf && !(c->conf = strdup(k->conf))) ||
      (k->id && !(c->id = strdup(k->id))) ||
      (k->keyring && !(c->keyring = strdup(k->keyring)))) {
    rbd_error(ENOMEM, "out of memory");
    goto err;
  }
  c->timeout = k->timeout;
  int ret = rados_create(&c->rados, k->id);
  if (ret < 0) {
    rbd_error(-ret, "rados_create: %s", strerror(-ret));
    goto err;
  }
  if (configure(c->rados, k, sp) == -1)
    goto err_shutdown;
  ret = rados_connect(c->rados);
  if (ret < 0) {
    rbd_set_open_error(RBD_STAGE_CONNECT, ret, sp, k);
    goto err_shutdown;
  }
  c->refs = 1;
  return c;
err_shutdown:
  rados_shutdown(c->rados);
err:
  if (c) {
    free(c->conf);
    free(c->id);
    free(c->keyring);
  }
  free(c);
  return NULL;
}

struct rbd_cluster *rbd_cluster_get(const struct rbd_keys *k,
                                    const struct rbd_spec *sp)
{
  SCOPED_LOCK(&clusters_lock);
  for (struct rbd_cluster *c = clusters; c; c = c->next) {
    if (!same(c->conf, k->conf) || !same(c->id, k->id))
      continue;
    if (!same(c->keyring, k->keyring) || c->timeout != k->timeout) {
      rbd_error(EINVAL, "exports with the same ceph-conf and ceph-id "
                "share one connection, so their ceph-keyring and "
                "ceph-timeout must agree");
      return NULL;
    }
    c->refs++;
    return c;
  }
  struct rbd_cluster *c = connect_new(k, sp);
  if (c) {
    c->next = clusters;
    clusters = c;
  }
  return c;
}

rados_t rbd_cluster_rados(const struct rbd_cluster *c)
{
  return c->rados;
}

void rbd_cluster_put(struct rbd_cluster *c)
{
  SCOPED_LOCK(&clusters_lock);
  if (--c->refs > 0)
    return;
  for (struct rbd_cluster **pp = &clusters; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  rados_shutdown(c->rados);
  free(c->conf);
  free(c->id);
  free(c->keyring);
  free(c);
}
