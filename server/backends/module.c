/* snbd: loading backend modules.  The module (rbd.so: rbd.c and
 * rbd_cluster.c, linked with librbd and librados) takes the functions it
 * calls in the server from the program that loads it: snbd-server
 * exports them (server/module.syms, its dynamic symbol list), so the
 * module shares the server's log and error state instead of a copy.
 *
 * Loaded with RTLD_NOW, so a symbol the program does not export fails
 * the load, with the dynamic linker's message, when the first export
 * opens (at start or at a reload), never later in a request.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "log.h"
#include "module.h"
#include "rbd.h"

const char *backend_module_dir(void)
{
  static const char root[] = SNBD_BUILD_ROOT;
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    if (strncmp(exe, root, sizeof root - 1) == 0 && exe[sizeof root - 1] == '/')
      return SNBD_BUILD_ROOT "/server/backends";
  }
  return SNBD_MODULE_DIR;
}

struct module {
  const char *name;
  void *handle;
};
static struct module modules[] = { { "rbd", NULL } };
static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;

void *backend_module_sym(const char *name, const char *sym)
{
  struct module *m = NULL;
  for (size_t i = 0; i < sizeof modules / sizeof modules[0]; i++)
    if (strcmp(modules[i].name, name) == 0)
      m = &modules[i];
  if (m == NULL) {
    set_error(EINVAL, "no backend module \"%s\"", name);
    return NULL;
  }

  pthread_mutex_lock(&modules_lock);
  if (m->handle == NULL) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s.so", backend_module_dir(), name);
    m->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (m->handle == NULL) {
      /* dlerror() starts with the path when the file itself is wrong;
       * not when a library it needs is missing (librbd.so.1: ...). */
      const char *why = dlerror();
      size_t len = strlen(path);
      if (why == NULL)
        why = "unknown error";
      else if (strncmp(why, path, len) == 0 && strncmp(why + len, ": ", 2) == 0)
        why += len + 2;
      set_error_at(name, ENOENT, "cannot load the %s backend from %s: %s",
                   name, path, why);
    }
  }
  void *handle = m->handle;
  pthread_mutex_unlock(&modules_lock);
  if (handle == NULL)
    return NULL;

  void *p = dlsym(handle, sym);
  if (p == NULL)
    set_error_at(name, ENOENT, "the %s backend module has no %s", name, sym);
  return p;
}

/* The rbd: row of the registry.  The spec and keys are checked here, so a
 * mistyped export is refused without loading librbd. */
struct backend *backend_rbd_open(const char *args, bool readonly,
                                 const struct backend_keys *keys)
{
  struct rbd_spec sp;
  struct rbd_keys k;
  if (rbd_spec_parse(args, &sp) == -1 || rbd_read_keys(keys, &k) == -1)
    return NULL;
  struct backend *(*open)(const char *, const struct rbd_spec *,
                          const struct rbd_keys *, bool);
  *(void **)&open = backend_module_sym("rbd", "rbd_module_open");
  return open ? open(args, &sp, &k, readonly) : NULL;
}
