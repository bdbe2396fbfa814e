/* snbd: TLS credentials: X.509 directories and psktool files loaded once
 * into an immutable, reference-counted struct tls_creds (see tls.h), and
 * the process-wide GnuTLS set-up.  Sessions are in tls.c. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#if defined(__aarch64__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "log.h"
#include "tls_creds.h"
#include "tls_vcache.h"

/* psktool lines are "user:hexkey"; a longer line is refused, not split. */
#define PSK_LINE_MAX 1024
#define PSK_USER_MAX 255          /* fits tls_peer.psk_username */
#define PSK_KEY_MAX 256           /* bytes; psktool makes 32 */
/* 128 bits: a shorter key can be searched for offline by anyone who
 * recorded one handshake (the PSK binder is a keyed hash of the
 * transcript), so it is refused, not merely warned about. */
#define PSK_KEY_MIN 16

/* PSK added to whatever priority is in use (as nbdkit and libnbd do, but
 * without plain PSK, which has no forward secrecy); in TLS 1.3 this gives
 * psk_dhe_ke only, ECDHE first.  With PSK alone the
 * certificate key exchanges go: a TLS 1.2 client that offers them (say
 * gnutls-cli, which always has X.509 credentials) otherwise gets
 * "Insufficient credentials" from a PSK-only GnuTLS server (nbdkit too). */
#define TLS_PSK_PRIORITY ":+ECDHE-PSK:+DHE-PSK"
#define TLS_PSK_ONLY_PRIORITY ":-KX-ALL:+ECDHE-PSK:+DHE-PSK"

/* ---- global ---- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result;
static char init_msg[256];
static const char *default_priority = TLS_DEFAULT_PRIORITY;

/* AES-GCM beats CHACHA20-POLY1305 only with AES instructions. */
static bool cpu_has_aes(void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("aes");
#elif defined(__aarch64__)
  return (getauxval(AT_HWCAP) & HWCAP_AES) != 0;
#else
  return false;
#endif
}

static void global_init_once(void)
{
  if (!gnutls_check_version("3.7.0")) {
    snprintf(init_msg, sizeof init_msg, "GnuTLS %s is too old (need 3.7.0)",
             gnutls_check_version(NULL));
    init_result = -1;
    return;
  }
  int r = gnutls_global_init();
  if (r < 0) {
    snprintf(init_msg, sizeof init_msg, "gnutls_global_init: %s",
             gnutls_strerror(r));
    init_result = -1;
    return;
  }
  if (!cpu_has_aes())
    default_priority = TLS_PRIORITY_NO_AES;
}

int tls_global_init(void)
{
  pthread_once(&init_once, global_init_once);
  if (init_result == -1)
    set_error(EIO, "%s", init_msg);
  return init_result;
}

const char *tls_default_priority(void)
{
  tls_global_init();
  return default_priority;
}

/* ---- loading ---- */

static int path_join(char *dst, size_t len, const char *dir, const char *name)
{
  int n = snprintf(dst, len, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= len) {
    set_error(ENAMETOOLONG, "%s/%s: path too long", dir, name);
    return -1;
  }
  return 0;
}

static bool file_exists(const char *path)
{
  return access(path, F_OK) == 0;
}

/* GnuTLS reports an unreadable file as a bare "Error while reading file",
 * so check first and name the file with the system's reason. */
static int need_file(const char *path)
{
  if (access(path, R_OK) == -1) {
    set_error(errno, "%s: %s", path, strerror(errno));
    return -1;
  }
  return 0;
}

