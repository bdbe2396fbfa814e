/* snbd: what a failed TLS handshake means, in words a user can act on
 * (tls_explain.c; used by tls.c only). */
#ifndef SNBD_TLS_EXPLAIN_H
#define SNBD_TLS_EXPLAIN_H

#include <gnutls/gnutls.h>

#include "tls_creds.h"

/* The peer sent a fatal alert: set_error_at(func, EPROTO, ...) says what
 * it means for our side (a client without the certificate the server
 * wants, a PSK user the server does not know, ...), with the alert's
 * name. */
void tls_explain_alert(gnutls_session_t s, const struct tls_creds *c,
                       const char *func);
/* The peer's certificate did not verify (status from GnuTLS): a name
 * mismatch names both sides, hostname (what we connected to) and the
 * names in the certificate; anything else is GnuTLS's description. */
void tls_explain_verify(gnutls_session_t s, unsigned status,
                        const char *hostname, const char *func);

#endif
