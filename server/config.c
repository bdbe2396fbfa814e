/* snbd-server: its options (one table for the command line, the config
 * file's [server] keys and --help) and the INI config file (inih). */
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cleanup.h"
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

/* v must be one of names (NULL-terminated); *out is its index. */
static int parse_enum(const char *key, const char *v,
                      const char *const *names, int *out)
{
  size_t n = 0;
  for (; names[n]; n++)
    if (v && !strcmp(v, names[n])) {
      *out = (int)n;
      return 0;
    }
  char list[128] = "";
  for (size_t i = 0; i < n; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
             i == 0 ? "" : i == n - 1 ? " or " : ", ", names[i]);
  set_error(EINVAL, "%s: expected %s", key, list);
  return -1;
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

static int add_binds(struct server *s, struct options *o, const char *v)
{
  (void)s;
  CLEANUP_FREE char *copy = strdup(v ? v : "");
  char *save = NULL;
  if (!copy) {
    set_error(ENOMEM, "strdup");
    return -1;
  }
  for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
    if (o->nbind == MAX_BINDS) {
      set_error(EINVAL, "more than %d listen addresses", MAX_BINDS);
      return -1;
    }
    o->bind[o->nbind++] = strdup(t);
  }
  return 0;
}

/* TLS_MODE_* in table order; --tls also records that the mode was chosen
 * rather than defaulted (main.c decides the default from the
 * credentials). */
static const char *const tls_modes[] = { "off", "on", "require", NULL };

static int set_tls(struct server *s, struct options *o, const char *v)
{
  (void)o;
  int mode;
  if (parse_enum("tls", v, tls_modes, &mode) == -1)
    return -1;
  s->tls_mode = (enum tls_mode)mode;
  s->tls_mode_set = true;
  return 0;
}

/* LOG_TO_* in table order. */
static const char *const log_targets[] = { "stderr", "syslog", NULL };
static const char *const on_off[] = { "on", "off", NULL };

/* Where a row's value goes: a field of struct server or struct options,
 * checked at compile time to have the type the row's kind writes. */
#define IN_server true
#define IN_options false
#define FIELD(st, f, T) .in_server = IN_##st, \
  .off = offsetof(struct st, f) + 0 * sizeof(_Generic(((struct st *)0)->f, T: 1))

/* Every server option, in --help order.  Adding an option is one row: it
 * becomes --NAME (and -LETTER), a [server] key, and a --help entry. */
