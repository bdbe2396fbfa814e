#!/usr/bin/python3
"""Every MUST of the TLS section, from raw sockets (docs/security.md
1, 3, 4, 8, 14, 27).  proto.md "TLS support": FORCEDTLS (--tls=require),
SELECTIVETLS (--tls=on with a tls-only export), NOTLS (--tls=off), and
NBD_OPT_STARTTLS ("the server MUST NOT preserve any negotiation state").
X.509 only: Python 3.11's ssl module cannot do PSK.
"""

import os
import ssl
import struct
import sys

from nbdraw import *                      # noqa: F401,F403 (test vocabulary)

# options a client may send before TLS, with payloads (FORCEDTLS must
# answer every one TLS_REQD and read its payload)
PRE_TLS_OPTIONS = [
    (OPT_LIST, b""), (OPT_LIST, b"junk"),
    (OPT_INFO, info_payload("")), (OPT_GO, info_payload("")),
    (OPT_INFO, info_payload("b", [INFO_NAME])),
    (OPT_GO, info_payload("nope")),
    (OPT_STRUCTURED_REPLY, b""),
    (OPT_LIST_META_CONTEXT, meta_payload("", ["base:"])),
    (OPT_SET_META_CONTEXT, meta_payload("", ["base:allocation"])),
    (OPT_PEEK_EXPORT, b"p" * 100), (OPT_EXTENDED_HEADERS, b""),
    (0x1234, bytes(range(256)) * 20), (0x7FFFFFFF, b"")]


def fresh(srv):
    c = srv.connect()
    c.handshake()
    return c


def tls(srv):
    """Handshake, STARTTLS, TLS up."""
    c = fresh(srv)
    c.starttls(srv.ctx)
    return c


def listed(c):
    reps = c.expect_option(REP_ACK, OPT_LIST)
    names = set()
    for r in reps[:-1]:
        n = struct.unpack(">I", r.data[:4])[0]
        names.add(r.data[4:4 + n].decode())
    return names


def handshake_must_fail_or_be_clean(c, ctx, what):
    """After STARTTLS's ACK with plain-text bytes injected behind it: the
    TLS handshake fails with no option reply in clear, or it succeeds and
    nothing injected was acted on (no unsolicited reply, and the session
    is still in option haggling)."""
    t = TlsBio(c.sock, ctx)
    try:
        t.handshake()
    except (ssl.SSLError, OSError, Closed):
        rest = c.read_until_eof()
        check(u64(REP_MAGIC) not in bytes(t.received) + rest,
              "%s: option reply in clear after a failed handshake", what)
        return "handshake failed"
    tc = Conn(BioSock(t), 5)
    tc.expect_silence(0.5)
    final, _ = tc.info("")
    expect_eq("%s: INFO after TLS" % what, rep_name(REP_ACK),
              rep_name(final.type))
    return "injected bytes ignored"


# ---- FORCEDTLS ----

def case_require_each_option_tls_reqd(srv):
    c = fresh(srv)
    with c:
        for opt, payload in PRE_TLS_OPTIONS:
            reps = c.option(opt, payload)
            expect_eq("%s before TLS" % opt_name(opt),
                      [rep_name(REP_ERR_TLS_REQD)],
                      [rep_name(r.type) for r in reps])
        # every payload was read: STARTTLS still parses
        c.starttls(srv.ctx)
        # "MUST NOT send NBD_REP_ERR_TLS_REQD ... if TLS has already been
        # initiated"
        expect_eq("LIST over TLS", {"", "b", "mine"}, listed(c))
        c.expect_option(REP_ERR_UNKNOWN, OPT_INFO, info_payload("nope"))
        c.expect_option(REP_ERR_UNSUP, 0x1234, b"x" * 100)
        c.expect_option(REP_ERR_UNSUP, OPT_PEEK_EXPORT)
        c.structured_reply()
        c.set_meta("b")
        c.go("b")
        expect_eq("read over TLS", bytes(64), c.read(0, 64))
        c.expect_cmd(0, "BLOCK_STATUS over TLS", CMD_BLOCK_STATUS, 0, 4096)
        c.disconnect()


def case_require_export_name_before_tls(srv):
    """"it MUST terminate the session" - and send no export data."""
    for cflags in (FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES, 0,
                   FLAG_C_NO_ZEROES):
        for name in (b"", b"b", b"nope"):
            with srv.connect() as c:
                c.handshake(cflags)
                c.send_option(OPT_EXPORT_NAME, name)
                c.expect_close("EXPORT_NAME %r before TLS (flags %d)" %
                               (name, cflags))


def case_require_starttls_twice(srv):
    with tls(srv) as c:
        reps = c.expect_option(REP_ERR_INVALID, OPT_STARTTLS)
        expect_eq("replies", 1, len(reps))
        c.go("")
        expect_eq("read", bytes(8), c.read(0, 8))
        c.disconnect()


