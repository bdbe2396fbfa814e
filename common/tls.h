/* snbd: TLS credentials, sessions and peer identity (all GnuTLS lives in
 * common/tls*.c and nowhere else).
 *
 * Credentials are loaded once into an immutable, reference-counted
 * struct tls_creds; the server swaps in a freshly loaded one on SIGHUP and
 * connections keep the one they started with (each TLS transport holds a
 * reference, so unref'ing creds while sessions run is safe).
 *
 * Default priority: TLS 1.2 minimum, TLS 1.3 preferred, AES-128-GCM first
 * and CHACHA20-POLY1305 last where the CPU has AES instructions, PSK with
 * (EC)DHE where offered.  GnuTLS's NORMAL order is AES-256-GCM,
 * CHACHA20-POLY1305, AES-128-GCM and a server follows the client's order;
 * a TLS 1.3 PSK (SHA-256) cannot use AES-256-GCM (SHA-384), so NORMAL peers
 * such as nbdkit/libnbd end up on CHACHA20 for PSK.  Hence
 * %SERVER_PRECEDENCE, and AES-128-GCM (~35% faster than AES-256-GCM per
 * core here, bench/limits.sh; still a 128-bit security level) first for
 * certificates too.  Without AES instructions the default is
 * TLS_PRIORITY_NO_AES (NORMAL order, client decides).
 *
 * A TLS transport may be used by one thread calling recv/pending and one
 * other thread calling sendv/shutdown at the same time (GnuTLS allows one
 * receiver and one sender per session); nothing else concurrently.
 * recv returns 0 only on the peer's close_notify; a TCP close without it
 * is -1 with errno ECONNRESET (a truncation is not an orderly end).
 * deadline and wake_fd (transport.h) apply to recv, sendv and the
 * handshake; a recv that fails with ETIMEDOUT or ECANCELED leaves the
 * session usable (sendv still works, and recv again after the cause is
 * gone).  TLS 1.3 0-RTT data is never accepted.
 *
 * Session resumption (tls_resume.c): a server issues session tickets
 * unless told not to, under a key made when its credentials are loaded
 * (a reload makes a new one, refusing every older ticket); a client given
 * a resume_key offers the session it cached under that key.
 */
#ifndef SNBD_TLS_H
#define SNBD_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

/* X25519 first: a third cheaper than SECP256R1 per handshake here, and
 * GnuTLS and OpenSSL clients send an X25519 key share by default. */
#define TLS_GROUPS \
  ":-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1" \
  ":+GROUP-SECP521R1:+GROUP-X448:+GROUP-FFDHE2048:+GROUP-FFDHE3072" \
  ":+GROUP-FFDHE4096:+GROUP-FFDHE6144:+GROUP-FFDHE8192"
/* TLS 1.2 suites: AEAD ciphers only (no CBC, so no SHA-1 MAC) and
 * (EC)DHE key exchange only (no RSA key transport, no plain PSK): every
 * suite has forward secrecy (docs/security.md 35).  TLS 1.3 suites are
 * all AEAD with (EC)DHE already. */
#define TLS_AEAD_DHE_ONLY ":-RSA"
#define TLS_DEFAULT_PRIORITY \
  "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2" \
  ":-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+AES-256-CCM" \
  ":+AES-128-CCM:+CHACHA20-POLY1305" TLS_GROUPS TLS_AEAD_DHE_ONLY \
  ":%SERVER_PRECEDENCE"
#define TLS_PRIORITY_NO_AES \
  "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2" \
  ":-CIPHER-ALL:+CHACHA20-POLY1305:+AES-256-GCM:+AES-128-GCM" \
  ":+AES-256-CCM:+AES-128-CCM" TLS_GROUPS TLS_AEAD_DHE_ONLY
/* Appended to every priority string, the default or one given, unless the
 * configuration asks for old versions by name (allow_old_versions): the
 * 1.2 floor is not a property of one string (docs/security.md 2). */