const struct config_opt config_opts[] = {
  { "port", 'p', CFG_INT, FIELD(options, port, int), .min = 0, .max = 65535,
    .arg = " PORT", .help = "TCP port (default 10809; 0 picks a free one)" },
  { "bind", 'i', CFG_FN, .set = add_binds, .example = "192.0.2.1,::1",
    .arg = " ADDR", .help = "listen address, repeatable\n"
                            "(default 127.0.0.1 and ::1)" },
  { "unix", 'U', CFG_STR, FIELD(options, unix_path, char *), .arg = " PATH",
    .help = "listen on a Unix socket ('-' makes a private\n"
            "one); with -U and no -i/-p, Unix only" },
  { "single", 's', CFG_FLAG, FIELD(options, single, bool),
    .help = "serve one client on stdin/stdout, then exit" },
  { "run", 0, CFG_STR, FIELD(options, run, char *), .arg = " CMD",
    .help = "run CMD with $uri, $unixsocket, $port set;\n"
            "exit with its status when it ends" },
  { "read-only", 'r', CFG_FLAG, FIELD(options, read_only, bool),
    .alias = "readonly", .help = "every export read-only" },
  { "config", 'c', CFG_CLI, .arg = " FILE",
    .help = "INI file: [server] and [export NAME] sections" },
  { "threads", 't', CFG_INT, FIELD(server, threads, int), .min = 1,
    .max = 1024, .arg = " N", .help = "worker threads" },
  { "tls", 0, CFG_FN, .set = set_tls, .example = "on",
    .arg = "=off|on|require", .help = "TLS mode (default: require when "
    "credentials\nare given, else off)" },
  { "tls-certificates", 0, CFG_STR, FIELD(server, tls_certs, char *),
    .arg = " DIR", .help = "ca-cert.pem, server-cert.pem, server-key.pem,\n"
                           "optional ca-crl.pem" },
  { "tls-psk", 0, CFG_STR, FIELD(server, tls_psk, char *), .arg = " FILE",
    .help = "PSK file made by psktool" },
  { "tls-verify-peer", 0, CFG_FLAG, FIELD(server, tls_verify_peer, bool),
    .help = "require a client certificate" },
  { "tls-priority", 0, CFG_STR, FIELD(server, tls_priority, char *),
    .arg = " STRING", .help = "GnuTLS priority (TLS 1.2 minimum, whatever\n"
    "it says; default: AEAD and (EC)DHE only)" },
  { "tls-unsafe-old-versions", 0, CFG_FLAG,
    FIELD(server, tls_old_versions, bool),
    .help = "UNSAFE: let --tls-priority enable TLS 1.0/1.1" },
  { "tls-session-tickets", 0, CFG_ENUM, FIELD(server, tls_tickets_off, int),
    .names = on_off, .arg = "=on|off",
    .help = "TLS session tickets: clients resume\n"
            "without a full handshake (default on)" },
  { "tls-session-ticket-lifetime", 0, CFG_INT,
    FIELD(server, tls_ticket_lifetime, int), .min = 1, .max = 7 * 86400,
    .arg = " S", .help = "seconds a ticket resumes (default 7200)" },
  { "handshake-timeout", 0, CFG_INT, FIELD(server, handshake_timeout, int),
    .min = 1, .max = 3600, .arg = " S",
    .help = "seconds to finish negotiating (default 10)" },
  { "max-negotiating", 0, CFG_INT, FIELD(server, max_negotiating, int),
    .min = 1, .max = 1000000, .arg = " N",
    .help = "connections negotiating at once (default 256)" },
  { "max-negotiating-per-source", 0, CFG_INT,
    FIELD(server, max_negotiating_per_source, int), .min = 0,
    .max = 1000000, .arg = " N", .help = "of those, from one IP address "
    "(IPv6: /64;\n0: no limit; default 16)" },
  { "max-connections", 0, CFG_INT, FIELD(server, max_connections, int),
    .min = 1, .max = 1000000, .arg = " N",
    .help = "connections at once (default 16384)" },
  { "max-queued-mib", 0, CFG_INT, FIELD(server, max_queued_mib, int),
    .min = 0, .max = 1 << 20, .arg = " N", .help = "MiB of requests and "
    "replies queued, all\nconnections (default 256; 0: no bound)" },
  { "metrics", 0, CFG_STR, FIELD(options, metrics, char *),
    .arg = " ADDR", .help = "serve Prometheus metrics at http://ADDR/metrics\n"
    "(HOST:PORT on loopback, or unix:PATH; default off)" },
  { "metrics-allow-remote", 0, CFG_FLAG,
    FIELD(options, metrics_allow_remote, bool),
    .help = "let --metrics listen beyond loopback" },
  { "tcp-timeout", 0, CFG_INT, FIELD(server, tcp_timeout, int), .min = 0,
    .max = 86400, .arg = " S",
    .help = "drop a TCP peer silent this long (keepalive,\n"
            "TCP_USER_TIMEOUT; default 120, 0: never)" },
  { "pid-file", 'P', CFG_STR, FIELD(options, pid_file, char *),
    .arg = " FILE", .help = "write the PID once listening" },
  { "verbose", 'v', CFG_FLAG, FIELD(options, verbose, bool),
    .help = "debug messages" },
  { "log", 0, CFG_ENUM, FIELD(options, log_to, int), .names = log_targets,
    .arg = "=stderr|syslog", .help = "where messages go (default stderr)" },
  { "ceph-conf", 0, CFG_KEY, .example = "/etc/ceph/other.conf",
    .arg = " PATH", .help = "rbd: exports: ceph.conf (default: $CEPH_CONF,\n"
    "then librados's search path)" },
  { "ceph-id", 0, CFG_KEY, .example = "snbd", .arg = " NAME",
    .help = "rbd: exports: cephx user, without client.\n(default admin)" },
  { "ceph-keyring", 0, CFG_KEY, .example = "/etc/ceph/snbd.keyring",
    .arg = " PATH", .help = "rbd: exports: the user's keyring (default:\n"
    "ceph.conf's)" },
  { "ceph-timeout", 0, CFG_KEY, .example = "10", .arg = " S",
    .help = "rbd: exports: seconds to reach the cluster at\nstart and for "
    "each request (default 30)" },
  { "check-config", 0, CFG_CLI,
    .help = "check the options, exports and credentials;\ndo not serve" },
  { "version", 'V', CFG_CLI, .help = "print the version" },
  { "help", 'h', CFG_CLI, .help = "this help" },
};
#define NOPTS (sizeof config_opts / sizeof config_opts[0])
const size_t config_nopts = NOPTS;

