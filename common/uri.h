/* snbd: NBD URI parsing (doc/uri.md of the NBD project), with uriparser.
 *
 *   nbd://[user@]host[:port][/export][?query]        TCP, TLS optional
 *   nbds://...                                        TCP, TLS required
 *   nbd+unix:///[export]?socket=PATH[&...]            Unix socket
 *   nbds+unix:///[export]?socket=PATH[&...]           Unix socket, TLS required
 *
 * Query keys: socket, tls-type (x509|psk), tls-certificates, tls-psk-file,
 * tls-username, tls-hostname, tls-verify-peer (0|1).  Keys starting with
 * "x-" are ignored (experimental, uri.md "Other NBD URI query parameters");
 * any other key, a repeated key, a fragment, a password in the userinfo or
 * an escaped NUL is an error.  Parsing only records what the URI says:
 * whether the caller may act on it (read local files named by it) is the
 * caller's decision.
 */
#ifndef SNBD_URI_H
#define SNBD_URI_H

#include <stdbool.h>

enum uri_tls_type { URI_TLS_TYPE_UNSET = 0, URI_TLS_TYPE_X509, URI_TLS_TYPE_PSK };

struct nbd_uri {
  bool tls;                  /* nbds, nbds+unix: TLS is required */
  bool unix_socket;          /* nbd+unix, nbds+unix */
  char *host;                /* TCP: name or IP literal without brackets */
  char *port;                /* TCP: decimal, "10809" when absent */
  char *socket;              /* Unix: socket path */
  char *export_name;         /* percent-decoded path minus the leading '/' */
  char *username;            /* userinfo or tls-username, NULL if absent */
  char *tls_certificates;    /* directory, NULL if absent */
  char *tls_psk_file;        /* file, NULL if absent */
  char *tls_hostname;        /* NULL if absent */
  int tls_verify_peer;       /* -1 absent, else 0 or 1 */
  enum uri_tls_type tls_type;
};

/* Fills *u (all fields owned by it) and returns 0, or returns -1 with
 * set_error() saying what is wrong and *u left empty. */
int uri_parse(const char *text, struct nbd_uri *u);
void uri_free(struct nbd_uri *u);

#endif
