/* libsnbd, top layer: making the connection (Unix socket, TCP, an open
 * socket, a spawned server, or an NBD URI) and running the handshake
 * (handshake.c) over it. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"
#include "uri.h"

/* Takes the connected fd (always, even on failure) and runs the handshake
 * under the handle's deadline.  Caller holds h->lock, state H_CREATED. */
static int conn_finish(struct snbd_handle *h, int fd)
{
  h->t = transport_plain_new(fd);
  if (!h->t) {
    close(fd);
    h_set_dead(h, get_errno(), get_error());
    return -1;
  }
  if (h->hs_timeout)
    h->t->deadline = monotonic_ns() + (int64_t)h->hs_timeout * 1000000000;
  if (chs_run(h) == -1) {
    h_fail_connection(h);
    return -1;
  }
  if (h->state == H_NEGOTIATING)
    h->t->deadline = 0;
  return 0;
}

static int begin(struct snbd_handle *h)
{
  pthread_mutex_lock(&h->lock);
  if (CHECK_STATE(h, H_CREATED) == -1) {
    pthread_mutex_unlock(&h->lock);
    return -1;
  }
  return 0;
}

static int end(struct snbd_handle *h, int r)
{
  pthread_mutex_unlock(&h->lock);
  return r;
}

static int unix_socket(const char *path)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof sun.sun_path) {
    lib_error(ENAMETOOLONG, "socket path too long: %s", path);
    return -1;
  }
  strcpy(sun.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    lib_error(errno, "socket: %s", strerror(errno));
    return -1;
  }
  if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
    lib_error(errno, "connect %s: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

int snbd_connect_unix(struct snbd_handle *h, const char *path)
{
  API();
  if (begin(h) == -1)
    return -1;
  int fd = unix_socket(path);
  if (fd == -1) {
    h_set_dead(h, get_errno(), get_error());
    return end(h, -1);
  }
  return end(h, conn_finish(h, fd));
}

static int tcp_socket(const char *host, const char *port)
{
  struct addrinfo hints = { .ai_family = AF_UNSPEC,
                            .ai_socktype = SOCK_STREAM };
  struct addrinfo *res;
  int e = getaddrinfo(host, port, &hints, &res);
  if (e != 0) {
    lib_error(e == EAI_SYSTEM ? errno : ENOENT, "cannot resolve %s:%s: %s",
              host, port, gai_strerror(e));
    return -1;
  }
  int fd = -1, err = 0;
  for (struct addrinfo *a = res; a && fd == -1; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd == -1) {
      err = errno;
      continue;
    }
    if (connect(fd, a->ai_addr, a->ai_addrlen) == -1) {
      err = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd == -1) {
    lib_error(err, "connect %s:%s: %s", host, port, strerror(err));
    return -1;
  }
  /* doc/proto.md "Protocol phases": disable Nagle. */
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  tcp_tune_for_peer(fd, NULL);  /* WRITE payloads to a server on this host */
  return fd;
}

int snbd_connect_tcp(struct snbd_handle *h, const char *host, const char *port)
{
  API();
  if (!host || !port) {
    lib_error(EINVAL, "host and port are required");
    return -1;
  }
  if (begin(h) == -1)
    return -1;
  free(h->tcp_host);
  h->tcp_host = strdup(host);
  int fd = h->tcp_host ? tcp_socket(host, port) : -1;
  if (fd == -1) {
    if (!h->tcp_host)
      lib_error(ENOMEM, "strdup");
    h_set_dead(h, get_errno(), get_error());
    return end(h, -1);
  }
  return end(h, conn_finish(h, fd));
}

int snbd_connect_socket(struct snbd_handle *h, int fd)
{
  API();
  if (fd < 0) {
    lib_error(EBADF, "invalid file descriptor");
    return -1;
  }
  if (begin(h) == -1)
    return -1;
  return end(h, conn_finish(h, fd));
}

/* Child side of snbd_connect_command: only async-signal-safe calls
 * between fork and exec. */
static void exec_child(int sock, char *const argv[])
{
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  if (sock <= 1) {      /* dup2 onto itself would keep FD_CLOEXEC */
    int d = fcntl(sock, F_DUPFD_CLOEXEC, 3);
    if (d == -1)
      _exit(126);
    sock = d;
  }
  if (dup2(sock, 0) == -1 || dup2(sock, 1) == -1)
    _exit(126);
  execvp(argv[0], argv);
  _exit(127);
}

int snbd_connect_command(struct snbd_handle *h, char *const argv[])
{
  API();
  if (!argv || !argv[0]) {
    lib_error(EINVAL, "no command given");
    return -1;
  }
  if (begin(h) == -1)
    return -1;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
    lib_error(errno, "socketpair: %s", strerror(errno));
    h_set_dead(h, get_errno(), get_error());
    return end(h, -1);
  }
  pid_t pid = fork();
  if (pid == -1) {
    lib_error(errno, "fork: %s", strerror(errno));
    close(sv[0]);
    close(sv[1]);
    h_set_dead(h, get_errno(), get_error());
    return end(h, -1);
  }
  if (pid == 0)
    exec_child(sv[1], argv);
  close(sv[1]);
  h->child = pid;
  return end(h, conn_finish(h, sv[0]));
}