def case_require_starttls_with_data(srv):
    with fresh(srv) as c:
        for n in (1, 7, 4096):
            c.expect_option(REP_ERR_INVALID, OPT_STARTTLS, b"d" * n)
        # the payload was consumed: a real STARTTLS works
        c.starttls(srv.ctx)
        c.expect_option(REP_ERR_INVALID, OPT_STARTTLS, b"again")
        c.go("")
        c.disconnect()


def case_require_abort_before_tls(srv):
    with fresh(srv) as c:
        c.expect_option(REP_ERR_TLS_REQD, OPT_LIST)
        c.expect_option(REP_ACK, OPT_ABORT)
        c.expect_close("after ABORT")


def case_require_injection_after_starttls(srv):
    """CVE-2021-3716: plain text sent behind STARTTLS is never acted on."""
    injected = [option_bytes(OPT_GO, info_payload("")),
                option_bytes(OPT_STRUCTURED_REPLY) +
                option_bytes(OPT_GO, info_payload("")),
                request_bytes(CMD_READ, 0, 512, cookie=1)]
    for i, inj in enumerate(injected):
        with fresh(srv) as c:
            c.send(option_bytes(OPT_STARTTLS) + inj)
            r = c.read_option_reply()
            expect_eq("reply to STARTTLS", rep_name(REP_ACK),
                      rep_name(r.type))
            log("  injection %d: %s", i, handshake_must_fail_or_be_clean(
                c, srv.ctx, "injection %d" % i))


def case_require_pipelined_over_tls(srv):
    """Options and requests sent in one TLS write: the server must read
    what GnuTLS already buffered, not wait on the socket for it."""
    with tls(srv) as c:
        c.send(option_bytes(OPT_STRUCTURED_REPLY) +
               option_bytes(OPT_SET_META_CONTEXT,
                            meta_payload("", ["base:allocation"])) +
               option_bytes(OPT_GO, info_payload("")) +
               request_bytes(CMD_WRITE, 0, 512, cookie=1, data=b"p" * 512) +
               request_bytes(CMD_READ, 0, 512, cookie=2) +
               request_bytes(CMD_BLOCK_STATUS, 0, 4096, cookie=3))
        for opt in (OPT_STRUCTURED_REPLY, OPT_SET_META_CONTEXT, OPT_GO):
            reps = c.read_option_replies(opt)
            expect_eq(opt_name(opt), rep_name(REP_ACK),
                      rep_name(reps[-1].type))
        c.structured = True
        c.pending = {1: [(CMD_WRITE, 0, 512)], 2: [(CMD_READ, 0, 512)],
                     3: [(CMD_BLOCK_STATUS, 0, 4096)]}
        for cookie in (1, 2, 3):
            expect_eq("request %d" % cookie, 0, c.reply(cookie).error)
        c.write(0, bytes(512))
        c.disconnect()


def case_require_refused_payloads_drained_over_tls(srv):
    """Refused option and WRITE payloads are read through TLS, so the TLS
    stream stays in step (docs/security.md 4)."""
    with tls(srv) as c:
        c.expect_option(REP_ERR_UNSUP, 0x1234, b"u" * MiB)
        c.expect_option(REP_ERR_INVALID, OPT_LIST, b"l" * 1000)
        c.structured_reply()
        c.go("")
        c.expect_cmd(EINVAL, "WRITE over the maximum, over TLS", CMD_WRITE,
                     0, MAX_PAYLOAD + 1, data=b"w" * (MAX_PAYLOAD + 1))
        c.expect_cmd(ENOSPC, "WRITE past the end, over TLS", CMD_WRITE,
                     MiB - 512, 4096, data=b"w" * 4096)
        expect_eq("read after", bytes(4096), c.read(MiB - 4096, 4096))
        c.disconnect()


def refusal_of(c, opt, name):
    """The replies to opt naming export `name`, the name masked out of
    the messages, as comparable tuples."""
    payload = {OPT_INFO: info_payload(name, [INFO_NAME]),
               OPT_GO: info_payload(name),
               OPT_LIST_META_CONTEXT: meta_payload(name),
               OPT_SET_META_CONTEXT: meta_payload(name, ["base:allocation"])}
    return [(rep_name(r.type), r.data.replace(name.encode(), b"NAME"))
            for r in c.option(opt, payload[opt])]


