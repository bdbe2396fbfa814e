/* snbd: TLS session resumption, shared by common/tls.c and
 * common/tls_creds.c (how it works and why: tls_resume.c). */
#ifndef SNBD_TLS_RESUME_H
#define SNBD_TLS_RESUME_H

#include <stdbool.h>

#include <gnutls/gnutls.h>

/* Server: issue and accept tickets on s under key; lifetime in seconds
 * (0: GnuTLS's default, 6 hours). */
int tls_tickets_enable(gnutls_session_t s, const gnutls_datum_t *key,
                       unsigned lifetime);

/* Client: offer the session cached under key on s (before the handshake),
 * taking it out of the cache; true if one was offered. */
bool tls_resume_offer(gnutls_session_t s, const char *key);
/* Client: once s holds a ticket, cache its resumption data under key;
 * true once done (or nothing will ever come of asking again). */
bool tls_resume_save(gnutls_session_t s, const char *key);
/* Client: drop every cached session (tests). */
void tls_resume_forget_all(void);

#endif
