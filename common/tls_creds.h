/* snbd: what common/tls.c (sessions, the TLS transport) and
 * common/tls_creds.c (loading credentials) share.  Nothing else includes
 * this; the API is tls.h. */
#ifndef SNBD_TLS_CREDS_H
#define SNBD_TLS_CREDS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gnutls/gnutls.h>

#include "tls.h"

struct tls_vcache;

struct psk_entry {
  char *user;
  unsigned char *key;
  size_t keylen;
};

struct tls_creds {
  atomic_int refs;
  bool server;
  bool verify_peer;
  gnutls_priority_t prio;
  gnutls_certificate_credentials_t cert;      /* NULL if no X.509 */
  gnutls_psk_server_credentials_t psk_server; /* NULL if no PSK (server) */
  gnutls_psk_client_credentials_t psk_client; /* NULL if no PSK (client) */
  struct psk_entry *users;                    /* server: keys from the file */
  size_t nusers;
  char *psk_user;                             /* client: our PSK identity */
  gnutls_datum_t ticket_key;                  /* server: session tickets'
                                                 master key; NULL data: no
                                                 tickets (tls_resume.c) */
  unsigned ticket_lifetime;                   /* server: seconds, 0 default */
  /* Chains verified under these credentials (tls_vcache.h), and the
   * earliest notAfter of ca-cert.pem and next update of ca-crl.pem, which
   * bounds every entry; NULL / 0 without a CA file. */
  struct tls_vcache *vcache;
  int64_t trust_until;
  struct tls_creds_info info;                 /* server: what was loaded */
};

/* tls_peer.c: fills *p (only p->want_names is read) from a session whose
 * handshake just ended; -1 with set_error() if the peer must be refused. */
struct tls_peer_ctx {
  gnutls_session_t s;
  const struct tls_creds *creds;
  gnutls_typed_vdata_st *vdata;         /* what certificates are checked */
  unsigned nvdata;                      /* against (key purpose, host) */
  bool resumed;                         /* gnutls_session_is_resumed */
};
int tls_fill_peer(const struct tls_peer_ctx *x, struct tls_peer *p);

#endif
