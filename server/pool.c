/* snbd-server: a shared pool of worker threads running requests from all
 * connections.  A plain FIFO under one mutex: requests are short (one
 * backend call and one send), so contention stays low at our thread
 * counts; measure before replacing it. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"
#include "server.h"

struct job {
  void (*fn)(void *);
  void *arg;
  struct job *next;
};

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pool_cond = PTHREAD_COND_INITIALIZER;
static struct job *head, *tail;     /* under pool_lock */
static bool stopping;               /* under pool_lock */
static pthread_t *workers;
static int nworkers;

static void *worker(void *unused)
{
  (void)unused;
  for (;;) {
    pthread_mutex_lock(&pool_lock);
    while (!head && !stopping)
      pthread_cond_wait(&pool_cond, &pool_lock);
    struct job *j = head;
    if (!j) {                       /* stopping and drained */
      pthread_mutex_unlock(&pool_lock);
      return NULL;
    }
    head = j->next;
    if (!head)
      tail = NULL;
    pthread_mutex_unlock(&pool_lock);
    j->fn(j->arg);
    free(j);
  }
}

int pool_start(int nthreads)
{
  workers = calloc((size_t)nthreads, sizeof *workers);
  if (!workers)
    return -1;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  for (nworkers = 0; nworkers < nthreads; nworkers++)
    if (pthread_create(&workers[nworkers], &attr, worker, NULL) != 0) {
      log_error("pthread_create: cannot start worker %d", nworkers);
      break;
    }
  pthread_attr_destroy(&attr);
  return nworkers > 0 ? 0 : -1;
}

/* Never fails: on allocation failure the job runs on the caller's thread
 * (slower, but no request is lost). */
void pool_submit(void (*fn)(void *), void *arg)
{
  struct job *j = malloc(sizeof *j);
  if (!j) {
    fn(arg);
    return;
  }
  *j = (struct job){ .fn = fn, .arg = arg };
  pthread_mutex_lock(&pool_lock);
  if (tail)
    tail->next = j;
  else
    head = j;
  tail = j;
  pthread_cond_signal(&pool_cond);
  pthread_mutex_unlock(&pool_lock);
}

void pool_stop(void)
{
  pthread_mutex_lock(&pool_lock);
  stopping = true;
  pthread_cond_broadcast(&pool_cond);
  pthread_mutex_unlock(&pool_lock);
  for (int i = 0; i < nworkers; i++)
    pthread_join(workers[i], NULL);
  free(workers);
  workers = NULL;
  nworkers = 0;
}
