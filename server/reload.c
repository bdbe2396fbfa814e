/* snbd-server: SIGHUP's configuration reload.  The command line is read
 * again, with the config file it names (-c), into a scratch server; if
 * that parses and every export opens, the new export table replaces the
 * old one, else nothing changes and the log says why.  Connections hold
 * the table they started with (conn.c), so a connection already serving
 * an export keeps it until it disconnects, and only new connections see
 * the new table.  Other options are read at start only: a change to one
 * is logged, not applied. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

/* Whether two allow lists name the same identities in the same order. */
static bool same_allow(char *const *a, char *const *b)
{
  for (; a && b && *a && *b; a++, b++)
    if (strcmp(*a, *b))
      return false;
  return (!a || !*a) && (!b || !*b);
}

static bool same_str(const char *a, const char *b)
{
  return a == b || (a && b && !strcmp(a, b));
}

static bool export_changed(const struct export *a, const struct export *b)
{
  return a->be_ref != b->be_ref || a->readonly != b->readonly ||
         a->tls_only != b->tls_only ||
         !same_str(a->description, b->description) ||
         !same_allow(a->allow, b->allow);
}

static const struct export *by_name(const struct export_table *t,
                                    const char *name)
{
  for (size_t i = 0; i < t->n; i++)
    if (!strcmp(t->v[i].name, name))
      return &t->v[i];
  return NULL;
}

/* One line per export added, removed or changed; returns how many. */
static int log_changes(const struct export_table *old,
                       const struct export_table *t)
{
  int n = 0;
  for (size_t i = 0; i < t->n; i++) {
    const struct export *e = &t->v[i], *o = by_name(old, e->name);
    if (!o || export_changed(o, e)) {
      log_info("reload: export " EXPORT_FMT " %s: %s%s", EXPORT_ARGS(e->name),
               !o ? "added" : "changed", e->spec,
               o && o->be_ref == e->be_ref ? " (kept open)" : "");
      n++;
    }
  }
  for (size_t i = 0; i < old->n; i++)
    if (!by_name(t, old->v[i].name)) {
      log_info("reload: export " EXPORT_FMT " removed (connections using it "
               "go on until they disconnect)", EXPORT_ARGS(old->v[i].name));
      n++;
    }
  if (t->n > 0 && old->n > 0 && strcmp(t->v[0].name, old->v[0].name))
    log_info("reload: the default export is now " EXPORT_FMT,
             EXPORT_ARGS(t->v[0].name));
  return n;
}

/* The new configuration's exports, checked and opened (sharing the
 * backends of unchanged exports with the current table), or NULL with
 * set_error(). */
static struct export_table *open_new(struct server *s, struct server *ns,
                                     bool all_readonly)
{
  if (ns->nexports == 0) {
    set_error(EINVAL, "no export in the new configuration");
    return NULL;
  }
  if (exports_check_tls(ns->exports, ns->nexports,
                        s->tls_mode == TLS_MODE_OFF) == -1)
    return NULL;
  struct export_table *cur = exports_get(s);
  struct export_table *t = export_table_open(ns->exports, ns->nexports,
                                             all_readonly, &ns->backend_keys,
                                             cur);
  ns->exports = NULL;
  ns->nexports = 0;
  if (t) {
    if (log_changes(cur, t) == 0)
      log_info("reload: exports unchanged");
  }
  else {
    char why[600];
    snprintf(why, sizeof why, "%s", error_message());
    set_error(EINVAL, "%s", why);
  }
  export_table_unref(cur);
  return t;
}

int reload_config(struct server *s, const struct options *o, int argc,
                  char **argv)
{
  struct server ns;
  struct options no;
  config_defaults(&ns, &no);
  int rc = -1;
  struct export_table *t = NULL;
  if (config_parse_args(&ns, &no, argc, argv) == 0 &&
      (t = open_new(s, &ns, o->read_only)) != NULL) {
    config_report_changes(s, o, &ns, &no);
    exports_swap(s, t);
    rc = 0;
  }
  else
    log_error("reload: %s; keeping the running configuration",
              error_message());
  exports_close(&ns);
  config_free(&ns, &no);
  return rc;
}
