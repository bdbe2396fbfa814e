#!/usr/bin/python3
"""Hostile clients during option haggling (docs/security.md 3-9).

One plain-text server; each case speaks raw bytes to it and asserts the
exact reply the spec (doc/proto.md "Option types", "Fixed newstyle
negotiation") requires, or a clean disconnect where the spec or the
server's documented limits allow one.  After every case a fresh client
must still GO and READ, and at the end the server must exit 0 on SIGTERM
with no sanitizer report.
"""

import struct
import sys

from nbdraw import *                      # noqa: F401,F403 (test vocabulary)

EXPORTS = ("memory:16M", "b=memory:1M,description=second export",
           "ro=memory:1M,readonly")
UNKNOWN_OPTS = (0, OPT_PEEK_EXPORT, 12, 0x1234, 0x7FFFFFFF, 0x80000000,
                0xFFFFFFFF)
INFO_MAX = 4 + MAX_STRING + 2 + 2 * 65535   # the server's INFO/GO cap
META_MAX = 64 * 1024                        # the server's META cap


def fresh(srv):
    c = srv.connect()
    c.handshake()
    return c


def still_in_sync(c):
    """A well-formed option gets its normal answer: the stream is in step."""
    final, infos = c.info("")
    expect_eq("INFO \"\" after the bad option", rep_name(REP_ACK),
              rep_name(final.type))
    expect_eq("size of the default export", 16 * MiB,
              struct.unpack(">Q", infos[INFO_EXPORT][:8])[0])


def refusal_or_close(c, opt, what):
    """After an option the server cannot accept: either it closes without
    a byte, or it sends one error reply (and cannot be in step any more,
    as it has not read the claimed payload)."""
    try:
        r = c.read_option_reply()
    except Closed as e:
        check(not e.got, "%s: %d stray bytes before the close", what,
              len(e.got))
        return "closed"
    expect_eq("%s: reply is for" % what, opt_name(opt), opt_name(r.opt))
    check(r.is_error, "%s: got %s, expected an error or a close", what,
          rep_name(r.type))
    return rep_name(r.type)


# ---- option lengths (docs/security.md 5) ----

def case_option_length_ffffffff(srv):
    """2^32-1 claimed: never allocated, refused or dropped at once."""
    for opt in (0x1234, OPT_INFO, OPT_GO, OPT_LIST, OPT_STARTTLS,
                OPT_STRUCTURED_REPLY, OPT_LIST_META_CONTEXT,
                OPT_SET_META_CONTEXT, OPT_EXPORT_NAME, OPT_ABORT):
        srv.reset_peak_rss()
        base = srv.rss_kib()
        with fresh(srv) as c:
            c.send_option(opt, length=0xFFFFFFFF)
            c.send_partial(b"\xa5" * (32 * MiB))   # touch what was claimed
            res = refusal_or_close(c, opt, opt_name(opt))
            if opt == OPT_ABORT and res == rep_name(REP_ACK):
                continue
            srv.check_memory_bounded("%s with length 2^32-1" %
                                     opt_name(opt), base)


def case_option_length_64MiB_plus_1(srv):
    """Over the 64 MiB hard cap: dropped without reading it into memory."""
    for opt in (0x1234, OPT_INFO, OPT_SET_META_CONTEXT):
        srv.reset_peak_rss()
        base = srv.rss_kib()
        with fresh(srv) as c:
            c.send_option(opt, length=64 * MiB + 1)
            c.send_partial(b"\x5a" * (64 * MiB + 1))
            refusal_or_close(c, opt, opt_name(opt))
        srv.check_memory_bounded("%s of 64 MiB+1" % opt_name(opt), base)


