/* snbd-server: the export table.  Exports are parsed from the command
 * line / config file, opened once before serving, and read-only after. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
#include "log.h"
#include "server.h"

static char *xstrdup(const char *s)
{
  char *d = strdup(s);
  if (!d)
    log_error("out of memory");
  return d;
}

int export_add(struct server *s, const char *name, const char *backend)
{
  for (size_t i = 0; i < s->nexports; i++)
    if (strcmp(s->exports[i].name, name) == 0) {
      set_error(EINVAL, "export \"%s\" defined twice", name);
      return -1;
    }
  if (strlen(name) > NBD_MAX_STRING) {
    set_error(EINVAL, "export name longer than %d bytes", NBD_MAX_STRING);
    return -1;
  }
  struct export *v = realloc(s->exports, (s->nexports + 1) * sizeof *v);
  if (!v) {
    set_error(ENOMEM, "realloc");
    return -1;
  }
  s->exports = v;
  struct export *e = &v[s->nexports];
  memset(e, 0, sizeof *e);
  e->name = xstrdup(name);
  e->spec = xstrdup(backend);
  if (!e->name || !e->spec) {
    set_error(ENOMEM, "strdup");
    return -1;
  }
  s->nexports++;
  return 0;
}

static bool parse_bool(const char *v, bool *out)
{
  if (!v || !*v || !strcmp(v, "1") || !strcasecmp(v, "true") ||
      !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
    *out = true;
  else if (!strcmp(v, "0") || !strcasecmp(v, "false") ||
           !strcasecmp(v, "no") || !strcasecmp(v, "off"))
    *out = false;
  else
    return false;
  return true;
}

static void free_allow(struct export *e)
{
  if (e->allow)
    for (char **a = e->allow; *a; a++)
      free(*a);
  free(e->allow);
  e->allow = NULL;
}

/* allow=ID[;ID...]; a second allow= replaces the first. */
static int parse_allow(struct export *e, const char *value)
{
  size_t n = 1;
  for (const char *p = value; *p; p++)
    n += *p == ';';
  char **v = calloc(n + 1, sizeof *v);
  char *copy = strdup(value);
  if (!v || !copy) {
    free(v);
    free(copy);
    set_error(ENOMEM, "allow");
    return -1;
  }
  size_t k = 0;
  char *save = NULL;
  for (char *tok = strtok_r(copy, ";", &save); tok;
       tok = strtok_r(NULL, ";", &save))
    if (*tok && !(v[k++] = strdup(tok))) {
      set_error(ENOMEM, "allow");
      while (k > 0)
        free(v[--k]);
      free(v);
      free(copy);
      return -1;
    }
  free(copy);
  if (k == 0) {
    free(v);
    set_error(EINVAL, "allow= needs at least one identity");
    return -1;
  }
  free_allow(e);
  e->allow = v;
  return 0;
}

int keyvals_set(struct keyvals *v, const char *key, const char *value)
{
  if (!value || !*value) {
    set_error(EINVAL, "%s needs a value", key);
    return -1;
  }
  char *copy = strdup(value);
  for (size_t i = 0; copy && i < v->len; i++)
    if (!strcmp(v->ptr[i].key, key)) {
      free(v->ptr[i].value);
      v->ptr[i].value = copy;
      return 0;
    }
  struct keyval kv = { copy ? strdup(key) : NULL, copy };
  if (!kv.key || keyvals_append(v, kv) == -1) {
    free(kv.key);
    free(copy);
    set_error(ENOMEM, "%s", key);
    return -1;
  }
  return 0;
}

void keyvals_free(struct keyvals *v)
{
  for (size_t i = 0; i < v->len; i++) {
    free(v->ptr[i].key);
    free(v->ptr[i].value);
  }
  keyvals_reset(v);
}

int export_set_key(struct export *e, const char *key, const char *value)
{
  bool b;
  if (!strcmp(key, "readonly") || !strcmp(key, "read-only")) {
    if (!parse_bool(value, &b))
      goto bad;
    e->readonly = b;
  }
  else if (!strcmp(key, "tls-only")) {
    if (!parse_bool(value, &b))
      goto bad;
    e->tls_only = b;
  }
  else if (!strcmp(key, "description")) {
    if (!value || strlen(value) > NBD_MAX_STRING)
      goto bad;
    free(e->description);
    e->description = xstrdup(value);
  }
  else if (!strcmp(key, "allow")) {
    if (!value)
      goto bad;
    return parse_allow(e, value);
  }
  else if (backend_key_known(key))
    return keyvals_set(&e->keys, key, value);
  else {
    set_error(EINVAL, "export \"%s\": unknown key \"%s\"", e->name, key);
    return -1;
  }
  return 0;
bad:
  set_error(EINVAL, "export \"%s\": bad value for %s", e->name, key);
  return -1;
}

/* [NAME=]BACKEND[,KEY=VALUE...]: a NAME never contains ':' so the first
 * '=' before the first ':' ends it.  The first export is also the default
 * (empty name) one; later exports must be named. */
