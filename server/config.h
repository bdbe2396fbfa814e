/* snbd-server: options shared by the command line and the config file. */
#ifndef SNBD_CONFIG_H
#define SNBD_CONFIG_H

#include <stdbool.h>

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
  bool single, read_only, log_syslog;
  int verbose;
};

/* Sets one option by its long name (also the config file's key).
 * -1 with set_error() on a bad value or unknown key. */
int config_set(struct server *s, struct options *o, const char *key,
               const char *value);
/* Reads an INI file: [server] keys as config_set, [export NAME] (or
 * [export] for the default export) with backend=, readonly=,
 * description=, tls-only=, allow=. */
int config_load(struct server *s, struct options *o, const char *path);
/* Appends exports read from the file after the command line's. */
int config_merge_exports(struct server *s, struct export *v, size_t n);
void config_free(struct server *s, struct options *o);

bool listener_is_local(const struct listener *l);
bool addr_is_local(const char *addr);
void single_start(struct server *s);
int single_wait(struct server *s);

#endif
