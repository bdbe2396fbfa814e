/* snbd: what a TLS handshake established about the peer (struct
 * tls_peer, tls.h): protocol, cipher, key exchange, and the identity the
 * server's policy judges (certificate DN and CN, PSK user).  A resumed
 * session yields the same identity as the full handshake it resumes, and
 * its certificate is verified again (tls_resume.c says why). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "log.h"
#include "tls_creds.h"
#include "tls_vcache.h"

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

/* The earliest notAfter of a chain (0 if one does not parse). */
static int64_t chain_until(const gnutls_datum_t *certs, unsigned n)
{
  int64_t until = 0;
  for (unsigned i = 0; i < n; i++) {
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0)
      return 0;
    time_t t = -1;
    if (gnutls_x509_crt_import(crt, &certs[i], GNUTLS_X509_FMT_DER) >= 0)
      t = gnutls_x509_crt_get_expiration_time(crt);
    gnutls_x509_crt_deinit(crt);
    if (t <= 0)
      return 0;
    if (until == 0 || t < until)
      until = t;
  }
  return until;
}

/* Whether the peer's chain (key k) verified before under these
 * credentials and that still holds (tls_vcache.h); its names into p
 * then. */
static bool cached(const struct tls_peer_ctx *x, const struct tls_vcache_key *k,
                   bool want_names, struct tls_peer *p)
{
  struct tls_vcache_names names;
  if (!tls_vcache_get(x->creds->vcache, k, time(NULL), want_names, &names))
    return false;
  if (want_names) {
    memcpy(p->dn, names.dn, sizeof p->dn);
    memcpy(p->cn, names.cn, sizeof p->cn);
  }
  return true;
}

/* Remembers the peer's chain (key k), which verified just now, with the
 * names if p has them, until the first date that could change that. */
static void remember(const struct tls_peer_ctx *x, const gnutls_datum_t *certs,
                     unsigned n, const struct tls_vcache_key *k,
                     const struct tls_peer *p)
{
  int64_t until = chain_until(certs, n);
  if (until == 0)
    return;
  if (x->creds->trust_until < until)
    until = x->creds->trust_until;
  struct tls_vcache_names names = { .filled = p->want_names };
  if (names.filled) {
    memcpy(names.dn, p->dn, sizeof names.dn);
    memcpy(names.cn, p->cn, sizeof names.cn);
  }
  tls_vcache_put(x->creds->vcache, k, until, &names);
}

/* The certificate verified now: 1 yes, 0 no and ignored, -1 no and the
 * session must be refused (required). */
static int verify_now(const struct tls_peer_ctx *x, bool required)
{
  unsigned status = 0;
  int r = gnutls_certificate_verify_peers(x->s, x->vdata, x->nvdata, &status);
  if ((r < 0 || status != 0) && required) {
    set_error(EACCES, "resumed TLS session: the certificate it was "
              "issued for no longer verifies");
    return -1;
  }
  if (r < 0 || status != 0) {
    log_debug("TLS peer certificate not trusted, ignored");
    return 0;
  }
  return 1;
}

/* The subject DN and CN of a DER certificate into p. */
static int names_of(const gnutls_datum_t *der, struct tls_peer *p)
{
  gnutls_x509_crt_t crt;
  if (gnutls_x509_crt_init(&crt) < 0) {
    set_error(ENOMEM, "out of memory");
    return -1;
  }
  int r = gnutls_x509_crt_import(crt, der, GNUTLS_X509_FMT_DER);
  if (r < 0)
    set_error(EACCES, "peer certificate: %s", gnutls_strerror(r));
  else
    r = peer_names(crt, p);
  gnutls_x509_crt_deinit(crt);
  return r < 0 ? -1 : 0;
}

/* Fills has_cert/dn/cn if the peer presented a certificate that verifies
 * against our CA (and CRL, key purpose, host name).  One that does not is
 * ignored here: with verify_peer the handshake already refused it. */
static int peer_cert(const struct tls_peer_ctx *x, struct tls_peer *p,
                     bool want_names)
{
  unsigned n = 0;
  const gnutls_datum_t *certs = gnutls_certificate_get_peers(x->s, &n);
  if (!certs || n == 0)
    return 0;
  /* With verify_peer a full handshake already verified it (and refused
   * the session otherwise): checking again would cost an ECDSA
   * verification per connection for nothing.  A resumed session sent no
   * certificate: the one restored from the ticket is verified again under
   * today's CA and CRL, and with verify_peer a failure refuses the
   * session, exactly as a full handshake would have; a server that
   * verified the same chain under the same credentials before, and whose
   * answer no date has changed since, takes that answer (tls_vcache.h). */
  bool required = x->creds->cert && x->creds->verify_peer;
  bool verify = !required || x->resumed;
  struct tls_vcache_key key;
  bool keyed = verify && x->creds->vcache &&
               tls_vcache_key(certs, n, x->vdata, x->nvdata, &key) == 0;
  if (keyed && cached(x, &key, want_names, p)) {
    p->has_cert = true;
    return 0;
  }
  int v = verify ? verify_now(x, required) : 1;
  if (v <= 0)
    return v;
  if (want_names && names_of(&certs[0], p) == -1)
    return -1;
  p->has_cert = true;
  if (keyed)
    remember(x, certs, n, &key, p);
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