static int set_value(const struct config_opt *r, struct server *s,
                     struct options *o, const char *v)
{
  void *p = (r->in_server ? (char *)s : (char *)o) + r->off;
  switch (r->kind) {
  case CFG_INT: return parse_int(r->name, v, r->min, r->max, p);
  case CFG_STR: return set_str(p, v);
  case CFG_FLAG: return parse_flag(r->name, v, p);
  case CFG_ENUM: return parse_enum(r->name, v, r->names, p);
  case CFG_FN: return r->set(s, o, v);
  case CFG_KEY: return keyvals_set(&s->backend_keys, r->name, v);
  case CFG_CLI: break;
  }
  set_error(EINVAL, "unknown option \"%s\"", r->name);
  return -1;
}

int config_set(struct server *s, struct options *o, const char *key,
               const char *v)
{
  for (size_t i = 0; i < config_nopts; i++)
    if (!strcmp(key, config_opts[i].name))
      return set_value(&config_opts[i], s, o, v);
  set_error(EINVAL, "unknown option \"%s\" (snbd-server --help lists them)",
            key);
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
             error_message());
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
  size_t ncmd = s->nexports;
  if (n == 0) {
    free(v);
    return 0;
  }
  struct export *nv = realloc(s->exports, (ncmd + n) * sizeof *nv);
  if (!nv) {
    set_error(ENOMEM, "realloc");
    return -1;
  }
  memcpy(nv + ncmd, v, n * sizeof *v);
  free(v);
  s->exports = nv;
  s->nexports = ncmd + n;
  for (size_t i = ncmd; i < ncmd + n; i++)
    for (size_t j = 0; j < ncmd; j++)
      if (!strcmp(nv[j].name, nv[i].name)) {
        set_error(EINVAL, "export \"%s\" is both on the command line and "
                  "in the config file", nv[i].name);
        return -1;
      }
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
  free(o->metrics);
  free(s->tls_certs);
  free(s->tls_psk);
  free(s->tls_priority);
  keyvals_free(&s->backend_keys);
}

void config_defaults(struct server *s, struct options *o)
{
  *s = (struct server){
    .threads = 0,               /* main.c: from the number of CPUs */
    .max_inflight = 64,
    .handshake_timeout = 10,
    .max_negotiating = 256,
    .max_negotiating_per_source = 16,
    .max_connections = 16384,
    .max_queued_mib = 256,
    .tcp_timeout = 120,
    .tls_ticket_lifetime = 7200,
    .wake_pipe = { -1, -1 },
    .buf_pools = { .max = BUF_POOL_TOTAL_MAX },
  };
  *o = (struct options){ .port = -1 };
}