def case_unknown_option_within_budget(srv):
    """63 MiB of unknown option are discarded in bounded chunks (UNSUP,
    stream in step); the next 2 MiB exceed the 64 MiB budget: drop."""
    srv.reset_peak_rss()
    base = srv.rss_kib()
    with fresh(srv) as c:
        c.expect_option(REP_ERR_UNSUP, 0x1234, b"\x00" * (63 * MiB))
        still_in_sync(c)
        srv.check_memory_bounded("63 MiB unknown option", base)
        c.send_option(0x1235, length=2 * MiB)
        c.send_partial(b"\x00" * (2 * MiB))
        c.expect_close("unknown option past the 64 MiB discard budget")


def case_known_option_too_long(srv):
    """Known options over their own caps are refused, payload consumed."""
    with fresh(srv) as c:
        for opt, n, want in (
                (OPT_INFO, INFO_MAX + 1, REP_ERR_INVALID),
                (OPT_GO, INFO_MAX + 1, REP_ERR_INVALID),
                (OPT_SET_META_CONTEXT, META_MAX + 1, REP_ERR_TOO_BIG),
                (OPT_LIST_META_CONTEXT, META_MAX + 1, REP_ERR_TOO_BIG)):
            payload = info_payload("") + b"\x00" * (n - 6)
            reps = c.expect_option(want, opt, payload)
            expect_eq("replies to an over-long %s" % opt_name(opt), 1,
                      len(reps))
        still_in_sync(c)


# ---- names (docs/security.md 6) ----

def case_export_name_4097(srv):
    with fresh(srv) as c:
        for opt in (OPT_INFO, OPT_GO):
            reps = c.option(opt, info_payload("a" * 4097))
            check(reps[-1].type in (REP_ERR_INVALID, REP_ERR_TOO_BIG),
                  "%s with a 4097-byte name: %s", opt_name(opt),
                  rep_name(reps[-1].type))
            check(len(reps) == 1, "NBD_REP_INFO before the error")
        # 4096 is allowed by the spec: an unknown export, not a length error
        c.expect_option(REP_ERR_UNKNOWN, OPT_INFO, info_payload("a" * 4096))
        c.structured_reply()
        reps = c.option(OPT_SET_META_CONTEXT,
                        meta_payload("a" * 4097, ["base:allocation"]))
        check(reps[-1].type in (REP_ERR_INVALID, REP_ERR_TOO_BIG),
              "SET_META_CONTEXT, 4097-byte name: %s", rep_name(reps[-1].type))
        still_in_sync(c)
    for n in (4097, 4096):          # EXPORT_NAME cannot error: must close
        with fresh(srv) as c:
            c.send_option(OPT_EXPORT_NAME, b"a" * n)
            c.expect_close("EXPORT_NAME of an unknown %d-byte name" % n)


def case_name_length_ffffffff(srv):
    with fresh(srv) as c:
        c.structured_reply()
        for nlen in (0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFA, 0x80000000):
            for opt in (OPT_INFO, OPT_GO):
                c.expect_option(REP_ERR_INVALID, opt,
                                u32(nlen) + b"abcdefgh" + u16(0),
                                what="%s, name length 0x%x" %
                                (opt_name(opt), nlen))
            for opt in (OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT):
                c.expect_option(REP_ERR_INVALID, opt,
                                u32(nlen) + b"abcdefgh" + u32(0),
                                what="%s, name length 0x%x" %
                                (opt_name(opt), nlen))
                c.expect_option(REP_ERR_INVALID, opt,
                                string("") + u32(1) + u32(nlen) + b"base:",
                                what="%s, query length 0x%x" %
                                (opt_name(opt), nlen))
        still_in_sync(c)


def case_name_longer_than_option(srv):
    with fresh(srv) as c:
        c.structured_reply()
        bad = [u32(100) + b"ab" + u16(0),         # name runs past the end
               u32(2) + b"ab",                    # no room for the count
               u32(3) + b"ab" + u16(0),           # eats a count byte
               b"\x00\x00\x00", b""]              # shorter than a length
        for payload in bad:
            for opt in (OPT_INFO, OPT_GO):
                c.expect_option(REP_ERR_INVALID, opt, payload,
                                what="%s %r" % (opt_name(opt), payload))
        for payload in (u32(50) + b"b" + u32(0), u32(1) + b"b" + u32(1),
                        string("b") + u32(1) + u32(20) + b"base:"):
            for opt in (OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT):
                c.expect_option(REP_ERR_INVALID, opt, payload,
                                what="%s %r" % (opt_name(opt), payload))
        still_in_sync(c)


