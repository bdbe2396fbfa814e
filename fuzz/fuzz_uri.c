/* fuzz: the NBD URI parser (common/uri.c, over uriparser).  The input is
 * the URI text (up to its first NUL).  Besides memory safety, what uri.h
 * promises is checked: on success a Unix URI has a socket and no host,
 * a TCP URI a host and a port from 1 to 65535; on failure *u is empty and
 * there is an error message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void broken(const char *what, const char *text)
{
  fprintf(stderr, "fuzz_uri: uri_parse broke its contract: %s\n", what);
  fprintf(stderr, "  input: \"%s\"\n", text);
  abort();
}

static void check_ok(const struct nbd_uri *u, const char *text)
{
  if (!u->export_name)
    broken("no export name", text);
  if (u->unix_socket) {
    if (!u->socket || u->host || u->port)
      broken("a Unix URI without a socket, or with a host or port", text);
  }
  else {
    if (!u->host || !u->port || u->socket)
      broken("a TCP URI without a host or port, or with a socket", text);
    char *end;
    long port = strtol(u->port, &end, 10);
    if (*end || port < 1 || port > 65535)
      broken("a port that is not a number from 1 to 65535", text);
  }
  if (u->tls_verify_peer < -1 || u->tls_verify_peer > 1 ||
      u->tls_type > URI_TLS_TYPE_PSK)
    broken("tls-verify-peer or tls-type out of range", text);
}

static void check_failed(const struct nbd_uri *u, const char *text)
{
  if (u->host || u->port || u->socket || u->export_name || u->username ||
      u->tls_certificates || u->tls_psk_file || u->tls_hostname ||
      u->tls_verify_peer != -1 || u->tls_type != URI_TLS_TYPE_UNSET ||
      u->tls || u->unix_socket)
    broken("*u not left empty on failure", text);
  if (strcmp(get_error(), "no error") == 0)
    broken("failure without an error message", text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *text = strndup((const char *)data, size);
  if (!text)
    return 0;
  struct nbd_uri u;
  clear_error();
  if (uri_parse(text, &u) == 0)
    check_ok(&u, text);
  else
    check_failed(&u, text);
  uri_free(&u);
  free(text);
  return 0;
}
