/* fuzz: the far end of a socketpair, for harnesses that drive a real
 * protocol endpoint (the server, or libsnbd) with bytes from the fuzzer.
 *
 * A peer thread writes its script (pre; then post, once the gate is open
 * when the peer is gated), shuts down its write side, and meanwhile reads
 * and throws away everything the endpoint sends until EOF, so the
 * endpoint never blocks on a full socket.  Once the endpoint has sent more
 * than `budget` bytes the peer hangs up (a client that stops listening):
 * that bounds the work one input can cause (a few thousand 32 MiB READs
 * fit in 64 KiB of input). */
#ifndef SNBD_FUZZ_PEER_H
#define SNBD_FUZZ_PEER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct peer {
  int fd;                   /* our end, owned (closed by peer_join) */
  const uint8_t *pre, *post;
  size_t npre, npost;
  int gate[2];              /* pipe: readable once the gate is open */
  bool gated;
  uint64_t budget;          /* hang up after this many bytes received */
  uint64_t received;
  bool hung_up;             /* the budget ran out */
  bool partial;             /* peer_read hit EOF inside a read */
  pthread_t thread;
  /* Optional: instead of discarding the endpoint's output, a second
   * thread runs reader(p, reader_ud), which reads it with peer_read()
   * until that returns false. */
  void (*reader)(struct peer *p, void *ud);
  void *reader_ud;
  pthread_t reader_thread;
};

/* Starts the peer thread on fd.  Aborts on failure (a harness bug or an
 * exhausted machine, not a finding). */
void peer_start(struct peer *p, int fd, const uint8_t *pre, size_t npre,
                const uint8_t *post, size_t npost, bool gated,
                uint64_t budget);
/* As peer_start, with a reader thread (see struct peer). */
void peer_start_reader(struct peer *p, int fd, const uint8_t *pre,
                       size_t npre, const uint8_t *post, size_t npost,
                       uint64_t budget,
                       void (*reader)(struct peer *p, void *ud), void *ud);
/* For the reader: exactly n bytes, or false at EOF, on an error or once
 * the budget is spent (then p->hung_up is set and the peer hangs up). */
bool peer_read(struct peer *p, void *buf, size_t n);
/* For the reader: reads and throws away the rest, until EOF or the
 * budget is spent. */
void peer_discard_rest(struct peer *p);
/* Lets a gated peer write post (idempotent). */
void peer_open_gate(struct peer *p);
/* Waits for the peer to finish (the endpoint must close its end or the
 * peer must hang up), then frees its resources. */
void peer_join(struct peer *p);

/* A socketpair (SOCK_CLOEXEC) or abort. */
void fuzz_socketpair(int sv[2]);

#endif
