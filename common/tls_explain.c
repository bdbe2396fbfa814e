/* snbd: TLS failures explained.  GnuTLS reports "Internal error" or "The
 * certificate is NOT trusted" where a user needs to know which side wants
 * what: these turn alerts and verification results into such messages
 * (tests/tls-interop/test-messages.sh checks each). */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <gnutls/x509.h>

#include "log.h"
#include "tls_explain.h"

static bool cert_alert(gnutls_alert_description_t a)
{
  return a == GNUTLS_A_BAD_CERTIFICATE || a == GNUTLS_A_CERTIFICATE_REVOKED ||
         a == GNUTLS_A_CERTIFICATE_EXPIRED || a == GNUTLS_A_UNKNOWN_CA ||
         a == GNUTLS_A_CERTIFICATE_UNKNOWN ||
         a == GNUTLS_A_UNSUPPORTED_CERTIFICATE;
}

void tls_explain_alert(gnutls_session_t s, const struct tls_creds *c,
                       const char *func)
{
  gnutls_alert_description_t a = gnutls_alert_get(s);
  const char *name = gnutls_alert_get_name(a);
  if (c->server || (a != GNUTLS_A_CERTIFICATE_REQUIRED && !cert_alert(a) &&
                    !c->psk_client))
    set_error_at(func, EPROTO, "peer sent TLS alert: %s", name);
  else if (a == GNUTLS_A_CERTIFICATE_REQUIRED)
    set_error_at(func, EPROTO, "the server requires a client certificate "
                 "(TLS alert: %s)", name);
  else if (cert_alert(a))
    set_error_at(func, EPROTO, "the server refused our client certificate "
                 "(TLS alert: %s)", name);
  /* A GnuTLS server whose PSK lookup fails sends internal_error, others
   * unknown_psk_identity; a wrong key fails the binder: decrypt_error or
   * illegal_parameter. */
  else if (a == GNUTLS_A_UNKNOWN_PSK_IDENTITY || a == GNUTLS_A_INTERNAL_ERROR)
    set_error_at(func, EPROTO, "the server does not know PSK user \"%s\" "
                 "(TLS alert: %s)", c->psk_user, name);
  else if (a == GNUTLS_A_DECRYPT_ERROR || a == GNUTLS_A_ILLEGAL_PARAMETER ||
           a == GNUTLS_A_BAD_RECORD_MAC)
    set_error_at(func, EPROTO, "the server has another key for PSK user "
                 "\"%s\" (TLS alert: %s)", c->psk_user, name);
  else
    set_error_at(func, EPROTO, "peer sent TLS alert: %s", name);
}

/* Appends one name to a ", "-separated list in buf. */
static void add_name(char *buf, size_t size, const char *name)
{
  size_t len = strlen(buf);
  if (len + 1 < size)
    snprintf(buf + len, size - len, "%s%s", len ? ", " : "", name);
}

/* The DNS names and IP addresses of the peer's certificate (its subject
 * alternative names), or its common name when it has none. */
static void cert_names(gnutls_session_t s, char *buf, size_t size)
{
  unsigned n = 0;
  const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
  gnutls_x509_crt_t crt;
  buf[0] = '\0';
  if (!certs || n == 0 || gnutls_x509_crt_init(&crt) < 0)
    return;
  if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) == 0) {
    for (unsigned i = 0; i < 64; i++) {
      char san[256], ip[INET6_ADDRSTRLEN];
      size_t len = sizeof san - 1;
      int type = gnutls_x509_crt_get_subject_alt_name(crt, i, san, &len,
                                                      NULL);
      if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
        break;
      if (type == GNUTLS_SAN_DNSNAME && len < sizeof san) {
        san[len] = '\0';
        add_name(buf, size, san);
      }
      else if (type == GNUTLS_SAN_IPADDRESS && (len == 4 || len == 16) &&
               inet_ntop(len == 4 ? AF_INET : AF_INET6, san, ip, sizeof ip))
        add_name(buf, size, ip);
    }
    char cn[256];
    size_t len = sizeof cn;
    if (!buf[0] && gnutls_x509_crt_get_dn_by_oid(
          crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &len) == 0)
      add_name(buf, size, cn);
  }
  gnutls_x509_crt_deinit(crt);
}

void tls_explain_verify(gnutls_session_t s, unsigned status,
                        const char *hostname, const char *func)
{
  gnutls_datum_t out = { 0 };
  char names[512];
  if ((status & GNUTLS_CERT_UNEXPECTED_OWNER) && hostname) {
    cert_names(s, names, sizeof names);
    status &= ~(unsigned)(GNUTLS_CERT_UNEXPECTED_OWNER | GNUTLS_CERT_INVALID);
    if (status)
      gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509,
                                                   &out, 0);
    set_error_at(func, EACCES, "certificate name mismatch: connected to %s, "
                 "the certificate is for %s (tls-hostname= names the host "
                 "to expect)%s%s", hostname, names[0] ? names : "no name",
                 out.data ? "; also: " : "",
                 out.data ? (const char *)out.data : "");
  }
  else {
    gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509,
                                                 &out, 0);
    set_error_at(func, EACCES, "peer certificate: %s",
                 out.data ? (const char *)out.data : "not trusted");
  }
  gnutls_free(out.data);
}
