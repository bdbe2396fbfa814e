/* snbd-server: -s, one client on stdin/stdout (inetd, or a fuzzer).
 * When stdin is a socket it is served directly; otherwise (pipes, files)
 * two relay threads join stdin/stdout to one end of a socketpair, so the
 * protocol code always sees a single socket. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "listen.h"
#include "log.h"

struct relay { int from, to; bool to_is_sock; };

static void *relay_thread(void *arg)
{
  struct relay *r = arg;
  char buf[65536];
  for (;;) {
    ssize_t n = read(r->from, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(r->to, buf + off, (size_t)(n - off));
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        goto out;
      off += w;
    }
  }
out:
  if (r->to_is_sock)
    shutdown(r->to, SHUT_WR);
  else
    close(r->to);
  return NULL;
}

void single_start(struct server *s)
{
  struct stat st;
  if (fstat(0, &st) == 0 && S_ISSOCK(st.st_mode)) {
    int fd = dup(0);
    if (fd == -1) {
      log_error("dup: %m");
      exit(EXIT_FAILURE);
    }
    serve_fd(s, fd);
    return;
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
    log_error("socketpair: %m");
    exit(EXIT_FAILURE);
  }
  static struct relay in, out;
  in = (struct relay){ .from = 0, .to = sv[1], .to_is_sock = true };
  out = (struct relay){ .from = sv[1], .to = 1, .to_is_sock = false };
  pthread_t t1, t2;
  if (pthread_create(&t1, NULL, relay_thread, &in) != 0 ||
      pthread_create(&t2, NULL, relay_thread, &out) != 0) {
    log_error("cannot start relay threads");
    exit(EXIT_FAILURE);
  }
  pthread_detach(t1);
  pthread_detach(t2);
  serve_fd(s, sv[0]);
}

/* Until the one connection ends. */
int single_wait(struct server *s)
{
  pthread_mutex_lock(&s->conns_lock);
  while (s->nconns > 0)
    pthread_cond_wait(&s->conns_cond, &s->conns_lock);
  pthread_mutex_unlock(&s->conns_lock);
  return 'S';
}
