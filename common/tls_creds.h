/* snbd: what common/tls.c (sessions, the TLS transport) and
 * common/tls_creds.c (loading credentials) share.  Nothing else includes
 * this; the API is tls.h. */
#ifndef SNBD_TLS_CREDS_H
#define SNBD_TLS_CREDS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <gnutls/gnutls.h>

#include "tls.h"

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
  struct tls_creds_info info;                 /* server: what was loaded */
};

#endif
