/* fuzz: one in-process snbd server connection per fuzz input, shared by
 * fuzz_handshake and fuzz_request.
 *
 * Every run builds a fresh struct server with three memory exports and a
 * fresh file export (so no state, written data included, leaks from one
 * input into the next), then
 * serves one connection through the real conn_start() path: the
 * connection thread runs the handshake (TLS off) and, after GO or
 * EXPORT_NAME, transmission on the worker pool.  The client side is a
 * peer (peer.h) writing pre then the fuzz input, draining the replies.
 * The run ends when the server closes the connection, which it must do at
 * EOF: a server that waits past the end of its input shows up as a
 * libFuzzer timeout (the handshake deadline is set far beyond it). */
#ifndef SNBD_FUZZ_SERVER_H
#define SNBD_FUZZ_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check_replies.h"

/* Inputs are cut to this size (run.sh passes -max_len as well). */
#define FUZZ_MAX_INPUT (64 * 1024)

/* Exports of every run: "" (the default, 1 MiB, writable), "ro" (64 KiB,
 * read-only, with a description), "big" (1 TiB, sparse, writable) and
 * "file" (1 MiB, a fresh file in /dev/shm each run: large reads go out
 * with sendfile and writes land through a mapping of the file). */
#define FUZZ_EXPORT_RO   "ro"
#define FUZZ_EXPORT_BIG  "big"
#define FUZZ_EXPORT_FILE "file"

/* How the next runs serve requests (default: as snbd-server does). */
struct fuzz_server_mode {
  bool workers_only;     /* every request on the worker pool, even on RAM
                            exports (server.xmit_workers_only) */
  bool async;            /* every export behind the async filter: requests
                            complete from its thread (backends/async.c) */
};
void fuzz_server_set_mode(struct fuzz_server_mode m);

/* Once per process (LLVMFuzzerInitialize). */
void fuzz_server_init(void);
/* Serves one connection whose client sends pre then data (cut to
 * FUZZ_MAX_INPUT).  With check, the server's replies go through the
 * oracle of check_replies.h, else they are discarded. */
void fuzz_server_run(const uint8_t *pre, size_t npre, const uint8_t *data,
                     size_t ndata, const struct check_params *check);

#endif