static int hexval(char ch)
{
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* One "user:hexkey" line (newline already removed) into e.  Messages never
 * quote the key. */
static int psk_parse_line(const char *file, unsigned lineno, const char *line,
                          struct psk_entry *e)
{
  const char *colon = strchr(line, ':');
  if (!colon || colon == line || colon - line > PSK_USER_MAX) {
    set_error(EINVAL, "%s line %u: expected user:hexkey with a user name "
              "of 1 to %d bytes", file, lineno, PSK_USER_MAX);
    return -1;
  }
  const char *hex = colon + 1;
  size_t hexlen = strlen(hex);
  if (hexlen == 0 || hexlen % 2 || hexlen / 2 > PSK_KEY_MAX) {
    set_error(EINVAL, "%s line %u: the key must be an even number of hex "
              "digits, at most %d bytes", file, lineno, PSK_KEY_MAX);
    return -1;
  }
  if (hexlen / 2 < PSK_KEY_MIN) {
    set_error(EINVAL, "%s line %u: user \"%.*s\": the key has %zu bits; at "
              "least %d are needed (psktool makes 256)", file, lineno,
              (int)(colon - line), line, hexlen * 4, PSK_KEY_MIN * 8);
    return -1;
  }
  e->keylen = hexlen / 2;
  e->key = malloc(e->keylen);
  e->user = strndup(line, (size_t)(colon - line));
  if (!e->key || !e->user) {
    set_error(ENOMEM, "%s: out of memory", file);
    return -1;
  }
  for (size_t i = 0; i < e->keylen; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      set_error(EINVAL, "%s line %u: the key is not hex", file, lineno);
      return -1;
    }
    e->key[i] = (unsigned char)(hi << 4 | lo);
  }
  return 0;
}

static void psk_entry_free(struct psk_entry *e)
{
  if (e->key)
    explicit_bzero(e->key, e->keylen);
  free(e->key);
  free(e->user);
  e->key = NULL;
  e->user = NULL;
}

/* Append one parsed line to c->users. */
static int psk_add(struct tls_creds *c, struct psk_entry *e)
{
  struct psk_entry *n = reallocarray(c->users, c->nusers + 1, sizeof *n);
  if (!n) {
    set_error(ENOMEM, "out of memory");
    return -1;
  }
  c->users = n;
  c->users[c->nusers++] = *e;
  return 0;
}

/* Reads a psktool file into c->users (every line, validated). */
static int psk_load_file(struct tls_creds *c, const char *file)
{
  char line[PSK_LINE_MAX + 2];
  unsigned lineno = 0;
  int ret = -1;

  FILE *f = fopen(file, "re");
  if (!f) {
    set_error(errno, "%s: %s", file, strerror(errno));
    return -1;
  }
  while (fgets(line, sizeof line, f)) {
    size_t len = strlen(line);
    lineno++;
    if (len > 0 && line[len - 1] == '\n')
      line[--len] = '\0';
    else if (!feof(f)) {
      set_error(EINVAL, "%s line %u: longer than %d bytes", file, lineno,
                PSK_LINE_MAX);
      goto out;
    }
    if (len > 0 && line[len - 1] == '\r')
      line[--len] = '\0';
    if (len == 0)
      continue;
    struct psk_entry e = { 0 };
    if (psk_parse_line(file, lineno, line, &e) == -1 || psk_add(c, &e) == -1) {
      psk_entry_free(&e);
      goto out;
    }
  }
  if (ferror(f)) {
    set_error(EIO, "%s: read error", file);
    goto out;
  }
  if (c->nusers == 0) {
    set_error(EINVAL, "%s: no user:key lines", file);
    goto out;
  }
  ret = 0;
out:
  explicit_bzero(line, sizeof line);
  fclose(f);
  return ret;
}

static const struct psk_entry *psk_find(const struct tls_creds *c,
                                        const void *user, size_t len)
{
  for (size_t i = 0; i < c->nusers; i++)
    if (strlen(c->users[i].user) == len &&
        memcmp(c->users[i].user, user, len) == 0)
      return &c->users[i];
  return NULL;
}

/* GnuTLS asks for the key of the identity a client offered; -1 for an
 * unknown user fails the handshake (or falls back to X.509 if loaded). */
static int psk_server_lookup(gnutls_session_t s, const gnutls_datum_t *user,
                             gnutls_datum_t *key)
{
  const struct tls_creds *c = gnutls_session_get_ptr(s);   /* see tls.c */
  const struct psk_entry *e = psk_find(c, user->data, user->size);
  if (!e)
    return -1;
  key->data = gnutls_malloc(e->keylen);
  if (!key->data)
    return -1;
  memcpy(key->data, e->key, e->keylen);
  key->size = (unsigned)e->keylen;
  return 0;
}

