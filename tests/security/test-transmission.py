#!/usr/bin/python3
"""Hostile requests in the transmission phase (docs/security.md 13-17).

Each case sends raw requests and asserts the reply doc/proto.md ("Request
types", "Error values", "Structured reply types") asks for, that the
stream stays in step (a good request right after works), and, after the
case, that a fresh client is served.  Cases use disjoint regions of the
shared default export so their order does not matter.
"""

import collections
import os
import struct
import sys
import time

from nbdraw import *                      # noqa: F401,F403 (test vocabulary)

SIZE = 16 * MiB
BIG = 1 << 40
EXPORTS = ("memory:16M", "big=memory:1T", "ro=memory:1M,readonly")
FILE_SIZE = 64 * MiB          # the "f" export, a sparse file
DATA_CMDS = (CMD_READ, CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES, CMD_CACHE,
             CMD_BLOCK_STATUS)
CMD_NAMES = {CMD_READ: "READ", CMD_WRITE: "WRITE", CMD_DISC: "DISC",
             CMD_FLUSH: "FLUSH", CMD_TRIM: "TRIM", CMD_CACHE: "CACHE",
             CMD_WRITE_ZEROES: "WRITE_ZEROES",
             CMD_BLOCK_STATUS: "BLOCK_STATUS"}


def both_modes(srv, name="", meta=True):
    """A simple-reply client and a structured one (with base:allocation)."""
    return [srv.client(name, structured=False),
            srv.client(name, structured=True, meta=meta)]


def in_sync(c, off=0):
    r = c.cmd(CMD_READ, off, 512)
    expect_eq("read after the bad request: error", 0, r.error)
    expect_eq("read after the bad request: length", 512, len(r.data))


def send_cmd(c, cmd, off, length, flags=0):
    """A request with its WRITE payload (when the length is sane)."""
    data = b"\xee" * length if cmd == CMD_WRITE else b""
    return c.cmd(cmd, off, length, flags, data)


# ---- ranges (docs/security.md 13) ----

def case_range_overflow_every_command(srv):
    """offset+length past the end or past 2^64: EINVAL, or ENOSPC for the
    writes (proto.md "Error values"), never a wrap-around success."""
    ranges = [(2**64 - 512, 1024), (2**64 - 1, 1), (2**64 - 1, 0xFFFFFFFF),
              (2**63, 512), (SIZE, 1), (SIZE - 512, 1024), (0, SIZE + 512),
              (SIZE + 4096, 0), (2**64 - 1, 0)]
    for c in both_modes(srv):
        with c:
            for off, length in ranges:
                for cmd in DATA_CMDS:
                    if cmd == CMD_BLOCK_STATUS and not c.structured:
                        continue        # EINVAL anyway: no context
                    if cmd == CMD_WRITE and length > MiB:
                        continue        # covered by case_write_too_big
                    want = {ENOSPC if cmd in (CMD_WRITE, CMD_WRITE_ZEROES)
                            else EINVAL}
                    # over the maximum block size: EINVAL for READ/WRITE,
                    # and allowed for CACHE/WRITE_ZEROES (proto.md "Block
                    # size constraints")
                    if cmd in (CMD_READ, CMD_WRITE) and length > MAX_PAYLOAD:
                        want = {EINVAL}
                    elif length > MAX_PAYLOAD:
                        want.add(EINVAL)
                    what = "%s off=%d len=%d structured=%s" % (
                        CMD_NAMES[cmd], off, length, c.structured)
                    r = send_cmd(c, cmd, off, length)
                    check(r.error in want, "%s: error %d, expected %s",
                          what, r.error, sorted(want))
                    if c.structured:
                        check(r.structured, "%s: simple error reply", what)
                        check(r.message, "%s: no error message", what)
                in_sync(c)
            c.disconnect()