def case_info_requests_past_end(srv):
    with fresh(srv) as c:
        for payload in (string("") + u16(5) + u16(0) + u16(1),
                        string("") + u16(0xFFFF),
                        string("b") + u16(1) + b"\x00\x01\x02",
                        string("") + u16(0) + b"\x00\x03"):
            for opt in (OPT_INFO, OPT_GO):
                reps = c.expect_option(REP_ERR_INVALID, opt, payload,
                                       what="%s %r" % (opt_name(opt),
                                                       payload))
                expect_eq("replies", 1, len(reps))
        c.expect_option(REP_ERR_INVALID, OPT_LIST_META_CONTEXT,
                        string("") + u32(1000))
        still_in_sync(c)


def case_nul_in_names(srv):
    with fresh(srv) as c:
        c.structured_reply()
        for name in (b"b\x00", b"\x00", b"\x00b", b"b\x00ro"):
            for opt in (OPT_INFO, OPT_GO):
                reps = c.expect_option(REP_ERR_INVALID, opt,
                                       info_payload(name),
                                       what="%s %r" % (opt_name(opt), name))
                expect_eq("replies", 1, len(reps))
            for opt in (OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT):
                c.expect_option(REP_ERR_INVALID, opt,
                                meta_payload(name, ["base:allocation"]),
                                what="%s %r" % (opt_name(opt), name))
        still_in_sync(c)
    for name in (b"b\x00", b"\x00"):
        with fresh(srv) as c:
            c.send_option(OPT_EXPORT_NAME, name)
            c.expect_close("EXPORT_NAME %r" % name)


# ---- counts, unknown options, flags (docs/security.md 5, 9) ----

def case_1100_options(srv):
    """1024 options are answered; the 1025th drops the client."""
    with fresh(srv) as c:
        for i in range(1100):
            opt = (0x1234, OPT_LIST, OPT_INFO)[i % 3]
            payload = info_payload("") if opt == OPT_INFO else b""
            if i < 1024:
                c.option(opt, payload)
                continue
            c.send_partial(option_bytes(opt, payload))
            c.expect_close("option number %d" % (i + 1))
            return
    raise TestFailure("unreachable")


def case_unknown_options_stay_in_sync(srv):
    with fresh(srv) as c:
        for opt in UNKNOWN_OPTS:
            for n in (0, 1, 255, 70000):
                reps = c.expect_option(REP_ERR_UNSUP, opt,
                                       bytes((i * 7) & 0xFF for i in range(n)),
                                       what="%s with %d bytes" %
                                       (opt_name(opt), n))
                expect_eq("replies", 1, len(reps))
                check(len(reps[0].data) <= 1024, "UNSUP message of %d bytes",
                      len(reps[0].data))
        # an option header hidden in an unknown option is only data
        reps = c.option(0x1234, option_bytes(OPT_GO, info_payload("")))
        expect_eq("option wrapping a GO", [rep_name(REP_ERR_UNSUP)],
                  [rep_name(r.type) for r in reps])
        c.structured_reply()
        size, _ = c.go("")
        expect_eq("size", 16 * MiB, size)
        expect_eq("read after unknown options", bytes(512), c.read(0, 512))
        c.disconnect()


def case_client_flags_unknown(srv):
    """"the server MUST drop the TCP connection if the client sets an
    unknown flag" (proto.md "Client flags")."""
    for cflags in (1 << 2, 1 << 31, 0xFFFFFFFF, 0xFFFFFFFC,
                   FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES | 1 << 5):
        with srv.connect() as c:
            c.greeting()
            c.send(u32(cflags))
            c.send_partial(option_bytes(OPT_GO, info_payload("")))
            c.expect_close("client flags 0x%08x" % cflags)


