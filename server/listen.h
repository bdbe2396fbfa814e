/* snbd-server: listeners and the accept loop (listen.c). */
#ifndef SNBD_LISTEN_H
#define SNBD_LISTEN_H

#include "server.h"

#define MAX_LISTENERS 32

int signals_init(void);
int listen_tcp(const char *addr, int port, struct listener *out, int max,
               int *nout);
int listen_unix(const char *path, struct listener *l);
int listen_activation(struct listener *out, int max, int *nout);
/* Start serving an accepted (or inherited) socket. */
void serve_fd(struct server *s, int fd);
/* on_event gets 'T' (terminate), 'H' (reload), 'C' (child exited), and
 * with tick_ms > 0 'P' about every tick_ms milliseconds (periodic work:
 * main.c's systemd status); it returns non-zero to end the loop with that
 * value. */
int accept_loop(struct server *s, struct listener *ls, int n,
                int (*on_event)(struct server *, char), int tick_ms);

#endif