#define TLS_VERSION_FLOOR ":-VERS-TLS1.1:-VERS-TLS1.0:-VERS-SSL3.0"

struct tls_server_config {
  const char *cert_dir;    /* ca-cert.pem, server-cert.pem, server-key.pem,
                              optional ca-crl.pem; NULL if unused */
  const char *psk_file;    /* psktool format "user:hexkey"; NULL if unused */
  const char *priority;    /* NULL: tls_default_priority(); with a PSK
                              file ":+ECDHE-PSK:+DHE-PSK" is appended
                              (":-KX-ALL:+ECDHE-PSK:+DHE-PSK" if PSK
                              is the only credential) */
  bool allow_old_versions; /* UNSAFE: leave TLS 1.0/1.1 to the priority
                              string instead of always removing them */
  bool verify_peer;        /* require a client certificate signed by the CA
                              (X.509), refuse the handshake otherwise; a
                              PSK client is authenticated by its key.
                              Without it a certificate the client offers
                              is still verified and, if good, fills
                              tls_peer (else ignored) */
  bool no_tickets;         /* issue no session tickets: every client does
                              a full handshake each time (tls_resume.c) */
  unsigned ticket_lifetime;/* seconds a ticket resumes; 0: 6 hours */
};
/* Server: cert_dir, psk_file or both (the client's offer decides).
 * ca-cert.pem is required only with verify_peer. */

struct tls_client_config {
  const char *cert_dir;    /* ca-cert.pem (else system CA), optional
                              client-cert.pem + client-key.pem, ca-crl.pem;
                              NULL (and no psk_file): system CA only */
  const char *psk_file;    /* PSK instead of X.509 (not both: EINVAL) */
  const char *username;    /* PSK identity; NULL means the login name
                              (else the effective user's), as libnbd does */
  const char *priority;    /* as for the server */
  bool allow_old_versions; /* as for the server (tests only) */
  bool verify_peer;        /* verify server certificate + hostname (default
                              true in every caller); needs a hostname */
};

struct tls_creds;

/* NULL on failure, with set_error() naming the file and GnuTLS's reason.
 * Both call tls_global_init(). */
struct tls_creds *tls_creds_load_server(const struct tls_server_config *cfg);
struct tls_creds *tls_creds_load_client(const struct tls_client_config *cfg);
/* The same, shared by the callers of one process with the same settings
 * while none of the files changed (at most 60 s): a reference to an
 * already loaded set when there is one (tls_resume.c). */
struct tls_creds *tls_creds_load_client_shared(
  const struct tls_client_config *cfg);
struct tls_creds *tls_creds_ref(struct tls_creds *c);
void tls_creds_unref(struct tls_creds *c);
bool tls_creds_is_psk(const struct tls_creds *c);  /* a PSK file loaded */
/* When the first certificate of c expires (seconds since the epoch), or
 * -1 without one (PSK). */
int64_t tls_creds_cert_expiry(const struct tls_creds *c);

/* What a server's credentials hold: logged at start and at every reload,
 * and compared by a reload so that it never silently drops what was there
 * (docs/security.md 29). */
struct tls_creds_info {
  bool x509, psk;
  unsigned ca_certs;          /* certificates in ca-cert.pem (0: none) */
  char ca_subject[256];       /* the first one's subject DN */
  char cert_subject[256];     /* server-cert.pem's */
  long long cert_expires;     /* its notAfter, Unix time */
  bool crl;                   /* ca-crl.pem loaded */
  unsigned crl_entries;       /* certificates it revokes */
  size_t psk_users;
};
const struct tls_creds_info *tls_creds_info(const struct tls_creds *c);
/* One line for the log: "X.509 CA ..., certificate ... (expires ...),
 * CRL N entries; PSK N users". */
void tls_creds_describe(const struct tls_creds_info *i, char *buf,
                        size_t size);
