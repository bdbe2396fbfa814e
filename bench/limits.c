/* limits: the physical ceilings that bench/limits.sh reports, each for
 * one core and a fixed time.
 *
 *   limits memcpy SECONDS   memcpy bandwidth, 64 MiB blocks (past caches)
 *   limits tcp SECONDS      one loopback TCP stream, 128 KiB writes, a
 *                           forked sender and this process receiving
 *   limits aead SECONDS     GnuTLS AES-128-GCM, AES-256-GCM and
 *                           CHACHA20-POLY1305 sealing 16 KiB records (the
 *                           largest TLS record), as a TLS sender does
 *
 * Each prints "NAME MiB/s" lines. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "bench.h"

#define MIB (1024.0 * 1024.0)

static void *must_alloc(size_t n)
{
  char *p = malloc(n);
  if (!p)
    bench_die("limits: out of memory");
  memset(p, 0x5a, n); /* fault every page in before timing */
  return p;
}

static void limit_memcpy(double seconds)
{
  const size_t block = 64u << 20;
  char *src = must_alloc(block), *dst = must_alloc(block);
  double start = bench_now(), now = start;
  uint64_t bytes = 0;
  while (now - start < seconds) {
    memcpy(dst, src, block);
    bytes += block;
    src[bytes % block] ^= 1; /* keep the copy from being elided */
    now = bench_now();
  }
  printf("memcpy %.0f\n", (double)bytes / MIB / (now - start));
  free(src);
  free(dst);
}

static void tcp_sender(int port, double seconds)
{
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = { .sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  if (s == -1 || connect(s, (struct sockaddr *)&a, sizeof a) == -1)
    _exit(1);
  const size_t n = 128u << 10;
  char *buf = must_alloc(n);
  double start = bench_now();
  while (bench_now() - start < seconds)
    if (write(s, buf, n) <= 0)
      _exit(1);
  _exit(0);
}

static int listen_loopback(int *port)
{
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = { .sin_family = AF_INET,
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  socklen_t len = sizeof a;
  if (s == -1 || bind(s, (struct sockaddr *)&a, sizeof a) == -1 ||
      listen(s, 1) == -1 || getsockname(s, (struct sockaddr *)&a, &len) == -1)
    bench_die("limits: listen: %s", strerror(errno));
  *port = ntohs(a.sin_port);
  return s;
}

static void limit_tcp(double seconds)
{
  int port, ls = listen_loopback(&port);
  pid_t pid = fork();
  if (pid == -1)
    bench_die("limits: fork: %s", strerror(errno));
  if (pid == 0)
    tcp_sender(port, seconds);
  int s = accept(ls, NULL, NULL);
  if (s == -1)
    bench_die("limits: accept: %s", strerror(errno));
  const size_t n = 128u << 10;
  char *buf = must_alloc(n);
  uint64_t bytes = 0;
  double start = bench_now();
  ssize_t r;
  while ((r = read(s, buf, n)) > 0)
    bytes += (uint64_t)r;
  double secs = bench_now() - start;
  int st;
  waitpid(pid, &st, 0);
  if (r < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    bench_die("limits: the TCP sender failed");
  printf("tcp %.0f\n", (double)bytes / MIB / secs);
  free(buf);
}

static void one_aead(gnutls_cipher_algorithm_t alg, double seconds)
{
  unsigned char keybuf[32] = { 1 }, nonce[12] = { 0 }, aad[13] = { 0 };
  gnutls_datum_t key = { keybuf, (unsigned)gnutls_cipher_get_key_size(alg) };
  gnutls_aead_cipher_hd_t h;
  if (gnutls_aead_cipher_init(&h, alg, &key) < 0)
    bench_die("limits: %s unavailable", gnutls_cipher_get_name(alg));
  const size_t rec = 16384, tag = 16;
  char *in = must_alloc(rec), *out = must_alloc(rec + tag);
  uint64_t bytes = 0, seq = 0;
  double start = bench_now(), now = start;
  while (now - start < seconds) {
    memcpy(nonce + 4, &seq, sizeof seq); /* a fresh nonce per record */
    seq++;
    size_t outlen = rec + tag;
    if (gnutls_aead_cipher_encrypt(h, nonce, sizeof nonce, aad, sizeof aad,
                                   tag, in, rec, out, &outlen) < 0)
      bench_die("limits: %s failed", gnutls_cipher_get_name(alg));
    bytes += rec;
    if ((seq & 63) == 0)
      now = bench_now();
  }
  now = bench_now();
  printf("%s %.0f\n", gnutls_cipher_get_name(alg),
         (double)bytes / MIB / (now - start));
  gnutls_aead_cipher_deinit(h);
  free(in);
  free(out);
}

static void limit_aead(double seconds)
{
  if (gnutls_global_init() < 0)
    bench_die("limits: gnutls_global_init failed");
  one_aead(GNUTLS_CIPHER_AES_128_GCM, seconds);
  one_aead(GNUTLS_CIPHER_AES_256_GCM, seconds);
  one_aead(GNUTLS_CIPHER_CHACHA20_POLY1305, seconds);
  gnutls_global_deinit();
}

int main(int argc, char **argv)
{
  if (argc != 3)
    bench_die("usage: limits memcpy|tcp|aead SECONDS");
  double seconds = bench_positive("SECONDS", argv[2]);
  if (seconds > 600)
    bench_die("limits: at most 600 seconds");
  signal(SIGPIPE, SIG_IGN);
  if (!strcmp(argv[1], "memcpy"))
    limit_memcpy(seconds);
  else if (!strcmp(argv[1], "tcp"))
    limit_tcp(seconds);
  else if (!strcmp(argv[1], "aead"))
    limit_aead(seconds);
  else
    bench_die("limits: unknown measurement %s", argv[1]);
  return 0;
}