def case_non_fixed_newstyle(srv):
    """Clients without FIXED_NEWSTYLE may use EXPORT_NAME only; the reply
    is 10 bytes with NO_ZEROES, 134 without (proto.md "Newstyle")."""
    for cflags, no_zeroes in ((0, False), (FLAG_C_NO_ZEROES, True),
                              (FLAG_C_FIXED_NEWSTYLE, False)):
        with srv.connect() as c:
            c.handshake(cflags)
            size, eflags = c.export_name("", no_zeroes=no_zeroes)
            expect_eq("size", 16 * MiB, size)
            check(eflags & TF_HAS_FLAGS, "HAS_FLAGS clear")
            check(not eflags & TF_SEND_DF, "SEND_DF without structured")
            # a stray byte of padding would break the next reply's magic
            expect_eq("read after EXPORT_NAME", bytes(100), c.read(4096, 100))
            c.disconnect()
    with srv.connect() as c:
        c.handshake(0)
        c.send_partial(option_bytes(OPT_INFO, info_payload("")))
        c.expect_close("NBD_OPT_INFO from a non-fixed-newstyle client")
    with srv.connect() as c:
        c.handshake(0)
        c.send_option(OPT_EXPORT_NAME, b"nope")
        c.expect_close("EXPORT_NAME of an unknown export")


def case_options_with_forbidden_data(srv):
    """LIST and STRUCTURED_REPLY take no data: ERR_INVALID, payload read,
    and the option has no effect."""
    with fresh(srv) as c:
        for n in (1, 100, 5000):
            c.expect_option(REP_ERR_INVALID, OPT_LIST, b"x" * n)
            c.expect_option(REP_ERR_INVALID, OPT_STRUCTURED_REPLY, b"y" * n)
            # NOTLS: STARTTLS is refused by policy, never TLS_REQD (SEC. 3)
            c.expect_option(REP_ERR_POLICY, OPT_STARTTLS, b"z" * n)
        reps = c.expect_option(REP_ACK, OPT_LIST)
        listed = {}
        for r in reps[:-1]:
            expect_eq("LIST reply", rep_name(REP_SERVER), rep_name(r.type))
            n = struct.unpack(">I", r.data[:4])[0]
            check(n <= len(r.data) - 4, "name length %d past the reply", n)
            listed[r.data[4:4 + n]] = r.data[4 + n:]
        expect_eq("exports listed", {b"", b"b", b"ro"}, set(listed))
        expect_eq("description of b", b"second export", listed[b"b"])
        _, eflags = c.go("")
        check(not eflags & TF_SEND_DF,
              "SEND_DF: the refused STRUCTURED_REPLY took effect")
        r = c.cmd(CMD_READ, 0, 512)
        check(not r.structured and r.error == 0, "read after GO: %r", r)
        c.disconnect()


def case_starttls_notls(srv):
    """NOTLS: STARTTLS gets ERR_POLICY and the session goes on in clear."""
    with fresh(srv) as c:
        reps = c.expect_option(REP_ERR_POLICY, OPT_STARTTLS)
        expect_eq("replies", 1, len(reps))
        c.expect_option(REP_ERR_POLICY, OPT_STARTTLS)
        c.go("b")
        expect_eq("read", bytes(8), c.read(0, 8))


# ---- odd orders (docs/security.md 9) ----

def case_info_then_go_elsewhere(srv):
    with fresh(srv) as c:
        final, infos = c.info("b")
        expect_eq("INFO b", rep_name(REP_ACK), rep_name(final.type))
        expect_eq("size of b", MiB, struct.unpack(">Q",
                                                  infos[INFO_EXPORT][:8])[0])
        c.expect_option(REP_ERR_UNKNOWN, OPT_GO, info_payload("nope"))
        size, _ = c.go("")
        expect_eq("GO \"\" after INFO b: size", 16 * MiB, size)
        # past the end of b, inside "": the export really is ""
        expect_eq("read at 8 MiB", bytes(16), c.read(8 * MiB, 16))
        c.disconnect()


