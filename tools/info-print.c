/* snbd-info: printing what was learned, as text or JSON, and --map. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "snbd/protocol.h"
#include "info.h"

int strlist_add(struct strlist *l, const char *s)
{
  char *copy = strdup(s);
  if (!copy || strlist_append(l, copy) == -1) {
    free(copy);
    return -1;
  }
  return 0;
}

void strlist_free(struct strlist *l)
{
  for (size_t i = 0; i < l->len; i++)
    free(l->ptr[i]);
  strlist_reset(l);
}

void export_info_free(struct export_info *e)
{
  free(e->name);
  free(e->canonical);
  free(e->description);
  strlist_free(&e->contexts);
}

void conn_describe(struct snbd_handle *h, struct conn_info *ci)
{
  ci->protocol = snbd_get_protocol(h);
  ci->sr = snbd_get_structured_replies_negotiated(h) == 1;
  ci->eh = snbd_get_extended_headers_negotiated(h) == 1;
  ci->tls = snbd_get_tls_negotiated(h) == 1;
  if (ci->tls) {
    ci->tls_version = snbd_get_tls_version(h);
    ci->tls_cipher = snbd_get_tls_cipher(h);
    ci->tls_kx = snbd_get_tls_kx(h);
    ci->tls_peer = snbd_get_tls_peer(h);
  }
}

void conn_info_free(struct conn_info *ci)
{
  free(ci->protocol);
  free(ci->tls_version);
  free(ci->tls_cipher);
  free(ci->tls_kx);
  free(ci->tls_peer);
}

/* The transmission flags, in the words of doc/proto.md. */
static const struct { int bit; const char *name; } flag_names[] = {
  { NBD_FLAG_HAS_FLAGS, "has-flags" }, { NBD_FLAG_READ_ONLY, "read-only" },
  { NBD_FLAG_SEND_FLUSH, "send-flush" }, { NBD_FLAG_SEND_FUA, "send-fua" },
  { NBD_FLAG_ROTATIONAL, "rotational" }, { NBD_FLAG_SEND_TRIM, "send-trim" },
  { NBD_FLAG_SEND_WRITE_ZEROES, "send-write-zeroes" },
  { NBD_FLAG_SEND_DF, "send-df" },
  { NBD_FLAG_CAN_MULTI_CONN, "can-multi-conn" },
  { NBD_FLAG_SEND_RESIZE, "send-resize" },
  { NBD_FLAG_SEND_CACHE, "send-cache" },
  { NBD_FLAG_SEND_FAST_ZERO, "send-fast-zero" },
  { NBD_FLAG_BLOCK_STATUS_PAYLOAD, "block-status-payload" },
};
#define NR_FLAGS (sizeof flag_names / sizeof flag_names[0])

/* Features shown one per line, with the flag that says yes. */
static const struct { const char *name; int bit; } features[] = {
  { "read-only", NBD_FLAG_READ_ONLY }, { "rotational", NBD_FLAG_ROTATIONAL },
  { "can flush", NBD_FLAG_SEND_FLUSH }, { "can fua", NBD_FLAG_SEND_FUA },
  { "can trim", NBD_FLAG_SEND_TRIM },
  { "can zero", NBD_FLAG_SEND_WRITE_ZEROES },
  { "can fast-zero", NBD_FLAG_SEND_FAST_ZERO },
  { "can df", NBD_FLAG_SEND_DF },
  { "can multi-conn", NBD_FLAG_CAN_MULTI_CONN },
  { "can cache", NBD_FLAG_SEND_CACHE },
};
#define NR_FEATURES (sizeof features / sizeof features[0])

static void human_size(int64_t n, char *buf, size_t len)
{
  static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB",
                                       "PiB", "EiB" };
  int u = 0;
  double v = (double)n;
  while (v >= 1024 && u < 6) {
    v /= 1024;
    u++;
  }
  snprintf(buf, len, u ? "%.4g %s" : "%.0f %s", v, units[u]);
}