int export_parse(struct server *s, const char *arg)
{
  char *copy = strdup(arg);
  if (!copy) {
    set_error(ENOMEM, "strdup");
    return -1;
  }
  char *colon = strchr(copy, ':');
  char *eq = strchr(copy, '=');
  const char *name = "";
  char *spec = copy;
  if (eq && (!colon || eq < colon)) {
    *eq = '\0';
    name = copy;
    spec = eq + 1;
  }
  else if (s->nexports > 0) {
    set_error(EINVAL, "\"%s\": only the first export may be unnamed", arg);
    free(copy);
    return -1;
  }
  char *opts = strchr(spec, ',');
  if (opts)
    *opts++ = '\0';
  int r = export_add(s, name, spec);
  while (r == 0 && opts && *opts) {
    char *next = strchr(opts, ',');
    if (next)
      *next++ = '\0';
    char *val = strchr(opts, '=');
    if (val)
      *val++ = '\0';
    r = export_set_key(&s->exports[s->nexports - 1], opts, val);
    opts = next;
  }
  free(copy);
  return r;
}

const struct export *export_find(const struct export_table *t,
                                 const char *name, size_t len)
{
  for (size_t i = 0; i < t->n; i++) {
    const struct export *e = &t->v[i];
    if (strlen(e->name) == len && memcmp(e->name, name, len) == 0)
      return e;
  }
  /* The empty name is the default export: the first one. */
  if (len == 0 && t->n > 0)
    return &t->v[0];
  return NULL;
}

/* A backend and the exports (of successive tables) that use it. */
struct backend_ref {
  atomic_int refs;
  struct backend *be;
  bool flush_at_close;      /* writable and able to flush */
};

/* Drops e's share of its backend; the last one flushes and closes it.
 * -1 if that flush failed. */
static int backend_put(struct export *e)
{
  struct backend_ref *r = e->be_ref;
  int rc = 0;
  if (!r && e->be)
    backend_close(e->be);     /* opened by hand (fuzz_config) */
  e->be_ref = NULL;
  e->be = NULL;
  if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
    return 0;
  if (r->flush_at_close && backend_flush(r->be) == -1) {
    log_error("export " EXPORT_FMT ": flush at close: %m",
              EXPORT_ARGS(e->name));
    rc = -1;
  }
  backend_close(r->be);
  free(r);
  return rc;
}

static void export_free(struct export *e)
{
  free(e->name);
  free(e->description);
  free(e->spec);
  free_allow(e);
  keyvals_free(&e->keys);
}

static bool keyvals_equal(const struct keyvals *a, const struct keyvals *b)
{
  if (a->len != b->len)
    return false;
  for (size_t i = 0; i < a->len; i++)
    if (strcmp(a->ptr[i].key, b->ptr[i].key) ||
        strcmp(a->ptr[i].value, b->ptr[i].value))
      return false;
  return true;
}

/* Opens e's backend with its keys, after the server's defaults. */
static struct backend *open_backend(const struct keyvals *defaults,
                                    const struct export *e)
{
  size_t n = defaults->len + e->keys.len;
  CLEANUP_FREE struct backend_key *v = calloc(n ? n : 1, sizeof *v);
  if (!v) {
    set_error(ENOMEM, "keys");
    return NULL;
  }
  for (size_t i = 0; i < defaults->len; i++)
    v[i] = (struct backend_key){ defaults->ptr[i].key,
                                 defaults->ptr[i].value, true };
  for (size_t i = 0; i < e->keys.len; i++)
    v[defaults->len + i] = (struct backend_key){
      e->keys.ptr[i].key, e->keys.ptr[i].value, false };
  struct backend_keys keys = { v, n };
  return backend_open_keys(e->spec, e->readonly, &keys);
}

/* The export of `keep` whose backend e can share, or NULL. */
static struct export *shareable(const struct export_table *keep,
                                const struct export *e)
{
  for (size_t i = 0; keep && i < keep->n; i++) {
    struct export *k = &keep->v[i];
    if (!strcmp(k->name, e->name) && !strcmp(k->spec, e->spec) &&
        k->readonly_asked == e->readonly_asked && k->be_ref &&
        keyvals_equal(&k->keys, &e->keys))
      return k;
  }
  return NULL;
}

static int export_open_one(struct export *e, bool all_readonly,
                           const struct keyvals *defaults,
                           const struct export_table *keep)
{
  e->readonly_asked = e->readonly || all_readonly;
  e->readonly = e->readonly_asked;
  struct export *k = shareable(keep, e);
  if (k) {
    atomic_fetch_add(&k->be_ref->refs, 1);
    e->be_ref = k->be_ref;
    e->be = k->be;
  }
  else {
    struct backend_ref *r = calloc(1, sizeof *r);
    if (!r || !(r->be = open_backend(defaults, e))) {
      if (r)
        set_error(errno, "export " EXPORT_FMT ": %s", EXPORT_ARGS(e->name),
                  error_message());
      else
        set_error(ENOMEM, "export " EXPORT_FMT ": out of memory",
                  EXPORT_ARGS(e->name));
      free(r);
      return -1;
    }
    atomic_init(&r->refs, 1);
    r->flush_at_close = !e->readonly && (r->be->caps & BACKEND_CAN_WRITE) &&
                        (r->be->caps & BACKEND_CAN_FLUSH);
    e->be_ref = r;
    e->be = r->be;
  }
  if (!(e->be->caps & BACKEND_CAN_WRITE))
    e->readonly = true;
  return 0;
}

