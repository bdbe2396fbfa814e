/* snbd: TLS credentials, sessions and peer identity (all GnuTLS lives in
 * common/tls.c and nowhere else).
 *
 * Credentials are loaded once into an immutable, reference-counted
 * struct tls_creds; the server swaps in a freshly loaded one on SIGHUP and
 * connections keep the one they started with.
 *
 * Default priority: TLS 1.2 minimum, TLS 1.3 preferred, AES-GCM preferred
 * over CHACHA20-POLY1305 where the CPU has AES instructions (GnuTLS's
 * NORMAL order already does that), PSK with (EC)DHE where offered.
 */
#ifndef SNBD_TLS_H
#define SNBD_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "transport.h"

#define TLS_DEFAULT_PRIORITY \
  "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

struct tls_server_config {
  const char *cert_dir;    /* ca-cert.pem, server-cert.pem, server-key.pem,
                              optional ca-crl.pem; NULL if unused */
  const char *psk_file;    /* psktool format "user:hexkey"; NULL if unused */
  const char *priority;    /* NULL: TLS_DEFAULT_PRIORITY */
  bool verify_peer;        /* require a client certificate signed by the CA
                              (X.509), refuse the handshake otherwise */
};

struct tls_client_config {
  const char *cert_dir;    /* ca-cert.pem (else system CA), optional
                              client-cert.pem + client-key.pem, ca-crl.pem */
  const char *psk_file;    /* PSK instead of X.509 */
  const char *username;    /* PSK identity; NULL: first in the file? no:
                              NULL means the login name, as libnbd does */
  const char *priority;    /* NULL: TLS_DEFAULT_PRIORITY */
  bool verify_peer;        /* verify server certificate + hostname (default
                              true in every caller) */
};

struct tls_creds;

/* NULL on failure, with set_error() naming the file and GnuTLS's reason. */
struct tls_creds *tls_creds_load_server(const struct tls_server_config *cfg);
struct tls_creds *tls_creds_load_client(const struct tls_client_config *cfg);
struct tls_creds *tls_creds_ref(struct tls_creds *c);
void tls_creds_unref(struct tls_creds *c);
bool tls_creds_is_psk(const struct tls_creds *c);

/* What the TLS handshake established about the peer. */
struct tls_peer {
  char version[16];        /* "TLS1.3" */
  char cipher[64];         /* "AES-128-GCM" */
  char kx[32];             /* key exchange, e.g. "ECDHE-RSA", "(EC)DHE-PSK" */
  bool has_cert;           /* peer presented a certificate that verified */
  char dn[512];            /* subject DN of that certificate, "" if none */
  char cn[256];            /* its common name, "" if none */
  char psk_username[256];  /* PSK identity, "" if none */
};

/* Run the TLS handshake over an established plain transport and return a
 * TLS transport that wraps the same fd and inherits plain's deadline and
 * wake_fd.  On success plain is freed WITHOUT closing the fd (the new
 * transport owns it).  On failure: NULL, set_error() says why (peer's
 * alert, certificate problem, timeout), and plain is left untouched for
 * the caller to close.  Nothing the peer sent before the handshake and
 * that is not a TLS record is ever returned as data.
 * hostname (client): checked against the server certificate when
 * verify_peer is set, and sent as SNI. */
struct transport *tls_server_handshake(struct tls_creds *c,
                                       struct transport *plain,
                                       struct tls_peer *peer);
struct transport *tls_client_handshake(struct tls_creds *c,
                                       struct transport *plain,
                                       const char *hostname,
                                       struct tls_peer *peer);

/* Once per process, before threads (gnutls_global_init is refcounted). */
int tls_global_init(void);

#endif
