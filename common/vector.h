/* snbd: a growable array of any element type.
 *
 *   DEFINE_VECTOR(name_list, char *);
 *   struct name_list names = VECTOR_INIT;
 *   if (name_list_append(&names, s) == -1) ... ENOMEM (errno set)
 *   for (size_t i = 0; i < names.len; i++) ... names.ptr[i]
 *   name_list_reset(&names);                 frees the array, not elements
 *
 * Growth doubles the capacity and checks every size computation for
 * overflow; name_list_reserve(&v, n) makes room for n more elements. */
#ifndef SNBD_VECTOR_H
#define SNBD_VECTOR_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/* Room for n more elements of size elem in *ptr (cap elements, len used):
 * 0, or -1 with errno ENOMEM. */
static inline int vector_reserve(void **ptr, size_t *cap, size_t len,
                                 size_t n, size_t elem)
{
  if (n <= *cap - len)
    return 0;
  if (n > SIZE_MAX / elem - len) {
    errno = ENOMEM;
    return -1;
  }
  size_t want = len + n;
  size_t ncap = *cap ? *cap : 8;
  while (ncap < want)
    ncap = ncap > SIZE_MAX / 2 ? want : ncap * 2;
  if (ncap > SIZE_MAX / elem)
    ncap = want;
  void *p = realloc(*ptr, ncap * elem);
  if (p == NULL) {
    errno = ENOMEM;
    return -1;
  }
  *ptr = p;
  *cap = ncap;
  return 0;
}

#define VECTOR_INIT { NULL, 0, 0 }

#define DEFINE_VECTOR(name, type)                                         \
  struct name { type *ptr; size_t len, cap; };                            \
  static inline __attribute__((unused)) int                              \
  name##_reserve(struct name *v, size_t n)                                \
  {                                                                       \
    void *p = v->ptr;                                                     \
    int rc = vector_reserve(&p, &v->cap, v->len, n, sizeof(type));        \
    v->ptr = p;                                                           \
    return rc;                                                            \
  }                                                                       \
  static inline __attribute__((unused)) int                              \
  name##_append(struct name *v, type elem)                                \
  {                                                                       \
    if (name##_reserve(v, 1) == -1)                                       \
      return -1;                                                          \
    v->ptr[v->len++] = elem;                                              \
    return 0;                                                             \
  }                                                                       \
  static inline __attribute__((unused)) void                             \
  name##_reset(struct name *v)                                            \
  {                                                                       \
    free(v->ptr);                                                         \
    v->ptr = NULL;                                                        \
    v->len = v->cap = 0;                                                  \
  }

#endif
