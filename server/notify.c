/* snbd-server: sd_notify without libsystemd.  The protocol is one
 * datagram per message to the AF_UNIX socket named by $NOTIFY_SOCKET
 * (a path, or an abstract name written with a leading '@'); systemd's
 * sd_notify(3) describes the keys.  A few lines here rather than a new
 * library dependency. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "notify.h"
#include "transport.h"

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_len;

void notify_init(void)
{
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || (path[0] != '/' && path[0] != '@') || !path[1])
    goto out;
  size_t len = strlen(path);
  if (len >= sizeof notify_addr.sun_path) {
    log_warn("NOTIFY_SOCKET is too long; not notifying systemd");
    goto out;
  }
  notify_addr.sun_family = AF_UNIX;
  memcpy(notify_addr.sun_path, path, len);
  if (path[0] == '@')
    notify_addr.sun_path[0] = '\0';      /* abstract: no trailing NUL */
  notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                           (path[0] == '/'));
  notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (notify_fd == -1)
    log_warn("cannot notify systemd: socket: %m");
out:
  unsetenv("NOTIFY_SOCKET");
}

void notify_send(const char *fmt, ...)
{
  if (notify_fd == -1)
    return;
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof msg)
    return;
  if (sendto(notify_fd, msg, (size_t)n, MSG_NOSIGNAL,
             (struct sockaddr *)&notify_addr, notify_len) == -1)
    log_debug("systemd notification \"%s\": %m", msg);
}

void notify_reloading(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  notify_send("RELOADING=1\nMONOTONIC_USEC=%llu",
              (unsigned long long)ts.tv_sec * 1000000ULL +
              (unsigned long long)ts.tv_nsec / 1000);
}

void notify_status(int nconns, int nnegotiating)
{
  static int last_conns = -1, last_neg = -1;
  static int64_t last_sent;
  if (notify_fd == -1 || (nconns == last_conns && nnegotiating == last_neg))
    return;
  int64_t now = monotonic_ns();
  if (last_conns != -1 && now - last_sent < 1000000000)
    return;                 /* at most one a second */
  last_sent = now;
  last_conns = nconns;
  last_neg = nnegotiating;
  notify_send("STATUS=%d connection%s (%d negotiating)", nconns,
              nconns == 1 ? "" : "s", nnegotiating);
}

bool notify_enabled(void)
{
  return notify_fd != -1;
}

void notify_close(void)
{
  if (notify_fd != -1)
    close(notify_fd);
  notify_fd = -1;
}
