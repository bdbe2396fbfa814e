/* libsnbd, data layer: what the server told us about the export, checked
 * before it is believed (the handshake steps set it), and the getters
 * that report it to the caller.  Calls only the bottom (state.c). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "internal.h"

static bool is_pow2(uint32_t v)
{
  return v != 0 && (v & (v - 1)) == 0;
}

/* doc/proto.md "Block size constraints": minimum a power of 2 up to 64 KiB;
 * preferred a power of 2 at least max(minimum, 512); maximum a multiple of
 * the minimum (or 0xffffffff) and at least min(preferred, export size).
 * Anything else is refused (libnbd CVE-2023-5871 class).  Called once the
 * export size is known. */
int info_set_block_sizes(struct snbd_handle *h, uint32_t min, uint32_t pref,
                         uint32_t max)
{
  const char *why = NULL;
  if (!is_pow2(min) || min > 65536)
    why = "minimum is not a power of 2 up to 65536";
  else if (!is_pow2(pref) || pref < min || pref < 512)
    why = "preferred is not a power of 2 of at least max(minimum, 512)";
  else if (max != UINT32_MAX && max % min != 0)
    why = "maximum is not a multiple of the minimum";
  else if (max < pref && max < h->size)
    why = "maximum is smaller than both the preferred size and the export";
  if (why) {
    lib_error(EPROTO, "the server sent invalid block sizes (minimum %u, "
              "preferred %u, maximum %u): %s", min, pref, max, why);
    return -1;
  }
  h->bs_min = min;
  h->bs_pref = pref;
  h->bs_max = max;
  h->have_bs = true;
  return 0;
}

/* Export size and transmission flags, from NBD_INFO_EXPORT or the
 * NBD_OPT_EXPORT_NAME reply.  Sizes above INT64_MAX would turn negative
 * in every off_t the caller uses (QEMU CVE-2017-2630 class). */
int info_set_export(struct snbd_handle *h, uint64_t size, uint16_t eflags)
{
  if (size > INT64_MAX) {
    lib_error(EPROTO, "the server sent an export size of %llu bytes, "
              "larger than INT64_MAX", (unsigned long long)size);
    return -1;
  }
  if (!(eflags & NBD_FLAG_HAS_FLAGS))
    eflags = 0;
  /* Flags that depend on something not negotiated are ignored
   * (doc/proto.md "Transmission flags"). */
  if (!h->sr)
    eflags &= (uint16_t)~NBD_FLAG_SEND_DF;
  if (!(eflags & NBD_FLAG_SEND_WRITE_ZEROES))
    eflags &= (uint16_t)~NBD_FLAG_SEND_FAST_ZERO;
  h->size = size;
  h->eflags = eflags;
  h->have_info = true;
  return 0;
}

/* ---- Getters ---- */

static int info_ready(struct snbd_handle *h)
{
  if (!h->have_info) {
    lib_error(ENOTCONN, "no export information yet (connect first)");
    return -1;
  }
  return 0;
}

int64_t snbd_get_size(struct snbd_handle *h)
{
  API();
  SCOPED_LOCK(&h->lock);
  return info_ready(h) == 0 ? (int64_t)h->size : -1;
}

int snbd_get_export_flags(struct snbd_handle *h)
{
  API();
  SCOPED_LOCK(&h->lock);
  return info_ready(h) == 0 ? h->eflags : -1;
}

static int flag_getter(struct snbd_handle *h, uint16_t flag)
{
  SCOPED_LOCK(&h->lock);
  return info_ready(h) == 0 ? (h->eflags & flag) != 0 : -1;
}

#define FLAG_GETTER(fn, flag) \
  int fn(struct snbd_handle *h) { API(); return flag_getter(h, flag); }

FLAG_GETTER(snbd_is_read_only, NBD_FLAG_READ_ONLY)
FLAG_GETTER(snbd_is_rotational, NBD_FLAG_ROTATIONAL)
FLAG_GETTER(snbd_can_flush, NBD_FLAG_SEND_FLUSH)
FLAG_GETTER(snbd_can_fua, NBD_FLAG_SEND_FUA)
FLAG_GETTER(snbd_can_trim, NBD_FLAG_SEND_TRIM)
FLAG_GETTER(snbd_can_zero, NBD_FLAG_SEND_WRITE_ZEROES)
FLAG_GETTER(snbd_can_fast_zero, NBD_FLAG_SEND_FAST_ZERO)
FLAG_GETTER(snbd_can_df, NBD_FLAG_SEND_DF)
FLAG_GETTER(snbd_can_multi_conn, NBD_FLAG_CAN_MULTI_CONN)
FLAG_GETTER(snbd_can_cache, NBD_FLAG_SEND_CACHE)

