/* snbd: logging and the per-thread error convention.
 *
 * Functions that fail return -1 (or NULL) after calling set_error(), which
 * keeps a message and errno per thread (as libnbd's set_error does).  The
 * message is prefixed with the function where it happened.
 */
#ifndef SNBD_LOG_H
#define SNBD_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <syslog.h>

enum log_target { LOG_TO_STDERR, LOG_TO_SYSLOG };

void log_init(const char *progname, enum log_target target, int verbose);
int log_verbose(void);
void log_msg(int prio, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
#define log_error(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) \
  do { if (log_verbose()) log_msg(LOG_DEBUG, __VA_ARGS__); } while (0)

/* Per-thread error: message and errno.  errnum 0 keeps the current errno. */
void set_error_at(const char *func, int errnum, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
#define set_error(errnum, ...) set_error_at(__func__, (errnum), __VA_ARGS__)
const char *get_error(void);
/* The same message without the function name: for people who run the
 * programs (an operator reading the server's log, a user of the tools),
 * and for wrapping in another message without piling up names. */
const char *error_message(void);
int get_errno(void);
void clear_error(void);

/* Quote bytes a peer sent, for a log or error message: printable ASCII is
 * copied, everything else becomes \xNN, and at most dstlen-1 bytes are
 * written (a trailing "..." marks truncation).  Always NUL-terminates. */
void quote_bytes(char *dst, size_t dstlen, const void *src, size_t len);

#endif
