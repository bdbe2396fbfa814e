/* snbd: TLS session resumption (RFC 8446 section 2.2, session tickets).
 *
 * Server: each server credential set holds a ticket master key made when
 * it is loaded (gnutls_session_ticket_key_generate: random, in memory
 * only, never written anywhere).  GnuTLS derives the key that encrypts a
 * ticket from it and rotates that derived key by itself as time passes
 * (tickets older than their lifetime no longer decrypt).  A SIGHUP loads a
 * new credential set and with it a new master key, so every ticket issued
 * before the reload is refused and its client does a full handshake
 * under the new CA, CRL and PSK users.  A resumed session is also judged
 * like a full one: tls.c verifies the client certificate restored from the
 * ticket again (CA, CRL, dates), and the server's policy sees the same
 * identity as after a full handshake.
 *
 * Client: resumption data live in one process-wide cache keyed by the
 * caller's string (libsnbd: the server's address, the host name checked,
 * and the identity used), so a session is never offered to another server
 * or under another identity.  A cached ticket is taken out when offered
 * (one use, as RFC 8446 appendix C.4 advises); the new session's ticket is
 * put back as soon as it arrives (tls.c calls tls_resume_save after a
 * recv).  The cache is small and bounded: the oldest entry makes room.
 *
 * Client credentials are shared the same way (tls_creds_load_client_
 * shared, below): loading them costs more than a resumed handshake.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cleanup.h"
#include "log.h"
#include "tls.h"
#include "tls_resume.h"

/* ---- server ---- */

int tls_tickets_enable(gnutls_session_t s, const gnutls_datum_t *key,
                       unsigned lifetime)
{
  int r = gnutls_session_ticket_enable_server(s, key);
  if (r < 0) {
    set_error(EINVAL, "TLS session tickets: %s", gnutls_strerror(r));
    return -1;
  }
  if (lifetime)
    gnutls_db_set_cache_expiration(s, (int)lifetime);
  return 0;
}

/* ---- client cache ---- */

#define CACHE_ENTRIES 64       /* distinct (server, identity) pairs */
#define CACHE_KEY_MAX 4096     /* longer keys are not cached */