static int load_psk_server(struct tls_creds *c, const char *file)
{
  if (psk_load_file(c, file) == -1)
    return -1;
  int r = gnutls_psk_allocate_server_credentials(&c->psk_server);
  if (r < 0) {
    set_error(ENOMEM, "%s: %s", file, gnutls_strerror(r));
    return -1;
  }
  gnutls_psk_set_server_credentials_function2(c->psk_server,
                                              psk_server_lookup);
  gnutls_psk_set_server_known_dh_params(c->psk_server, GNUTLS_SEC_PARAM_MEDIUM);
  c->info.psk = true;
  c->info.psk_users = c->nusers;
  return 0;
}

/* The user name libnbd uses when none is given: the login name, else the
 * name of the effective user. */
static char *login_name(void)
{
  char buf[256];
  if (getlogin_r(buf, sizeof buf) == 0 && buf[0])
    return strdup(buf);
  struct passwd pw, *res = NULL;
  char tmp[4096];
  if (getpwuid_r(geteuid(), &pw, tmp, sizeof tmp, &res) == 0 && res)
    return strdup(res->pw_name);
  return NULL;
}

static int load_psk_client(struct tls_creds *c, const char *file,
                           const char *username)
{
  c->psk_user = username ? strdup(username) : login_name();
  if (!c->psk_user) {
    set_error(ENOENT, "%s: no PSK user name given and no login name",
              file);
    return -1;
  }
  if (psk_load_file(c, file) == -1)
    return -1;
  const struct psk_entry *e = psk_find(c, c->psk_user, strlen(c->psk_user));
  if (!e) {
    set_error(ENOENT, "%s: no key for user \"%s\"", file, c->psk_user);
    return -1;
  }
  gnutls_datum_t key = { .data = e->key, .size = (unsigned)e->keylen };
  int r = gnutls_psk_allocate_client_credentials(&c->psk_client);
  if (r >= 0)
    r = gnutls_psk_set_client_credentials(c->psk_client, c->psk_user, &key,
                                          GNUTLS_PSK_KEY_RAW);
  if (r < 0) {
    set_error(EINVAL, "%s: %s", file, gnutls_strerror(r));
    return -1;
  }
  /* The client needs only its own key; drop the rest from memory. */
  for (size_t i = 0; i < c->nusers; i++)
    psk_entry_free(&c->users[i]);
  free(c->users);
  c->users = NULL;
  c->nusers = 0;
  return 0;
}

static void subject_of(gnutls_x509_crt_t crt, char *buf, size_t size)
{
  gnutls_datum_t dn = { NULL, 0 };
  buf[0] = '\0';
  if (gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0)
    snprintf(buf, size, "%.*s", (int)dn.size, (const char *)dn.data);
  gnutls_free(dn.data);
}

/* An earlier time limit for cached verifications (tls_peer.c). */
static void trust_until(struct tls_creds *c, int64_t t)
{
  if (t > 0 && (c->trust_until == 0 || t < c->trust_until))
    c->trust_until = t;
}

/* The first certificate of a PEM file, for tls_creds_info; the earliest
 * expiry of them all. */
static void ca_info(struct tls_creds *c, const char *file)
{
  gnutls_datum_t data = { NULL, 0 };
  gnutls_x509_crt_t *list = NULL;
  unsigned n = 0;
  if (gnutls_load_file(file, &data) < 0)
    return;
  if (gnutls_x509_crt_list_import2(&list, &n, &data, GNUTLS_X509_FMT_PEM,
                                   0) >= 0 && n > 0)
    subject_of(list[0], c->info.ca_subject, sizeof c->info.ca_subject);
  for (unsigned i = 0; i < n; i++) {
    trust_until(c, gnutls_x509_crt_get_expiration_time(list[i]));
    gnutls_x509_crt_deinit(list[i]);
  }
  gnutls_free(list);
  gnutls_free(data.data);
}

/* The server certificate's subject and expiry, for tls_creds_info. */
static void cert_info(struct tls_creds *c)
{
  gnutls_datum_t raw;
  gnutls_x509_crt_t crt;
  if (gnutls_certificate_get_crt_raw(c->cert, 0, 0, &raw) < 0 ||
      gnutls_x509_crt_init(&crt) < 0)
    return;
  if (gnutls_x509_crt_import(crt, &raw, GNUTLS_X509_FMT_DER) >= 0) {
    subject_of(crt, c->info.cert_subject, sizeof c->info.cert_subject);
    c->info.cert_expires = gnutls_x509_crt_get_expiration_time(crt);
  }
  gnutls_x509_crt_deinit(crt);
}

