/* snbd-info: what an NBD server offers.  A thin program over libsnbd.
 *
 *   snbd-info [--json] URI            size, flags, block sizes, contexts, TLS
 *   snbd-info --size URI              the size in bytes, nothing else
 *   snbd-info --list [--json] URI     every export the server lists
 *   snbd-info --map [--json] URI      the extents of base:allocation
 *   snbd-info --can FEATURE URI       exit 0 if it can, 2 if it cannot
 *   snbd-info --is FEATURE URI        (read-only, rotational, tls)
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snbd/protocol.h"
#include "snbd/snbd.h"
#include "info.h"

static void usage(FILE *f, int status)
{
  fprintf(f,
"Usage: snbd-info [--json] URI\n"
"       snbd-info --size URI\n"
"       snbd-info --list [--json] URI\n"
"       snbd-info --map [--json] URI\n"
"       snbd-info --can FEATURE URI | --is FEATURE URI\n"
"\n"
"URI is an NBD URI: nbd://host[:port]/export, nbds://... (TLS required),\n"
"nbd+unix:///export?socket=PATH, nbds+unix://...; TLS files may be named\n"
"with ?tls-certificates=DIR, ?tls-psk-file=FILE, ?tls-hostname=NAME.\n"
"\n"
"  --json          machine-readable output\n"
"  --size          print the export size in bytes\n"
"  --list, -L      describe every export the server lists\n"
"  --map           print allocation extents (base:allocation)\n"
"  --can FEATURE   exit 0 if the export supports FEATURE, else 2:\n"
"                  connect read write flush fua trim zero fast-zero df\n"
"                  multi-conn cache structured-reply extended-headers\n"
"                  block-status, or a\n"
"                  metadata context name such as base:allocation\n"
"  --is FEATURE    exit 0 if true, else 2: read-only rotational tls\n"
"  --tls=MODE      off, allow or require (nbds:// means require)\n"
"  --timeout S     give up on a server silent for S seconds while a\n"
"                  request is in flight (default 60; 0: wait for ever)\n"
"  --no-extended-headers  do not ask for extended headers\n"
"  --help, --version\n"
"\nExit status: 0 success, 1 error, 2 --can/--is said no.\n");
  exit(status);
}

static void die_handle(const char *what)
{
  fprintf(stderr, "snbd-info: %s: %s\n", what, snbd_get_error());
  exit(EXIT_FAILURE);
}

/* Connects in option mode (so contexts can be listed first); servers too
 * old for that are retried with a plain connection. */
static struct snbd_handle *open_uri(const struct info_opts *o, bool opt_mode)
{
  for (int attempt = 0; attempt < 2; attempt++) {
    struct snbd_handle *h = snbd_create();
    if (!h)
      die_handle("snbd_create");
    if (snbd_set_uri_allow_local_file(h, true) == -1 ||
        snbd_add_meta_context(h, "base:allocation") == -1 ||
        (o->tls >= 0 && snbd_set_tls(h, o->tls) == -1) ||
        snbd_set_request_timeout(h, o->timeout) == -1 ||
        snbd_set_request_extended_headers(h, !o->no_eh) == -1 ||
        snbd_set_opt_mode(h, opt_mode && attempt == 0) == -1)
      die_handle("configuring the handle");
    if (snbd_connect_uri(h, o->uri) == 0)
      return h;
    bool retry = attempt == 0 && opt_mode && !o->list &&
                 snbd_get_errno() == ENOTSUP &&
                 strstr(snbd_get_error(), "option mode");
    if (!retry) {
      fprintf(stderr, "snbd-info: %s: %s\n", o->uri, snbd_get_error());
      snbd_close(h);
      exit(EXIT_FAILURE);
    }
    snbd_close(h);
  }
  return NULL;
}

static int feature(struct snbd_handle *h, const char *f)
{
  static const struct { const char *name; int (*get)(struct snbd_handle *); }
  table[] = {
    { "flush", snbd_can_flush }, { "fua", snbd_can_fua },
    { "trim", snbd_can_trim }, { "zero", snbd_can_zero },
    { "fast-zero", snbd_can_fast_zero }, { "df", snbd_can_df },
    { "multi-conn", snbd_can_multi_conn }, { "cache", snbd_can_cache },
    { "structured-reply", snbd_get_structured_replies_negotiated },
    { "structured-replies", snbd_get_structured_replies_negotiated },
    { "extended-headers", snbd_get_extended_headers_negotiated },
    { "read-only", snbd_is_read_only }, { "rotational", snbd_is_rotational },
    { "tls", snbd_get_tls_negotiated },
  };
  if (strcmp(f, "connect") == 0 || strcmp(f, "read") == 0)
    return 1;
  if (strcmp(f, "write") == 0) {
    int r = snbd_is_read_only(h);
    return r == -1 ? -1 : !r;
  }
  if (strcmp(f, "block-status") == 0 || strcmp(f, "extents") == 0)
    return snbd_can_meta_context(h, "base:allocation");
  if (strchr(f, ':'))
    return snbd_can_meta_context(h, f);
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (strcmp(f, table[i].name) == 0)
      return table[i].get(h);
  fprintf(stderr, "snbd-info: unknown feature \"%s\" (see --help)\n", f);
  exit(EXIT_FAILURE);
}

