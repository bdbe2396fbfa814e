#!/usr/bin/python3
"""Extended headers (docs/security.md 43), from the spec's text.

No peer on Debian 12 speaks NBD_OPT_EXTENDED_HEADERS, so each case speaks
raw bytes and checks one MUST or SHOULD of doc/proto.md on the
extension-ext-header branch (the section is quoted in each case).  After
every case the server must be alive and serve a fresh compact client and
a fresh extended one (ext_serves).
"""

import os
import struct
import sys

from nbdraw import *                      # noqa: F401,F403 (test vocabulary)

HUGE = 16 << 40                           # 16 TiB, sparse
FILE_SIZE = 64 * MiB
EXPORTS = ("memory:16M", "huge=memory:16T", "ro=memory:1M,readonly")


def fresh(srv):
    c = srv.connect()
    c.handshake()
    return c


def ext_client(srv, name="", meta=False):
    return srv.client(name, meta=meta, ext=True)


def in_sync(c, off=0):
    """A good request right after the bad one gets its normal answer."""
    r = c.cmd(CMD_READ, off, 512)
    expect_eq("read after the bad request: error", 0, r.error)
    expect_eq("read after the bad request: length", 512, len(r.data))


def bs_chunks(r):
    return [ch for ch in r.chunks
            if ch.type in (RT_BLOCK_STATUS, RT_BLOCK_STATUS_EXT)]


def ext_serves(srv):
    """The server lives and serves fresh clients in both header modes."""
    srv.check_serves()
    with ext_client(srv) as c:
        in_sync(c)
        c.disconnect()


# ---- negotiation ----

def case_option_acked(srv):
    """NBD_OPT_EXTENDED_HEADERS: "NBD_REP_ACK: Extended headers have been
    negotiated; ... the server MUST use the 32-byte extended reply
    header"."""
    with fresh(srv) as c:
        reps = c.expect_option(REP_ACK, OPT_EXTENDED_HEADERS)
        expect_eq("ACK payload", b"", reps[-1].data)
        c.go("")
        check(c.eflags & TF_SEND_DF, "NBD_FLAG_SEND_DF clear under extended "
              "headers")
        check(not c.eflags & TF_BLOCK_STATUS_PAYLOAD,
              "NBD_FLAG_BLOCK_STATUS_PAYLOAD without a meta context")
        in_sync(c)
        c.disconnect()


def case_option_with_data(srv):
    """"The client MUST NOT send any additional data with the option, and
    the server SHOULD reject a request that includes data with
    NBD_REP_ERR_INVALID": the data is consumed, and headers stay compact."""
    with fresh(srv) as c:
        c.expect_option(REP_ERR_INVALID, OPT_EXTENDED_HEADERS, b"x" * 100)
        check(not c.ext, "negotiated despite the error")
        c.go("")                      # the stream is in step
        in_sync(c)                    # compact requests and replies
        c.disconnect()


def case_structured_after_extended(srv):
    """NBD_OPT_STRUCTURED_REPLY: "NBD_REP_ERR_EXT_HEADER_REQD: The client
    has already successfully negotiated extended headers, which takes
    precedence over this option"; the session stays extended."""
    with fresh(srv) as c:
        c.extended_headers()
        c.expect_option(REP_ERR_EXT_HEADER_REQD, OPT_STRUCTURED_REPLY)
        c.go("")
        in_sync(c)
        c.disconnect()


def case_extended_after_structured(srv):
    """NBD_OPT_EXTENDED_HEADERS: "A client MAY request structured replies
    first"; "When successful, this option takes precedence over
    structured replies"."""
    with fresh(srv) as c:
        c.structured_reply()
        c.extended_headers()
        c.set_meta("")
        c.go("")
        r = c.cmd(CMD_BLOCK_STATUS, 0, 4096)
        expect_eq("BLOCK_STATUS: error", 0, r.error)
        expect_eq("status chunk types", [RT_BLOCK_STATUS_EXT],
                  [ch.type for ch in bs_chunks(r)])
        c.disconnect()


def case_export_name_after_extended(srv):
    """NBD_OPT_EXTENDED_HEADERS: "Once extended headers are successfully
    requested, a client MUST NOT use NBD_OPT_EXPORT_NAME"; it cannot be
    answered with an error, so the server ends the session."""
    with fresh(srv) as c:
        c.extended_headers()
        c.send_option(OPT_EXPORT_NAME, b"")
        c.expect_close("NBD_OPT_EXPORT_NAME after extended headers")


