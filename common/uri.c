/* snbd: NBD URI parsing with uriparser (see uri.h and doc/uri.md). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <uriparser/Uri.h>

#include "log.h"
#include "uri.h"

static size_t range_len(const UriTextRangeA *r)
{
  return r->first && r->afterLast > r->first
         ? (size_t)(r->afterLast - r->first) : 0;
}

/* Copies [first, afterLast) and percent-decodes it.  NULL with
 * set_error() when out of memory or when the text decodes to a NUL
 * (doc/proto.md: strings MUST NOT contain NUL). */
static char *decode_range(const char *first, const char *afterLast,
                          const char *what)
{
  size_t n = first && afterLast > first ? (size_t)(afterLast - first) : 0;
  char *s = malloc(n + 1);
  if (!s) {
    set_error(errno, "malloc");
    return NULL;
  }
  if (n)
    memcpy(s, first, n);
  s[n] = '\0';
  const char *end = uriUnescapeInPlaceExA(s, URI_FALSE, URI_BR_DONT_TOUCH);
  if ((size_t)(end - s) != strlen(s)) {
    set_error(EINVAL, "%s contains an escaped NUL byte", what);
    free(s);
    return NULL;
  }
  return s;
}

static int parse_scheme(const UriUriA *uu, struct nbd_uri *u)
{
  static const struct { const char *name; bool tls, unix_socket; } schemes[] = {
    { "nbd", false, false }, { "nbds", true, false },
    { "nbd+unix", false, true }, { "nbds+unix", true, true },
  };
  size_t n = range_len(&uu->scheme);
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
    if (strlen(schemes[i].name) == n &&
        strncasecmp(uu->scheme.first, schemes[i].name, n) == 0) {
      u->tls = schemes[i].tls;
      u->unix_socket = schemes[i].unix_socket;
      return 0;
    }
  }
  set_error(EINVAL, "unknown URI scheme \"%.*s\" (expected nbd, nbds, "
            "nbd+unix or nbds+unix)", (int)(n > 32 ? 32 : n),
            uu->scheme.first ? uu->scheme.first : "");
  return -1;
}

/* Host, port and userinfo (uri.md "NBD URI authority"). */
static int parse_authority(const UriUriA *uu, struct nbd_uri *u)
{
  if (range_len(&uu->userInfo) > 0) {
    if (memchr(uu->userInfo.first, ':', range_len(&uu->userInfo))) {
      set_error(EINVAL, "passwords in URIs are not supported");
      return -1;
    }
    u->username = decode_range(uu->userInfo.first, uu->userInfo.afterLast,
                               "user name");
    if (!u->username)
      return -1;
  }
  if (u->unix_socket) {
    if (range_len(&uu->hostText) > 0 || range_len(&uu->portText) > 0) {
      set_error(EINVAL, "a Unix socket URI must not name a host or port "
                "(use nbd+unix:///export?socket=PATH)");
      return -1;
    }
    return 0;
  }
  if (range_len(&uu->hostText) == 0) {
    set_error(EINVAL, "the URI has no host name");
    return -1;
  }
  u->host = decode_range(uu->hostText.first, uu->hostText.afterLast,
                         "host name");
  if (!u->host)
    return -1;
  if (range_len(&uu->portText) == 0)
    u->port = strdup("10809");
  else {
    size_t n = range_len(&uu->portText);
    char buf[8];
    if (n > 5)
      goto bad_port;
    memcpy(buf, uu->portText.first, n);
    buf[n] = '\0';
    char *end;
    long p = strtol(buf, &end, 10);
    if (*end || p < 1 || p > 65535)
      goto bad_port;
    u->port = strdup(buf);
  }
  if (!u->port) {
    set_error(errno, "strdup");
    return -1;
  }
  return 0;
bad_port:
  set_error(EINVAL, "bad port number in URI");
  return -1;
}

/* The export name is the whole path minus its leading '/' (uri.md "NBD
 * URI export name"): "nbd://h//disk" names "/disk".  uriparser splits the
 * path into segments (an empty segment's text may not point into the URI),
 * so join them with '/' before decoding. */
static int parse_path(const UriUriA *uu, struct nbd_uri *u)
{
  size_t n = 0;
  for (const UriPathSegmentA *s = uu->pathHead; s; s = s->next)
    n += range_len(&s->text) + 1;
  char *raw = malloc(n + 1);
  if (!raw) {
    set_error(errno, "malloc");
    return -1;
  }
  size_t o = 0;
  for (const UriPathSegmentA *s = uu->pathHead; s; s = s->next) {
    if (s != uu->pathHead)
      raw[o++] = '/';
    if (range_len(&s->text))
      memcpy(raw + o, s->text.first, range_len(&s->text));
    o += range_len(&s->text);
  }
  u->export_name = decode_range(raw, raw + o, "export name");
  free(raw);
  return u->export_name ? 0 : -1;
}

static int set_string(char **field, const char *key, const char *value)
{
  if (*field) {
    set_error(EINVAL, "URI query parameter %s given twice", key);
    return -1;
  }
  if (!value || !*value) {
    set_error(EINVAL, "URI query parameter %s has no value", key);
    return -1;
  }
  *field = strdup(value);
  if (!*field) {
    set_error(errno, "strdup");
    return -1;
  }
  return 0;
}

