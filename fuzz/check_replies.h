/* fuzz: an oracle for fuzz_request.  It reads everything the server
 * sends (as the peer's reader, peer.h) and aborts on the first thing a
 * conforming NBD server (doc/proto.md of the NBD project) must not do:
 *   - handshake: the greeting and the replies to the harness's options
 *     are well formed, and GO / EXPORT_NAME succeed;
 *   - every reply answers a request the client sent (known from the input),
 *     at most once, and every request read before the end gets one;
 *   - simple replies carry data only for a successful READ, and never
 *     answer a READ once structured replies are on; structured chunks
 *     only when negotiated, each of a type allowed for the command, with
 *     consistent lengths, inside the request, content not overlapping, a
 *     successful READ fully covered, DF honoured, one BLOCK_STATUS chunk
 *     per context with nonzero lengths, REQ_ONE honoured and the first
 *     n-1 extents inside the request;
 *   - extended headers (when the harness asked for them): 32-byte
 *     requests in the input (a payload exactly when flagged
 *     NBD_CMD_FLAG_PAYLOAD_LEN), every reply an extended chunk echoing
 *     the request's offset, BLOCK_STATUS_EXT instead of BLOCK_STATUS, 64-bit
 *     extents; a request whose payload is above the maximum ends the
 *     session unanswered;
 *   - data: a model of the export's first MiB (writes, zeroes; trimmed or
 *     failed ranges become unknown) must match every byte a READ returns.
 *     The model is exact because the harness runs one worker thread, so
 *     requests take effect, and are answered, in the order they were sent.
 */
#ifndef SNBD_FUZZ_CHECK_REPLIES_H
#define SNBD_FUZZ_CHECK_REPLIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "peer.h"

struct check_params {
  const uint8_t *requests;  /* what the client sends after its handshake */
  size_t nrequests;
  bool structured;          /* the handshake asked for structured replies */
  bool extended;            /* ... and then for extended headers */
  bool meta;                /* ... and base:allocation */
  bool export_name;         /* NBD_OPT_EXPORT_NAME instead of GO */
  bool no_zeroes;           /* NBD_FLAG_C_NO_ZEROES sent */
  bool zero_copy_reads;     /* READ data may show later writes (sendfile) */
  bool unordered_status;    /* BLOCK_STATUS may not see earlier writes yet
                               (async: it runs beside the filter's queue) */
};

/* The reader function for peer_start_reader(); ud is a check_params. */
void check_replies(struct peer *p, void *ud);

#endif
