/* snbd-info internals shared by its two files: what was learned about the
 * connection and each export, and how it is printed. */
#ifndef SNBD_TOOLS_INFO_H
#define SNBD_TOOLS_INFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "snbd/snbd.h"
#include "vector.h"

struct info_opts {
  const char *uri;
  const char *feature;     /* --can / --is */
  bool is, json, list, map, size;
  int tls;                 /* -1: as the URI says */
  unsigned timeout;        /* libsnbd request timeout, seconds */
  bool no_eh;              /* --no-extended-headers */
};

DEFINE_VECTOR(strlist, char *);   /* strings it owns */
int strlist_add(struct strlist *l, const char *s);
void strlist_free(struct strlist *l);

struct export_info {
  char *name, *canonical, *description;
  int64_t size, min, pref, max;
  int flags;
  bool can_block_status;
  struct strlist contexts;
};
void export_info_free(struct export_info *e);

struct conn_info {
  char *protocol;
  bool sr, eh, tls;           /* eh: extended headers */
  char *tls_version, *tls_cipher, *tls_kx, *tls_peer;
};
void conn_describe(struct snbd_handle *h, struct conn_info *ci);
void conn_info_free(struct conn_info *ci);

void print_info(const struct conn_info *ci, const struct export_info *e,
                size_t n, bool json);
/* Prints the base:allocation extents of the whole export; exits on error. */
void map_export(struct snbd_handle *h, const struct export_info *e, bool json);

#endif