/* How many certificates a CRL file revokes, for tls_creds_info; the
 * earliest next update of its CRLs. */
static unsigned crl_info(struct tls_creds *c, const char *file)
{
  gnutls_datum_t data = { NULL, 0 };
  gnutls_x509_crl_t *list = NULL;
  unsigned n = 0, entries = 0;
  if (gnutls_load_file(file, &data) < 0)
    return 0;
  if (gnutls_x509_crl_list_import2(&list, &n, &data, GNUTLS_X509_FMT_PEM,
                                   0) < 0)
    n = 0;
  for (unsigned i = 0; i < n; i++) {
    int k = gnutls_x509_crl_get_crt_count(list[i]);
    entries += k > 0 ? (unsigned)k : 0;
    trust_until(c, gnutls_x509_crl_get_next_update(list[i]));
    gnutls_x509_crl_deinit(list[i]);
  }
  gnutls_free(list);
  gnutls_free(data.data);
  return entries;
}

static int load_ca(struct tls_creds *c, const char *ca)
{
  int r = gnutls_certificate_set_x509_trust_file(c->cert, ca,
                                                 GNUTLS_X509_FMT_PEM);
  if (r <= 0) {
    set_error(EINVAL, "%s: %s", ca,
              r == 0 ? "no certificates found" : gnutls_strerror(r));
    return -1;
  }
  c->info.ca_certs = (unsigned)r;
  ca_info(c, ca);
  return 0;
}

/* ca-crl.pem is optional; a present but unreadable one is an error. */
static int load_crl(struct tls_creds *c, const char *dir)
{
  char crl[PATH_MAX];
  if (path_join(crl, sizeof crl, dir, "ca-crl.pem") == -1)
    return -1;
  if (!file_exists(crl))
    return 0;
  if (need_file(crl) == -1)
    return -1;
  int r = gnutls_certificate_set_x509_crl_file(c->cert, crl,
                                               GNUTLS_X509_FMT_PEM);
  if (r < 0) {
    set_error(EINVAL, "%s: %s", crl, gnutls_strerror(r));
    return -1;
  }
  c->info.crl = true;
  c->info.crl_entries = crl_info(c, crl);
  return 0;
}

static int load_key_pair(struct tls_creds *c, const char *cert,
                         const char *key)
{
  if (need_file(cert) == -1 || need_file(key) == -1)
    return -1;
  int r = gnutls_certificate_set_x509_key_file(c->cert, cert, key,
                                               GNUTLS_X509_FMT_PEM);
  if (r < 0) {
    set_error(EINVAL, "%s, %s: %s", cert, key, gnutls_strerror(r));
    return -1;
  }
  return 0;
}

static int alloc_cert(struct tls_creds *c)
{
  int r = gnutls_certificate_allocate_credentials(&c->cert);
  if (r < 0) {
    set_error(ENOMEM, "%s", gnutls_strerror(r));
    return -1;
  }
  return 0;
}

/* Server: server-cert.pem + server-key.pem; ca-cert.pem (needed to verify
 * client certificates, so required with verify_peer); ca-crl.pem. */
static int load_x509_server(struct tls_creds *c, const char *dir)
{
  char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
  if (path_join(ca, sizeof ca, dir, "ca-cert.pem") == -1 ||
      path_join(cert, sizeof cert, dir, "server-cert.pem") == -1 ||
      path_join(key, sizeof key, dir, "server-key.pem") == -1 ||
      alloc_cert(c) == -1)
    return -1;
  if (c->verify_peer || file_exists(ca)) {
    if (need_file(ca) == -1 || load_ca(c, ca) == -1)
      return -1;
  }
  if (load_key_pair(c, cert, key) == -1 || load_crl(c, dir) == -1)
    return -1;
  gnutls_certificate_set_known_dh_params(c->cert, GNUTLS_SEC_PARAM_MEDIUM);
  c->info.x509 = true;
  cert_info(c);
  return 0;
}

/* Client: ca-cert.pem if there, else the system trust store; optional
 * client-cert.pem + client-key.pem (both or neither); ca-crl.pem.  With no
 * directory, the system trust store only. */
