/* snbd-server: pure option payload parsers (see optparse.h).  Layouts from
 * proto.md "NBD_OPT_INFO and NBD_OPT_GO", "NBD_OPT_LIST_META_CONTEXT". */
#include <string.h>

#include "optparse.h"
#include "snbd/protocol.h"
#include "wire.h"

bool optparse_has_nul(const char *s, size_t len)
{
  return memchr(s, '\0', len) != NULL;
}

int optparse_info(const uint8_t *data, uint32_t len, struct opt_info_req *r,
                  const char **why)
{
  struct wire_cursor c = wire_cursor(data, len);
  memset(r, 0, sizeof *r);
  if (!wire_get_string(&c, &r->name, &r->namelen, NBD_MAX_STRING)) {
    *why = "export name length runs past the option or over 4096";
    return -1;
  }
  if (!wire_get_u16(&c, &r->nreq)) {
    *why = "missing the number of information requests";
    return -1;
  }
  if (c.left != (size_t)r->nreq * 2) {
    *why = "information requests do not fill the option exactly";
    return -1;
  }
  for (uint16_t i = 0; i < r->nreq; i++) {
    uint16_t info;
    wire_get_u16(&c, &info);
    r->want_name |= info == NBD_INFO_NAME;
    r->want_desc |= info == NBD_INFO_DESCRIPTION;
    r->want_block_size |= info == NBD_INFO_BLOCK_SIZE;
  }
  if (optparse_has_nul(r->name, r->namelen)) {
    *why = "export name contains NUL";
    return -1;
  }
  return 0;
}

int optparse_meta(const uint8_t *data, uint32_t len, struct opt_meta_req *r,
                  const char **why)
{
  static const char base_alloc[] = NBD_META_BASE_ALLOCATION;
  struct wire_cursor c = wire_cursor(data, len);
  memset(r, 0, sizeof *r);
  if (!wire_get_string(&c, &r->name, &r->namelen, NBD_MAX_STRING)) {
    *why = "export name length runs past the option or over 4096";
    return -1;
  }
  if (!wire_get_u32(&c, &r->nqueries) || r->nqueries > c.left / 4) {
    *why = "number of queries larger than the option allows";
    return -1;
  }
  for (uint32_t i = 0; i < r->nqueries; i++) {
    const char *q;
    uint32_t qlen;
    if (!wire_get_string(&c, &q, &qlen, NBD_MAX_STRING)) {
      *why = "a query runs past the option or over 4096";
      return -1;
    }
    if (qlen == sizeof base_alloc - 1 && memcmp(q, base_alloc, qlen) == 0)
      r->base_allocation = true;
    else if (qlen == 5 && memcmp(q, "base:", 5) == 0)
      r->base_wildcard = true;
  }
  if (c.left != 0) {
    *why = "trailing bytes after the queries";
    return -1;
  }
  if (optparse_has_nul(r->name, r->namelen)) {
    *why = "export name contains NUL";
    return -1;
  }
  return 0;
}