struct entry {
  char *key;                   /* NULL: free slot */
  gnutls_datum_t data;         /* gnutls_session_get_data2's, gnutls_free */
  unsigned long long stamp;    /* insertion order, for eviction */
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry cache[CACHE_ENTRIES];
static unsigned long long cache_clock;

static void entry_clear(struct entry *e)
{
  free(e->key);
  if (e->data.data) {
    gnutls_memset(e->data.data, 0, e->data.size);
    gnutls_free(e->data.data);
  }
  *e = (struct entry){ 0 };
}

static struct entry *find(const char *key)
{
  for (size_t i = 0; i < CACHE_ENTRIES; i++)
    if (cache[i].key && strcmp(cache[i].key, key) == 0)
      return &cache[i];
  return NULL;
}

/* A free slot, else the oldest one, cleared. */
static struct entry *slot(void)
{
  struct entry *old = &cache[0];
  for (size_t i = 0; i < CACHE_ENTRIES; i++) {
    if (!cache[i].key)
      return &cache[i];
    if (cache[i].stamp < old->stamp)
      old = &cache[i];
  }
  entry_clear(old);
  return old;
}

bool tls_resume_offer(gnutls_session_t s, const char *key)
{
  if (!key || strlen(key) >= CACHE_KEY_MAX)
    return false;
  SCOPED_LOCK(&cache_lock);
  struct entry *e = find(key);
  if (!e)
    return false;
  bool ok = gnutls_session_set_data(s, e->data.data, e->data.size) == 0;
  entry_clear(e);
  if (!ok)
    log_debug("TLS: cached session data for resumption refused by GnuTLS");
  return ok;
}

bool tls_resume_save(gnutls_session_t s, const char *key)
{
  /* Called after every recv until it returns true: the flag first, the
   * cheap test that is false on almost every call. */
  if (!key)
    return true;
  if (!(gnutls_session_get_flags(s) & GNUTLS_SFLAGS_SESSION_TICKET))
    return false;
  if (strlen(key) >= CACHE_KEY_MAX)
    return true;                /* never cached: do not ask again */
  gnutls_datum_t data = { NULL, 0 };
  if (gnutls_session_get_data2(s, &data) < 0 || !data.data)
    return true;                /* nothing to keep: do not ask again */
  char *k = strdup(key);
  if (!k) {
    gnutls_free(data.data);
    return true;
  }
  SCOPED_LOCK(&cache_lock);
  struct entry *e = find(key);
  if (e)
    entry_clear(e);
  else
    e = slot();
  *e = (struct entry){ .key = k, .data = data, .stamp = ++cache_clock };
  return true;
}

void tls_resume_forget_all(void)
{
  SCOPED_LOCK(&cache_lock);
  for (size_t i = 0; i < CACHE_ENTRIES; i++)
    entry_clear(&cache[i]);
}

/* ---- client credentials, shared ---- */

/* Loading a client's credentials parses its certificate, key and CA
 * (about 0.55 ms of CPU here, a third of a resumed connection's client
 * cost), and libsnbd loads them for every handle.  Handles of one
 * process with the same settings share one loaded set instead, as long
 * as none of the files changed (device, inode, size, modification and
 * change times) and for at most CREDS_MAX_AGE seconds (the system trust
 * store, used without ca-cert.pem, is not watched). */
#define CREDS_ENTRIES 8
#define CREDS_MAX_AGE 60

struct creds_entry {
  char *key;                   /* settings + file stamps; NULL: free */
  struct tls_creds *creds;     /* a reference */
  time_t loaded;
  unsigned long long stamp;
};

static pthread_mutex_t creds_lock = PTHREAD_MUTEX_INITIALIZER;
static struct creds_entry creds_cache[CREDS_ENTRIES];
static unsigned long long creds_clock;

static void creds_entry_clear(struct creds_entry *e)
{
  free(e->key);
  tls_creds_unref(e->creds);
  *e = (struct creds_entry){ 0 };
}

/* Appends what identifies the current content of path (or its absence). */
static int stamp_file(char *buf, size_t len, size_t *off, const char *dir,
                      const char *name)
{
  char path[PATH_MAX];
  struct stat st;
  if (snprintf(path, sizeof path, "%s%s%s", dir, name[0] ? "/" : "", name)
      >= (int)sizeof path)
    return -1;
  int n = stat(path, &st) == -1
          ? snprintf(buf + *off, len - *off, "|%s:-", name)
          : snprintf(buf + *off, len - *off, "|%s:%llu:%llu:%lld:%lld.%09ld:"
                     "%lld.%09ld", name, (unsigned long long)st.st_dev,
                     (unsigned long long)st.st_ino, (long long)st.st_size,
                     (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                     (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
  if (n < 0 || (size_t)n >= len - *off)
    return -1;
  *off += (size_t)n;
  return 0;
}

static char *creds_key(const struct tls_client_config *cfg)
{
  char buf[8192];
  size_t off = 0;
#define S(x) ((x) ? (x) : "")
  int n = snprintf(buf, sizeof buf, "%s\n%s\n%s\n%s\n%d", S(cfg->cert_dir),
                   S(cfg->psk_file), S(cfg->username), S(cfg->priority),
                   cfg->verify_peer);
#undef S
  if (n < 0 || (size_t)n >= sizeof buf)
    return NULL;
  off = (size_t)n;
  static const char *const x509[] = { "ca-cert.pem", "client-cert.pem",
                                      "client-key.pem", "ca-crl.pem" };
  if (cfg->psk_file && stamp_file(buf, sizeof buf, &off, cfg->psk_file, "")
      == -1)
    return NULL;
  for (size_t i = 0; cfg->cert_dir && i < 4; i++)
    if (stamp_file(buf, sizeof buf, &off, cfg->cert_dir, x509[i]) == -1)
      return NULL;
  return strdup(buf);
}

struct tls_creds *tls_creds_load_client_shared(
  const struct tls_client_config *cfg)
{
  char *key = creds_key(cfg);
  if (!key)
    return tls_creds_load_client(cfg);
  time_t now = time(NULL);
  pthread_mutex_lock(&creds_lock);
  struct creds_entry *free_slot = NULL, *old = &creds_cache[0];
  for (size_t i = 0; i < CREDS_ENTRIES; i++) {
    struct creds_entry *e = &creds_cache[i];
    if (e->key && now - e->loaded > CREDS_MAX_AGE)
      creds_entry_clear(e);
    if (e->key && strcmp(e->key, key) == 0) {
      struct tls_creds *c = tls_creds_ref(e->creds);
      pthread_mutex_unlock(&creds_lock);
      free(key);
      return c;
    }
    if (!e->key && !free_slot)
      free_slot = e;
    if (e->stamp < old->stamp)
      old = e;
  }
  pthread_mutex_unlock(&creds_lock);
  /* Load outside the lock: files may be slow; a race loads twice. */
  struct tls_creds *c = tls_creds_load_client(cfg);
  if (!c) {
    free(key);
    return NULL;
  }
  pthread_mutex_lock(&creds_lock);
  struct creds_entry *e = free_slot && !free_slot->key ? free_slot : old;
  creds_entry_clear(e);
  *e = (struct creds_entry){ .key = key, .creds = tls_creds_ref(c),
                             .loaded = now, .stamp = ++creds_clock };
  pthread_mutex_unlock(&creds_lock);
  return c;
}
