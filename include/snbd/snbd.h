/* libsnbd: an NBD (Network Block Device) client library.
 *
 * One opaque handle per connection.  Configure it (export name, TLS, ...),
 * connect (URI, Unix socket, TCP, an open socket, or a spawned server),
 * then issue synchronous or asynchronous commands.  A handle may be used
 * from several threads at once.  See libsnbd(3).
 *
 * Conventions: functions returning int return -1 on error (0 or a value
 * >= 0 on success); functions returning a pointer return NULL on error.
 * After an error, snbd_get_error() and snbd_get_errno() describe it; both
 * are per thread.  Strings returned as char * are the caller's to free().
 *
 * Promise: with TLS required (SNBD_TLS_REQUIRE or an nbds:// URI),
 * nothing but NBD_OPT_STARTTLS is ever sent before TLS is established,
 * the server's certificate and host name are verified, and any refusal
 * ends the connection.
 */
#ifndef SNBD_SNBD_H
#define SNBD_SNBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct snbd_handle;

/* ---- Errors (per thread) ---- */
const char *snbd_get_error(void);   /* never NULL */
int snbd_get_errno(void);

/* ---- Handle lifetime ---- */
struct snbd_handle *snbd_create(void);
/* Orderly disconnect: waits for commands in flight, sends NBD_CMD_DISC
 * (or NBD_OPT_ABORT during negotiation) and closes the TLS session. */
int snbd_shutdown(struct snbd_handle *h);
/* Frees the handle.  Commands still in flight fail with ENOTCONN (their
 * completion callbacks run before this returns).  A spawned server
 * (snbd_connect_command) is waited for. */
void snbd_close(struct snbd_handle *h);

/* ---- Settings, before connecting ---- */
enum snbd_tls_mode {
  SNBD_TLS_DISABLE = 0,   /* never STARTTLS (the default) */
  SNBD_TLS_ALLOW = 1,     /* STARTTLS first, plain text if the server says no */
  SNBD_TLS_REQUIRE = 2,   /* STARTTLS first, any refusal ends the session */
};
int snbd_set_export_name(struct snbd_handle *h, const char *name);
char *snbd_get_export_name(struct snbd_handle *h);
int snbd_set_tls(struct snbd_handle *h, enum snbd_tls_mode mode);
int snbd_get_tls(struct snbd_handle *h);
/* Directory with ca-cert.pem (else the system CA), optional
 * client-cert.pem + client-key.pem, optional ca-crl.pem. */
int snbd_set_tls_certificates(struct snbd_handle *h, const char *dir);
/* A psktool key file; PSK is used instead of X.509 when set. */
int snbd_set_tls_psk_file(struct snbd_handle *h, const char *file);
/* PSK identity; the login name when unset. */
int snbd_set_tls_username(struct snbd_handle *h, const char *username);
/* The name the server certificate must carry; defaults to the TCP host
 * name.  Needed to verify a server reached over a Unix socket. */
int snbd_set_tls_hostname(struct snbd_handle *h, const char *hostname);
int snbd_set_tls_verify_peer(struct snbd_handle *h, bool verify); /* default true */
int snbd_set_tls_priority(struct snbd_handle *h, const char *priority);
/* TLS session resumption (default true): the handle offers a session this
 * process had with the same server address under the same host name and
 * credentials (a TLS 1.3 ticket, in a process-wide cache), which saves
 * most of a full handshake; the server authorises a resumed session as it
 * would a full one.  Unnamed sockets (snbd_connect_command, socketpairs)
 * never resume. */
int snbd_set_tls_session_resumption(struct snbd_handle *h, bool resume);
int snbd_set_request_structured_replies(struct snbd_handle *h, bool request);
/* Whether to ask for extended headers (NBD_OPT_EXTENDED_HEADERS: 64-bit
 * lengths, whole-export trim, zero, cache and block status in one
 * request).  Default true; a server that refuses gets structured replies
 * instead (if requested), as if this were false. */
int snbd_set_request_extended_headers(struct snbd_handle *h, bool request);
int snbd_get_request_extended_headers(struct snbd_handle *h);
/* Asks for a metadata context (e.g. "base:allocation") during negotiation;
 * snbd_can_meta_context() says whether the server agreed.  At most 16. */
int snbd_add_meta_context(struct snbd_handle *h, const char *name);
/* Whether snbd_connect_uri may read local files the URI names
 * (tls-certificates, tls-psk-file).  Default false: a URI from an
 * untrusted source must not make the program read files. */
int snbd_set_uri_allow_local_file(struct snbd_handle *h, bool allow);
/* Seconds the whole handshake (connect, TLS, negotiation) may take;
 * 0 = no limit.  Default 60. */