static int replace(char **field, const char *value)
{
  if (!value)
    return 0;
  char *copy = strdup(value);
  if (!copy) {
    lib_error(errno, "strdup");
    return -1;
  }
  free(*field);
  *field = copy;
  return 0;
}

/* Moves what the URI says into the handle.  Local files named by the URI
 * are refused unless the caller allowed them (docs/security.md 26). */
static int uri_apply(struct snbd_handle *h, const struct nbd_uri *u)
{
  if ((u->tls_certificates || u->tls_psk_file) && !h->allow_local_file) {
    lib_error(EPERM, "the URI names local files (tls-certificates or "
              "tls-psk-file) but reading them was not allowed "
              "(snbd_set_uri_allow_local_file)");
    return -1;
  }
  if (u->tls_type == URI_TLS_TYPE_PSK && !u->tls_psk_file && !h->tls_psk_file) {
    lib_error(EINVAL, "tls-type=psk needs tls-psk-file");
    return -1;
  }
  if (u->tls_type == URI_TLS_TYPE_X509 && u->tls_psk_file) {
    lib_error(EINVAL, "tls-type=x509 contradicts tls-psk-file");
    return -1;
  }
  if (u->tls)
    h->tls_mode = SNBD_TLS_REQUIRE;
  if (u->tls_verify_peer != -1)
    h->tls_verify_peer = u->tls_verify_peer;
  if (u->tls_type == URI_TLS_TYPE_X509) {
    free(h->tls_psk_file);
    h->tls_psk_file = NULL;
  }
  if (replace(&h->export_name, u->export_name) == -1 ||
      replace(&h->tls_certificates, u->tls_certificates) == -1 ||
      replace(&h->tls_psk_file, u->tls_psk_file) == -1 ||
      replace(&h->tls_username, u->username) == -1 ||
      replace(&h->tls_hostname, u->tls_hostname) == -1 ||
      replace(&h->tcp_host, u->host) == -1)
    return -1;
  return 0;
}

int snbd_connect_uri(struct snbd_handle *h, const char *uri)
{
  API();
  struct nbd_uri u;
  if (!uri) {
    lib_error(EINVAL, "no URI given");
    return -1;
  }
  if (uri_parse(uri, &u) == -1) {
    lib_rewrap("invalid NBD URI");
    return -1;
  }
  if (begin(h) == -1) {
    uri_free(&u);
    return -1;
  }
  int fd = -1;
  if (uri_apply(h, &u) == 0)
    fd = u.unix_socket ? unix_socket(u.socket) : tcp_socket(u.host, u.port);
  uri_free(&u);
  if (fd == -1) {
    h_set_dead(h, get_errno(), get_error());
    return end(h, -1);
  }
  return end(h, conn_finish(h, fd));
}