def case_meta_context_without_structured(srv):
    """NBD_OPT_SET_META_CONTEXT: "This option MUST NOT be requested unless
    structured replies or extended headers have been negotiated first":
    extended headers alone are enough, and NBD_FLAG_BLOCK_STATUS_PAYLOAD
    is offered only then ("MUST NOT advertise this bit unless the client
    successfully negotiates extended headers")."""
    with fresh(srv) as c:
        c.extended_headers()
        ctxs = c.set_meta("")
        expect_eq("contexts", [(1, b"base:allocation")], ctxs)
        c.go("")
        check(c.eflags & TF_BLOCK_STATUS_PAYLOAD,
              "NBD_FLAG_BLOCK_STATUS_PAYLOAD not offered")
        c.disconnect()
    with srv.client(meta=True) as c:          # structured only
        check(not c.eflags & TF_BLOCK_STATUS_PAYLOAD,
              "NBD_FLAG_BLOCK_STATUS_PAYLOAD without extended headers")
        c.disconnect()


def case_forcedtls(srv):
    """FORCEDTLS: "If the server receives any other option, including
    NBD_OPT_INFO and unsupported options, it MUST reply with
    NBD_REP_ERR_TLS_REQD if TLS has not been initiated"."""
    if srv.tls is None:
        raise SkipCase("no certtool")
    with fresh(srv.tls) as c:
        c.expect_option(REP_ERR_TLS_REQD, OPT_EXTENDED_HEADERS)
        c.expect_option(REP_ERR_TLS_REQD, OPT_EXTENDED_HEADERS, b"abc")
        c.starttls(srv.ctx)
        c.extended_headers()
        c.go("")
        in_sync(c)
        c.disconnect()


def case_starttls_forgets(srv):
    """NBD_OPT_STARTTLS: "the server MUST NOT preserve any negotiation
    state (such as a request for NBD_OPT_STRUCTURED_REPLY or
    NBD_OPT_EXTENDED_HEADERS ...)"; after TLS the session is compact
    until the client asks again."""
    if srv.tls is None:
        raise SkipCase("no certtool")
    with fresh(srv.sel) as c:
        c.extended_headers()
        c.starttls(srv.ctx)
        check(not c.ext, "nbdraw kept extended headers")
        c.go("")
        r = c.cmd(CMD_READ, 0, 512)        # compact request, simple reply
        expect_eq("read after STARTTLS", 0, r.error)
        check(not r.structured, "chunk reply after STARTTLS forgot "
              "extended headers")
        c.disconnect()
    with fresh(srv.sel) as c:             # and asked again, it is back
        c.extended_headers()
        c.starttls(srv.ctx)
        c.extended_headers()
        c.go("")
        in_sync(c)
        c.disconnect()


# ---- headers ----

def case_every_reply_extended(srv):
    """"If extended headers are negotiated, all server replies MUST use an
    extended reply; the server MUST NOT use simple replies even when there
    is no payload" ... "offset which MUST match the offset of the client's
    request" (checked by nbdraw for every chunk)."""
    with ext_client(srv) as c:
        c.write(8192, pattern(1, 4096))
        for cmd, off, n in ((CMD_FLUSH, 0, 0), (CMD_TRIM, 12288, 4096),
                            (CMD_WRITE_ZEROES, 16384, 4096),
                            (CMD_CACHE, 4096, 4096), (CMD_READ, 8192, 4096),
                            (CMD_READ, 12288, 8192), (99, 777, 0),
                            (CMD_READ, 1 << 40, 512)):
            r = c.cmd(cmd, off, n)
            check(r.structured, "command %d: simple reply", cmd)
            check(r.chunks[-1].done, "command %d: last chunk not DONE", cmd)
        expect_eq("read back", pattern(1, 4096), c.read(8192, 4096))
        c.disconnect()


def case_compact_magic_ends_session(srv):
    """"If negotiation agreed on extended transactions ... the client
    instead uses extended requests": a 28-byte compact request cannot be
    followed in a 32-byte stream, so the server hangs up."""
    with ext_client(srv) as c:
        c.send(request_bytes(CMD_READ, 0, 512, cookie=1) + bytes(4))
        c.expect_close("compact request magic under extended headers")
    with srv.client() as c:                # and the reverse
        c.send(ext_request_bytes(CMD_READ, 0, 512, cookie=1))
        c.expect_close("extended request magic in compact mode")


# ---- NBD_CMD_FLAG_PAYLOAD_LEN ----