def case_write_too_big(srv):
    """WRITE over the 64 MiB maximum: EINVAL with the payload drained, not
    allocated (docs/security.md 14); READ over it: EINVAL."""
    for c in both_modes(srv):
        with c:
            srv.reset_peak_rss()
            base = srv.rss_kib()
            c.expect_cmd(EINVAL, "WRITE of 64 MiB + 1", CMD_WRITE, 0,
                         MAX_PAYLOAD + 1, data=b"\x11" * (MAX_PAYLOAD + 1))
            srv.check_memory_bounded("refused 64 MiB+1 WRITE", base)
            in_sync(c)
            c.expect_cmd(EINVAL, "READ of 64 MiB + 1", CMD_READ, 0,
                         MAX_PAYLOAD + 1)
            c.expect_cmd(EINVAL, "READ of 2^32-1", CMD_READ, 0, 0xFFFFFFFF)
            srv.check_memory_bounded("refused big READs", base)
            in_sync(c)
            c.disconnect()
    with srv.client("big") as c:       # the maximum itself is served
        data = pattern(3, MAX_PAYLOAD)
        c.write(BIG - MAX_PAYLOAD, data)
        check(c.read(BIG - MAX_PAYLOAD, MAX_PAYLOAD) == data,
              "64 MiB read back differs")
        c.expect_cmd(0, "trim it", CMD_TRIM, BIG - MAX_PAYLOAD, MAX_PAYLOAD)
        c.disconnect()


def case_write_claiming_4GiB(srv):
    """A WRITE claiming 2^32-1 bytes: drained through a small buffer while
    the client keeps sending; memory does not grow."""
    srv.reset_peak_rss()
    base = srv.rss_kib()
    with srv.client() as c:
        c.send(request_bytes(CMD_WRITE, 0, 0xFFFFFFFF, cookie=1))
        check(c.send_partial(b"\x77" * (48 * MiB)),
              "server stopped reading the refused WRITE's payload")
        srv.check_memory_bounded("WRITE claiming 4 GiB, 48 MiB sent", base)


def case_zero_length(srv):
    """Zero lengths: behaviour unspecified, but the server "SHOULD NOT
    disconnect" (proto.md "Request types"): answered, stream in step."""
    for c in both_modes(srv):
        with c:
            for off in (0, 4096, SIZE):
                for cmd in DATA_CMDS + (CMD_FLUSH,):
                    what = "%s off=%d len=0 structured=%s" % (
                        CMD_NAMES[cmd], off, c.structured)
                    r = c.cmd(cmd, off, 0)
                    check(r.error in (0, EINVAL), "%s: error %d", what,
                          r.error)
                    if cmd == CMD_READ and r.error == 0:
                        expect_eq(what + ": data", b"", r.data)
                in_sync(c)
            c.disconnect()


def case_unknown_command(srv):
    for c in both_modes(srv):
        with c:
            for cmd in (CMD_RESIZE, 9, 100, 0x7FFF, 0xFFFF):
                for off, length in ((0, 0), (0, 4096), (2**64 - 1, 1)):
                    c.expect_cmd(EINVAL, "command %d" % cmd, cmd, off,
                                 length)
                in_sync(c)
            c.disconnect()


# ---- flags (docs/security.md 16) ----