def case_require_identity_per_export(srv):
    """allow= lists: an export this certificate may not use is not listed,
    not described by INFO (no NBD_REP_INFO), and refused by GO, the META
    options and EXPORT_NAME (docs/security.md 8); the refusal is the very
    answer a name that does not exist gets, so it tells no one the export
    exists (docs/security.md 34), and the log says why."""
    with tls(srv) as c:
        names = listed(c)
        check("mine" in names and "theirs" not in names, "LIST: %r", names)
        c.structured_reply()
        for opt in (OPT_INFO, OPT_GO, OPT_LIST_META_CONTEXT,
                    OPT_SET_META_CONTEXT):
            got = refusal_of(c, opt, "theirs")
            expect_eq("%s on a forbidden export" % opt_name(opt),
                      [rep_name(REP_ERR_UNKNOWN)], [t for t, _ in got])
            expect_eq("%s: forbidden and unknown exports answered alike"
                      % opt_name(opt), refusal_of(c, opt, "n0such"), got)
        srv.wait_for("the real reason in the log", lambda:
                     'of export "theirs" refused: the export\'s allow= list '
                     'does not name this client' in srv.stderr())
        c.set_meta("mine")
        c.go("mine")
        c.expect_cmd(0, "BLOCK_STATUS on mine", CMD_BLOCK_STATUS, 0, 4096)
        c.disconnect()
    with tls(srv) as c:
        c.send_option(OPT_EXPORT_NAME, b"theirs")
        c.expect_close("EXPORT_NAME on a forbidden export")


# ---- SELECTIVETLS ----

def case_selective_info_go_tls_only(srv):
    with fresh(srv.sel) as c:
        for opt in (OPT_INFO, OPT_GO):
            reps = c.option(opt, info_payload("secret", [INFO_NAME,
                                                         INFO_DESCRIPTION]))
            # no NBD_REP_INFO before it (docs/security.md 8)
            expect_eq("%s secret in clear" % opt_name(opt),
                      [rep_name(REP_ERR_TLS_REQD)],
                      [rep_name(r.type) for r in reps])
            reps = c.option(opt, info_payload("nope"))
            check(reps[-1].type in (REP_ERR_TLS_REQD, REP_ERR_UNKNOWN) and
                  len(reps) == 1, "%s on an unknown export: %r",
                  opt_name(opt), reps)
        final, _ = c.info("")
        expect_eq("INFO on the plain export", rep_name(REP_ACK),
                  rep_name(final.type))
        c.go("")
        expect_eq("read in clear", bytes(16), c.read(0, 16))
        c.disconnect()


def case_selective_list(srv):
    with fresh(srv.sel) as c:
        expect_eq("LIST in clear", {""}, listed(c))
        c.starttls(srv.ctx)
        expect_eq("LIST over TLS", {"", "secret"}, listed(c))
        c.go("secret")
        expect_eq("read secret over TLS", bytes(16), c.read(0, 16))
        c.disconnect()


def case_selective_export_name(srv):
    with fresh(srv.sel) as c:
        c.send_option(OPT_EXPORT_NAME, b"secret")
        c.expect_close("EXPORT_NAME secret in clear")
    with fresh(srv.sel) as c:
        c.export_name("")
        expect_eq("read after EXPORT_NAME \"\"", bytes(16), c.read(0, 16))
        c.disconnect()


def case_selective_tls_reqd_only_for_info_go(srv):
    """"The server MUST NOT send NBD_REP_ERR_TLS_REQD in response to any
    option other than NBD_OPT_INFO, NBD_OPT_GO and NBD_OPT_EXPORT_NAME"
    (proto.md SELECTIVETLS mode)."""
    wrong = []
    with fresh(srv.sel) as c:
        c.structured_reply()
        for opt, payload in [
                (OPT_LIST, b""), (OPT_LIST, b"x"), (0x1234, b"y" * 50),
                (OPT_LIST_META_CONTEXT, meta_payload("")),
                (OPT_LIST_META_CONTEXT, meta_payload("secret")),
                (OPT_SET_META_CONTEXT, meta_payload("secret",
                                                    ["base:allocation"])),
                (OPT_LIST_META_CONTEXT, meta_payload("nope")),
                (OPT_SET_META_CONTEXT, meta_payload("nope",
                                                    ["base:allocation"])),
                (OPT_STARTTLS, b"z")]:
            reps = c.option(opt, payload)
            if reps[-1].type == REP_ERR_TLS_REQD:
                wrong.append("%s %r" % (opt_name(opt), payload[:40]))
            check(not (payload.startswith(string("secret")) and
                       reps[-1].type == REP_ACK and len(reps) > 1),
                  "%s describes the tls-only export in clear",
                  opt_name(opt))
    check(not wrong, "NBD_REP_ERR_TLS_REQD in SELECTIVETLS mode for: %s",
          "; ".join(wrong))


