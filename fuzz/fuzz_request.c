/* fuzz: the server's transmission phase (request parser, validation,
 * dispatcher, backends) on memory exports and a file in RAM.
 *
 * Input: one mode byte, then requests.  The harness sends a valid
 * handshake chosen by the mode byte before them, so every other byte is a
 * request header or a WRITE payload:
 *   bit 0    NBD_OPT_STRUCTURED_REPLY
 *   bit 1    NBD_OPT_SET_META_CONTEXT base:allocation on the export
 *   bits 2-3 export: 0 the default (1 MiB), 1 "ro" (64 KiB,
 *            read-only), 2 "big" (1 TiB, sparse), 3 "file" (1 MiB, a
 *            file in /dev/shm: sendfile reads, writes into a mapping;
 *            read data overlapping a later write is not checked, see
 *            check_replies.c mask_later_writes)
 *   bit 4    NBD_OPT_EXPORT_NAME instead of NBD_OPT_GO (and no
 *            NBD_FLAG_C_NO_ZEROES, so the old 124 zero bytes are sent)
 *   bit 5    every request runs on the worker pool, none inline on the
 *            reader (the path of backends that may wait for a device)
 *   bit 6    every export behind the async filter: requests complete
 *            from another thread (the path of asynchronous backends;
 *            a sparse READ's later pieces queue behind later requests,
 *            so READ data overlapping a later write is not checked)
 *   bit 7    NBD_OPT_EXTENDED_HEADERS (after STRUCTURED_REPLY when bit 0
 *            is set too), so the requests are 32-byte extended ones and
 *            every reply an extended chunk; NBD_OPT_GO then, whatever
 *            bit 4 says (EXPORT_NAME is not allowed after it)
 * Every reply is checked by the oracle in check_replies.h (protocol rules
 * and the data read back). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_server.h"
#include "snbd/protocol.h"
#include "wire.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  fuzz_server_init();
  return 0;
}

static void put_option(struct wire_buf *b, uint32_t opt,
                       const struct wire_buf *payload)
{
  wire_put_u64(b, NBD_OPTS_MAGIC);
  wire_put_u32(b, opt);
  wire_put_u32(b, payload ? (uint32_t)payload->len : 0);
  if (payload)
    wire_put_bytes(b, payload->data, payload->len);
}

/* The client's side of a handshake that ends in transmission. */
static void build_handshake(struct wire_buf *b, uint8_t mode)
{
  static const char *const names[] = { "", FUZZ_EXPORT_RO, FUZZ_EXPORT_BIG,
                                       FUZZ_EXPORT_FILE };
  const char *name = names[(mode >> 2) & 3];
  bool ext = mode & 0x80;
  bool export_name = (mode & 0x10) && !ext;
  struct wire_buf p;

  wire_buf_init(&p);
  wire_put_u32(b, NBD_FLAG_C_FIXED_NEWSTYLE |
                  (export_name ? 0 : NBD_FLAG_C_NO_ZEROES));
  if (mode & 1)
    put_option(b, NBD_OPT_STRUCTURED_REPLY, NULL);
  if (ext)
    put_option(b, NBD_OPT_EXTENDED_HEADERS, NULL);
  if (mode & 2) {
    wire_put_string(&p, name, strlen(name));
    wire_put_u32(&p, 1);
    wire_put_string(&p, NBD_META_BASE_ALLOCATION,
                    strlen(NBD_META_BASE_ALLOCATION));
    put_option(b, NBD_OPT_SET_META_CONTEXT, &p);
  }
  wire_buf_reset(&p);
  if (export_name) {
    wire_put_bytes(&p, name, strlen(name));
    put_option(b, NBD_OPT_EXPORT_NAME, &p);
  }
  else {
    wire_put_string(&p, name, strlen(name));
    wire_put_u16(&p, 0);                  /* no information requests */
    put_option(b, NBD_OPT_GO, &p);
  }
  wire_buf_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  uint8_t mode = data[0];
  bool ext = mode & 0x80, export_name = (mode & 0x10) && !ext;
  size_t n = size - 1 < FUZZ_MAX_INPUT ? size - 1 : FUZZ_MAX_INPUT;
  struct check_params check = {
    .requests = data + 1, .nrequests = n,
    .structured = mode & 1, .extended = ext, .meta = mode & 2,
    .export_name = export_name, .no_zeroes = !export_name,
    .zero_copy_reads = ((mode >> 2) & 3) == 3 || (mode & 0x40),
    .unordered_status = mode & 0x40,
  };
  fuzz_server_set_mode((struct fuzz_server_mode){
    .workers_only = mode & 0x20, .async = mode & 0x40 });
  struct wire_buf hs;
  wire_buf_init(&hs);
  build_handshake(&hs, mode);
  if (!hs.oom)
    fuzz_server_run(hs.data, hs.len, data + 1, n, &check);
  wire_buf_free(&hs);
  return 0;
}
