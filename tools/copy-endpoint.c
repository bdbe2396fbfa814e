/* snbd-copy: which kind of endpoint a command-line name is.  An NBD URI
 * (ep-nbd.c), null: (ep-null.c), else a file, block device or pipe
 * (ep-file.c), "-" being stdin or stdout. */
#include <string.h>
#include <strings.h>

#include "copy.h"

static bool is_uri(const char *s)
{
  static const char *const schemes[] = { "nbd://", "nbds://", "nbd+unix://",
                                         "nbds+unix://" };
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
    if (strncasecmp(s, schemes[i], strlen(schemes[i])) == 0)
      return true;
  return false;
}

int ep_open(struct copy *c, struct endpoint *e, const char *name, bool src)
{
  e->name = name;
  e->min_block = 1;
  e->max_block = UINT32_MAX;
  if (is_uri(name))
    return ep_nbd_open(c, e, src);
  if (strcmp(name, "null:") == 0)
    return ep_null_open(c, e, src);
  return ep_file_open(c, e, src);
}
