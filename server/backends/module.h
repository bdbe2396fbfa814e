/* snbd: backends built as modules (module.c), loaded the first time an
 * export needs one, so a server that serves no such export never maps
 * their libraries (librbd and librados are 30 shared libraries and
 * 19 MB of resident memory).
 */
#ifndef SNBD_MODULE_H
#define SNBD_MODULE_H

/* The address of symbol sym in module name ("rbd": rbd.so), loaded now
 * if it is not yet; NULL with the error set (which file, and why the
 * dynamic linker refused it).  Modules are never unloaded. */
void *backend_module_sym(const char *name, const char *sym);

/* The directory the modules are loaded from: the build tree's
 * server/backends for a program run from inside the build tree (the
 * tests), else the installed one (LIBDIR/snbd). */
const char *backend_module_dir(void);

#endif