def case_write_without_payload_len(srv):
    """NBD_CMD_FLAG_PAYLOAD_LEN: "With extended headers, the flag MUST be
    set for NBD_CMD_WRITE": without it the length is no payload length,
    so nothing is read; the request fails and the stream stays in step."""
    with ext_client(srv) as c:
        c.write(0, pattern(2, 4096))
        r = c.reply(c.request(CMD_WRITE, 0, 4096, auto_payload=False))
        expect_eq("WRITE without PAYLOAD_LEN", EINVAL, r.error)
        in_sync(c)
        expect_eq("data unchanged", pattern(2, 4096), c.read(0, 4096))
        c.disconnect()


def case_payload_above_maximum(srv):
    """"A server SHOULD initiate hard disconnect if a client sets the
    NBD_CMD_FLAG_PAYLOAD_LEN flag and uses a length larger than a server's
    advertised ... maximum payload length": closed without reading it
    (nothing allocated)."""
    for cmd in (CMD_WRITE, CMD_READ, CMD_BLOCK_STATUS):
        with ext_client(srv) as c:
            base = srv.rss_kib()
            c.send(ext_request_bytes(cmd, 0, MAX_PAYLOAD + 1,
                                     CMD_FLAG_PAYLOAD_LEN, cookie=1))
            c.expect_close("payload of %d bytes on command %d" %
                           (MAX_PAYLOAD + 1, cmd))
            srv.check_memory_bounded("oversized payload", base)
    with ext_client(srv) as c:         # the maximum itself is served
        data = pattern(3, MAX_PAYLOAD)
        c.write(0, data[:16 * MiB])
        r = c.cmd(CMD_WRITE, 0, MAX_PAYLOAD, data=data)
        expect_eq("WRITE of the maximum past a 16 MiB export", ENOSPC,
                  r.error)
        in_sync(c)
        c.disconnect()
    with ext_client(srv, "huge") as c:
        c.write(HUGE - MAX_PAYLOAD, data)
        check(c.read(HUGE - MAX_PAYLOAD, MAX_PAYLOAD) == data,
              "64 MiB read back differs")
        c.expect_cmd(0, "trim it", CMD_TRIM, HUGE - MAX_PAYLOAD, MAX_PAYLOAD)
        c.disconnect()


def case_refused_huge_lengths(srv):
    """Refusals of 64-bit lengths keep the session going: a READ above the
    maximum ("the server is also permitted to reject large read requests
    up front with NBD_EOVERFLOW"), a WRITE without NBD_CMD_FLAG_PAYLOAD_LEN
    (no payload follows), each claiming 2^60 bytes, then good requests.
    (The in-flight byte count once kept 32 bits of such a length, and the
    reader waited forever for room: found by fuzz_handshake.)"""
    with ext_client(srv) as c:
        for _ in range(3):
            expect_eq("READ of 2^60", EOVERFLOW,
                      c.cmd(CMD_READ, 0, 1 << 60).error)
            r = c.reply(c.request(CMD_WRITE, 0, (1 << 60) + 7,
                                  auto_payload=False))
            expect_eq("WRITE of 2^60 without PAYLOAD_LEN", EINVAL, r.error)
            in_sync(c)
        c.disconnect()


def case_unexpected_payload_consumed(srv):
    """"in all other cases, a server SHOULD gracefully consume length bytes
    of payload (even if it then replies with an NBD_EINVAL failure because
    the particular command was not expecting a payload), and proceed with
    the next client command"."""
    with ext_client(srv) as c:
        for cmd in (CMD_READ, CMD_TRIM, CMD_FLUSH, CMD_CACHE,
                    CMD_WRITE_ZEROES, CMD_BLOCK_STATUS, 99):
            payload = pattern(cmd, 1000)
            r = c.reply(c.request(cmd, 0, len(payload),
                                  CMD_FLAG_PAYLOAD_LEN, payload))
            expect_eq("command %d with a payload" % cmd, EINVAL, r.error)
            in_sync(c)
        c.disconnect()
    with srv.client() as c:            # compact: the flag is not defined
        r = c.cmd(CMD_READ, 0, 512, CMD_FLAG_PAYLOAD_LEN)
        expect_eq("PAYLOAD_LEN in compact mode", EINVAL, r.error)
        in_sync(c)
        c.disconnect()


# ---- 64-bit effect lengths ----