def case_selective_state_forgotten(srv):
    """"the server MUST NOT preserve any negotiation state (such as a
    request for NBD_OPT_STRUCTURED_REPLY, or metadata contexts from
    NBD_OPT_SET_META_CONTEXT) issued before this command"."""
    with fresh(srv.sel) as c:              # structured replies forgotten
        c.structured_reply()
        c.set_meta("")
        c.starttls(srv.ctx)
        final, infos = c.info("")
        _, eflags = struct.unpack(">QH", infos[INFO_EXPORT])
        check(not eflags & TF_SEND_DF, "SEND_DF after STARTTLS: structured "
              "replies were kept")
        c.expect_option(REP_ERR_INVALID, OPT_SET_META_CONTEXT,
                        meta_payload("", ["base:allocation"]),
                        what="SET_META_CONTEXT needing structured replies")
        c.go("")
        r = c.cmd(CMD_READ, 0, 512)
        check(not r.structured and r.error == 0,
              "READ after STARTTLS: structured reply %r", r)
        c.disconnect()
    with fresh(srv.sel) as c:              # meta contexts forgotten
        c.structured_reply()
        c.set_meta("")
        c.starttls(srv.ctx)
        c.structured_reply()
        c.go("")
        c.expect_cmd(EINVAL, "BLOCK_STATUS with a context set before "
                     "STARTTLS", CMD_BLOCK_STATUS, 0, 4096)
        c.disconnect()


def case_selective_starttls_rules(srv):
    with fresh(srv.sel) as c:
        c.expect_option(REP_ERR_INVALID, OPT_STARTTLS, b"data" * 10)
        c.starttls(srv.ctx)
        c.expect_option(REP_ERR_INVALID, OPT_STARTTLS)
        c.go("secret")
        c.disconnect()
    for inj in (option_bytes(OPT_GO, info_payload("")),
                option_bytes(OPT_GO, info_payload("secret"))):
        with fresh(srv.sel) as c:
            c.send(option_bytes(OPT_STARTTLS) + inj)
            expect_eq("reply to STARTTLS", rep_name(REP_ACK),
                      rep_name(c.read_option_reply().type))
            log("  selective injection: %s", handshake_must_fail_or_be_clean(
                c, srv.ctx, "selective injection"))


# ---- NOTLS ----

def case_notls_starttls_policy(srv):
    """NOTLS: STARTTLS gets ERR_POLICY (or UNSUP); "The server MUST NOT
    respond to any option request with NBD_REP_ERR_TLS_REQD"."""
    with fresh(srv.off) as c:
        for payload in (b"", b"x" * 10, b""):
            reps = c.option(OPT_STARTTLS, payload)
            expect_eq("STARTTLS in NOTLS mode", 1, len(reps))
            check(reps[0].type in (REP_ERR_POLICY, REP_ERR_UNSUP) or
                  payload and reps[0].type == REP_ERR_INVALID,
                  "STARTTLS %r in NOTLS: %s", payload,
                  rep_name(reps[0].type))
        for opt, payload in PRE_TLS_OPTIONS:
            if opt == OPT_GO and payload == info_payload(""):
                continue
            reps = c.option(opt, payload)
            check(reps[-1].type != REP_ERR_TLS_REQD,
                  "%s in NOTLS mode got NBD_REP_ERR_TLS_REQD", opt_name(opt))
            if opt == OPT_STRUCTURED_REPLY and reps[-1].type == REP_ACK:
                c.structured = True
        c.go("")
        expect_eq("read in clear", bytes(8), c.read(0, 8))
        c.disconnect()


def case_server_still_serves_all_modes(srv):
    """The other servers still work (the per-case check covers FORCEDTLS)."""
    with fresh(srv.sel) as c:
        c.go("")
        c.disconnect()
    with fresh(srv.off) as c:
        c.go("")
        c.disconnect()


def tls_serves(srv):
    srv.check_alive()
    for s in (srv.sel, srv.off):
        s.check_alive()
    with tls(srv) as c:
        c.structured_reply()
        c.go("")
        expect_eq("read over TLS", bytes(512), c.read(0, 512))
        c.disconnect()


def main():
    try:
        d = make_x509(os.path.join(os.environ["TMPDIR"], "x509"))
    except SkipCase as e:
        skip(str(e))
    ctx = client_context(d)
    certs = ["--tls-certificates", d]
    with Server("memory:1M", "b=memory:1M", "mine=memory:1M,allow=cn=client1",
                "theirs=memory:1M,allow=cn=someone-else",
                args=["--tls=require"] + certs) as req, \
         Server("memory:1M", "secret=memory:1M,tls-only",
                args=["--tls=on"] + certs) as sel, \
         Server("memory:1M", args=["--tls=off"] + certs) as off:
        req.ctx = sel.ctx = ctx
        req.sel, req.off = sel, off
        failed = run_cases(cases_of(globals()), req, tls_serves)
    if failed:
        log("%d case(s) failed", failed)
        sys.exit(1)


if __name__ == "__main__":
    main()
