/* snbd: scope-based cleanup.  A variable declared with one of these
 * attributes is released when it goes out of scope, on every return path:
 *
 *   CLEANUP_FREE char *s = strdup(x);       free(s)
 *   CLEANUP_CLOSE int fd = open(...);       close(fd) if fd >= 0
 *   SCOPED_LOCK(&c->lock);                  unlocked at the end of the block
 *
 * To keep what a CLEANUP_FREE variable holds (hand it to a caller), take
 * it: `return TAKE(s);` sets s to NULL and yields its old value. */
#ifndef SNBD_CLEANUP_H
#define SNBD_CLEANUP_H

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

static inline void cleanup_free(void *p)
{
  free(*(void **)p);
}

static inline void cleanup_close(int *fd)
{
  if (*fd >= 0)
    close(*fd);
}

static inline void cleanup_unlock(pthread_mutex_t **m)
{
  if (*m)
    pthread_mutex_unlock(*m);
}

#define CLEANUP_FREE __attribute__((cleanup(cleanup_free)))
#define CLEANUP_CLOSE __attribute__((cleanup(cleanup_close)))

/* Returns *pp and leaves NULL behind (GNU statement expression). */
#define TAKE(p) ({ __typeof__(p) taken_ = (p); (p) = NULL; taken_; })

#define SCOPED_LOCK_CAT2(a, b) a##b
#define SCOPED_LOCK_CAT(a, b) SCOPED_LOCK_CAT2(a, b)
/* Locks m until the end of the enclosing block. */
#define SCOPED_LOCK(m)                                                    \
  __attribute__((cleanup(cleanup_unlock), unused))                        \
  pthread_mutex_t *SCOPED_LOCK_CAT(scoped_lock_, __LINE__) =              \
    (pthread_mutex_lock(m), (m))

#endif
