/* libsnbd, handshake step: NBD_OPT_STARTTLS and the TLS handshake
 * (doc/proto.md "TLS support").  It is always the first option, so
 * nothing else is ever said in clear text; in require mode any refusal
 * ends the session (docs/security.md 21) and the certificate and host
 * name are verified (docs/security.md 22), also over Unix sockets
 * through tls-hostname. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "cleanup.h"
#include "internal.h"

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_init_result;

static void tls_init(void)
{
  tls_init_result = tls_global_init();
}

static int load_creds(struct snbd_handle *h)
{
  if (h->creds)
    return 0;
  pthread_once(&tls_once, tls_init);
  if (tls_init_result == -1) {
    lib_rewrap("TLS initialisation failed");
    return -1;
  }
  struct tls_client_config cfg = {
    .cert_dir = h->tls_certificates,
    .psk_file = h->tls_psk_file,
    .username = h->tls_username,
    .priority = h->tls_priority,
    .verify_peer = h->tls_verify_peer,
  };
  h->creds = tls_creds_load_client_shared(&cfg);
  if (!h->creds) {
    lib_rewrap("cannot load TLS credentials");
    return -1;
  }
  return 0;
}

/* Where this connection's TLS session is cached for resumption: the
 * server's address as the socket sees it, the host name its certificate
 * is checked against, and everything that makes us who we are, so that a
 * session is only ever offered back to the server it came from, under
 * the same identity.  NULL (no resumption) when switched off or the peer
 * has no name (socketpairs, snbd_connect_command). */
static char *resume_key(struct snbd_handle *h, const char *hostname)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  char addr[INET6_ADDRSTRLEN + 16] = "", port[16] = "";
  if (!h->tls_resume ||
      getpeername(h->t->fd, (struct sockaddr *)&ss, &len) == -1)
    return NULL;
  if (ss.ss_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)&ss;
    size_t n = len - offsetof(struct sockaddr_un, sun_path);
    if (len <= offsetof(struct sockaddr_un, sun_path) || !un->sun_path[0] ||
        n >= sizeof addr)
      return NULL;              /* unnamed, or abstract */
    memcpy(addr, un->sun_path, n);
    addr[n] = 0;
  } else if (getnameinfo((struct sockaddr *)&ss, len, addr, sizeof addr,
                         port, sizeof port,
                         NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return NULL;
  }
#define S(x) ((x) ? (x) : "")
  char *key = NULL;
  if (asprintf(&key, "peer=%s port=%s\nhost=%s\ncerts=%s\npsk=%s\n"
               "user=%s\nverify=%d\npriority=%s", addr, port, S(hostname),
               S(h->tls_certificates), S(h->tls_psk_file),
               S(h->tls_username), h->tls_verify_peer,
               S(h->tls_priority)) == -1)
    return NULL;
#undef S
  return key;
}

static int tls_upgrade(struct snbd_handle *h)
{
  if (load_creds(h) == -1) {
    h->broken = true;
    return -1;
  }
  const char *hostname = h->tls_hostname ? h->tls_hostname : h->tcp_host;
  if (!tls_creds_is_psk(h->creds) && h->tls_verify_peer && !hostname)
    return optio_broken(h, EINVAL, "cannot verify the server's certificate "
                        "without a host name: set tls-hostname (or turn "
                        "verification off with tls-verify-peer=0)");
  CLEANUP_FREE char *key = resume_key(h, hostname);
  struct transport *t = tls_client_handshake(h->creds, h->t, hostname, key,
                                             &h->peer);
  if (!t) {
    lib_rewrap("TLS handshake failed");
    h->broken = true;
    return -1;
  }
  h->t = t;
  h->tls_active = true;
  return 0;
}

int starttls_run(struct snbd_handle *h)
{
  struct nbd_opt_reply r;
  uint8_t buf[MAX_OPT_REPLY];

  if (optio_send(h, NBD_OPT_STARTTLS, NULL, 0) == -1 ||
      optio_recv(h, NBD_OPT_STARTTLS, &r, buf, sizeof buf) == -1)
    return -1;
  if (r.type == NBD_REP_ACK) {
    if (r.length != 0)
      return optio_broken(h, EPROTO, "NBD_REP_ACK to NBD_OPT_STARTTLS with a "
                          "payload");
    return tls_upgrade(h);
  }
  if (!NBD_REP_IS_ERR(r.type))
    return optio_broken(h, EPROTO, "unexpected %s reply to NBD_OPT_STARTTLS",
                        nbd_rep_name(r.type));
  if (h->tls_mode == SNBD_TLS_REQUIRE) {
    char quoted[256];
    quote_bytes(quoted, sizeof quoted, buf, r.length);
    return optio_broken(h, EPERM, "TLS is required but the server refused "
                        "NBD_OPT_STARTTLS: %s%s%s%s", nbd_rep_name(r.type),
                        r.length ? ": \"" : "", quoted, r.length ? "\"" : "");
  }
  return 0;   /* allow mode: carry on in clear text */
}
