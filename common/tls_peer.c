/* snbd: what a TLS handshake established about the peer (struct
 * tls_peer, tls.h): protocol, cipher, key exchange, and the identity the
 * server's policy judges (certificate DN and CN, PSK user).  A resumed
 * session yields the same identity as the full handshake it resumes, and
 * its certificate is verified again (tls_resume.c says why). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "log.h"
#include "tls_creds.h"

static void copy_name(char *dst, size_t len, const char *name)
{
  snprintf(dst, len, "%s", name ? name : "");
}

/* GnuTLS names TLS 1.3 certificate key exchanges "ECDHE-RSA" whatever
 * the key; the group is what was negotiated, so say that instead. */
static void kx_name(gnutls_session_t s, char *dst, size_t len)
{
  const char *group = gnutls_group_get_name(gnutls_group_get(s));
  if (gnutls_protocol_get_version(s) == GNUTLS_TLS1_3 &&
      gnutls_auth_get_type(s) == GNUTLS_CRD_CERTIFICATE && group)
    snprintf(dst, len, "%s-%s",
             strncmp(group, "FFDHE", 5) == 0 ? "DHE" : "ECDHE", group);
  else
    copy_name(dst, len, gnutls_kx_get_name(gnutls_kx_get(s)));
}

/* Subject DN and CN of a verified peer certificate.  A DN or CN that does
 * not fit, an embedded NUL or two CNs fail: a truncated or ambiguous name
 * must never reach an identity check. */
static int peer_names(gnutls_x509_crt_t crt, struct tls_peer *p)
{
  /* RFC 4514 (last RDN first), as `certtool -i` prints it, so an admin can
   * paste that into allow=.  get_dn2 and GNUTLS_X509_DN_FLAG_COMPAT give
   * the certificate's own order instead. */
  gnutls_datum_t dn = { 0 };
  int r = gnutls_x509_crt_get_dn3(crt, &dn, 0);
  if (r < 0 || dn.size >= sizeof p->dn || memchr(dn.data, 0, dn.size)) {
    gnutls_free(dn.data);
    set_error(EACCES, "peer certificate: unusable subject DN");
    return -1;
  }
  memcpy(p->dn, dn.data, dn.size);
  p->dn[dn.size] = '\0';
  gnutls_free(dn.data);

  size_t size = sizeof p->cn;
  r = gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0,
                                    p->cn, &size);
  if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
    p->cn[0] = '\0';
    return 0;
  }
  char other[8];
  size_t osize = sizeof other;
  if (r < 0 || size >= sizeof p->cn || strlen(p->cn) != size ||
      gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 1, 0,
                                    other, &osize)
      != GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
    set_error(EACCES, "peer certificate: unusable common name");
    return -1;
  }
  return 0;
}

/* Fills has_cert/dn/cn if the peer presented a certificate that verifies
 * against our CA (and CRL, key purpose, host name).  One that does not is
 * ignored here: with verify_peer the handshake already refused it. */
static int peer_cert(const struct tls_peer_ctx *x, struct tls_peer *p,
                     bool want_names)
{
  unsigned n = 0, status = 0;
  const gnutls_datum_t *certs = gnutls_certificate_get_peers(x->s, &n);
  if (!certs || n == 0)
    return 0;
  /* With verify_peer a full handshake already verified it (and refused
   * the session otherwise): checking again would cost an ECDSA
   * verification per connection for nothing.  A resumed session sent no
   * certificate: the one restored from the ticket is verified again under
   * today's CA and CRL, and with verify_peer a failure refuses the
   * session, exactly as a full handshake would have. */
  bool required = x->creds->cert && x->creds->verify_peer;
  if (!required || x->resumed) {
    int r = gnutls_certificate_verify_peers(x->s, x->vdata, x->nvdata,
                                            &status);
    if ((r < 0 || status != 0) && required) {
      set_error(EACCES, "resumed TLS session: the certificate it was "
                "issued for no longer verifies");
      return -1;
    }
    if (r < 0 || status != 0) {
      log_debug("TLS peer certificate not trusted, ignored");
      return 0;
    }
  }
  if (!want_names) {
    p->has_cert = true;
    return 0;
  }
  gnutls_x509_crt_t crt;
  if (gnutls_x509_crt_init(&crt) < 0) {
    set_error(ENOMEM, "out of memory");
    return -1;
  }
  int r = gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER);
  if (r < 0)
    set_error(EACCES, "peer certificate: %s", gnutls_strerror(r));
  else
    r = peer_names(crt, p);
  gnutls_x509_crt_deinit(crt);
  if (r < 0)
    return -1;
  p->has_cert = true;
  return 0;
}

/* The client's SNI host name; anything odd is left out, not an error. */
static void peer_sni(gnutls_session_t s, struct tls_peer *p)
{
  char name[sizeof p->sni];
  size_t size = sizeof name;
  unsigned type;
  if (gnutls_server_name_get(s, name, &size, &type, 0) == 0 &&
      type == GNUTLS_NAME_DNS && size < sizeof name && strlen(name) == size)
    memcpy(p->sni, name, size + 1);
}

int tls_fill_peer(const struct tls_peer_ctx *x, struct tls_peer *p)
{
  bool want_names = !x->creds->server || p->want_names;
  memset(p, 0, sizeof *p);
  p->want_names = want_names;
  gnutls_session_t s = x->s;
  p->resumed = x->resumed;
  if (x->creds->server)
    peer_sni(s, p);
  copy_name(p->version, sizeof p->version,
            gnutls_protocol_get_name(gnutls_protocol_get_version(s)));
  copy_name(p->cipher, sizeof p->cipher,
            gnutls_cipher_get_name(gnutls_cipher_get(s)));
  kx_name(s, p->kx, sizeof p->kx);
  if (gnutls_auth_get_type(s) == GNUTLS_CRD_PSK) {
    const char *user = x->creds->server ? gnutls_psk_server_get_username(s)
                                        : x->creds->psk_user;
    copy_name(p->psk_username, sizeof p->psk_username, user);
    return 0;
  }
  if (gnutls_auth_get_type(s) == GNUTLS_CRD_CERTIFICATE)
    return peer_cert(x, p, want_names);
  return 0;
}
