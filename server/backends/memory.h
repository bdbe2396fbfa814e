/* snbd: what the memory backend shows beyond backend.h, for tests and
 * logs: its chunk size and how much RAM it holds.
 */
#ifndef SNBD_BACKEND_MEMORY_H
#define SNBD_BACKEND_MEMORY_H

#include <stdint.h>

#include "backend.h"

/* RAM is allocated in chunks of this many bytes, on first write. */
#define BACKEND_MEMORY_CHUNK (64 * 1024)

/* Allocated data chunks and radix-tree nodes (the root node included) of a
 * memory backend; -1 with EINVAL if b is not one. */
int backend_memory_stats(const struct backend *b, uint64_t *chunks,
                         uint64_t *nodes);

#endif