static int load_x509_client(struct tls_creds *c, const char *dir)
{
  char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
  if (alloc_cert(c) == -1)
    return -1;
  if (dir) {
    if (path_join(ca, sizeof ca, dir, "ca-cert.pem") == -1 ||
        path_join(cert, sizeof cert, dir, "client-cert.pem") == -1 ||
        path_join(key, sizeof key, dir, "client-key.pem") == -1)
      return -1;
  }
  if (dir && file_exists(ca)) {
    if (need_file(ca) == -1 || load_ca(c, ca) == -1)
      return -1;
  }
  else {
    int r = gnutls_certificate_set_x509_system_trust(c->cert);
    if (r < 0 || (r == 0 && c->verify_peer)) {
      set_error(EINVAL, "system trust store: %s",
                r == 0 ? "no certificates found" : gnutls_strerror(r));
      return -1;
    }
  }
  if (!dir)
    return 0;
  bool have_cert = file_exists(cert), have_key = file_exists(key);
  if (have_cert != have_key) {
    set_error(ENOENT, "%s without %s", have_cert ? cert : key,
              have_cert ? key : cert);
    return -1;
  }
  if (have_cert && load_key_pair(c, cert, key) == -1)
    return -1;
  return load_crl(c, dir);
}

/* Call after loading the credentials: the PSK suffix depends on them. */
static int load_priority(struct tls_creds *c, const char *priority,
                         bool allow_old_versions)
{
  char buf[1024];
  const char *base = priority ? priority : tls_default_priority();
  bool psk = c->psk_server || c->psk_client;
  const char *suffix = !psk ? "" : c->cert ? TLS_PSK_PRIORITY
                                           : TLS_PSK_ONLY_PRIORITY;
  const char *floor = allow_old_versions ? "" : TLS_VERSION_FLOOR;
  int n = snprintf(buf, sizeof buf, "%s%s%s", base, suffix, floor);
  if (n < 0 || (size_t)n >= sizeof buf) {
    set_error(EINVAL, "TLS priority string too long");
    return -1;
  }
  const char *err_pos = NULL;
  int r = gnutls_priority_init(&c->prio, buf, &err_pos);
  if (r < 0) {
    set_error(EINVAL, "TLS priority \"%s\": %s%s%s", base, gnutls_strerror(r),
              err_pos ? " at " : "", err_pos ? err_pos : "");
    return -1;
  }
  return 0;
}

/* The master key of a server's session tickets (tls_resume.c says how
 * tickets are used): random, in memory only, wiped when freed. */
static int ticket_key_new(gnutls_datum_t *key)
{
  int r = gnutls_session_ticket_key_generate(key);
  if (r < 0) {
    set_error(ENOMEM, "TLS session ticket key: %s", gnutls_strerror(r));
    key->data = NULL;
    return -1;
  }
  return 0;
}

static void ticket_key_free(gnutls_datum_t *key)
{
  if (!key->data)
    return;
  gnutls_memset(key->data, 0, key->size);
  gnutls_free(key->data);
  key->data = NULL;
}

