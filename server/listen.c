/* snbd-server: listening sockets (TCP v4/v6, Unix, systemd socket
 * activation) and the accept loop.  Signals reach the loop through a
 * self-pipe, so the handlers only write(2) (async-signal-safe,
 * docs/security.md 19). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "listen.h"
#include "log.h"

static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
  int saved = errno;
  char ch = sig == SIGHUP ? 'H' : sig == SIGCHLD ? 'C' : 'T';
  if (write(sig_pipe[1], &ch, 1) == -1) {
    /* pipe full: a byte of this kind is already pending */
  }
  errno = saved;
}

int signals_init(void)
{
  if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) == -1)
    return -1;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  sigaction(SIGCHLD, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

static int listen_fd(int fd, struct listener *l)
{
  if (listen(fd, SOMAXCONN) == -1) {
    log_error("listen %s: %m", l->desc);
    close(fd);
    return -1;
  }
  l->fd = fd;
  return 0;
}

int listen_tcp(const char *addr, int port, struct listener *out, int max,
               int *nout)
{
  struct addrinfo hints = { .ai_family = AF_UNSPEC,
                            .ai_socktype = SOCK_STREAM,
                            .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
  struct addrinfo *res;
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%d", port);
  int err = getaddrinfo(addr, portstr, &hints, &res);
  if (err) {
    log_error("address %s: %s", addr ? addr : "*", gai_strerror(err));
    return -1;
  }
  int n = 0;
  for (struct addrinfo *a = res; a && *nout < max; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd == -1)
      continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (a->ai_family == AF_INET6)
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    struct listener *l = &out[*nout];
    char host[INET6_ADDRSTRLEN] = "?";
    getnameinfo(a->ai_addr, a->ai_addrlen, host, sizeof host, NULL, 0,
                NI_NUMERICHOST);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == -1) {
      log_error("bind %s port %d: %m", host, port);
      close(fd);
      freeaddrinfo(res);
      return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    int real_port = ntohs(ss.ss_family == AF_INET6
                          ? ((struct sockaddr_in6 *)&ss)->sin6_port
                          : ((struct sockaddr_in *)&ss)->sin_port);
    snprintf(l->desc, sizeof l->desc,
             a->ai_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, real_port);
    l->port = real_port;
    l->family = a->ai_family;
    if (listen_fd(fd, l) == -1) {
      freeaddrinfo(res);
      return -1;
    }
    (*nout)++;
    n++;
  }
  freeaddrinfo(res);
  return n > 0 ? 0 : -1;
}

int listen_unix(const char *path, struct listener *l)
{
  struct sockaddr_un sun = { .sun_family = AF_UNIX };
  if (strlen(path) >= sizeof sun.sun_path) {
    log_error("Unix socket path too long: %s", path);
    return -1;
  }
  strcpy(sun.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    log_error("socket: %m");
    return -1;
  }
  unlink(path);
  if (bind(fd, (struct sockaddr *)&sun, sizeof sun) == -1) {
    log_error("bind %s: %m", path);
    close(fd);
    return -1;
  }
  snprintf(l->desc, sizeof l->desc, "unix:%s", path);
  l->family = AF_UNIX;
  return listen_fd(fd, l);
}

/* systemd socket activation: LISTEN_PID/LISTEN_FDS, fds from 3 on. */
int listen_activation(struct listener *out, int max, int *nout)
{
  const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
  if (!pid || !fds || atol(pid) != (long)getpid())
    return 0;
  int n = atoi(fds);
  for (int i = 0; i < n && *nout < max; i++) {
    struct listener *l = &out[(*nout)++];
    l->fd = 3 + i;
    fcntl(l->fd, F_SETFD, FD_CLOEXEC);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(l->fd, (struct sockaddr *)&ss, &sl);
    l->family = ss.ss_family;
    snprintf(l->desc, sizeof l->desc, "activated fd %d", l->fd);
  }
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  return n;
}

static void describe_peer(const struct sockaddr_storage *ss, socklen_t len,
                          char *buf, size_t size)
{
  static unsigned long unix_count;
  if (ss->ss_family == AF_UNIX) {
    snprintf(buf, size, "unix#%lu", ++unix_count);
    return;
  }
  char host[INET6_ADDRSTRLEN] = "?", serv[16] = "?";
  getnameinfo((const struct sockaddr *)ss, len, host, sizeof host, serv,
              sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV);
  snprintf(buf, size, ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
           serv);
}

/* --tcp-timeout: a peer that vanished (powered off, cable pulled, a NAT
 * that forgot us) is noticed and its connection closed after about
 * `seconds`, whether it was idle (keepalive probes from seconds/3 on,
 * four of them seconds/6 apart) or had data unacknowledged
 * (TCP_USER_TIMEOUT, which also cuts the probes short).  Without it a
 * dead idle peer holds its connection, thread and export forever. */
static void tcp_set_timeout(int fd, int seconds)
{
  if (seconds <= 0)
    return;
  int one = 1, idle = seconds / 3 > 0 ? seconds / 3 : 1;
  int intvl = seconds / 6 > 0 ? seconds / 6 : 1, cnt = 4;
  unsigned ms = (unsigned)seconds * 1000;
  if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) == -1 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) == -1 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) == -1 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) == -1 ||
      setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms) == -1)
    log_debug("TCP keepalive / user timeout: %m");
}