def case_meta_for_other_export(srv):
    """SET_META_CONTEXT on b, GO on "": no context for "" (proto.md
    NBD_OPT_SET_META_CONTEXT), so BLOCK_STATUS gets EINVAL."""
    with fresh(srv) as c:
        c.structured_reply()
        ctxs = c.set_meta("b")
        expect_eq("contexts on b", [b"base:allocation"], [n for _, n in ctxs])
        c.go("")
        c.expect_cmd(EINVAL, "BLOCK_STATUS, context set on another export",
                     CMD_BLOCK_STATUS, 0, 4096)
        expect_eq("read after", bytes(8), c.read(0, 8))
        c.disconnect()


def case_meta_before_structured(srv):
    with fresh(srv) as c:
        c.expect_option(REP_ERR_INVALID, OPT_SET_META_CONTEXT,
                        meta_payload("", ["base:allocation"]))
        c.structured_reply()
        c.go("")
        c.expect_cmd(EINVAL, "BLOCK_STATUS after a refused SET_META_CONTEXT",
                     CMD_BLOCK_STATUS, 0, 4096)
        c.disconnect()


def case_meta_replaced(srv):
    """A later SET_META_CONTEXT replaces the earlier one, even when it
    selects nothing or fails; other options in between change nothing."""
    with fresh(srv) as c:
        c.structured_reply()
        c.set_meta("")
        expect_eq("zero queries select nothing", [], c.set_meta("", []))
        expect_eq("base: selects nothing", [], c.set_meta("", ["base:"]))
        expect_eq("unknown namespace ignored", [],
                  c.set_meta("", ["x-nope:thing"]))
        c.go("")
        c.expect_cmd(EINVAL, "BLOCK_STATUS with no context selected",
                     CMD_BLOCK_STATUS, 0, 4096)
    with fresh(srv) as c:
        c.structured_reply()
        c.set_meta("")
        c.expect_option(REP_ERR_UNKNOWN, OPT_SET_META_CONTEXT,
                        meta_payload("nope", ["base:allocation"]))
        c.go("")
        c.expect_cmd(EINVAL, "BLOCK_STATUS after a failed SET_META_CONTEXT",
                     CMD_BLOCK_STATUS, 0, 4096)
    with fresh(srv) as c:
        c.structured_reply()
        ids = c.set_meta("")
        c.info("b")
        c.option(OPT_LIST)
        c.option(0x1234, b"junk")
        c.go("")
        r = c.expect_cmd(0, "BLOCK_STATUS", CMD_BLOCK_STATUS, 0, 4096)
        expect_eq("context id", ids[0][0], r.chunks[0].context)
        c.disconnect()


def case_list_meta(srv):
    with fresh(srv) as c:
        c.structured_reply()
        for queries in ((), ("base:",), ("base:allocation",)):
            reps = c.expect_option(REP_ACK, OPT_LIST_META_CONTEXT,
                                   meta_payload("", queries))
            got = [(struct.unpack(">I", r.data[:4])[0], r.data[4:])
                   for r in reps[:-1]]
            expect_eq("LIST_META_CONTEXT %r" % (queries,),
                      [(0, b"base:allocation")], got)
        reps = c.expect_option(REP_ACK, OPT_LIST_META_CONTEXT,
                               meta_payload("", ["x-nope:"]))
        expect_eq("unknown namespace", 1, len(reps))
        c.expect_option(REP_ERR_UNKNOWN, OPT_LIST_META_CONTEXT,
                        meta_payload("nope"))
        still_in_sync(c)