int snbd_can_meta_context(struct snbd_handle *h, const char *name)
{
  API();
  SCOPED_LOCK(&h->lock);
  if (info_ready(h) == -1)
    return -1;
  for (int i = 0; i < h->nr_ctx; i++)
    if (strcmp(h->ctx[i].name, name) == 0)
      return 1;
  return 0;
}

/* Under h->lock: whether the handle got as far as negotiating, which
 * what the getters below report needs; ENOTCONN if not. */
static bool negotiated(struct snbd_handle *h)
{
  if (h->state != H_CREATED)
    return true;
  lib_error(ENOTCONN, "not connected");
  return false;
}

int snbd_get_structured_replies_negotiated(struct snbd_handle *h)
{
  API();
  SCOPED_LOCK(&h->lock);
  if (!negotiated(h))
    return -1;
  return h->sr;
}

int snbd_get_extended_headers_negotiated(struct snbd_handle *h)
{
  API();
  SCOPED_LOCK(&h->lock);
  if (!negotiated(h))
    return -1;
  return h->eh;
}

int snbd_get_nr_meta_contexts(struct snbd_handle *h)
{
  API();
  SCOPED_LOCK(&h->lock);
  return info_ready(h) == 0 ? h->nr_ctx : -1;
}

static char *dup_or_error(const char *s)
{
  char *r = strdup(s);
  if (!r)
    lib_error(errno, "strdup");
  return r;
}

char *snbd_get_meta_context(struct snbd_handle *h, int i)
{
  API();
  SCOPED_LOCK(&h->lock);
  if (i < 0 || i >= h->nr_ctx) {
    lib_error(EINVAL, "no metadata context number %d", i);
    return NULL;
  }
  return dup_or_error(h->ctx[i].name);
}

int64_t snbd_get_block_size(struct snbd_handle *h, enum snbd_block_size which)
{
  API();
  SCOPED_LOCK(&h->lock);
  if (info_ready(h) == -1)
    return -1;
  switch (which) {
  case SNBD_SIZE_MINIMUM: return h->have_bs ? h->bs_min : 1;
  case SNBD_SIZE_PREFERRED: return h->have_bs ? h->bs_pref : 4096;
  case SNBD_SIZE_MAXIMUM: return h->have_bs ? h->bs_max : DEFAULT_MAX_REQUEST;
  default:
    lib_error(EINVAL, "unknown block size %d", (int)which);
    return -1;
  }
}

char *snbd_get_canonical_export_name(struct snbd_handle *h)
{
  API();
  SCOPED_LOCK(&h->lock);
  if (info_ready(h) == -1)
    return NULL;
  return dup_or_error(h->canonical_name ? h->canonical_name : h->export_name);
}

char *snbd_get_export_description(struct snbd_handle *h)
{
  API();
  SCOPED_LOCK(&h->lock);
  if (info_ready(h) == -1)
    return NULL;
  if (!h->description) {
    lib_error(ENOENT, "the server sent no description");
    return NULL;
  }
  return dup_or_error(h->description);
}

char *snbd_get_protocol(struct snbd_handle *h)
{
  API();
  SCOPED_LOCK(&h->lock);
  if (!negotiated(h))
    return NULL;
  return dup_or_error(h->oldstyle ? "oldstyle"
                      : h->fixed_newstyle ? "newstyle-fixed" : "newstyle");
}

int snbd_get_tls_negotiated(struct snbd_handle *h)
{
  API();
  SCOPED_LOCK(&h->lock);
  return h->tls_active;
}

static char *tls_string(struct snbd_handle *h, size_t field)
{
  SCOPED_LOCK(&h->lock);
  if (!h->tls_active) {
    lib_error(ENOTCONN, "TLS was not negotiated");
    return NULL;
  }
  return dup_or_error((const char *)&h->peer + field);
}

char *snbd_get_tls_version(struct snbd_handle *h)
{
  API();
  return tls_string(h, offsetof(struct tls_peer, version));
}

char *snbd_get_tls_cipher(struct snbd_handle *h)
{
  API();
  return tls_string(h, offsetof(struct tls_peer, cipher));
}

char *snbd_get_tls_kx(struct snbd_handle *h)
{
  API();
  return tls_string(h, offsetof(struct tls_peer, kx));
}

int snbd_get_tls_session_resumed(struct snbd_handle *h)
{
  API();
  SCOPED_LOCK(&h->lock);
  if (!h->tls_active) {
    lib_error(ENOTCONN, "TLS was not negotiated");
    return -1;
  }
  return h->peer.resumed;
}

char *snbd_get_tls_peer(struct snbd_handle *h)
{
  API();
  pthread_mutex_lock(&h->lock);
  bool psk = h->tls_active && h->peer.psk_username[0];
  pthread_mutex_unlock(&h->lock);
  return tls_string(h, psk ? offsetof(struct tls_peer, psk_username)
                           : offsetof(struct tls_peer, dn));
}
