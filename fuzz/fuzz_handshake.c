/* fuzz: the server handshake.  The input is exactly what a client sends
 * after connecting (client flags, then options, then, if an option
 * reached transmission, requests), TLS off.  The same bytes can be piped
 * into `snbd-server -s` (fuzz/README.md, AFL++). */
#include <stddef.h>
#include <stdint.h>

#include "fuzz_server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  fuzz_server_init();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  fuzz_server_run(NULL, 0, data, size, NULL);
  return 0;
}