def case_flags_not_negotiated(srv):
    with srv.client(structured=False) as c:
        check(not c.eflags & TF_SEND_DF, "SEND_DF without structured")
        c.expect_cmd(EINVAL, "READ with DF, no structured replies",
                     CMD_READ, 0, 512, CMD_FLAG_DF)
        c.expect_cmd(EINVAL, "BLOCK_STATUS, no structured replies",
                     CMD_BLOCK_STATUS, 0, 512)
        in_sync(c)
        c.disconnect()
    with srv.client(structured=True, meta=False) as c:
        c.expect_cmd(EINVAL, "BLOCK_STATUS without a context",
                     CMD_BLOCK_STATUS, 0, 512)
        in_sync(c)
        c.disconnect()
    bad = [(CMD_READ, 1 << 15), (CMD_READ, CMD_FLAG_PAYLOAD_LEN),
           (CMD_READ, 1 << 6), (CMD_READ, CMD_FLAG_NO_HOLE),
           (CMD_READ, CMD_FLAG_REQ_ONE), (CMD_READ, CMD_FLAG_FAST_ZERO),
           (CMD_WRITE, CMD_FLAG_NO_HOLE), (CMD_WRITE, CMD_FLAG_DF),
           (CMD_WRITE, CMD_FLAG_FAST_ZERO), (CMD_WRITE, 1 << 15),
           (CMD_TRIM, CMD_FLAG_NO_HOLE), (CMD_FLUSH, CMD_FLAG_DF),
           (CMD_CACHE, 1 << 9), (CMD_WRITE_ZEROES, CMD_FLAG_DF),
           (CMD_BLOCK_STATUS, CMD_FLAG_NO_HOLE)]
    for c in both_modes(srv):
        with c:
            for cmd, flag in bad:
                what = "%s with flag 0x%x structured=%s" % (
                    CMD_NAMES[cmd], flag, c.structured)
                data = b"\x22" * 4096 if cmd == CMD_WRITE else b""
                length = 4096 if cmd != CMD_FLUSH else 0
                r = c.cmd(cmd, 2 * MiB, length, flag, data)
                expect_eq(what + ": error", EINVAL, r.error)
                in_sync(c)
            # the refused WRITEs changed nothing
            expect_eq("data under refused writes", bytes(4096),
                      c.read(2 * MiB, 4096))
            c.disconnect()


def case_fua_and_flush(srv):
    """FUA is valid on every command once SEND_FUA is set (proto.md
    "Command flags"); FLUSH succeeds."""
    base = 3 * MiB
    for c in both_modes(srv):
        with c:
            check(c.eflags & TF_SEND_FUA and c.eflags & TF_SEND_FLUSH,
                  "FUA/FLUSH not advertised: 0x%x", c.eflags)
            data = pattern(7, 8192)
            c.write(base, data, CMD_FLAG_FUA)
            c.expect_cmd(0, "FLUSH", CMD_FLUSH)
            c.expect_cmd(0, "FLUSH+FUA", CMD_FLUSH, 0, 0, CMD_FLAG_FUA)
            c.expect_cmd(0, "READ+FUA", CMD_READ, base, 8192, CMD_FLAG_FUA)
            check(c.read(base, 8192) == data, "FUA write not read back")
            c.expect_cmd(0, "WRITE_ZEROES+FUA+NO_HOLE", CMD_WRITE_ZEROES,
                         base, 4096, CMD_FLAG_FUA | CMD_FLAG_NO_HOLE)
            expect_eq("zeroed", bytes(4096), c.read(base, 4096))
            c.expect_cmd(0, "TRIM+FUA", CMD_TRIM, base, 8192, CMD_FLAG_FUA)
            c.expect_cmd(0, "CACHE", CMD_CACHE, base, 8192)
            c.write(base, data)
            r = c.cmd(CMD_WRITE_ZEROES, base, 4096, CMD_FLAG_FAST_ZERO)
            check(r.error in (0, ENOTSUP), "FAST_ZERO: error %d", r.error)
            got = c.read(base, 4096)
            expect_eq("after FAST_ZERO (error %d)" % r.error,
                      bytes(4096) if r.error == 0 else data[:4096], got)
            c.disconnect()


def case_read_only(srv):
    for c in both_modes(srv, "ro"):
        with c:
            check(c.eflags & TF_READ_ONLY, "READ_ONLY clear")
            for cmd, flags in ((CMD_WRITE, 0), (CMD_WRITE, CMD_FLAG_FUA),
                               (CMD_TRIM, 0), (CMD_WRITE_ZEROES, 0),
                               (CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE)):
                r = send_cmd(c, cmd, 0, 4096, flags)
                expect_eq("%s on a read-only export" % CMD_NAMES[cmd],
                          EPERM, r.error)
                in_sync(c)
            r = send_cmd(c, CMD_WRITE, MiB - 512, 1024)
            check(r.error in (EPERM, ENOSPC), "ro WRITE past the end: %d",
                  r.error)
            c.expect_cmd(0, "FLUSH on ro", CMD_FLUSH)
            expect_eq("ro contents", bytes(4096), c.read(0, 4096))
            c.disconnect()


# ---- structured replies and block status (docs/security.md 15, 17) ----

