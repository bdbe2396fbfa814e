/* fuzz: main() for harnesses built without libFuzzer (gcc, or clang
 * without the fuzzer runtime).  It runs LLVMFuzzerTestOneInput once over
 * every file named, and every regular file in every directory named, so
 * the committed corpus is a regression test on any build (fuzz/regress.sh
 * calls both kinds of binary the same way).  Arguments starting with '-'
 * are libFuzzer options and are ignored. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path)
{
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return -1;
  }
  size_t cap = 4096, n = 0;
  uint8_t *buf = malloc(cap);
  for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
    n += got;
    if (n == cap) {
      uint8_t *nb = realloc(buf, cap *= 2);
      if (!nb)
        free(buf);
      buf = nb;
    }
  }
  fclose(f);
  if (!buf) {
    fprintf(stderr, "%s: out of memory\n", path);
    return -1;
  }
  fprintf(stderr, "Running: %s (%zu bytes)\n", path, n);
  LLVMFuzzerTestOneInput(buf, n);
  free(buf);
  return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int run_dir(const char *dir, int *count)
{
  struct dirent **list;
  int n = scandir(dir, &list, NULL, by_name), rc = 0;
  if (n == -1) {
    perror(dir);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
      if (run_file(path) == -1)
        rc = -1;
      ++*count;
    }
    free(list[i]);
  }
  free(list);
  return rc;
}

int main(int argc, char **argv)
{
  int count = 0, rc = 0;
  if (LLVMFuzzerInitialize)
    LLVMFuzzerInitialize(&argc, &argv);
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (argv[i][0] == '-')
      continue;
    if (stat(argv[i], &st) == -1) {
      perror(argv[i]);
      rc = 1;
    }
    else if (S_ISDIR(st.st_mode))
      rc |= run_dir(argv[i], &count) == -1;
    else {
      rc |= run_file(argv[i]) == -1;
      count++;
    }
  }
  fprintf(stderr, "replay: %d input(s) run%s\n", count,
          rc ? ", some could not be read" : "");
  return rc;
}
