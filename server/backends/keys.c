/* snbd: reading a backend's export keys (backend.h struct backend_keys).
 * A file of its own, below both registry.c, which hands the keys to a
 * backend, and the backends that read them, so neither calls the other
 * back.
 */
#include <string.h>

#include "backend.h"

const char *backend_key_get(const struct backend_keys *keys,
                            const char *name)
{
  const char *own = NULL, *fallback = NULL;
  for (size_t i = 0; keys && i < keys->n; i++)
    if (strcmp(keys->v[i].name, name) == 0)
      *(keys->v[i].fallback ? &fallback : &own) = keys->v[i].value;
  return own ? own : fallback;
}