/* What replacing old by new would drop (a loaded CRL, the CA, the X.509
 * or PSK credentials), or NULL if nothing. */
const char *tls_creds_dropped(const struct tls_creds_info *old,
                              const struct tls_creds_info *new);

/* What the TLS handshake established about the peer. */
struct tls_peer {
  char version[16];        /* "TLS1.3" */
  char cipher[64];         /* "AES-128-GCM" */
  char kx[32];             /* key exchange: "ECDHE-PSK", "DHE-PSK", "PSK";
                              TLS 1.3 with X.509: "ECDHE-<group>", e.g.
                              "ECDHE-X25519"; TLS 1.2: GnuTLS's name, e.g.
                              "ECDHE-ECDSA" */
  bool has_cert;           /* peer presented a certificate that verified
                              (CA, CRL, dates, key purpose, and on the
                              client the hostname) */
  bool want_names;         /* input, server side: fill dn and cn (parsing
                              the certificate costs about a fifth of a
                              handshake, so only when someone reads them);
                              the client always fills them */
  char dn[512];            /* subject DN of that certificate, "" if none:
                              RFC 4514, as `certtool -i` prints it, e.g.
                              "CN=client1,O=snbd" (not gnutls_x509_crt_
                              get_dn's order, which qemu's tls-authz uses) */
  char cn[256];            /* its common name, "" if none */
  char psk_username[256];  /* PSK identity, "" if none */
  char sni[256];           /* server: the host name the client sent (SNI),
                              "" if none or unusable; peer data, quote it
                              before logging */
  bool resumed;            /* an abbreviated handshake resumed an earlier
                              session (its identity and certificate are
                              those of that session, verified again) */
};

/* Run the TLS handshake over an established plain transport and return a
 * TLS transport that wraps the same fd and inherits plain's deadline and
 * wake_fd.  On success plain is freed WITHOUT closing the fd (the new
 * transport owns it).  On failure: NULL, set_error() says why (peer's
 * alert, certificate problem, timeout), and plain is left untouched for
 * the caller to close.  Nothing the peer sent before the handshake and
 * that is not a TLS record is ever returned as data.
 * hostname (client): checked against the server certificate when
 * verify_peer is set (then it must not be NULL: over a Unix socket pass
 * the name the certificate was made for), and sent as SNI unless it is an
 * IP address.  peer may be NULL.  The handshake honours plain's deadline
 * (ETIMEDOUT) and wake_fd (ECANCELED); a refused handshake sends the
 * peer an alert.  In TLS 1.3 the client's handshake ends before the server
 * has judged the client's certificate: a refusal reaches the client as
 * that alert on its first recv (-1, EPROTO, "peer sent TLS alert: ...").
 * Only peer->want_names is read on entry; everything else is written.
 * resume_key (client): NULL, or where in the process-wide cache this
 * session's resumption data live: a session cached under the same key is
 * offered, and the new one's ticket is cached under it once it arrives.
 * The key must name the server and everything that makes the client who
 * it is (address, host name checked, credentials, identity): a session is
 * only ever offered back where it came from. */
struct transport *tls_server_handshake(struct tls_creds *c,
                                       struct transport *plain,
                                       struct tls_peer *peer);
struct transport *tls_client_handshake(struct tls_creds *c,
                                       struct transport *plain,
                                       const char *hostname,
                                       const char *resume_key,
                                       struct tls_peer *peer);

/* The gnutls_session_t of a TLS transport, for tests that need GnuTLS
 * itself (a TLS 1.3 KeyUpdate, say); NULL for any other transport. */
void *tls_session(struct transport *t);

/* Once per process, before threads (gnutls_global_init is refcounted).
 * Safe to call again: later calls return the first result. */
int tls_global_init(void);

/* The priority used when a config gives none: TLS_DEFAULT_PRIORITY, or
 * TLS_PRIORITY_NO_AES on a CPU without AES instructions. */
const char *tls_default_priority(void);

#endif