static struct tls_creds *creds_new(bool server, bool verify_peer)
{
  if (tls_global_init() == -1)
    return NULL;
  struct tls_creds *c = calloc(1, sizeof *c);
  if (!c) {
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  atomic_init(&c->refs, 1);
  c->server = server;
  c->verify_peer = verify_peer;
  return c;
}

static void creds_free(struct tls_creds *c)
{
  if (c->prio)
    gnutls_priority_deinit(c->prio);
  if (c->cert)
    gnutls_certificate_free_credentials(c->cert);
  if (c->psk_server)
    gnutls_psk_free_server_credentials(c->psk_server);
  if (c->psk_client)
    gnutls_psk_free_client_credentials(c->psk_client);
  for (size_t i = 0; i < c->nusers; i++)
    psk_entry_free(&c->users[i]);
  free(c->users);
  free(c->psk_user);
  ticket_key_free(&c->ticket_key);
  tls_vcache_free(c->vcache);
  free(c);
}

/* A cache of verified chains (tls_vcache.h) where its entries can be
 * bounded: the CA is ca-cert.pem's, whose dates were read (a system trust
 * store's are not, and gets none). */
static int vcache_new(struct tls_creds *c)
{
  if (c->info.ca_certs == 0 || c->trust_until <= 0)
    return 0;
  if (!(c->vcache = tls_vcache_new())) {
    set_error(ENOMEM, "out of memory");
    return -1;
  }
  return 0;
}

struct tls_creds *tls_creds_load_server(const struct tls_server_config *cfg)
{
  if (!cfg->cert_dir && !cfg->psk_file) {
    set_error(EINVAL, "TLS needs a certificate directory or a PSK file");
    return NULL;
  }
  struct tls_creds *c = creds_new(true, cfg->verify_peer);
  if (!c)
    return NULL;
  if ((cfg->cert_dir && load_x509_server(c, cfg->cert_dir) == -1) ||
      (cfg->psk_file && load_psk_server(c, cfg->psk_file) == -1) ||
      load_priority(c, cfg->priority, cfg->allow_old_versions) == -1 ||
      (!cfg->no_tickets && ticket_key_new(&c->ticket_key) == -1)) {
    creds_free(c);
    return NULL;
  }
  c->ticket_lifetime = cfg->ticket_lifetime;
  if (vcache_new(c) == -1) {
    creds_free(c);
    return NULL;
  }
  return c;
}

struct tls_creds *tls_creds_load_client(const struct tls_client_config *cfg)
{
  if (cfg->cert_dir && cfg->psk_file) {
    set_error(EINVAL, "give a certificate directory or a PSK file, not both");
    return NULL;
  }
  struct tls_creds *c = creds_new(false, cfg->verify_peer);
  if (!c)
    return NULL;
  int r = cfg->psk_file
          ? load_psk_client(c, cfg->psk_file, cfg->username)
          : load_x509_client(c, cfg->cert_dir);
  if (r == -1 ||
      load_priority(c, cfg->priority, cfg->allow_old_versions) == -1 ||
      vcache_new(c) == -1) {
    creds_free(c);
    return NULL;
  }
  return c;
}

struct tls_creds *tls_creds_ref(struct tls_creds *c)
{
  if (c)
    atomic_fetch_add(&c->refs, 1);
  return c;
}

void tls_creds_unref(struct tls_creds *c)
{
  if (c && atomic_fetch_sub(&c->refs, 1) == 1)
    creds_free(c);
}

bool tls_creds_is_psk(const struct tls_creds *c)
{
  return c->psk_server != NULL || c->psk_client != NULL;
}

const struct tls_creds_info *tls_creds_info(const struct tls_creds *c)
{
  return &c->info;
}

void tls_creds_describe(const struct tls_creds_info *i, char *buf,
                        size_t size)
{
  char expires[32] = "?", ca[300] = "none", crl[48] = "no CRL";
  time_t t = (time_t)i->cert_expires;
  struct tm tm;
  if (i->cert_expires > 0 && gmtime_r(&t, &tm))
    strftime(expires, sizeof expires, "%Y-%m-%d %H:%M UTC", &tm);
  if (i->ca_certs)
    snprintf(ca, sizeof ca, "\"%s\"", i->ca_subject);
  if (i->crl)
    snprintf(crl, sizeof crl, "CRL revoking %u", i->crl_entries);
  int n = 0;
  buf[0] = '\0';
  if (i->x509)
    n = snprintf(buf, size, "X.509: CA %s, certificate \"%s\" expires %s, "
                 "%s", ca, i->cert_subject, expires, crl);
  if (i->psk && n >= 0 && (size_t)n < size)
    snprintf(buf + n, size - (size_t)n, "%sPSK: %zu user%s",
             n ? "; " : "", i->psk_users, i->psk_users == 1 ? "" : "s");
}

const char *tls_creds_dropped(const struct tls_creds_info *old,
                              const struct tls_creds_info *new)
{
  if (old->crl && !new->crl)
    return "ca-crl.pem was loaded and is gone: its revocations would be "
           "lost (replace it with an empty CRL to drop them)";
  if (old->ca_certs && !new->ca_certs)
    return "ca-cert.pem was loaded and is gone: client certificates "
           "would no longer be verified";
  if (old->x509 && !new->x509)
    return "the X.509 credentials would be dropped";
  if (old->psk && !new->psk)
    return "the PSK credentials would be dropped";
  return NULL;
}

int64_t tls_creds_cert_expiry(const struct tls_creds *c)
{
  return c->info.x509 && c->info.cert_expires > 0
         ? (int64_t)c->info.cert_expires : -1;
}