def case_abort(srv):
    for payload in (b"", b"ignored data" * 10):
        with fresh(srv) as c:
            c.option(OPT_LIST)
            reps = c.expect_option(REP_ACK, OPT_ABORT, payload)
            expect_eq("replies to ABORT", 1, len(reps))
            c.expect_close("after NBD_OPT_ABORT")


def case_bad_option_magic(srv):
    for magic in (IHAVEOPT ^ 1, REP_MAGIC, 0, (REQUEST_MAGIC << 32)):
        with fresh(srv) as c:
            c.send_option(OPT_LIST, magic=magic)
            c.expect_close("option magic 0x%x" % magic)
    with fresh(srv) as c:             # after a good option too
        c.option(OPT_LIST)
        c.send_option(OPT_INFO, info_payload(""), magic=NBDMAGIC)
        c.expect_close("bad magic after a good option")


def case_info_items(srv):
    with fresh(srv) as c:
        final, infos = c.info("b", [INFO_NAME, INFO_DESCRIPTION,
                                    INFO_BLOCK_SIZE, 0x7FFF])
        expect_eq("INFO b", rep_name(REP_ACK), rep_name(final.type))
        expect_eq("NBD_INFO_NAME", b"b", infos.get(INFO_NAME))
        expect_eq("NBD_INFO_DESCRIPTION", b"second export",
                  infos.get(INFO_DESCRIPTION))
        expect_eq("NBD_INFO_BLOCK_SIZE (min, pref, max)",
                  (1, 4096, MAX_PAYLOAD),
                  struct.unpack(">III", infos[INFO_BLOCK_SIZE]))
        check(0x7FFF not in infos, "reply to an unknown info request")
        final, infos = c.info("")
        check(INFO_NAME not in infos and INFO_DESCRIPTION not in infos,
              "name/description sent unasked: %r", sorted(infos))
        check(INFO_BLOCK_SIZE in infos, "BLOCK_SIZE not sent")
        final, infos = c.info("ro")
        size, eflags = struct.unpack(">QH", infos[INFO_EXPORT])
        check(eflags & TF_READ_ONLY, "ro: READ_ONLY clear")
        check(not eflags & (TF_SEND_TRIM | TF_SEND_WRITE_ZEROES |
                            TF_SEND_FAST_ZERO),
              "ro: write features advertised: 0x%x", eflags)


def case_error_messages_bounded(srv):
    """Error messages and logs never echo client bytes raw or unbounded
    (docs/security.md 7)."""
    evil = (b"\x1b[31m%s%n%x\r\n\x07" * 300)[:4096]
    with fresh(srv) as c:
        for opt in (OPT_INFO, OPT_GO):
            reps = c.expect_option(REP_ERR_UNKNOWN, opt, info_payload(evil))
            msg = reps[-1].data
            check(len(msg) <= 1024, "%s: %d-byte message", opt_name(opt),
                  len(msg))
            check(all(0x20 <= b < 0x7F for b in msg),
                  "%s: raw control bytes in the message: %r",
                  opt_name(opt), msg[:100])
        reps = c.expect_option(REP_ERR_UNSUP, 0x4321, evil * 4)
        check(b"\x1b" not in reps[-1].data and len(reps[-1].data) <= 1024,
              "UNSUP echoes the payload: %r", reps[-1].data[:100])
        still_in_sync(c)
    with fresh(srv) as c:
        c.send_option(OPT_EXPORT_NAME, evil)
        c.expect_close("EXPORT_NAME of an evil name")
    srv.check_alive()
    err = srv.stderr_bytes()
    check(b"\x1b" not in err and b"\x07" not in err,
          "server log has raw control bytes from a peer")
    check(max(len(x) for x in err.split(b"\n")) <= 4096,
          "a server log line is longer than 4096 bytes")


def main():
    with Server(*EXPORTS) as srv:
        failed = run_cases(cases_of(globals()), srv)
    if failed:
        log("%d case(s) failed", failed)
        sys.exit(1)


if __name__ == "__main__":
    main()
