/* mkdata: write SIZE bytes of pseudo-random data to FILE, fast (the
 * kernel's generator is several times slower, and the copies only need
 * data with no runs of zeroes that a client could turn into holes).
 *
 *   mkdata FILE SIZE_BYTES */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "bench.h"

int main(int argc, char **argv)
{
  if (argc != 3)
    bench_die("usage: mkdata FILE SIZE_BYTES");
  double want = bench_positive("SIZE_BYTES", argv[2]);
  if (want > 1e12)
    bench_die("mkdata: at most 1 TB");
  uint64_t size = (uint64_t)want;
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd == -1)
    bench_die("mkdata: %s: %s", argv[1], strerror(errno));
  enum { CHUNK = 1 << 20 };
  static unsigned long long buf[CHUNK / 8];
  unsigned long long seed = 0x243F6A8885A308D3ULL;
  for (uint64_t done = 0; done < size;) {
    for (size_t i = 0; i < CHUNK / 8; i++)
      buf[i] = bench_rand(&seed) | 1; /* no zero word anywhere */
    size_t n = size - done < CHUNK ? (size_t)(size - done) : CHUNK;
    ssize_t w = write(fd, buf, n);
    if (w <= 0)
      bench_die("mkdata: %s: %s", argv[1], strerror(errno));
    done += (uint64_t)w;
  }
  if (close(fd) == -1)
    bench_die("mkdata: %s: %s", argv[1], strerror(errno));
  return 0;
}
