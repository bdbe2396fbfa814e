/* snbd-server: the systemd notification protocol (notify.c). */
#ifndef SNBD_NOTIFY_H
#define SNBD_NOTIFY_H

#include <stdbool.h>

/* Takes $NOTIFY_SOCKET (and removes it from the environment, so --run's
 * command does not inherit it).  Without it every notify_* does nothing. */
void notify_init(void);
/* One datagram, "KEY=VALUE\n..." (printf format); errors are ignored, as
 * systemd's own sd_notify callers do: the service goes on serving. */
void notify_send(const char *fmt, ...)
  __attribute__((format(printf, 1, 2)));
/* RELOADING=1 with MONOTONIC_USEC= (systemd wants both for
 * Type=notify-reload; Type=notify accepts them). */
void notify_reloading(void);
/* STATUS= with the connection counts, at most once a second and only when
 * they changed.  Called from the accept loop's tick. */
void notify_status(int nconns, int nnegotiating);
/* $NOTIFY_SOCKET was given. */
bool notify_enabled(void);
void notify_close(void);

#endif