int snbd_set_handshake_timeout(struct snbd_handle *h, unsigned seconds);
/* Seconds a connection with commands in flight may go without a reply
 * from the server before it is ended: every command in flight then fails
 * with ETIMEDOUT, and so does the handle.  0 (the default) = wait for
 * ever.  A reply already begun must also arrive whole within this time. */
int snbd_set_request_timeout(struct snbd_handle *h, unsigned seconds);
/* Option mode: connecting stops after STARTTLS and structured-reply
 * negotiation, so snbd_list_exports / snbd_opt_* can be used. */
int snbd_set_opt_mode(struct snbd_handle *h, bool enable);

/* ---- Connecting (one of these, once per handle) ---- */
int snbd_connect_uri(struct snbd_handle *h, const char *uri);
int snbd_connect_unix(struct snbd_handle *h, const char *path);
int snbd_connect_tcp(struct snbd_handle *h, const char *host, const char *port);
/* Uses an already connected socket; the handle owns it from now on. */
int snbd_connect_socket(struct snbd_handle *h, int fd);
/* Runs argv[0] (searched in PATH) with a socket as its stdin and stdout,
 * for servers that speak NBD there (nbdkit -s, snbd-server -U -...). */
int snbd_connect_command(struct snbd_handle *h, char *const argv[]);

/* ---- Option mode (after connecting with snbd_set_opt_mode(h, true)) ---- */
typedef int (*snbd_list_cb)(void *user_data, const char *name,
                            const char *description);
/* Calls cb for each export the server lists; returns how many. */
int snbd_list_exports(struct snbd_handle *h, snbd_list_cb cb, void *user_data);
typedef int (*snbd_context_cb)(void *user_data, const char *name);
/* Calls cb for each metadata context the server offers on the export set
 * with snbd_set_export_name (all of them, not only those added with
 * snbd_add_meta_context); returns how many. */
int snbd_opt_list_meta_context(struct snbd_handle *h, snbd_context_cb cb,
                               void *user_data);
/* Asks about the export set with snbd_set_export_name without entering
 * transmission; the getters below then describe it. */
int snbd_opt_info(struct snbd_handle *h);
int snbd_opt_go(struct snbd_handle *h);     /* enter transmission */
int snbd_opt_abort(struct snbd_handle *h);  /* end negotiation politely */

/* ---- What was negotiated ---- */
int64_t snbd_get_size(struct snbd_handle *h);
int snbd_get_export_flags(struct snbd_handle *h);  /* NBD_FLAG_* bits */
int snbd_is_read_only(struct snbd_handle *h);      /* these: 1, 0, or -1 */
int snbd_is_rotational(struct snbd_handle *h);
int snbd_can_flush(struct snbd_handle *h);
int snbd_can_fua(struct snbd_handle *h);
int snbd_can_trim(struct snbd_handle *h);
int snbd_can_zero(struct snbd_handle *h);
int snbd_can_fast_zero(struct snbd_handle *h);
int snbd_can_df(struct snbd_handle *h);
int snbd_can_multi_conn(struct snbd_handle *h);
int snbd_can_cache(struct snbd_handle *h);
int snbd_can_meta_context(struct snbd_handle *h, const char *name);
/* 1 with structured replies or extended headers (which imply them). */
int snbd_get_structured_replies_negotiated(struct snbd_handle *h);
int snbd_get_extended_headers_negotiated(struct snbd_handle *h);
int snbd_get_nr_meta_contexts(struct snbd_handle *h);
char *snbd_get_meta_context(struct snbd_handle *h, int i);
enum snbd_block_size { SNBD_SIZE_MINIMUM, SNBD_SIZE_PREFERRED, SNBD_SIZE_MAXIMUM };
/* The server's constraint, or the default (1, 4096, 32 MiB) when it sent
 * none.  (Reads and writes larger than 32 MiB, or the server's maximum if
 * larger, up to 64 MiB, are split anyway.) */
int64_t snbd_get_block_size(struct snbd_handle *h, enum snbd_block_size which);
char *snbd_get_canonical_export_name(struct snbd_handle *h);
char *snbd_get_export_description(struct snbd_handle *h);  /* NULL if none */
char *snbd_get_protocol(struct snbd_handle *h);  /* "newstyle-fixed", ... */
int snbd_get_tls_negotiated(struct snbd_handle *h);
char *snbd_get_tls_version(struct snbd_handle *h);   /* "TLS1.3" */
char *snbd_get_tls_cipher(struct snbd_handle *h);    /* "AES-256-GCM" */
char *snbd_get_tls_kx(struct snbd_handle *h);        /* "ECDHE-RSA" */
/* The server's certificate subject DN, or the PSK identity used. */
char *snbd_get_tls_peer(struct snbd_handle *h);
/* 1 if the TLS handshake resumed an earlier session, 0 if it was a full
 * one, -1 (ENOTCONN) without TLS. */