static int set_verify(struct nbd_uri *u, const char *value)
{
  if (u->tls_verify_peer != -1) {
    set_error(EINVAL, "URI query parameter tls-verify-peer given twice");
    return -1;
  }
  if (value && strcmp(value, "0") == 0)
    u->tls_verify_peer = 0;
  else if (value && strcmp(value, "1") == 0)
    u->tls_verify_peer = 1;
  else {
    set_error(EINVAL, "tls-verify-peer must be 0 or 1");
    return -1;
  }
  return 0;
}

static int set_tls_type(struct nbd_uri *u, const char *value)
{
  if (u->tls_type != URI_TLS_TYPE_UNSET) {
    set_error(EINVAL, "URI query parameter tls-type given twice");
    return -1;
  }
  if (value && strcmp(value, "x509") == 0)
    u->tls_type = URI_TLS_TYPE_X509;
  else if (value && strcmp(value, "psk") == 0)
    u->tls_type = URI_TLS_TYPE_PSK;
  else {
    set_error(EINVAL, "tls-type must be x509 or psk");
    return -1;
  }
  return 0;
}

static int set_param(struct nbd_uri *u, const char *key, const char *value)
{
  if (strcmp(key, "socket") == 0) {
    if (!u->unix_socket) {
      set_error(EINVAL, "socket= is only allowed with nbd+unix or nbds+unix");
      return -1;
    }
    return set_string(&u->socket, key, value);
  }
  if (strcmp(key, "tls-certificates") == 0)
    return set_string(&u->tls_certificates, key, value);
  if (strcmp(key, "tls-psk-file") == 0)
    return set_string(&u->tls_psk_file, key, value);
  if (strcmp(key, "tls-hostname") == 0)
    return set_string(&u->tls_hostname, key, value);
  if (strcmp(key, "tls-username") == 0) {
    if (u->username) {
      set_error(EINVAL, "user name given both before '@' and as tls-username");
      return -1;
    }
    return set_string(&u->username, key, value);
  }
  if (strcmp(key, "tls-verify-peer") == 0)
    return set_verify(u, value);
  if (strcmp(key, "tls-type") == 0)
    return set_tls_type(u, value);
  if (strncmp(key, "x-", 2) == 0)
    return 0;
  char q[64];
  quote_bytes(q, sizeof q, key, strlen(key));
  set_error(EINVAL, "unknown URI query parameter \"%s\"", q);
  return -1;
}

static int parse_query(const UriUriA *uu, struct nbd_uri *u)
{
  size_t n = range_len(&uu->query);
  if (n == 0)
    return 0;
  /* uriparser decodes keys and values into C strings, so an escaped NUL
   * would silently cut them short: refuse it in the raw text instead. */
  for (size_t i = 0; i + 2 < n; i++) {
    if (uu->query.first[i] == '%' && uu->query.first[i + 1] == '0' &&
        uu->query.first[i + 2] == '0') {
      set_error(EINVAL, "URI query contains an escaped NUL byte");
      return -1;
    }
  }
  UriQueryListA *list = NULL;
  int count;
  if (uriDissectQueryMallocExA(&list, &count, uu->query.first,
                               uu->query.afterLast, URI_FALSE,
                               URI_BR_DONT_TOUCH) != URI_SUCCESS) {
    set_error(EINVAL, "cannot parse the URI query");
    return -1;
  }
  int r = 0;
  for (UriQueryListA *q = list; q && r == 0; q = q->next)
    r = set_param(u, q->key, q->value);
  uriFreeQueryListA(list);
  return r;
}

static int check_complete(const UriUriA *uu, const struct nbd_uri *u)
{
  if (range_len(&uu->fragment) > 0) {
    set_error(EINVAL, "NBD URIs have no fragment (#...)");
    return -1;
  }
  if (u->unix_socket && !u->socket) {
    set_error(EINVAL, "a Unix socket URI needs ?socket=PATH");
    return -1;
  }
  return 0;
}

int uri_parse(const char *text, struct nbd_uri *u)
{
  UriUriA uu;
  const char *where;

  memset(u, 0, sizeof *u);
  u->tls_verify_peer = -1;
  if (uriParseSingleUriA(&uu, text, &where) != URI_SUCCESS) {
    set_error(EINVAL, "cannot parse URI at character %td",
              where ? where - text : (ptrdiff_t)0);
    return -1;
  }
  int r = -1;
  if (parse_scheme(&uu, u) == -1)
    goto out;
  if (!uu.hostText.first && !uu.hostData.ip4 && !uu.hostData.ip6 &&
      !uu.hostData.ipFuture.first) {
    set_error(EINVAL, "an NBD URI starts with scheme:// (no authority found)");
    goto out;
  }
  if (parse_authority(&uu, u) == -1 || parse_path(&uu, u) == -1 ||
      parse_query(&uu, u) == -1 || check_complete(&uu, u) == -1)
    goto out;
  r = 0;
out:
  uriFreeUriMembersA(&uu);
  if (r == -1) {
    int e = errno;
    uri_free(u);
    errno = e;
  }
  return r;
}

void uri_free(struct nbd_uri *u)
{
  free(u->host);
  free(u->port);
  free(u->socket);
  free(u->export_name);
  free(u->username);
  free(u->tls_certificates);
  free(u->tls_psk_file);
  free(u->tls_hostname);
  memset(u, 0, sizeof *u);
  u->tls_verify_peer = -1;
}
