/* snbd: certificate chains verified under one set of credentials
 * (tls_vcache.c), so a resumed session's certificate is not parsed and
 * verified again when the same chain verified before: on a server the
 * client's, in libsnbd the server's.
 *
 * The result of a verification depends on the chain's bytes, the trust
 * list and CRL (fixed for a credential object: a reload makes a new one,
 * with an empty cache), what it is checked against (the key purpose, and
 * on a client the host name), and the time.  So an entry, keyed by a
 * SHA-256 of the chain and what it was checked against, holds until
 * the earliest of: the chain's notAfter dates, the CA certificates'
 * notAfter dates and the CRLs' next updates (tls_creds.trust_until).
 * Within that, verifying again would give the same answer; after it, the
 * entry is not used.  Only successes are kept.
 */
#ifndef SNBD_TLS_VCACHE_H
#define SNBD_TLS_VCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

#define TLS_VCACHE_ENTRIES 16

struct tls_vcache;

struct tls_vcache *tls_vcache_new(void);
void tls_vcache_free(struct tls_vcache *v);

/* The key of a certificate chain checked against vdata (strings: key
 * purpose OID, host name). */
struct tls_vcache_key { uint8_t sha256[32]; };
int tls_vcache_key(const gnutls_datum_t *certs, unsigned n,
                   const gnutls_typed_vdata_st *vdata, unsigned nvdata,
                   struct tls_vcache_key *k);

/* A chain's identity as the policy reads it. */
struct tls_vcache_names {
  bool filled;                 /* dn and cn below were parsed */
  char dn[512], cn[256];
};

/* Whether k verified and still holds at now (Unix time); its names into
 * *names if want_names (false when the entry has none). */
bool tls_vcache_get(struct tls_vcache *v, const struct tls_vcache_key *k,
                    int64_t now, bool want_names,
                    struct tls_vcache_names *names);
/* Remembers that k verified, valid until until (Unix time). */
void tls_vcache_put(struct tls_vcache *v, const struct tls_vcache_key *k,
                    int64_t until, const struct tls_vcache_names *names);
/* Lookups answered from the cache (tests, debug). */
unsigned long tls_vcache_hits(struct tls_vcache *v);

#endif