int snbd_get_tls_session_resumed(struct snbd_handle *h);

/* ---- Commands ---- */
#define SNBD_CMD_FLAG_FUA       (1u << 0)
#define SNBD_CMD_FLAG_NO_HOLE   (1u << 1)
#define SNBD_CMD_FLAG_DF        (1u << 2)
#define SNBD_CMD_FLAG_REQ_ONE   (1u << 3)
#define SNBD_CMD_FLAG_FAST_ZERO (1u << 4)

#define SNBD_STATE_HOLE (1u << 0)   /* base:allocation flags */
#define SNBD_STATE_ZERO (1u << 1)

struct snbd_extent {
  uint64_t length;
  uint32_t flags;
};
/* Called once per metadata context in a block status reply, with the
 * extents starting at offset.  Set *error and return -1 to fail the
 * command. */
typedef int (*snbd_extent_cb)(void *user_data, const char *context,
                              uint64_t offset, const struct snbd_extent *ext,
                              size_t nr_ext, int *error);

/* Synchronous commands.  Requests larger than the server's maximum block
 * size are split.  A read that fails (or is refused) leaves its buffer
 * all zeroes, so it never holds stale or partial data; one that succeeds
 * is written once, with the data.  offset and count must respect
 * the server's minimum block size and the export size (else EINVAL). */
int snbd_pread(struct snbd_handle *h, void *buf, size_t count,
               uint64_t offset, uint32_t flags);
int snbd_pwrite(struct snbd_handle *h, const void *buf, size_t count,
                uint64_t offset, uint32_t flags);
int snbd_flush(struct snbd_handle *h, uint32_t flags);
int snbd_trim(struct snbd_handle *h, uint64_t count, uint64_t offset,
              uint32_t flags);
int snbd_zero(struct snbd_handle *h, uint64_t count, uint64_t offset,
              uint32_t flags);
int snbd_cache(struct snbd_handle *h, uint64_t count, uint64_t offset,
               uint32_t flags);
/* count is a hint (the server may describe less or, in the last extent,
 * more); at most 1 GiB is asked for in one request. */
int snbd_block_status(struct snbd_handle *h, uint64_t count, uint64_t offset,
                      snbd_extent_cb cb, void *user_data, uint32_t flags);

/* Asynchronous commands return a cookie (> 0) identifying the command,
 * or -1.  Many may be in flight on one handle.  When the command ends,
 * cb (if not NULL) is called from the library's reader thread with error
 * 0 or an errno value (snbd_get_error() in the callback has the message);
 * the command is then forgotten.  Without a callback, collect the result
 * with snbd_aio_wait or snbd_aio_command_completed.  Callbacks must not
 * block for long nor issue commands on the same handle. */
typedef void (*snbd_completion_cb)(void *user_data, int64_t cookie, int error);
int64_t snbd_aio_pread(struct snbd_handle *h, void *buf, size_t count,
                       uint64_t offset, snbd_completion_cb cb,
                       void *user_data, uint32_t flags);
int64_t snbd_aio_pwrite(struct snbd_handle *h, const void *buf, size_t count,
                        uint64_t offset, snbd_completion_cb cb,
                        void *user_data, uint32_t flags);
int64_t snbd_aio_flush(struct snbd_handle *h, snbd_completion_cb cb,
                       void *user_data, uint32_t flags);
int64_t snbd_aio_trim(struct snbd_handle *h, uint64_t count, uint64_t offset,
                      snbd_completion_cb cb, void *user_data, uint32_t flags);
int64_t snbd_aio_zero(struct snbd_handle *h, uint64_t count, uint64_t offset,
                      snbd_completion_cb cb, void *user_data, uint32_t flags);
int64_t snbd_aio_cache(struct snbd_handle *h, uint64_t count, uint64_t offset,
                       snbd_completion_cb cb, void *user_data, uint32_t flags);
/* extent_cb is called from the reader thread before cb. */
int64_t snbd_aio_block_status(struct snbd_handle *h, uint64_t count,
                              uint64_t offset, snbd_extent_cb extent_cb,
                              void *extent_user_data, snbd_completion_cb cb,
                              void *user_data, uint32_t flags);
/* Waits for a command issued without a callback: 0, or -1 with its error. */
int snbd_aio_wait(struct snbd_handle *h, int64_t cookie);
/* 1 done (and forgotten), 0 still running, -1 failed (and forgotten) or
 * unknown cookie. */
int snbd_aio_command_completed(struct snbd_handle *h, int64_t cookie);
/* Commands issued and not yet forgotten. */
int snbd_aio_in_flight(struct snbd_handle *h);

#ifdef __cplusplus
}
#endif

#endif /* SNBD_SNBD_H */