static bool str_differs(const char *a, const char *b)
{
  return a != b && (!a || !b || strcmp(a, b));
}

static const char *key_value(const struct keyvals *v, const char *key)
{
  for (size_t i = 0; i < v->len; i++)
    if (!strcmp(v->ptr[i].key, key))
      return v->ptr[i].value;
  return NULL;
}

/* Whether row r has different values in (a, ao) and (b, bo). */
static bool opt_differs(const struct config_opt *r, const struct server *a,
                        const struct options *ao, const struct server *b,
                        const struct options *bo)
{
  const char *pa = r->in_server ? (const char *)a : (const char *)ao;
  const char *pb = r->in_server ? (const char *)b : (const char *)bo;
  switch (r->kind) {
  case CFG_INT:
  case CFG_ENUM:
    return *(const int *)(pa + r->off) != *(const int *)(pb + r->off);
  case CFG_FLAG:
    return *(const bool *)(pa + r->off) != *(const bool *)(pb + r->off);
  case CFG_STR:
    return str_differs(*(char *const *)(pa + r->off),
                       *(char *const *)(pb + r->off));
  case CFG_FN:
    if (r->set == set_tls)     /* main.c fills in a defaulted mode */
      return (a->tls_mode_set || b->tls_mode_set) &&
             (a->tls_mode_set != b->tls_mode_set || a->tls_mode != b->tls_mode);
    if (r->set != add_binds)
      return false;
    if (ao->nbind != bo->nbind)
      return true;
    for (int i = 0; i < ao->nbind; i++)
      if (strcmp(ao->bind[i], bo->bind[i]))
        return true;
    return false;
  case CFG_KEY:                /* backends already open keep theirs */
    return str_differs(key_value(&a->backend_keys, r->name),
                       key_value(&b->backend_keys, r->name));
  case CFG_CLI:
    break;
  }
  return false;
}

void config_report_changes(const struct server *a, const struct options *ao,
                           const struct server *b, const struct options *bo)
{
  for (size_t i = 0; i < config_nopts; i++)
    if (opt_differs(&config_opts[i], a, ao, b, bo))
      log_warn("reload: %s changed; it takes effect at the next start",
               config_opts[i].name);
}

/* ---- The command line ---- */

void config_usage(FILE *f)
{
  char kinds[256];
  backend_kinds_usage(kinds, sizeof kinds);
  fprintf(f,
"Usage: snbd-server [OPTIONS] EXPORT...\n"
"Serve block devices over NBD (fixed newstyle, TLS by default when\n"
"credentials are given).\n\n"
"EXPORT is [NAME=]BACKEND[,KEY=VALUE...]\n"
"  BACKEND: %s\n"
"           (memory:SIZE is sparse RAM, e.g. memory:1G)\n"
"  KEYS:    readonly, description=TEXT, tls-only, allow=ID[;ID...]\n"
"           (ID: an X.509 subject DN, cn=NAME, or psk:USERNAME);\n"
"           rbd: also ceph-conf, ceph-id, ceph-keyring, ceph-timeout\n"
"           (as the --ceph-* options below, for this export)\n"
"  The first EXPORT is also the default export (empty name).\n\n", kinds);
  for (size_t i = 0; i < config_nopts; i++) {
    const struct config_opt *r = &config_opts[i];
    char left[64], letter[5] = "    ";
    if (r->letter)
      snprintf(letter, sizeof letter, "-%c, ", r->letter);
    snprintf(left, sizeof left, "  %s--%s%s", letter, r->name,
             r->arg ? r->arg : "");
    fprintf(f, "%-28s ", left);
    for (const char *h = r->help; *h; h++)
      if (*h == '\n')
        fprintf(f, "\n%29s", "");
      else
        fputc(*h, f);
    fputc('\n', f);
  }
}

