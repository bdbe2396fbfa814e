/* snbd: verified certificate chains (tls_vcache.h says when an entry
 * may stand in for a verification). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "cleanup.h"
#include "tls_vcache.h"

struct entry {
  struct tls_vcache_key key;
  int64_t until;               /* 0: free slot */
  struct tls_vcache_names names;
};

struct tls_vcache {
  pthread_mutex_t lock;
  unsigned next;               /* the slot replaced next, round robin */
  atomic_ulong hits;
  struct entry v[TLS_VCACHE_ENTRIES];
};

struct tls_vcache *tls_vcache_new(void)
{
  struct tls_vcache *v = calloc(1, sizeof *v);
  if (v)
    pthread_mutex_init(&v->lock, NULL);
  return v;
}

void tls_vcache_free(struct tls_vcache *v)
{
  if (!v)
    return;
  pthread_mutex_destroy(&v->lock);
  free(v);
}

/* Hashes a piece with its length and tag: no two inputs hash alike by
 * moving a boundary. */
static void piece(gnutls_hash_hd_t h, uint32_t tag, const void *p, size_t n)
{
  uint8_t hdr[8] = { tag >> 24, tag >> 16, tag >> 8, tag,
                     n >> 24, n >> 16, n >> 8, n };
  gnutls_hash(h, hdr, sizeof hdr);
  gnutls_hash(h, p, n);
}

int tls_vcache_key(const gnutls_datum_t *certs, unsigned n,
                   const gnutls_typed_vdata_st *vdata, unsigned nvdata,
                   struct tls_vcache_key *k)
{
  gnutls_hash_hd_t h;
  if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)
    return -1;
  for (unsigned i = 0; i < n; i++)
    piece(h, 0, certs[i].data, certs[i].size);
  for (unsigned i = 0; i < nvdata; i++) {
    const char *s = (const char *)vdata[i].data;
    piece(h, 1 + (uint32_t)vdata[i].type, s, s ? strlen(s) : 0);
  }
  gnutls_hash_deinit(h, k->sha256);
  return 0;
}

bool tls_vcache_get(struct tls_vcache *v, const struct tls_vcache_key *k,
                    int64_t now, bool want_names,
                    struct tls_vcache_names *names)
{
  SCOPED_LOCK(&v->lock);
  for (unsigned i = 0; i < TLS_VCACHE_ENTRIES; i++) {
    struct entry *e = &v->v[i];
    if (e->until == 0 || memcmp(&e->key, k, sizeof *k) != 0)
      continue;
    if (now >= e->until) {              /* expired: never again */
      e->until = 0;
      return false;
    }
    if (want_names && !e->names.filled)
      return false;
    if (want_names)
      *names = e->names;
    atomic_fetch_add_explicit(&v->hits, 1, memory_order_relaxed);
    return true;
  }
  return false;
}

void tls_vcache_put(struct tls_vcache *v, const struct tls_vcache_key *k,
                    int64_t until, const struct tls_vcache_names *names)
{
  if (until <= 0)
    return;
  SCOPED_LOCK(&v->lock);
  struct entry *e = NULL;
  for (unsigned i = 0; i < TLS_VCACHE_ENTRIES && !e; i++)
    if (v->v[i].until != 0 && memcmp(&v->v[i].key, k, sizeof *k) == 0)
      e = &v->v[i];                     /* the same chain again */
  if (!e) {
    e = &v->v[v->next];
    v->next = (v->next + 1) % TLS_VCACHE_ENTRIES;
  }
  e->key = *k;
  e->until = until;
  if (names && names->filled)
    e->names = *names;
  else
    e->names.filled = false;
}

unsigned long tls_vcache_hits(struct tls_vcache *v)
{
  return v ? atomic_load_explicit(&v->hits, memory_order_relaxed) : 0;
}
