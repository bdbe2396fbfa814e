/* snbd: the RBD backend's shared cluster connections (rbd_cluster.c). */
#ifndef SNBD_RBD_CLUSTER_H
#define SNBD_RBD_CLUSTER_H

#include <rados/librados.h>

#include "rbd.h"

struct rbd_cluster;

/* The connection for k's (conf, id), made now if there is none yet (sp
 * only names the export in messages); NULL with the error set: the
 * cluster was not reachable within k->timeout, the key was refused, or a
 * second export gave the same pair another keyring or timeout. */
struct rbd_cluster *rbd_cluster_get(const struct rbd_keys *k,
                                    const struct rbd_spec *sp);
rados_t rbd_cluster_rados(const struct rbd_cluster *c);
/* Drops one reference; the last one shuts the connection down. */
void rbd_cluster_put(struct rbd_cluster *c);

#endif
