/* snbd-server: pure parsers of option payloads (no I/O, no allocation),
 * unit-tested with truncated and oversized input (tests/unit/test_optparse.c).
 * Strings point into the caller's buffer and are not NUL-terminated. */
#ifndef SNBD_OPTPARSE_H
#define SNBD_OPTPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* NBD_OPT_INFO / NBD_OPT_GO: name, then a u16 count of u16 requests,
 * exactly filling the option. */
struct opt_info_req {
  const char *name;
  uint32_t namelen;
  uint16_t nreq;
  bool want_name, want_desc, want_block_size;
};

/* NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. */
struct opt_meta_req {
  const char *name;
  uint32_t namelen;
  uint32_t nqueries;
  bool base_allocation;   /* "base:allocation" asked for */
  bool base_wildcard;     /* "base:" asked for (LIST only) */
};

/* 0 on success; -1 with *why set to a static reason when malformed. */
int optparse_info(const uint8_t *data, uint32_t len, struct opt_info_req *r,
                  const char **why);
int optparse_meta(const uint8_t *data, uint32_t len, struct opt_meta_req *r,
                  const char **why);
bool optparse_has_nul(const char *s, size_t len);

#endif