def case_sparse_read_offset_hole(srv):
    """A structured READ over a hole answers OFFSET_HOLE for it; with DF,
    exactly one content chunk, OFFSET_DATA as the area is mixed."""
    base, n = 8 * MiB, 512 * 1024
    data = pattern(9, 4096)
    with srv.client() as c:
        c.expect_cmd(0, "trim the region", CMD_TRIM, base, n)
        c.write(base + 128 * 1024, data)
        want = bytearray(n)
        want[128 * 1024:128 * 1024 + 4096] = data
        r = c.cmd(CMD_READ, base, n)
        expect_eq("sparse read: error", 0, r.error)
        check(r.data == bytes(want), "sparse read: wrong contents")
        holes = [ch for ch in r.chunks if ch.type == RT_OFFSET_HOLE]
        check(holes, "no OFFSET_HOLE chunk in a sparse read: %s",
              [ch.type for ch in r.chunks])
        # memory backend: 64 KiB chunks, only the written one holds data
        expect_eq("bytes reported as holes", n - 64 * 1024,
                  sum(h.length for h in holes))
        r = c.cmd(CMD_READ, base, n, CMD_FLAG_DF)
        content = [ch for ch in r.chunks
                   if ch.type in (RT_OFFSET_DATA, RT_OFFSET_HOLE)]
        expect_eq("content chunks with DF", [RT_OFFSET_DATA],
                  [ch.type for ch in content])
        check(r.data == bytes(want), "DF read: wrong contents")
        c.disconnect()


def block_status(c, off, length, flags=0):
    r = c.cmd(CMD_BLOCK_STATUS, off, length, flags)
    expect_eq("BLOCK_STATUS %d+%d: error" % (off, length), 0, r.error)
    bs = [ch for ch in r.chunks if ch.type == RT_BLOCK_STATUS]
    expect_eq("BLOCK_STATUS chunks", 1, len(bs))
    descs = bs[0].descs
    check(1 <= len(descs) <= 1 << 20, "%d descriptors", len(descs))
    check(all(n > 0 for n, _ in descs), "zero-length descriptor")
    # "the sum of the length fields of the first N-1 extents (if any)
    # MUST be less than the requested length"
    check(sum(n for n, _ in descs[:-1]) < length,
          "first N-1 descriptors reach past the request")
    return bs[0].context, descs


def case_block_status_1TiB(srv):
    """The whole of a 1 TiB sparse export, walked with maximal requests:
    every reply bounded, lengths summed in 64 bits land exactly on the
    end, and only the written 64 KiB chunks are data."""
    marks = [0, (1 << 30) + 12345, 768 << 30, BIG - 4096]
    with srv.client("big", meta=True) as c:
        for i, m in enumerate(marks):
            c.write(m, pattern(i, 100))
        off, extents, requests = 0, [], 0
        while off < BIG:
            check(requests < 4096, "no progress: %d requests", requests)
            length = min(0xFFFFFFFF, BIG - off)
            ctx, descs = block_status(c, off, length)
            total = sum(n for n, _ in descs)
            check(total <= BIG - off, "extents run %d bytes past the end",
                  total - (BIG - off))
            p = off
            for n, flags in descs:
                extents.append((p, n, flags))
                p += n
            off += total
            requests += 1
        expect_eq("end of the walk", BIG, off)
        chunks = {m & ~0xFFFF for m in marks}
        for p, n, flags in extents:
            touched = {x for x in chunks if p < x + 0x10000 and x < p + n}
            if flags & STATE_HOLE:
                check(not touched, "written chunk inside a hole at %d+%d",
                      p, n)
                check(flags & STATE_ZERO, "hole not zero at %d", p)
            else:
                check(touched, "data extent at %d+%d with nothing written",
                      p, n)
        _, descs = block_status(c, 1 << 20, 0xFFFFFFFF, CMD_FLAG_REQ_ONE)
        expect_eq("REQ_ONE descriptors", 1, len(descs))
        check(descs[0][0] <= 0xFFFFFFFF, "REQ_ONE longer than the request")
        _, descs = block_status(c, 0, 4096, CMD_FLAG_REQ_ONE)
        expect_eq("REQ_ONE over data", [(4096, 0)], descs)
        c.expect_cmd(EINVAL, "BLOCK_STATUS past the end", CMD_BLOCK_STATUS,
                     BIG - 4096, 8192)
        for i, m in enumerate(marks):
            c.expect_cmd(0, "trim", CMD_TRIM, m & ~0xFFFF, 0x10000)
        c.disconnect()


