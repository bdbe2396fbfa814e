/* Small helpers shared by the benchmark programs in bench/ (not part of
 * snbd itself: these are clients and measuring tools, built by
 * bench/Makefile, never by the main Meson build). */
#ifndef SNBD_BENCH_H
#define SNBD_BENCH_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

__attribute__((format(printf, 1, 2), noreturn))
static inline void bench_die(const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

/* A positive number from the command line, or die naming the option. */
static inline double bench_positive(const char *what, const char *s)
{
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end != '\0' || !(v > 0) || v > 1e15)
    bench_die("%s: not a positive number: %s", what, s);
  return v;
}

/* xorshift64*: fast, good enough to spread offsets; not for secrets. */
static inline unsigned long long bench_rand(unsigned long long *s)
{
  unsigned long long x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

#endif
