/* snbd-server: the export table.  Exports are parsed from the command
 * line / config file, opened once before serving, and read-only after. */
#include <errno.h>
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

const struct export *export_find(const struct server *s, const char *name,
                                 size_t len)
{
  for (size_t i = 0; i < s->nexports; i++) {
    const struct export *e = &s->exports[i];
    if (strlen(e->name) == len && memcmp(e->name, name, len) == 0)
      return e;
  }
  /* The empty name is the default export: the first one. */
  if (len == 0 && s->nexports > 0)
    return &s->exports[0];
  return NULL;
}

/* Opens e's backend with its keys, after the server's defaults. */
static struct backend *open_backend(const struct server *s,
                                    const struct export *e)
{
  size_t n = s->backend_keys.len + e->keys.len;
  CLEANUP_FREE struct backend_key *v = calloc(n ? n : 1, sizeof *v);
  if (!v) {
    set_error(ENOMEM, "keys");
    return NULL;
  }
  for (size_t i = 0; i < s->backend_keys.len; i++)
    v[i] = (struct backend_key){ s->backend_keys.ptr[i].key,
                                 s->backend_keys.ptr[i].value, true };
  for (size_t i = 0; i < e->keys.len; i++)
    v[s->backend_keys.len + i] = (struct backend_key){
      e->keys.ptr[i].key, e->keys.ptr[i].value, false };
  struct backend_keys keys = { v, n };
  return backend_open_keys(e->spec, e->readonly, &keys);
}

int exports_open(struct server *s, bool all_readonly)
{
  for (size_t i = 0; i < s->nexports; i++) {
    struct export *e = &s->exports[i];
    if (all_readonly)
      e->readonly = true;
    e->be = open_backend(s, e);
    if (!e->be) {
      log_error("export \"%s\": %s", e->name, get_error());
      return -1;
    }
    if (!(e->be->caps & BACKEND_CAN_WRITE))
      e->readonly = true;
  }
  return 0;
}

int exports_close(struct server *s)
{
  int rc = 0;
  for (size_t i = 0; i < s->nexports; i++) {
    struct export *e = &s->exports[i];
    if (e->be) {
      if (!e->readonly && (e->be->caps & BACKEND_CAN_FLUSH) &&
          backend_flush(e->be) == -1) {
        log_error("export \"%s\": flush at exit: %m", e->name);
        rc = -1;
      }
      backend_close(e->be);
    }
    free(e->name);
    free(e->description);
    free(e->spec);
    free_allow(e);
    keyvals_free(&e->keys);
  }
  free(s->exports);
  s->exports = NULL;
  s->nexports = 0;
  return rc;
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