def case_whole_export_in_one_request(srv):
    """Request message: "only when length is used as an effect length will
    it utilize a full 64-bit value": TRIM, WRITE_ZEROES and CACHE of a
    whole 16 TiB export in one request each, the data gone after."""
    marks = [0, (5 << 40) + 12345, HUGE - 4096]
    with ext_client(srv, "huge") as c:
        for op, flags in ((CMD_TRIM, 0), (CMD_WRITE_ZEROES, 0),
                          (CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE),
                          (CMD_CACHE, 0)):
            for i, m in enumerate(marks):
                c.write(m, pattern(i, 4096))
            c.expect_cmd(0, "command %d of 16 TiB" % op, op, 0, HUGE, flags)
            for i, m in enumerate(marks):
                want = pattern(i, 4096) if op == CMD_CACHE else bytes(4096)
                expect_eq("command %d: at %d" % (op, m), want,
                          c.read(m, 4096))
        c.expect_cmd(EINVAL, "TRIM one byte past the end", CMD_TRIM, 0,
                     HUGE + 1)
        c.expect_cmd(ENOSPC, "WRITE_ZEROES past 2^64", CMD_WRITE_ZEROES,
                     HUGE - 4096, 2**64 - 1)
        c.expect_cmd(0, "clean up", CMD_TRIM, 0, HUGE)
        c.disconnect()


def case_block_status_ext(srv):
    """NBD_CMD_BLOCK_STATUS: "only NBD_REPLY_TYPE_BLOCK_STATUS_EXT for
    extended headers"; its descriptor count "MUST correspond to the number
    of subsequent descriptors" (nbdraw checks it); a 64-bit effect length
    is answered with 64-bit extents: one request walks 16 TiB."""
    marks = [(1 << 40) + 4096, (9 << 40)]
    with ext_client(srv, "huge", meta=True) as c:
        for i, m in enumerate(marks):
            c.write(m, pattern(i, 100))
        r = c.cmd(CMD_BLOCK_STATUS, 0, HUGE)
        expect_eq("BLOCK_STATUS of 16 TiB: error", 0, r.error)
        chunks = bs_chunks(r)
        expect_eq("status chunk types", [RT_BLOCK_STATUS_EXT],
                  [ch.type for ch in chunks])
        expect_eq("context id", 1, chunks[0].context)
        descs = chunks[0].descs
        check(all(n > 0 for n, _ in descs), "zero-length descriptor")
        check(all(s >> 32 == 0 for _, s in descs),
              "\"the most-significant 32 bits of status MUST be all zeroes\"")
        expect_eq("16 TiB covered", HUGE, sum(n for n, _ in descs))
        check(descs[0][0] > 1 << 32, "first hole of %d bytes: 64-bit "
              "lengths not used" % descs[0][0])
        data = [(p, n) for (p, n), (_, s) in
                zip(positions(descs), descs) if not s & STATE_HOLE]
        expect_eq("data extents", [(m & ~0xFFFF, 0x10000) for m in marks],
                  data)
        r = c.cmd(CMD_BLOCK_STATUS, 0, HUGE, CMD_FLAG_REQ_ONE)
        descs = bs_chunks(r)[0].descs
        expect_eq("REQ_ONE descriptors", 1, len(descs))
        check(descs[0][0] <= HUGE, "REQ_ONE extent past the request")
        c.expect_cmd(0, "clean up", CMD_TRIM, 0, HUGE)
        c.disconnect()


def positions(descs):
    p, out = 0, []
    for n, _ in descs:
        out.append((p, n))
        p += n
    return out


def bs_payload(effect, ids):
    return struct.pack(">Q", effect) + b"".join(u32(i) for i in ids)


def case_block_status_payload_form(srv):
    """NBD_CMD_BLOCK_STATUS payload form: "C: 64 bits, effect length / C:
    n * 32 bits, list of metacontext ids to use"; "If the server ...
    detects duplicate or unknown metacontext ids in the client's payload,
    the server MUST gracefully consume the client's payload before failing
    with NBD_EINVAL"."""
    with ext_client(srv, "huge", meta=True) as c:
        c.write(1 << 40, b"\x01")
        p = bs_payload(HUGE - (1 << 39), [1])
        r = c.reply(c.request(CMD_BLOCK_STATUS, 1 << 39, len(p),
                              CMD_FLAG_PAYLOAD_LEN, p))
        expect_eq("payload form: error", 0, r.error)
        chunks = bs_chunks(r)
        expect_eq("payload form chunks", [(RT_BLOCK_STATUS_EXT, 1)],
                  [(ch.type, ch.context) for ch in chunks])
        expect_eq("effect length from the payload", HUGE - (1 << 39),
                  sum(n for n, _ in chunks[0].descs))
        for what, p in (("unknown id", bs_payload(4096, [7])),
                        ("duplicate ids", bs_payload(4096, [1, 1])),
                        ("no id", bs_payload(4096, [])),
                        ("short payload", b"\x00" * 6),
                        ("ragged payload", bs_payload(4096, [1]) + b"\x00"),
                        ("zero effect length", bs_payload(0, [1])),
                        ("past the end", bs_payload(HUGE, [1])),
                        ("many ids", bs_payload(4096, range(1, 5000)))):
            r = c.reply(c.request(CMD_BLOCK_STATUS, 4096, len(p),
                                  CMD_FLAG_PAYLOAD_LEN, p))
            expect_eq("payload form, %s" % what, EINVAL, r.error)
            in_sync(c)
        c.expect_cmd(0, "clean up", CMD_TRIM, 0, HUGE)
        c.disconnect()
    with ext_client(srv) as c:        # not offered without a context
        p = bs_payload(4096, [1])
        r = c.reply(c.request(CMD_BLOCK_STATUS, 0, len(p),
                              CMD_FLAG_PAYLOAD_LEN, p))
        expect_eq("payload form not offered", EINVAL, r.error)
        in_sync(c)
        c.disconnect()


