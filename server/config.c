/* snbd-server: option values and the INI config file (inih). */
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "log.h"

static int parse_int(const char *key, const char *v, int min, int max,
                     int *out)
{
  char *end;
  errno = 0;
  long n = v ? strtol(v, &end, 10) : 0;
  if (!v || !*v || *end || errno || n < min || n > max) {
    set_error(EINVAL, "%s: expected a number from %d to %d, got \"%s\"", key,
              min, max, v ? v : "");
    return -1;
  }
  *out = (int)n;
  return 0;
}

static int parse_flag(const char *key, const char *v, bool *out)
{
  if (!v || !*v || !strcmp(v, "1") || !strcasecmp(v, "true") ||
      !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
    *out = true;
  else if (!strcmp(v, "0") || !strcasecmp(v, "false") ||
           !strcasecmp(v, "no") || !strcasecmp(v, "off"))
    *out = false;
  else {
    set_error(EINVAL, "%s: expected true or false, got \"%s\"", key, v);
    return -1;
  }
  return 0;
}

static int set_str(char **dst, const char *v)
{
  free(*dst);
  *dst = v ? strdup(v) : NULL;
  if (v && !*dst) {
    set_error(ENOMEM, "strdup");
    return -1;
  }
  return 0;
}

static int add_binds(struct options *o, const char *v)
{
  char *copy = strdup(v), *save = NULL;
  if (!copy)
    return -1;
  for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
    if (o->nbind == MAX_BINDS) {
      free(copy);
      set_error(EINVAL, "more than %d listen addresses", MAX_BINDS);
      return -1;
    }
    o->bind[o->nbind++] = strdup(t);
  }
  free(copy);
  return 0;
}

int config_set(struct server *s, struct options *o, const char *key,
               const char *v)
{
  if (!strcmp(key, "port"))
    return parse_int(key, v, 0, 65535, &o->port);
  if (!strcmp(key, "bind"))
    return add_binds(o, v ? v : "");
  if (!strcmp(key, "unix"))
    return set_str(&o->unix_path, v);
  if (!strcmp(key, "run"))
    return set_str(&o->run, v);
  if (!strcmp(key, "pid-file"))
    return set_str(&o->pid_file, v);
  if (!strcmp(key, "threads"))
    return parse_int(key, v, 1, 1024, &s->threads);
  if (!strcmp(key, "handshake-timeout"))
    return parse_int(key, v, 1, 3600, &s->handshake_timeout);
  if (!strcmp(key, "max-negotiating"))
    return parse_int(key, v, 1, 1000000, &s->max_negotiating);
  if (!strcmp(key, "max-connections"))
    return parse_int(key, v, 1, 1000000, &s->max_connections);
  if (!strcmp(key, "read-only"))
    return parse_flag(key, v, &o->read_only);
  if (!strcmp(key, "single"))
    return parse_flag(key, v, &o->single);
  if (!strcmp(key, "verbose")) {
    bool b;
    if (parse_flag(key, v, &b) == -1)
      return -1;
    o->verbose = b;
    return 0;
  }
  if (!strcmp(key, "log")) {
    if (v && !strcmp(v, "syslog"))
      o->log_syslog = true;
    else if (v && !strcmp(v, "stderr"))
      o->log_syslog = false;
    else {
      set_error(EINVAL, "log: expected stderr or syslog");
      return -1;
    }
    return 0;
  }
  if (!strcmp(key, "tls")) {
    if (v && !strcmp(v, "off"))
      s->tls_mode = TLS_MODE_OFF;
    else if (v && !strcmp(v, "on"))
      s->tls_mode = TLS_MODE_ON;
    else if (v && !strcmp(v, "require"))
      s->tls_mode = TLS_MODE_REQUIRE;
    else {
      set_error(EINVAL, "tls: expected off, on or require");
      return -1;
    }
    s->tls_mode_set = true;
    return 0;
  }
  if (!strcmp(key, "tls-certificates"))
    return set_str(&s->tls_certs, v);
  if (!strcmp(key, "tls-psk"))
    return set_str(&s->tls_psk, v);
  if (!strcmp(key, "tls-priority"))
    return set_str(&s->tls_priority, v);
  if (!strcmp(key, "tls-verify-peer"))
    return parse_flag(key, v, &s->tls_verify_peer);
  set_error(EINVAL, "unknown option \"%s\"", key);
  return -1;
}

struct load_ctx {
  struct server *s;
  struct options *o;
  const char *path;
  char err[512];
};

static int on_ini(void *user, const char *section, const char *key,
                  const char *value)
{
  struct load_ctx *l = user;
  int r;
  if (!strcmp(section, "server"))
    r = config_set(l->s, l->o, key, value);
  else if (!strncmp(section, "export", 6) &&
           (section[6] == '\0' || section[6] == ' ')) {
    const char *name = section[6] ? section + 7 : "";
    struct export *e = NULL;
    for (size_t i = 0; i < l->s->nexports; i++)
      if (!strcmp(l->s->exports[i].name, name))
        e = &l->s->exports[i];
    if (!strcmp(key, "backend")) {
      if (e) {
        r = set_str(&e->spec, value);
      }
      else
        r = export_add(l->s, name, value);
    }
    else if (!e) {
      set_error(EINVAL, "[%s]: backend= must come first", section);
      r = -1;
    }
    else
      r = export_set_key(e, key, value);
  }
  else {
    set_error(EINVAL, "unknown section [%s]", section);
    r = -1;
  }
  if (r == -1 && !l->err[0])
    snprintf(l->err, sizeof l->err, "%s: [%s] %s: %s", l->path, section, key,
             get_error());
  return r == 0;
}

int config_load(struct server *s, struct options *o, const char *path)
{
  struct load_ctx l = { .s = s, .o = o, .path = path };
  int r = ini_parse(path, on_ini, &l);
  if (r == -1) {
    set_error(errno ? errno : ENOENT, "%s: cannot open: %m", path);
    return -1;
  }
  if (r != 0) {
    if (l.err[0])
      set_error(EINVAL, "%s", l.err);
    else
      set_error(EINVAL, "%s: syntax error on line %d", path, r);
    return -1;
  }
  return 0;
}

int config_merge_exports(struct server *s, struct export *v, size_t n)
{
  for (size_t i = 0; i < n; i++) {
    for (size_t j = 0; j < s->nexports; j++)
      if (!strcmp(s->exports[j].name, v[i].name)) {
        set_error(EINVAL, "export \"%s\" is both on the command line and "
                  "in the config file", v[i].name);
        return -1;
      }
    struct export *nv = realloc(s->exports, (s->nexports + 1) * sizeof *nv);
    if (!nv) {
      set_error(ENOMEM, "realloc");
      return -1;
    }
    s->exports = nv;
    s->exports[s->nexports++] = v[i];
  }
  free(v);
  return 0;
}

void config_free(struct server *s, struct options *o)
{
  for (int i = 0; i < o->nbind; i++)
    free(o->bind[i]);
  free(o->unix_path);
  free(o->unix_real);
  free(o->run);
  free(o->pid_file);
  free(s->tls_certs);
  free(s->tls_psk);
  free(s->tls_priority);
}
