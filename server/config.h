/* snbd-server: options shared by the command line and the config file. */
#ifndef SNBD_CONFIG_H
#define SNBD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "server.h"

#define MAX_BINDS 16

struct options {
  int port;                 /* -1: not given */
  char *bind[MAX_BINDS];
  int nbind;
  char *unix_path;          /* as given ("-" for private) */
  char *unix_real;          /* the path actually used */
  char *run;
  char *pid_file;
  char *metrics;            /* --metrics ADDR, or NULL */
  bool metrics_allow_remote;
  bool single, read_only, verbose;
  bool check_config;         /* --check-config: validate, do not serve */
  int log_to;               /* enum log_target */
};

/* How a server option's value is read. */
enum config_kind {
  CFG_INT,                  /* a number in [min, max] */
  CFG_STR,                  /* a string, copied */
  CFG_FLAG,                 /* true/yes/on/1 or false/no/off/0; as a
                             * command-line option, no argument: true */
  CFG_ENUM,                 /* one of names: its index */
  CFG_FN,                   /* set() reads it */
  CFG_KEY,                  /* the server-wide default of a backend's
                             * export key of the same name (backend.h
                             * struct backend_key), in
                             * server.backend_keys */
  CFG_CLI,                  /* command line only: -c, --version, --help */
};

/* One server option: its --name is also its [server] key. */
struct config_opt {
  const char *name;
  char letter;              /* -LETTER, or 0 */
  enum config_kind kind;
  bool in_server;           /* the field is in struct server, else in
                             * struct options */
  size_t off;               /* offset of the field (INT, STR, FLAG, ENUM) */
  int min, max;             /* CFG_INT */
  const char *const *names; /* CFG_ENUM, NULL-terminated */
  int (*set)(struct server *, struct options *, const char *value);
  const char *example;      /* CFG_FN, CFG_KEY: a valid value, for the
                             * tests */
  const char *alias;        /* another --spelling (command line only) */
  const char *arg;          /* --help: what follows --name */
  const char *help;         /* --help: its lines, '\n' between them */
};
extern const struct config_opt config_opts[];
extern const size_t config_nopts;

/* Sets one option by its long name (also the config file's key).
 * -1 with set_error() on a bad value or unknown key. */
int config_set(struct server *s, struct options *o, const char *key,
               const char *value);
/* The command line: -c FILE is read first, so that the other options
 * override the file; then the options; then the exports, which come
 * before the file's.  -1 with set_error().  Exits for --help, --version
 * and an option getopt_long did not accept (one line, and a pointer to
 * --help). */
int config_parse_args(struct server *s, struct options *o, int argc,
                      char **argv);
void config_usage(FILE *f);
/* Reads an INI file: [server] keys as config_set, [export NAME] (or
 * [export] for the default export) with backend=, readonly=,
 * description=, tls-only=, allow=. */
int config_load(struct server *s, struct options *o, const char *path);
/* Appends exports read from the file (v, which it takes) after the
 * command line's; -1 if a name is in both (s still owns them all). */
int config_merge_exports(struct server *s, struct export *v, size_t n);
void config_free(struct server *s, struct options *o);
/* The defaults of every option (main.c's start, reload.c's scratch). */
void config_defaults(struct server *s, struct options *o);
/* Logs each option whose value differs between a (running) and b (just
 * read): they take effect at the next start. */
void config_report_changes(const struct server *a, const struct options *ao,
                           const struct server *b, const struct options *bo);

/* reload.c: SIGHUP.  Parses argc/argv (and the -c file) again and swaps
 * in its exports; 0, or -1 with everything left as it was (logged). */
int reload_config(struct server *s, const struct options *o, int argc,
                  char **argv);

bool listener_is_local(const struct listener *l);
bool addr_is_local(const char *addr);
bool fd_peer_is_local(int fd, char *desc, size_t size);
void single_start(struct server *s);
int single_wait(struct server *s);

#endif
