/* snbd-server: TLS and export policy, a pure function of (mode, session
 * state, option, export).  Unit-tested as a table (tests/unit/test_policy.c).
 * Rules from proto.md "TLS support" (NOTLS / FORCEDTLS / SELECTIVETLS). */
#include <string.h>
#include <strings.h>

#include "conn.h"

enum policy_verdict policy_option(const struct policy_session *s,
                                  uint32_t opt, bool known)
{
  (void)known;
  if (opt == NBD_OPT_STARTTLS) {
    /* NOTLS: ERR_POLICY, never TLS_REQD.  A second STARTTLS: INVALID. */
    if (s->mode == TLS_MODE_OFF || !s->have_creds)
      return POLICY_DENIED;
    if (s->tls)
      return POLICY_INVALID;
    return POLICY_OK;
  }
  if (opt == NBD_OPT_ABORT)
    return POLICY_OK;
  /* FORCEDTLS: every other option, known or not, gets TLS_REQD until TLS
   * is up (NBD_OPT_EXPORT_NAME is turned into a disconnect by the caller,
   * as it cannot be answered with an error). */
  if (s->mode == TLS_MODE_REQUIRE && !s->tls)
    return POLICY_TLS_REQD;
  /* proto.md NBD_OPT_EXTENDED_HEADERS: it "takes precedence over
   * structured replies" (a later STRUCTURED_REPLY gets
   * ERR_EXT_HEADER_REQD, NBD_OPT_STRUCTURED_REPLY), and once it is
   * negotiated "a client MUST NOT use NBD_OPT_EXPORT_NAME". */
  if (s->ext && opt == NBD_OPT_STRUCTURED_REPLY)
    return POLICY_EXT_HEADER_REQD;
  if (s->ext && opt == NBD_OPT_EXPORT_NAME)
    return POLICY_INVALID;
  return POLICY_OK;
}

static bool ieq_prefix(const char *s, const char *prefix)
{
  return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

bool policy_needs_cert_names(char *const *allow)
{
  for (char *const *a = allow; a && *a; a++)
    if (!ieq_prefix(*a, "psk:"))
      return true;
  return false;
}

/* allow entries: "psk:USER", "cn=NAME" (no comma: the certificate's
 * common name), or a full subject DN as GnuTLS prints it. */
bool policy_identity_allowed(const struct tls_peer *peer, char *const *allow)
{
  if (!allow)
    return true;
  if (!peer)
    return false;
  for (char *const *a = allow; *a; a++) {
    const char *id = *a;
    if (ieq_prefix(id, "psk:")) {
      if (peer->psk_username[0] && strcmp(id + 4, peer->psk_username) == 0)
        return true;
    }
    else if (!peer->has_cert)
      continue;
    else if (ieq_prefix(id, "cn=") && !strchr(id, ',')) {
      if (peer->cn[0] && strcmp(id + 3, peer->cn) == 0)
        return true;
    }
    else if (peer->dn[0] && strcmp(id, peer->dn) == 0)
      return true;
  }
  return false;
}

enum policy_verdict policy_export(const struct policy_session *s,
                                  const struct export *e)
{
  if (s->mode == TLS_MODE_REQUIRE && !s->tls)
    return POLICY_TLS_REQD;
  if (!e)
    /* SELECTIVETLS before TLS: answer TLS_REQD for unknown names too, so
     * a client that has not started TLS cannot enumerate exports (proto.md
     * NBD_OPT_INFO: "MAY reply with NBD_REP_ERR_TLS_REQD"). */
    return (s->mode == TLS_MODE_ON && !s->tls) ? POLICY_TLS_REQD
                                               : POLICY_UNKNOWN;
  if (e->tls_only && !s->tls)
    return s->mode == TLS_MODE_OFF ? POLICY_DENIED : POLICY_TLS_REQD;
  if (e->allow) {
    if (!s->tls)
      /* Identities exist only under TLS. */
      return s->mode == TLS_MODE_OFF ? POLICY_DENIED : POLICY_TLS_REQD;
    if (!policy_identity_allowed(s->peer, e->allow))
      return POLICY_DENIED;
  }
  return POLICY_OK;
}

/* An export this session may not use is answered exactly as a name that
 * does not exist (proto.md NBD_REP_ERR_UNKNOWN: "the requested export is
 * not available"), so the answers to INFO, GO and the META options are no
 * oracle of which exports exist (docs/security.md 34); the real reason is
 * only logged. */
enum policy_verdict policy_export_answer(enum policy_verdict v)
{
  return v == POLICY_DENIED ? POLICY_UNKNOWN : v;
}

const char *policy_reason(const struct policy_session *s,
                          const struct export *e, enum policy_verdict v)
{
  switch (v) {
  case POLICY_TLS_REQD:
    if (s->mode == TLS_MODE_REQUIRE || !e)
      return "TLS is required and the client did not start it";
    return e->tls_only ? "the export is tls-only and the client did not "
                         "start TLS"
                       : "the export has an allow= list, which needs TLS, "
                         "and the client did not start it";
  case POLICY_DENIED:
    if (e && e->tls_only && !s->tls)
      return "the export is tls-only and TLS is off";
    if (e && e->allow && !s->tls)
      return "the export has an allow= list and TLS is off";
    if (e && e->allow)
      return "the export's allow= list does not name this client";
    return "not permitted";
  case POLICY_UNKNOWN: return "no such export";
  case POLICY_INVALID: return "invalid in this state";
  case POLICY_UNSUP:   return "not supported";
  case POLICY_EXT_HEADER_REQD:
    return "structured replies asked for after extended headers";
  case POLICY_OK:      break;
  }
  return "allowed";
}

uint32_t policy_rep_error(enum policy_verdict v)
{
  switch (v) {
  case POLICY_TLS_REQD: return NBD_REP_ERR_TLS_REQD;
  case POLICY_DENIED:   return NBD_REP_ERR_POLICY;
  case POLICY_UNKNOWN:  return NBD_REP_ERR_UNKNOWN;
  case POLICY_INVALID:  return NBD_REP_ERR_INVALID;
  case POLICY_UNSUP:    return NBD_REP_ERR_UNSUP;
  case POLICY_EXT_HEADER_REQD: return NBD_REP_ERR_EXT_HEADER_REQD;
  case POLICY_OK:       break;
  }
  return NBD_REP_ERR_INVALID;
}
