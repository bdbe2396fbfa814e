/* snbd: logging and the per-thread error convention (see log.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static const char *log_progname = "snbd";
static enum log_target log_target = LOG_TO_STDERR;
static int log_level_verbose;

static __thread char err_msg[1024];
static __thread int err_errno;
static __thread size_t err_where;   /* length of "func: " in err_msg */

void log_init(const char *progname, enum log_target target, int verbose)
{
  log_progname = progname;
  log_target = target;
  log_level_verbose = verbose;
  if (target == LOG_TO_SYSLOG)
    openlog(progname, LOG_PID, LOG_DAEMON);
}

int log_verbose(void)
{
  return log_level_verbose;
}

void log_msg(int prio, const char *fmt, ...)
{
  char line[2048];
  va_list ap;
  int saved = errno;

  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (log_target == LOG_TO_SYSLOG)
    syslog(prio, "%s", line);
  else {
    const char *level = prio <= LOG_ERR ? "error: "
                        : prio == LOG_WARNING ? "warning: "
                        : prio == LOG_DEBUG ? "debug: " : "";
    /* One fprintf per line: stderr is unbuffered and a single call keeps
     * lines from different threads whole. */
    fprintf(stderr, "%s: %s%s\n", log_progname, level, line);
  }
  errno = saved;
}

void set_error_at(const char *func, int errnum, const char *fmt, ...)
{
  char msg[sizeof err_msg - 64];
  va_list ap;

  if (errnum == 0)
    errnum = errno;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int n = snprintf(err_msg, sizeof err_msg, "%s: ", func);
  err_where = n > 0 && (size_t)n < sizeof err_msg ? (size_t)n : 0;
  snprintf(err_msg + err_where, sizeof err_msg - err_where, "%s", msg);
  err_errno = errnum;
  errno = errnum;
}

const char *get_error(void)
{
  return err_msg[0] ? err_msg : "no error";
}

const char *error_message(void)
{
  return err_msg[0] ? err_msg + err_where : "no error";
}

int get_errno(void)
{
  return err_errno;
}

void clear_error(void)
{
  err_msg[0] = '\0';
  err_errno = 0;
  err_where = 0;
}

void quote_bytes(char *dst, size_t dstlen, const void *src, size_t len)
{
  static const char hex[] = "0123456789abcdef";
  const unsigned char *s = src;
  size_t o = 0;

  if (dstlen == 0)
    return;
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = s[i];
    size_t need = (ch >= 0x20 && ch < 0x7f && ch != '\\' && ch != '"') ? 1
                  : (ch == '\\' || ch == '"') ? 2 : 4;
    if (o + need + 4 > dstlen) {        /* room for "..." and NUL */
      if (o + 4 <= dstlen) {
        memcpy(dst + o, "...", 3);
        o += 3;
      }
      break;
    }
    if (need == 1)
      dst[o++] = (char)ch;
    else if (need == 2) {
      dst[o++] = '\\';
      dst[o++] = (char)ch;
    }
    else {
      dst[o++] = '\\';
      dst[o++] = 'x';
      dst[o++] = hex[ch >> 4];
      dst[o++] = hex[ch & 15];
    }
  }
  dst[o] = '\0';
}