static int do_feature(const struct info_opts *o)
{
  static const char *const is_ok[] = { "read-only", "rotational", "tls" };
  if (o->is) {
    bool ok = false;
    for (size_t i = 0; i < 3; i++)
      ok |= strcmp(o->feature, is_ok[i]) == 0;
    if (!ok) {
      fprintf(stderr, "snbd-info: --is takes read-only, rotational or tls\n");
      return EXIT_FAILURE;
    }
  }
  struct snbd_handle *h = open_uri(o, false);
  int r = feature(h, o->feature);
  if (r == -1)
    die_handle(o->feature);
  snbd_shutdown(h);
  snbd_close(h);
  return r ? EXIT_SUCCESS : 2;
}

static int do_size(const struct info_opts *o)
{
  struct snbd_handle *h = open_uri(o, false);
  int64_t size = snbd_get_size(h);
  if (size == -1)
    die_handle("size");
  printf("%" PRId64 "\n", size);
  snbd_shutdown(h);
  snbd_close(h);
  return EXIT_SUCCESS;
}

static int collect_context(void *ud, const char *name)
{
  struct export_info *e = ud;
  return strlist_add(&e->contexts, name);
}

/* Fills e from the handle after NBD_OPT_INFO or NBD_OPT_GO. */
static void describe(struct snbd_handle *h, struct export_info *e)
{
  e->size = snbd_get_size(h);
  e->flags = snbd_get_export_flags(h);
  e->min = snbd_get_block_size(h, SNBD_SIZE_MINIMUM);
  e->pref = snbd_get_block_size(h, SNBD_SIZE_PREFERRED);
  e->max = snbd_get_block_size(h, SNBD_SIZE_MAXIMUM);
  if (e->size == -1 || e->flags == -1)
    die_handle("reading the export's information");
  e->canonical = snbd_get_canonical_export_name(h);
  e->description = snbd_get_export_description(h);
  e->can_block_status = snbd_can_meta_context(h, "base:allocation") == 1;
}

static int do_show(const struct info_opts *o)
{
  struct snbd_handle *h = open_uri(o, true);
  struct export_info e = { 0 };
  e.name = snbd_get_export_name(h);
  bool negotiating = snbd_get_size(h) == -1;
  if (negotiating) {
    if (snbd_get_structured_replies_negotiated(h) == 1 &&
        snbd_opt_list_meta_context(h, collect_context, &e) == -1)
      strlist_free(&e.contexts);   /* optional: some servers refuse it */
    if (snbd_opt_go(h) == -1)
      die_handle(o->uri);
  }
  else {
    int n = snbd_get_nr_meta_contexts(h);
    for (int i = 0; i < n; i++) {
      char *c = snbd_get_meta_context(h, i);
      if (c)
        strlist_add(&e.contexts, c);
      free(c);
    }
  }
  describe(h, &e);
  struct conn_info ci = { 0 };
  conn_describe(h, &ci);
  if (o->map)
    map_export(h, &e, o->json);
  else
    print_info(&ci, &e, 1, o->json);
  export_info_free(&e);
  conn_info_free(&ci);
  if (snbd_shutdown(h) == -1)
    die_handle("disconnecting");
  snbd_close(h);
  return EXIT_SUCCESS;
}

/* A server may list names for ever: libsnbd stops at 100,000 replies,
 * which with 4 KiB names held ~410 MiB.  We keep at most this many. */
#define LIST_MAX_NAMES 10000
#define LIST_MAX_BYTES (4 << 20)

struct listing {
  struct strlist names;
  size_t bytes;
};

static int collect_export(void *ud, const char *name, const char *desc)
{
  struct listing *l = ud;
  (void)desc;     /* NBD_OPT_INFO gives the description again */
  l->bytes += strlen(name) + 1;
  if (l->names.len >= LIST_MAX_NAMES || l->bytes > LIST_MAX_BYTES) {
    fprintf(stderr, "snbd-info: the server lists more than %d exports or "
            "%d MiB of names; giving up\n", LIST_MAX_NAMES,
            LIST_MAX_BYTES >> 20);
    return -1;
  }
  return strlist_add(&l->names, name);
}