def case_block_status_fragmented(srv):
    """Master proto.md: "a server SHOULD NOT send more than 2^20 status
    descriptors in a single chunk" (nbdraw refuses more); every descriptor
    of an aligned query a multiple of the minimum block size (1 here) and
    alternating data and hole on a fragmented region."""
    base, n = 8 * MiB, 4 * MiB
    with ext_client(srv, meta=True) as c:
        c.expect_cmd(0, "trim", CMD_TRIM, base, n)
        for p in range(base, base + n, 128 * 1024):
            c.request(CMD_WRITE, p, 1, data=b"\x01")
        for _ in range(n // (128 * 1024)):
            expect_eq("write error", 0, c.reply().error)
        r = c.cmd(CMD_BLOCK_STATUS, base, n)
        descs = bs_chunks(r)[0].descs
        check(len(descs) <= 1 << 20, "%d descriptors", len(descs))
        expect_eq("descriptors", [(65536, 0), (65536, 3)] * (n // 131072),
                  descs)
        c.expect_cmd(0, "clean up", CMD_TRIM, base, n)
        c.disconnect()


# ---- sparse reads ----

def case_sparse_file_read(srv):
    """NBD_REPLY_TYPE_OFFSET_HOLE for a file export's holes, in both modes
    ("the server SHOULD ... efficiently skip over portions of a sparse
    export that is known to contain all zeroes")."""
    base, n = 8 * MiB, 1 * MiB
    data = pattern(5, 8192)
    for ext in (False, True):
        with srv.client("f", ext=ext) as c:
            c.expect_cmd(0, "trim", CMD_TRIM, base, n)
            c.write(base + 256 * 1024, data)
            r = c.cmd(CMD_READ, base, n)
            expect_eq("sparse read: error", 0, r.error)
            want = bytearray(n)
            want[256 * 1024:256 * 1024 + len(data)] = data
            check(r.data == bytes(want), "sparse read: wrong contents")
            holes = sum(ch.length for ch in r.chunks
                        if ch.type == RT_OFFSET_HOLE)
            check(holes >= n - 64 * 1024, "ext=%s: only %d bytes as holes",
                  ext, holes)
            c.disconnect()


def case_readonly_refusals(srv):
    """Read-only export: "the server MUST error subsequent write
    operations to the export", extended or not, the payload consumed."""
    with ext_client(srv, "ro") as c:
        r = c.cmd(CMD_WRITE, 0, 4096, data=bytes(4096))
        expect_eq("WRITE on ro", EPERM, r.error)
        in_sync(c)
        expect_eq("WRITE_ZEROES on ro", EPERM,
                  c.cmd(CMD_WRITE_ZEROES, 0, 1 << 20).error)
        c.disconnect()


def main():
    tmp = os.environ["TMPDIR"]
    path = os.path.join(tmp, "disk.img")
    with open(path, "wb") as f:
        f.truncate(FILE_SIZE)
    try:
        d = make_x509(os.path.join(tmp, "x509"))
    except SkipCase as e:
        log("TLS cases skipped: %s", e)
        d = None
    if d is None:
        with Server(*EXPORTS, "f=file:" + path) as srv:
            srv.tls = None
            failed = run_cases(cases_of(globals()), srv, ext_serves)
    else:
        certs = ["--tls-certificates", d]
        with Server(*EXPORTS, "f=file:" + path) as srv, \
             Server("memory:1M", args=["--tls=require"] + certs) as req, \
             Server("memory:1M", args=["--tls=on"] + certs) as sel:
            srv.tls, srv.sel, srv.ctx = req, sel, client_context(d)
            failed = run_cases(cases_of(globals()), srv, ext_serves)
    if failed:
        log("%d case(s) failed", failed)
        sys.exit(1)


if __name__ == "__main__":
    main()