/* What getopt_long did not accept, in one line with a pointer to --help
 * (the whole help drowned the one line that mattered).  c is '?' for an
 * unknown option, ':' for one missing its value. */
static void bad_option(int c, char **argv)
{
  const char *arg = optind > 0 ? argv[optind - 1] : "?";
  char shortopt[3] = { '-', (char)optopt, 0 };
  if (optopt > 0 && optopt < 256 && strncmp(arg, "--", 2))
    arg = shortopt;            /* one letter of a cluster such as -xv */
  fprintf(stderr, "snbd-server: %s '%s'; snbd-server --help lists the "
          "options\n", c == ':' ? "no value after" : "unknown option", arg);
  exit(EXIT_FAILURE);
}

/* getopt_long's value for row i: its letter, or a number past them. */
static int opt_val(size_t i)
{
  return config_opts[i].letter ? config_opts[i].letter : 256 + (int)i;
}

/* getopt_long's tables, made from config_opts: long options (aliases
 * too) into lo, which has room for 2 * config_nopts + 1; the short
 * option string into shorts, room for 2 * config_nopts + 2. */
static void getopt_tables(struct option *lo, char *shorts)
{
  *shorts++ = ':';             /* a missing value is ':', not '?' */
  for (size_t i = 0; i < config_nopts; i++) {
    const struct config_opt *r = &config_opts[i];
    int has_arg = r->kind == CFG_FLAG || (r->kind == CFG_CLI && !r->arg)
                  ? no_argument : required_argument;
    *lo++ = (struct option){ r->name, has_arg, NULL, opt_val(i) };
    if (r->alias)
      *lo++ = (struct option){ r->alias, has_arg, NULL, opt_val(i) };
    if (r->letter) {
      *shorts++ = r->letter;
      if (has_arg == required_argument)
        *shorts++ = ':';
    }
  }
  *lo = (struct option){ NULL, 0, NULL, 0 };
  *shorts = '\0';
}

/* The command line's value for getopt_long's c.  Exits for --version,
 * --help and an option getopt_long did not know. */
static int apply(struct server *s, struct options *o, int c, const char *v)
{
  for (size_t i = 0; i < config_nopts; i++) {
    if (opt_val(i) != c)
      continue;
    if (c == 'V') {
      printf("snbd-server %s\n", SNBD_VERSION);
      exit(EXIT_SUCCESS);
    }
    if (c == 'h') {
      config_usage(stdout);
      exit(EXIT_SUCCESS);
    }
    if (c == 'c')
      return 0;       /* read before everything else */
    if (!strcmp(config_opts[i].name, "check-config")) {
      o->check_config = true;
      return 0;
    }
    return set_value(&config_opts[i], s, o, v);
  }
  set_error(EINVAL, "getopt_long returned %d, not in the table", c);
  return -1;
}

int config_parse_args(struct server *s, struct options *o, int argc,
                      char **argv)
{
  struct option lo[2 * NOPTS + 1];
  char shorts[2 * NOPTS + 2];
  getopt_tables(lo, shorts);
  /* -c first, so the command line can override the file. */
  int c;
  opterr = 0;
  optind = 0;
  while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1)
    if (c == 'c' && config_load(s, o, optarg) == -1)
      return -1;
  optind = 0;
  struct export *cfg_exports = s->exports;
  size_t ncfg = s->nexports;
  s->exports = NULL;
  s->nexports = 0;
  while ((c = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
    if (c == '?' || c == ':')
      bad_option(c, argv);
    if (apply(s, o, c, optarg) == -1)
      goto err;
  }
  for (int i = optind; i < argc; i++)
    if (export_parse(s, argv[i]) == -1)
      goto err;
  /* Command-line exports first (the first is the default), then the
   * config file's. */
  return config_merge_exports(s, cfg_exports, ncfg);
err:
  config_merge_exports(s, cfg_exports, ncfg);   /* s owns them again */
  return -1;
}