static void json_string(FILE *f, const char *s)
{
  if (!s) {
    fputs("null", f);
    return;
  }
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

static void text_export(const struct export_info *e)
{
  char hs[32];
  printf("export \"%s\":\n", e->name);
  if (e->size < 0) {
    printf("  (not available)\n");
    return;
  }
  if (e->canonical && strcmp(e->canonical, e->name) != 0)
    printf("  canonical name: %s\n", e->canonical);
  if (e->description)
    printf("  description: %s\n", e->description);
  human_size(e->size, hs, sizeof hs);
  printf("  size: %" PRId64 " (%s)\n", e->size, hs);
  printf("  flags: 0x%04x (", (unsigned)e->flags);
  const char *sep = "";
  for (size_t i = 0; i < NR_FLAGS; i++)
    if (e->flags & flag_names[i].bit) {
      printf("%s%s", sep, flag_names[i].name);
      sep = " ";
    }
  printf(")\n");
  for (size_t i = 0; i < NR_FEATURES; i++)
    printf("  %s: %s\n", features[i].name,
           e->flags & features[i].bit ? "yes" : "no");
  printf("  block sizes: minimum %" PRId64 ", preferred %" PRId64
         ", maximum %" PRId64 "\n", e->min, e->pref, e->max);
  printf("  meta contexts:");
  for (size_t i = 0; i < e->contexts.len; i++)
    printf(" %s", e->contexts.ptr[i]);
  printf("%s\n", e->contexts.len ? "" : " none");
}

static void json_export(const struct export_info *e, bool last)
{
  printf("    {\n      \"export-name\": ");
  json_string(stdout, e->name);
  if (e->size >= 0) {
    printf(",\n      \"canonical-name\": ");
    json_string(stdout, e->canonical);
    printf(",\n      \"description\": ");
    json_string(stdout, e->description);
    printf(",\n      \"export-size\": %" PRId64 ",\n      \"flags\": %d",
           e->size, e->flags);
    for (size_t i = 0; i < NR_FLAGS; i++)
      printf(",\n      \"%s\": %s", flag_names[i].name,
             e->flags & flag_names[i].bit ? "true" : "false");
    printf(",\n      \"block_size_minimum\": %" PRId64
           ",\n      \"block_size_preferred\": %" PRId64
           ",\n      \"block_size_maximum\": %" PRId64
           ",\n      \"contexts\": [", e->min, e->pref, e->max);
    for (size_t i = 0; i < e->contexts.len; i++) {
      printf("%s", i ? ", " : "");
      json_string(stdout, e->contexts.ptr[i]);
    }
    printf("]");
  }
  printf("\n    }%s\n", last ? "" : ",");
}

void print_info(const struct conn_info *ci, const struct export_info *e,
                size_t n, bool json)
{
  if (!json) {
    printf("protocol: %s, structured replies: %s, extended headers: %s\n",
           ci->protocol, ci->sr ? "yes" : "no", ci->eh ? "yes" : "no");
    if (ci->tls)
      printf("tls: %s %s %s, peer: %s\n", ci->tls_version, ci->tls_cipher,
             ci->tls_kx, ci->tls_peer && *ci->tls_peer ? ci->tls_peer : "-");
    else
      printf("tls: no\n");
    for (size_t i = 0; i < n; i++)
      text_export(&e[i]);
    return;
  }
  printf("{\n  \"protocol\": ");
  json_string(stdout, ci->protocol);
  printf(",\n  \"structured-replies\": %s,\n  \"extended-headers\": %s,"
         "\n  \"tls\": ", ci->sr ? "true" : "false", ci->eh ? "true" : "false");
  if (ci->tls) {
    printf("{ \"version\": ");
    json_string(stdout, ci->tls_version);
    printf(", \"cipher\": ");
    json_string(stdout, ci->tls_cipher);
    printf(", \"kx\": ");
    json_string(stdout, ci->tls_kx);
    printf(", \"peer\": ");
    json_string(stdout, ci->tls_peer);
    printf(" }");
  }
  else
    printf("null");
  printf(",\n  \"exports\": [\n");
  for (size_t i = 0; i < n; i++)
    json_export(&e[i], i + 1 == n);
  printf("  ]\n}\n");
}

/* ---- --map ---- */

DEFINE_VECTOR(extent_list, struct snbd_extent);

/* A server answering one byte at a time kept --map busy for ever: after
 * MAP_MAX_SLOW answers advancing less than MAP_SLOW_BYTES, or once
 * MAP_MAX_EXTENTS extents are held (16 MiB), the rest is shown as data. */
#define MAP_MAX_SLOW 64
#define MAP_SLOW_BYTES (64 * 1024)
#define MAP_MAX_EXTENTS (1024 * 1024)

struct map {
  uint64_t next, end;       /* next offset to report; export size */
  struct extent_list v;     /* merged extents */
};

static int map_cb(void *ud, const char *context, uint64_t offset,
                  const struct snbd_extent *ext, size_t n, int *error)
{
  struct map *m = ud;
  if (strcmp(context, "base:allocation") != 0)
    return 0;
  for (size_t i = 0; i < n && offset < m->end; i++) {
    uint64_t len = ext[i].length;
    if (len > m->end - offset)
      len = m->end - offset;
    struct snbd_extent *last = m->v.len ? &m->v.ptr[m->v.len - 1] : NULL;
    if (last && last->flags == ext[i].flags)
      last->length += len;
    else if (extent_list_append(&m->v, (struct snbd_extent){
                                  len, ext[i].flags }) == -1) {
      *error = ENOMEM;
      return -1;
    }
    offset += len;
  }
  m->next = offset;
  return 0;
}

static const char *alloc_name(uint32_t flags)
{
  switch (flags & (SNBD_STATE_HOLE | SNBD_STATE_ZERO)) {
  case 0: return "data";
  case SNBD_STATE_HOLE: return "hole";
  case SNBD_STATE_ZERO: return "zero";
  default: return "hole,zero";
  }
}

void map_export(struct snbd_handle *h, const struct export_info *e, bool json)
{
  if (!e->can_block_status) {
    fprintf(stderr, "snbd-info: the server does not offer base:allocation\n");
    exit(EXIT_FAILURE);
  }
  struct map m = { .end = (uint64_t)e->size };
  int slow = 0;
  while (m.next < m.end) {
    uint64_t at = m.next;
    if (slow == MAP_MAX_SLOW || m.v.len >= MAP_MAX_EXTENTS) {
      /* Data is the answer that is never wrong. */
      fprintf(stderr, "snbd-info: block status makes no progress at %"
              PRIu64 "; the rest is shown as data\n", at);
      if (map_cb(&m, "base:allocation", at, &(struct snbd_extent){
                   m.end - at, 0 }, 1, &(int){ 0 }) == -1)
        exit(EXIT_FAILURE);
      break;
    }
    if (snbd_block_status(h, m.end - at, at, map_cb, &m, 0) == -1) {
      fprintf(stderr, "snbd-info: block status at %" PRIu64 ": %s\n", at,
              snbd_get_error());
      exit(EXIT_FAILURE);
    }
    slow += m.next < m.end && m.next - at < MAP_SLOW_BYTES;
  }
  uint64_t off = 0;
  printf("%s", json ? "[\n" : "");
  for (size_t i = 0; i < m.v.len; i++) {
    const struct snbd_extent *x = &m.v.ptr[i];
    if (json)
      printf("  { \"offset\": %" PRIu64 ", \"length\": %" PRIu64
             ", \"type\": %u, \"description\": \"%s\" }%s\n", off,
             x->length, x->flags, alloc_name(x->flags),
             i + 1 < m.v.len ? "," : "");
    else
      printf("%14" PRIu64 " %14" PRIu64 " %4u  %s\n", off, x->length,
             x->flags, alloc_name(x->flags));
    off += x->length;
  }
  printf("%s", json ? "]\n" : "");
  extent_list_reset(&m.v);
}
