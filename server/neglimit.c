/* snbd-server: the connections still negotiating, and which one a flood
 * drops (docs/security.md 11).  Everything here runs under conns_lock.
 *
 * A flood of connections that never speak used to evict real clients: with
 * 256 slots and the oldest dropped, one process opening 2,000 connections
 * a second dropped every client whose negotiation took longer than 128 ms
 * (a TLS client 100 ms from the server failed 5 of 5).  Now, when a slot
 * is needed, the connection dropped is
 *   1. the one that has made the least progress (completed steps: client
 *      flags, options, the TLS handshake), so silent ones go first;
 *   2. among equals, one from the source address holding the most
 *      negotiating connections, so one address cannot crowd out others;
 *   3. among equals, the oldest.
 * And no source address may hold more than --max-negotiating-per-source
 * negotiations at once (IPv4 addresses, IPv6 /64 prefixes; 127.0.0.2 is
 * not 127.0.0.1; Unix-socket peers are local users behind the socket's
 * permissions and have no per-source limit).  A connection whose GO was
 * accepted (c->chosen) is never dropped.
 *
 * The list holds at most --max-negotiating connections, so each accept
 * costs one walk of it (256 by default), not of every connection. */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conn.h"
#include "log.h"

/* The connections of one source address still negotiating. */
struct neg_source {
  uint8_t key[16];              /* IPv4 mapped into IPv6, or an IPv6 /64 */
  bool limited;                 /* false for Unix-socket peers */
  int n;                        /* negotiating connections from it */
};

static void source_key(int fd, struct neg_source *src)
{
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  memset(src, 0, sizeof *src);
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) == -1)
    return;                     /* socketpair (-s relay, fuzzers) */
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
    src->key[10] = src->key[11] = 0xff;
    memcpy(src->key + 12, &in->sin_addr, 4);
    src->limited = true;
  }
  else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
    bool v4 = IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr);
    /* One host usually owns a whole /64. */
    memcpy(src->key, &in6->sin6_addr, v4 ? 16 : 8);
    src->limited = true;
  }
}

/* Should a be dropped before b? */
static bool drop_before(const struct conn *a, const struct conn *b)
{
  unsigned pa = atomic_load(&a->progress), pb = atomic_load(&b->progress);
  if (pa != pb)
    return pa < pb;
  if (a->src->n != b->src->n)
    return a->src->n > b->src->n;
  return a->started < b->started;
}

/* The connection to drop, among those from src (NULL: all); NULL if none
 * may be dropped. */
static struct conn *victim(struct server *s, const struct neg_source *src)
{
  struct conn *worst = NULL;
  for (struct conn *c = s->negotiating; c; c = c->neg_next)
    if ((!src || c->src == src) && !atomic_load(&c->chosen) &&
        (!worst || drop_before(c, worst)))
      worst = c;
  return worst;
}

static void drop(struct server *s, struct conn *c, const char *why)
{
  log_info("%s: %s; dropping this negotiation (progress %u, %d from its "
           "address)", c->peer, why, atomic_load(&c->progress), c->src->n);
  /* The fd stays open until the owner unlinks it, which needs conns_lock:
   * shutdown() cannot hit a reused descriptor. */
  shutdown(c->fd, SHUT_RDWR);
  neg_leave(s, c);
}

void neg_leave(struct server *s, struct conn *c)
{
  if (!c->src)
    return;
  if (c->neg_prev)
    c->neg_prev->neg_next = c->neg_next;
  else
    s->negotiating = c->neg_next;
  if (c->neg_next)
    c->neg_next->neg_prev = c->neg_prev;
  c->neg_prev = c->neg_next = NULL;
  if (--c->src->n == 0)
    free(c->src);
  c->src = NULL;
  s->nnegotiating--;
}

/* The record of c's source, shared with the connections from the same
 * address already negotiating, or a new one. */
static struct neg_source *source_of(struct server *s, struct conn *c)
{
  struct neg_source key;
  source_key(c->fd, &key);
  for (struct conn *o = s->negotiating; o; o = o->neg_next)
    if (o->src->limited == key.limited &&
        memcmp(o->src->key, key.key, sizeof key.key) == 0)
      return o->src;
  struct neg_source *src = malloc(sizeof *src);
  if (src)
    *src = key;
  return src;
}

int neg_enter(struct server *s, struct conn *c)
{
  struct neg_source *src = source_of(s, c);
  if (!src) {
    errno = ENOMEM;
    return -1;
  }
  src->n++;                     /* held by c from here */
  c->src = src;
  struct conn *v;
  if (src->limited && s->max_negotiating_per_source > 0 &&
      src->n > s->max_negotiating_per_source && (v = victim(s, src)))
    drop(s, v, "too many connections negotiating from this address");
  if (s->nnegotiating >= s->max_negotiating && (v = victim(s, NULL)))
    drop(s, v, "too many connections negotiating");
  c->neg_prev = NULL;
  c->neg_next = s->negotiating;
  if (s->negotiating)
    s->negotiating->neg_prev = c;
  s->negotiating = c;
  s->nnegotiating++;
  return 0;
}