static int do_list(const struct info_opts *o)
{
  struct snbd_handle *h = open_uri(o, true);
  struct listing l = { VECTOR_INIT, 0 };
  if (snbd_list_exports(h, collect_export, &l) == -1)
    die_handle("listing exports");
  struct strlist names = l.names;
  struct export_info *e = calloc(names.len ? names.len : 1, sizeof *e);
  if (!e) {
    perror("snbd-info: calloc");
    return EXIT_FAILURE;
  }
  for (size_t i = 0; i < names.len; i++) {
    e[i].name = strdup(names.ptr[i]);
    if (snbd_set_export_name(h, names.ptr[i]) == -1)
      die_handle("snbd_set_export_name");
    if (snbd_opt_info(h) == -1) {
      fprintf(stderr, "snbd-info: export \"%s\": %s\n", names.ptr[i],
              snbd_get_error());
      e[i].size = -1;
      continue;
    }
    describe(h, &e[i]);
    if (snbd_get_structured_replies_negotiated(h) == 1 &&
        snbd_opt_list_meta_context(h, collect_context, &e[i]) == -1)
      strlist_free(&e[i].contexts);
  }
  struct conn_info ci = { 0 };
  conn_describe(h, &ci);
  print_info(&ci, e, names.len, o->json);
  for (size_t i = 0; i < names.len; i++)
    export_info_free(&e[i]);
  free(e);
  strlist_free(&names);
  conn_info_free(&ci);
  snbd_opt_abort(h);
  snbd_close(h);
  return EXIT_SUCCESS;
}

static int parse_tls(const char *s)
{
  if (strcmp(s, "off") == 0)
    return SNBD_TLS_DISABLE;
  if (strcmp(s, "allow") == 0 || strcmp(s, "on") == 0)
    return SNBD_TLS_ALLOW;
  if (strcmp(s, "require") == 0)
    return SNBD_TLS_REQUIRE;
  fprintf(stderr, "snbd-info: --tls takes off, allow or require\n");
  exit(EXIT_FAILURE);
}

static unsigned parse_timeout(const char *s)
{
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || end == s || *end || v > 86400 || s[0] == '-') {
    fprintf(stderr, "snbd-info: --timeout takes seconds (0 to 86400)\n");
    exit(EXIT_FAILURE);
  }
  return (unsigned)v;
}

int main(int argc, char *argv[])
{
  enum { OPT_CAN = 256, OPT_IS, OPT_JSON, OPT_MAP, OPT_SIZE, OPT_TLS,
         OPT_TIMEOUT, OPT_NO_EH, OPT_VERSION };
  static const struct option longopts[] = {
    { "can", required_argument, NULL, OPT_CAN },
    { "is", required_argument, NULL, OPT_IS },
    { "json", no_argument, NULL, OPT_JSON },
    { "list", no_argument, NULL, 'L' },
    { "map", no_argument, NULL, OPT_MAP },
    { "size", no_argument, NULL, OPT_SIZE },
    { "tls", required_argument, NULL, OPT_TLS },
    { "timeout", required_argument, NULL, OPT_TIMEOUT },
    { "no-extended-headers", no_argument, NULL, OPT_NO_EH },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, OPT_VERSION },
    { NULL, 0, NULL, 0 },
  };
  struct info_opts o = { .tls = -1, .timeout = 60 };
  int c;
  while ((c = getopt_long(argc, argv, "hL", longopts, NULL)) != -1) {
    switch (c) {
    case OPT_CAN: o.feature = optarg; o.is = false; break;
    case OPT_IS: o.feature = optarg; o.is = true; break;
    case OPT_JSON: o.json = true; break;
    case 'L': o.list = true; break;
    case OPT_MAP: o.map = true; break;
    case OPT_SIZE: o.size = true; break;
    case OPT_TLS: o.tls = parse_tls(optarg); break;
    case OPT_TIMEOUT: o.timeout = parse_timeout(optarg); break;
    case OPT_NO_EH: o.no_eh = true; break;
    case 'h': usage(stdout, EXIT_SUCCESS); break;
    case OPT_VERSION: printf("snbd-info %s\n", SNBD_VERSION); return 0;
    default: usage(stderr, EXIT_FAILURE);
    }
  }
  if (optind != argc - 1)
    usage(stderr, EXIT_FAILURE);
  o.uri = argv[optind];
  if (o.list + o.map + o.size + (o.feature != NULL) > 1) {
    fprintf(stderr, "snbd-info: --list, --map, --size, --can and --is "
            "cannot be combined\n");
    return EXIT_FAILURE;
  }
  if (o.feature)
    return do_feature(&o);
  if (o.size)
    return do_size(&o);
  if (o.list)
    return do_list(&o);
  return do_show(&o);
}