def case_block_status_fragmented(srv):
    """One byte in every other 64 KiB chunk: 2 descriptors per 128 KiB,
    alternating data and hole, summing to the request."""
    base, n = 12 * MiB, 4 * MiB
    with srv.client(meta=True) as c:
        c.expect_cmd(0, "trim", CMD_TRIM, base, n)
        for p in range(base, base + n, 128 * 1024):
            c.request(CMD_WRITE, p, 1, data=b"\x01")
        for _ in range(n // (128 * 1024)):
            expect_eq("write error", 0, c.reply().error)
        _, descs = block_status(c, base, n)
        expect_eq("descriptors", [(65536, 0), (65536, 3)] * (n // 131072),
                  descs)
        c.disconnect()


# ---- concurrency and disconnects ----

def case_cookie_reused_in_flight(srv):
    """Cookies reused while in flight: each request still gets exactly one
    reply carrying that cookie, with its own data."""
    base = 4 * MiB
    datas = [pattern(20 + i, 4096) for i in range(16)]
    with srv.client(structured=False) as c:
        for i, d in enumerate(datas):
            c.write(base + i * 8192, d)
        for i in range(16):
            c.send(request_bytes(CMD_READ, base + i * 8192, 4096, cookie=7))
        got = []
        for _ in range(16):
            m = c.recv_message(lambda cookie: 4096)
            expect_eq("cookie", 7, m.cookie)
            expect_eq("error", 0, m.error)
            got.append(m.data)
        expect_eq("data returned", collections.Counter(datas),
                  collections.Counter(got))
        in_sync(c)
        c.disconnect()
    with srv.client(structured=True) as c:
        reqs = ([(CMD_READ, base + i * 8192, 4096, b"") for i in range(16)] +
                [(CMD_WRITE, base + 200000, 512, b"\x33" * 512)] * 4 +
                [(CMD_FLUSH, 0, 0, b"")] * 4)
        for cmd, off, length, data in reqs:
            c.send(request_bytes(cmd, off, length, cookie=9, data=data))
        done, seen = 0, collections.Counter()
        for _ in range(10000):
            if done == len(reqs):
                break
            m = c.recv_message()
            expect_eq("cookie", 9, m.cookie)
            expect_eq("error", 0, m.error or 0)
            if isinstance(m, Chunk) and m.type == RT_OFFSET_DATA:
                i = (m.offset - base) // 8192
                check(m.data == datas[i][m.offset - base - i * 8192:][
                    :m.length], "chunk data at %d", m.offset)
                seen[m.offset] += m.length
            done += 1 if (not isinstance(m, Chunk) or m.done) else 0
        expect_eq("replies", len(reqs), done)
        expect_eq("bytes read per request", {base + i * 8192: 4096
                                             for i in range(16)}, dict(seen))
        in_sync(c)
        c.disconnect()


def case_disc_with_requests_in_flight(srv):
    """NBD_CMD_DISC: "The server MUST handle all outstanding requests" -
    here reads whose replies cannot all be sent before the client reads,
    and writes queued behind them."""
    base = 6 * MiB
    with srv.client() as c:
        reads = [c.request(CMD_READ, 0, 8 * MiB) for _ in range(4)]
        for i in range(50):
            c.request(CMD_WRITE, base + i * 16384, 16384,
                      data=pattern(40 + i, 16384))
        c.wait_server_blocked()
        c.send(request_bytes(CMD_DISC, cookie=0))
        for cookie in reads:
            r = c.reply(cookie)
            expect_eq("READ before DISC", 0, r.error)
            expect_eq("READ before DISC: length", 8 * MiB, len(r.data))
        for _ in range(50):
            expect_eq("write before DISC", 0, c.reply().error)
        c.expect_close("after NBD_CMD_DISC")
    with srv.client() as c:
        got = c.read(base, 50 * 16384)
        for i in range(50):
            check(got[i * 16384:(i + 1) * 16384] == pattern(40 + i, 16384),
                  "write %d before DISC was lost", i)
        c.disconnect()


def case_stalled_reader_does_not_starve_others(srv):
    """A client that sends reads and never reads the replies must not hold
    up other clients' requests (docs/security.md 11: one peer cannot lock out
    the others)."""
    with srv.client(structured=False) as a:
        a.send(b"".join(request_bytes(CMD_READ, 0, 4 * MiB, cookie=i)
                        for i in range(64)))
        a.wait_server_blocked()
        with srv.connect(timeout=5) as b:
            b.open(structured=False)
            t0 = time.monotonic()
            try:
                r = b.cmd(CMD_READ, 0, 512)
            except TestFailure as e:
                raise TestFailure("another client's READ is not served while "
                                  "one client leaves its replies unread: %s"
                                  % e)
            expect_eq("other client's read", 0, r.error)
            log("  other client served in %.3f s", time.monotonic() - t0)
            b.disconnect()


def case_zero_covers_whole_range(srv):
    """WRITE_ZEROES zeroes exactly the range asked, unaligned or 4 GiB
    long, on memory and file exports (docs/security.md 17: no silent partial
    success)."""
    for name, base in (("", 10 * MiB), ("f", 0)):
        with srv.client(name) as c:
            data = pattern(11, 256 * 1024)
            for flags in (0, CMD_FLAG_NO_HOLE, CMD_FLAG_FUA):
                c.write(base, data)
                lo, n = 100, 150000
                c.expect_cmd(0, "WRITE_ZEROES %s flags %d" % (name, flags),
                             CMD_WRITE_ZEROES, base + lo, n, flags)
                want = data[:lo] + bytes(n) + data[lo + n:]
                check(c.read(base, len(data)) == want,
                      "export %r: zeroed range differs (flags %d)", name,
                      flags)
            c.disconnect()
    with srv.client("big") as c:
        end = 0xFFFFFFFF
        marks = [0, 1 << 30, end - 4096, end]     # the last one is outside
        for m in marks:
            c.write(m, b"\xff" * 4096)
        # over the 64 MiB maximum block size the server may refuse
        # (EINVAL); if it accepts, the whole range must be zero
        r = c.cmd(CMD_WRITE_ZEROES, 0, end)
        check(r.error in (0, EINVAL), "WRITE_ZEROES of 2^32-1: error %d",
              r.error)
        for m in marks[:-1] if r.error == 0 else []:
            expect_eq("zeroed at %d" % m, bytes(4096), c.read(m, 4096))
        expect_eq("byte after the range", b"\xff" * 4096, c.read(end, 4096))
        c.expect_cmd(0, "WRITE_ZEROES of 64 MiB", CMD_WRITE_ZEROES,
                     (1 << 30) - 4096, MAX_PAYLOAD)
        expect_eq("zeroed at 1 GiB", bytes(4096), c.read(1 << 30, 4096))
        for m in marks:
            c.expect_cmd(0, "clean up", CMD_TRIM, m & ~0xFFFF, 0x20000)
        c.disconnect()


def case_bad_request_magic(srv):
    for magic in (0x12560953, 0, SIMPLE_MAGIC, 0xFFFFFFFF):
        with srv.client() as c:
            c.send(struct.pack(">IHHQQI", magic, 0, CMD_READ, 1, 0, 512))
            c.expect_close("request magic 0x%08x" % magic)


def main():
    path = os.path.join(os.environ["TMPDIR"], "disk.img")
    with open(path, "wb") as f:
        f.truncate(FILE_SIZE)
    with Server(*EXPORTS, "f=file:" + path) as srv:
        failed = run_cases(cases_of(globals()), srv)
    if failed:
        log("%d case(s) failed", failed)
        sys.exit(1)


if __name__ == "__main__":
    main()