void serve_fd(struct server *s, int fd)
{
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  char peer[128];
  memset(&ss, 0, sizeof ss);
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) == -1)
    ss.ss_family = AF_UNIX;     /* socketpair / pipe relay */
  describe_peer(&ss, sl, peer, sizeof peer);
  bool tcp_loopback = false;
  if (ss.ss_family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    tcp_loopback = tcp_tune_for_peer(fd, &ss);
    tcp_set_timeout(fd, s->tcp_timeout);
  }
  else {
    /* A Unix socket's default send buffer (208 KiB) is smaller than one
     * 256 KiB read reply, so every such reply was cut short and finished
     * by the writer thread (reply.c).  1 MiB (2 MiB once the kernel
     * doubles it) took 2 GiB nbdcopy reads from ~3.6 to ~4.0 GiB/s and
     * 0.68 -> 0.60 s of server CPU.  TCP keeps its autotuning. */
    int size = 1024 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  }
  conn_start(s, fd, tcp_loopback, peer);
}

static void accept_one(struct server *s, struct listener *l)
{
  int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
  if (fd == -1) {
    if (errno == EMFILE || errno == ENFILE)
      log_warn("accept on %s: %m", l->desc);
    return;
  }
  serve_fd(s, fd);
}

/* poll's timeout until the next tick (-1: no ticks). */
static int tick_wait(int tick_ms, int64_t next)
{
  if (tick_ms <= 0)
    return -1;
  int64_t left = next - monotonic_ns();
  return left <= 0 ? 0 : (int)(left / 1000000) + 1;
}

/* Runs until SIGTERM/SIGINT, or until on_child says the --run command
 * ended.  Returns the byte that ended it. */
int accept_loop(struct server *s, struct listener *ls, int n,
                int (*on_event)(struct server *, char), int tick_ms)
{
  struct pollfd *p = calloc((size_t)n + 1, sizeof *p);
  if (!p)
    return -1;
  for (int i = 0; i < n; i++)
    p[i] = (struct pollfd){ .fd = ls[i].fd, .events = POLLIN };
  p[n] = (struct pollfd){ .fd = sig_pipe[0], .events = POLLIN };
  int result = 0;
  int64_t next_tick = monotonic_ns();
  while (!result) {
    int r = poll(p, (nfds_t)n + 1, tick_wait(tick_ms, next_tick));
    if (r == -1) {
      if (errno == EINTR)
        continue;
      log_error("poll: %m");
      result = -1;
      break;
    }
    if (tick_ms > 0 && monotonic_ns() >= next_tick) {
      next_tick = monotonic_ns() + (int64_t)tick_ms * 1000000;
      result = on_event(s, 'P');
    }
    if (p[n].revents & POLLIN) {
      char ch;
      while (!result && read(sig_pipe[0], &ch, 1) == 1)
        result = on_event(s, ch);
    }
    for (int i = 0; i < n && !result; i++)
      if (p[i].revents & POLLIN)
        accept_one(s, &ls[i]);
  }
  free(p);
  return result;
}

bool listener_is_local(const struct listener *l)
{
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) == -1)
    return false;
  return sockaddr_is_local(&ss);
}

/* -s: whether the peer of fd (stdin) is on this host; a pipe or a file
 * has no peer and counts as local.  desc gets the peer's address. */
bool fd_peer_is_local(int fd, char *desc, size_t size)
{
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) == -1)
    ss.ss_family = AF_UNIX;
  describe_peer(&ss, sl, desc, size);
  return sockaddr_is_local(&ss);
}

/* Whether every address addr resolves to is loopback (numeric only). */
bool addr_is_local(const char *addr)
{
  struct addrinfo hints = { .ai_family = AF_UNSPEC,
                            .ai_socktype = SOCK_STREAM,
                            .ai_flags = AI_PASSIVE | AI_NUMERICHOST };
  struct addrinfo *res;
  if (getaddrinfo(addr, "0", &hints, &res) != 0)
    return false;
  bool local = true;
  for (struct addrinfo *a = res; a; a = a->ai_next) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    memcpy(&ss, a->ai_addr, a->ai_addrlen);
    local &= sockaddr_is_local(&ss);
  }
  freeaddrinfo(res);
  return local;
}