struct export_table *export_table_open(struct export *v, size_t n,
                                       bool all_readonly,
                                       const struct keyvals *defaults,
                                       const struct export_table *keep)
{
  struct export_table *t = calloc(1, sizeof *t);
  if (!t) {
    for (size_t i = 0; i < n; i++)
      export_free(&v[i]);
    free(v);
    set_error(ENOMEM, "out of memory");
    return NULL;
  }
  atomic_init(&t->refs, 1);
  t->v = v;
  t->n = n;
  for (size_t i = 0; i < n; i++)
    if (export_open_one(&v[i], all_readonly, defaults, keep) == -1) {
      char why[512];
      snprintf(why, sizeof why, "%s", error_message());
      export_table_unref(t);
      set_error(EINVAL, "%s", why);
      return NULL;
    }
  return t;
}

int export_table_unref(struct export_table *t)
{
  if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
    return 0;
  int rc = 0;
  for (size_t i = 0; i < t->n; i++) {
    if (backend_put(&t->v[i]) == -1)
      rc = -1;
    export_free(&t->v[i]);
  }
  free(t->v);
  free(t);
  return rc;
}

int exports_open(struct server *s, bool all_readonly)
{
  struct export_table *t = export_table_open(s->exports, s->nexports,
                                             all_readonly, &s->backend_keys,
                                             NULL);
  s->exports = NULL;
  s->nexports = 0;
  if (!t) {
    log_error("%s", error_message());
    return -1;
  }
  exports_swap(s, t);
  return 0;
}

struct export_table *exports_get(struct server *s)
{
  pthread_mutex_lock(&s->creds_lock);
  struct export_table *t = s->table;
  if (t)
    atomic_fetch_add(&t->refs, 1);
  pthread_mutex_unlock(&s->creds_lock);
  return t;
}

void exports_swap(struct server *s, struct export_table *t)
{
  pthread_mutex_lock(&s->creds_lock);
  struct export_table *old = s->table;
  s->table = t;
  pthread_mutex_unlock(&s->creds_lock);
  export_table_unref(old);
}

int exports_close(struct server *s)
{
  for (size_t i = 0; i < s->nexports; i++) {
    backend_put(&s->exports[i]);
    export_free(&s->exports[i]);
  }
  free(s->exports);
  s->exports = NULL;
  s->nexports = 0;
  struct export_table *t = s->table;
  s->table = NULL;
  return export_table_unref(t);
}

/* "1.5 GiB": sizes an operator reads at a glance. */
static void human_size(uint64_t n, char *buf, size_t size)
{
  static const char units[] = "KMGTPE";
  if (n < 1024) {
    snprintf(buf, size, "%llu bytes", (unsigned long long)n);
    return;
  }
  double v = (double)n / 1024;
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    u++;
  }
  snprintf(buf, size, "%.*f %ciB", v == (uint64_t)v ? 0 : 1, v, units[u]);
}

void export_describe(const struct export *e, bool is_default, char *buf,
                     size_t size)
{
  char hs[32], allow[256] = "";
  human_size(e->be->size, hs, sizeof hs);
  for (char **a = e->allow; a && *a; a++)
    snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s",
             a == e->allow ? ", allow=" : ";", *a);
  snprintf(buf, size, "export " EXPORT_FMT "%s: %s, %s (%llu bytes), %s%s%s",
           EXPORT_ARGS(e->name), is_default && *e->name ? " (default)" : "",
           e->spec, hs, (unsigned long long)e->be->size,
           e->readonly ? "read-only" : "read-write",
           e->tls_only ? ", TLS only" : "", allow);
}

int exports_check_tls(const struct export *v, size_t n, bool tls_off)
{
  for (size_t i = 0; i < n && tls_off; i++)
    if (v[i].tls_only || v[i].allow) {
      set_error(EINVAL, "export " EXPORT_FMT " needs TLS (%s) but TLS is off",
                EXPORT_ARGS(v[i].name), v[i].allow ? "allow=" : "tls-only");
      return -1;
    }
  return 0;
}

/* Transmission flags; identical for INFO and GO in the same state. */
uint16_t export_eflags(const struct export *e, bool structured)
{
  unsigned caps = e->be->caps;
  uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
               NBD_FLAG_SEND_CACHE;
  if (e->readonly)
    f |= NBD_FLAG_READ_ONLY;
  else {
    if (caps & BACKEND_CAN_TRIM)
      f |= NBD_FLAG_SEND_TRIM;
    f |= NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
  }
  if (structured)
    f |= NBD_FLAG_SEND_DF;
  if (caps & BACKEND_CAN_MULTI_CONN)
    f |= NBD_FLAG_CAN_MULTI_CONN;
  if (caps & BACKEND_ROTATIONAL)
    f |= NBD_FLAG_ROTATIONAL;
  return f;
}
