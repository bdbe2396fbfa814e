"""A hostile server: each scenario breaks the protocol in one way (bad
sizes and block sizes, overlong replies, unknown cookies, chunks outside
the request or wrapping around, overlong error messages, chunk types not
allowed, structured replies never negotiated, ...).  libsnbd must fail
cleanly with a message that names the problem, never crash (also run it
under the sanitizer build: tests/run.sh build-san client), never leave
stale bytes in a read buffer, and keep the connection only when the
stream is still in step (docs/security.md 23-25, 34).  Most transmission
scenarios run twice: compact (the server refuses extended headers, so
structured replies) and extended (32-byte replies echoing the request's
offset); the EXTENDED list breaks the rules only extended headers have
(proto.md on the extension-ext-header branch, quoted at each)."""
import os
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbdscript import *  # noqa: E402,F401,F403

if not os.path.exists(driver_path()):
    print("client-driver missing (make build)")
    sys.exit(1)

# ---- Handshake scenarios: connecting must fail (exit 1) ----


def go_with(*infos):
    return lambda c: handshake(c, go_infos=list(infos))


def on_opt(which, action):
    """Handshake where option `which` is answered by action(c, opt, data)."""
    def handler(c):
        def hook(c, opt, data):
            if opt != which:
                return False
            action(c, opt, data)
            return True
        handshake(c, on_option=hook)
    return handler


def bad_greeting(c):
    c.send(b"HTTP/1.1 200 OK\r\n\r\n")


def close_after_greeting(c):
    greeting(c)
    raise Closed()


def stall(c):
    """Greets, takes the first option, then never answers."""
    greeting(c)
    read_option(c)


def list_bad_entry(c):
    greeting(c)
    for _ in range(5):
        opt, _ = read_option(c)
        if opt == OPT_LIST:
            reply(c, opt, REP_SERVER, struct.pack(">I", 100) + b"short")
            return
        reply(c, opt, REP_ACK if opt == OPT_STRUCTURED_REPLY else REP_ERR_UNSUP)


HANDSHAKE = [
    ("size > INT64_MAX", go_with(info_export(size=1 << 63)),
     ["larger than INT64_MAX"]),
    ("minimum block size not a power of 2",
     go_with(info_export(), info_block_size(3, 4096, 65536)),
     ["invalid block sizes", "minimum 3"]),
    ("minimum block size above 64 KiB",
     go_with(info_export(), info_block_size(1 << 17, 1 << 17, 1 << 20)),
     ["invalid block sizes"]),
    ("preferred block size below 512",
     go_with(info_export(), info_block_size(1, 256, 65536)),
     ["invalid block sizes", "preferred"]),
    ("maximum not a multiple of the minimum",
     go_with(info_export(), info_block_size(512, 4096, 1000)),
     ["invalid block sizes", "multiple"]),
    ("maximum below preferred and size",
     go_with(info_export(), info_block_size(512, 4096, 1024)),
     ["invalid block sizes", "smaller"]),
    ("NBD_INFO_EXPORT with a wrong length", go_with(info_export() + b"\0"),
     ["NBD_INFO_EXPORT of length 13"]),
    ("NBD_INFO_BLOCK_SIZE with a wrong length",
     go_with(info_export(), info_block_size(1, 4096, 65536)[:-1]),
     ["NBD_INFO_BLOCK_SIZE of length 13"]),
    ("GO acknowledged without NBD_INFO_EXPORT", go_with(),
     ["without sending NBD_INFO_EXPORT"]),
    ("export name with a NUL byte",
     go_with(info_export(), struct.pack(">H", INFO_NAME) + b"a\0b"),
     ["invalid export name"]),
    ("option reply of almost 4 GiB",
     on_opt(OPT_STRUCTURED_REPLY,
            lambda c, o, d: reply(c, o, REP_ACK, length=0xFFFFFF00)),
     ["4294967040 bytes long"]),
    ("error reply with a 100000-byte message",
     on_opt(OPT_GO, lambda c, o, d: reply(c, o, REP_ERR_INVALID,
                                          b"x" * 100000)),
     ["100000 bytes long"]),
    ("reply to another option",
     on_opt(OPT_STRUCTURED_REPLY, lambda c, o, d: reply(c, OPT_GO, REP_ACK)),
     ["answered NBD_OPT_GO"]),
    ("metadata context that was not asked for",
     on_opt(OPT_SET_META_CONTEXT,
            lambda c, o, d: reply(c, o, REP_META_CONTEXT,
                                  struct.pack(">I", 1) + b"qemu:evil")),
     ["qemu:evil", "not asked for"]),
    ("the same metadata context twice",
     on_opt(OPT_SET_META_CONTEXT,
            lambda c, o, d: [reply(c, o, REP_META_CONTEXT,
                                   struct.pack(">I", i) + b"base:allocation")
                             for i in (1, 2)]),
     ["duplicate"]),
    ("not an NBD server", bad_greeting, ["not NBDMAGIC"]),
    ("hang-up after the greeting", close_after_greeting,
     ["closed the connection"]),
    ("GO refused, message quoted",
     on_opt(OPT_GO, lambda c, o, d: reply(c, o, ERR | 6, b"no \x01such")),
     ["NBD_REP_ERR_UNKNOWN", '"no \\x01such"']),
]

# ---- Transmission scenarios ----


MODE = {"eh": False}     # whether after() acknowledges extended headers


def after(op_handler, sr=True, meta=True, requests=1, eh=None):
    """Handshake, then hand each request to op_handler(c, req).  eh:
    acknowledge extended headers (default: as MODE says when it runs)."""
    def handler(c):
        handshake(c, sr=sr, meta=meta,
                  eh=MODE["eh"] if eh is None else eh)
        for _ in range(requests):
            op_handler(c, read_request(c))
    return handler


def good_read(c, req):
    _, _, cookie, off, length, _ = req
    chunk(c, cookie, T_DATA, struct.pack(">Q", off) + b"\x55" * length)


def data_at(delta, extra=0):
    def h(c, req):
        _, _, cookie, off, length, _ = req
        chunk(c, cookie, T_DATA,
              struct.pack(">Q", (off + delta) % (1 << 64)) +
              b"\x55" * (length + extra))
    return h


def two_chunks(first, second):
    """Two content chunks at offsets off+first[0], off+second[0]."""
    def h(c, req):
        _, _, cookie, off, _, _ = req
        for (d, n), done in ((first, 0), (second, REPLY_FLAG_DONE)):
            chunk(c, cookie, T_DATA, struct.pack(">Q", off + d) + b"\x55" * n,
                  flags=done)
    return h


def raw_chunk(ctype, payload=b"", flags=REPLY_FLAG_DONE, length=None,
              cookie_delta=0):
    def h(c, req):
        chunk(c, req[2] + cookie_delta, ctype, payload, flags, length)
    return h


def with_cookie(fn):
    def h(c, req):
        fn(c, req[2], req[3], req[4])
    return h


def then_good(first):
    """A first reply from `first`, then a correct reply to a second read:
    the connection must still work (errors that keep the stream in step
    are not fatal)."""
    def h(c, req):
        c.then_good_n = getattr(c, "then_good_n", 0) + 1
        (first if c.then_good_n == 1 else good_read)(c, req)
    return h


def bs_payload(ctx, extents, ext):
    """BLOCK_STATUS's payload, or BLOCK_STATUS_EXT's (id, count, then
    64-bit descriptors)."""
    if ext:
        return struct.pack(">II", ctx, len(extents)) + b"".join(
            struct.pack(">QQ", n, f) for n, f in extents)
    return struct.pack(">I", ctx) + b"".join(
        struct.pack(">II", n, f) for n, f in extents)


def bs_chunk(ctx, extents, flags=REPLY_FLAG_DONE):
    """The status chunk of the mode in use."""
    def h(c, req):
        chunk(c, req[2], T_BLOCK_STATUS_EXT if c.eh else T_BLOCK_STATUS,
              bs_payload(ctx, extents, c.eh), flags)
    return h


def hang_up_in_data(c, cookie, off, length):
    c.send(struct.pack(">IHHQIQ", STRUCTURED_MAGIC, 1, T_DATA, cookie,
                       8 + length, off) + b"\x55" * 100)
    raise Closed()


READ = "read:4096:4096"
TRANSMISSION = [
    ("simple reply with an unknown cookie",
     after(with_cookie(lambda c, k, o, n: simple_reply(c, k + 1000))),
     [READ], ["not in flight"]),
    ("chunk with an unknown cookie",
     after(raw_chunk(T_NONE, cookie_delta=999)), [READ], ["not in flight"]),
    ("structured reply never negotiated",
     after(good_read, sr=False), [READ], ["never negotiated"]),
    ("simple reply to a read after structured replies",
     after(with_cookie(lambda c, k, o, n: simple_reply(c, k, 0, b"\x55" * n))),
     [READ], ["simple reply to NBD_CMD_READ"]),
    ("data before the request", after(data_at(-4096)), [READ],
     ["outside the read"]),
    ("data past the end of the request", after(data_at(1)), [READ],
     ["outside the read"]),
    ("data offset wrapping around 2^64",
     after(data_at((1 << 64) - 4096 - 8, extra=8)), [READ],
     ["outside the read"]),
    ("hole wrapping around 2^64",
     after(with_cookie(lambda c, k, o, n: chunk(
         c, k, T_HOLE, struct.pack(">QI", (1 << 64) - 16, 32)))),
     [READ], ["outside the read"]),
    ("hole of size 0",
     after(with_cookie(lambda c, k, o, n: chunk(
         c, k, T_HOLE, struct.pack(">QI", o, 0)))),
     [READ], ["outside the read"]),
    ("hole chunk with a wrong length",
     after(raw_chunk(T_HOLE, b"\0" * 16)), [READ],
     ["OFFSET_HOLE of length 16"]),
    ("data chunk too short", after(raw_chunk(T_DATA, b"\0" * 8)), [READ],
     ["OFFSET_DATA of length 8"]),
    ("overlapping data chunks", after(two_chunks((0, 2048), (1024, 2048))),
     [READ], ["overlapping"]),
    ("fragmented reply to a DF read", after(two_chunks((0, 2048), (2048, 2048))),
     [READ + ":df"], ["NBD_CMD_FLAG_DF"]),
    ("success after half the data, then a good read",
     after(then_good(with_cookie(lambda c, k, o, n: chunk(
         c, k, T_DATA, struct.pack(">Q", o) + b"\x55" * (n // 2)))),
         requests=2),
     [READ, READ], ["after sending 2048 of 4096", "ok " + READ]),
    ("error message longer than its chunk",
     after(raw_chunk(T_ERROR, struct.pack(">IH", 5, 100) + b"x" * 10)),
     [READ], ["does not fit"]),
    ("error chunk of 1 MiB",
     after(raw_chunk(T_ERROR, error_payload(5, b"x") + b"\0" * (1 << 20))),
     [READ], ["chunk of length 1048583"]),
    ("error message over 4096 bytes",
     after(raw_chunk(T_ERROR, error_payload(5, b"y" * 5000))), [READ],
     ["chunk of length 5006"]),
    ("error chunk with trailing bytes",
     after(raw_chunk(T_ERROR, error_payload(5, b"m", b"zz"))), [READ],
     ["2 extra bytes"]),
    ("server error, named and quoted, then a good read",
     after(then_good(raw_chunk(T_ERROR, error_payload(5, b"disk on fire"))),
           requests=2),
     [READ, READ], ["NBD_EIO", '"disk on fire"', "ok " + READ]),
    ("unknown error chunk type, then a good read",
     after(then_good(raw_chunk(0x8FFF, error_payload(22, b"odd"))),
           requests=2),
     [READ, READ], ["NBD_EINVAL", "ok " + READ]),
    ("error offset outside the request",
     after(with_cookie(lambda c, k, o, n: chunk(
         c, k, T_ERROR_OFFSET, error_payload(5, b"", struct.pack(">Q", o + n))))),
     [READ], ["outside the request"]),
    ("block status chunk in reply to a read",
     after(bs_chunk(CONTEXT_ID, [(4096, 0)])), [READ],
     ["NBD_REPLY_TYPE_BLOCK_STATUS chunk in reply to NBD_CMD_READ"]),
    ("data chunk in reply to block status",
     after(raw_chunk(T_DATA, struct.pack(">Q", 0) + b"\0" * 4096)),
     ["bs:0:4096"], ["chunk in reply to NBD_CMD_BLOCK_STATUS"]),
    ("chunk of an unknown type", after(raw_chunk(77)), [READ],
     ["unknown type 77"]),
    ("NONE chunk that is not final", after(raw_chunk(T_NONE, flags=0)),
     [READ], ["must be empty and final"]),
    ("NONE chunk with a payload", after(raw_chunk(T_NONE, b"abcd")), [READ],
     ["must be empty and final"]),
    ("block status for a context never negotiated",
     after(bs_chunk(99, [(4096, 0)])), ["bs:0:4096"], ["never negotiated"]),
    ("block status extent of length 0",
     after(bs_chunk(CONTEXT_ID, [(0, 0)])), ["bs:0:4096"], ["length 0"]),
    ("block status ignoring REQ_ONE",
     after(bs_chunk(CONTEXT_ID, [(1024, 0), (1024, 3)])), ["bs:0:4096:one"],
     ["REQ_ONE"]),
    ("block status extents past the request",
     after(bs_chunk(CONTEXT_ID, [(4096, 0), (4096, 3)])), ["bs:0:4096"],
     ["past the end"]),
    ("block status chunk claiming 2^20+1 descriptors",
     after(raw_chunk(T_BLOCK_STATUS, length=4 + 8 * ((1 << 20) + 1))),
     ["bs:0:4096"], ["NBD_REPLY_TYPE_BLOCK_STATUS of length"]),
    ("block status chunk of a bad length",
     after(raw_chunk(T_BLOCK_STATUS, b"\0" * 11)), ["bs:0:4096"],
     ["NBD_REPLY_TYPE_BLOCK_STATUS of length 11"]),
    ("no block status at all, then a good one",
     after(then_good(raw_chunk(T_NONE)), requests=1), ["bs:0:4096"],
     ["did not send block status"]),
    ("reply with an unknown magic",
     after(lambda c, req: c.send(b"\xde\xad\xbe\xef" + b"\0" * 16)), [READ],
     ["unknown magic 0xdeadbeef"]),
    ("hang-up in the middle of the data", after(with_cookie(hang_up_in_data)),
     [READ], ["closed the connection"]),
]


# Run again under extended headers: every scenario whose reply is built
# by chunk() (which then sends 32-byte chunks) and whose message does not
# name a 32-bit layout.
BOTH_MODES = {
    "chunk with an unknown cookie", "data before the request",
    "data past the end of the request", "data offset wrapping around 2^64",
    "hole wrapping around 2^64", "hole of size 0",
    "hole chunk with a wrong length", "data chunk too short",
    "overlapping data chunks", "fragmented reply to a DF read",
    "success after half the data, then a good read",
    "error message longer than its chunk", "error chunk of 1 MiB",
    "error message over 4096 bytes", "error chunk with trailing bytes",
    "server error, named and quoted, then a good read",
    "unknown error chunk type, then a good read",
    "error offset outside the request", "data chunk in reply to block status",
    "chunk of an unknown type", "NONE chunk that is not final",
    "NONE chunk with a payload",
    "block status for a context never negotiated",
    "block status extent of length 0", "block status ignoring REQ_ONE",
    "block status extents past the request",
    "no block status at all, then a good one",
}


def ext_raw(ctype, payload=b"", off_delta=0, length=None, cookie_delta=0):
    """An extended chunk whose offset field is the request's + off_delta."""
    def h(c, req):
        ext_chunk(c, req[2] + cookie_delta, ctype, req[3] + off_delta,
                  payload, length=length)
    return h


def compact_raw(ctype, payload=b""):
    """A 20-byte structured chunk, whatever was negotiated."""
    def h(c, req):
        chunk(c, req[2], ctype, payload, compact=True)
    return h


BS = "bs:0:4096"
EXTENDED = [
    ("extended: simple reply",
     after(with_cookie(lambda c, k, o, n: simple_reply(c, k)), eh=True),
     ["flush"], ["simple reply under extended headers"]),
    # "If extended headers are negotiated, all server replies MUST use an
    # extended reply" ("Extended reply chunk message").
    ("extended: structured reply magic",
     after(compact_raw(T_NONE), eh=True), ["flush"],
     ["structured reply under extended headers"]),
    # "offset ... MUST match the offset of the client's request".
    ("extended: offset not echoed",
     after(ext_raw(T_DATA, struct.pack(">Q", 4096) + b"\x55" * 4096,
                   off_delta=4096), eh=True), [READ],
     ["reply to offset 4096 says offset 8192"]),
    ("extended: offset not echoed on NONE",
     after(ext_raw(T_NONE, off_delta=1), eh=True), ["flush"],
     ["says offset 1"]),
    # "a client MAY initiate hard disconnect if a server's reply length is
    # unexpectedly large".
    ("extended: reply length of 2^40",
     after(ext_raw(T_DATA, length=1 << 40), eh=True), [READ],
     ["1099511627776 bytes, above the maximum payload"]),
    ("extended: error chunk of 2^33 bytes",
     after(ext_raw(T_ERROR, length=1 << 33), eh=True), [READ],
     ["above the maximum payload"]),
    # NBD_REPLY_TYPE_BLOCK_STATUS: "a server may only use this type if
    # extended headers were not negotiated".
    ("extended: BLOCK_STATUS (type 5) chunk",
     after(lambda c, req: chunk(c, req[2], T_BLOCK_STATUS,
                                bs_payload(CONTEXT_ID, [(4096, 0)], False)),
           eh=True), [BS],
     ["NBD_REPLY_TYPE_BLOCK_STATUS under extended headers"]),
    # NBD_REPLY_TYPE_BLOCK_STATUS_EXT: "The descriptor count field MUST
    # correspond to the number of subsequent descriptors".
    ("extended: descriptor count above the descriptors",
     after(lambda c, req: chunk(c, req[2], T_BLOCK_STATUS_EXT,
                                struct.pack(">II", CONTEXT_ID, 2) +
                                struct.pack(">QQ", 4096, 0)), eh=True),
     [BS], ["descriptor count disagrees"]),
    ("extended: descriptor count 0",
     after(lambda c, req: chunk(c, req[2], T_BLOCK_STATUS_EXT,
                                struct.pack(">II", CONTEXT_ID, 0) +
                                struct.pack(">QQ", 4096, 0)), eh=True),
     [BS], ["descriptor count disagrees"]),
    ("extended: BLOCK_STATUS_EXT of a ragged length",
     after(lambda c, req: chunk(c, req[2], T_BLOCK_STATUS_EXT,
                                struct.pack(">II", CONTEXT_ID, 1) +
                                b"\0" * 12), eh=True),
     [BS], ["NBD_REPLY_TYPE_BLOCK_STATUS_EXT of length 20"]),
    ("extended: BLOCK_STATUS_EXT claiming 2^20+1 descriptors",
     after(lambda c, req: chunk(c, req[2], T_BLOCK_STATUS_EXT,
                                length=8 + 16 * ((1 << 20) + 1)), eh=True),
     [BS], ["NBD_REPLY_TYPE_BLOCK_STATUS_EXT of length"]),
    # "32 bits of status ... For metadata contexts that only return a
    # 32-bit status (including all contexts in the base: namespace), the
    # most-significant 32 bits of status MUST be all zeroes".
    ("extended: base:allocation status with high bits",
     after(bs_chunk(CONTEXT_ID, [(4096, 1 << 40)]), eh=True), [BS],
     ["high 32 bits"]),
    ("compact: BLOCK_STATUS_EXT without extended headers",
     after(lambda c, req: chunk(c, req[2], T_BLOCK_STATUS_EXT,
                                bs_payload(CONTEXT_ID, [(4096, 0)], True)),
           eh=False), [BS],
     ["NBD_REPLY_TYPE_BLOCK_STATUS_EXT without extended headers"]),
    ("compact: extended reply never negotiated",
     after(ext_raw(T_NONE), eh=False), ["flush"],
     ["extended reply, which was never negotiated"]),
    ("extended: a good BLOCK_STATUS_EXT and read after it",
     after(then_good(bs_chunk(CONTEXT_ID, [(1024, 3), (1 << 40, 0)])),
           requests=2, eh=True), [BS, READ],
     ["extents base:allocation 0 n=2 first=1024/3", "ok " + READ]),
]


def go_unsup_after_eh(c):
    """Extended headers acknowledged, then GO refused as unsupported: "the
    server MUST NOT fail NBD_OPT_GO with NBD_REP_ERR_UNSUP" then."""
    def hook(c, opt, data):
        if opt == OPT_GO:
            reply(c, opt, REP_ERR_UNSUP)
            return True
        if opt == OPT_EXPORT_NAME:
            raise AssertionError("NBD_OPT_EXPORT_NAME after extended headers")
        return False
    handshake(c, on_option=hook, eh=True)


def ext_refused_by(rtype):
    """The server refuses extended headers with rtype: structured replies
    are asked for next ("clients SHOULD be prepared to also handle
    NBD_REP_ERR_UNSUP; in this case, only the compact transmission headers
    will be used")."""
    def handler(c):
        def hook(c, opt, data):
            if opt == OPT_EXTENDED_HEADERS:
                reply(c, opt, rtype)
                return True
            return False
        handshake(c, on_option=hook)
        good_read(c, read_request(c))
        assert c.options[:2] == [OPT_EXTENDED_HEADERS, OPT_STRUCTURED_REPLY], \
            c.options
    return handler


def not_asked(c):
    """--no-eh: the option is never sent."""
    handshake(c)
    good_read(c, read_request(c))
    assert OPT_EXTENDED_HEADERS not in c.options, c.options


HUGE = 16 << 40


def recorder(seen):
    """Answers every request with success until NBD_CMD_DISC, recording
    (type, offset, length) of each; the export is 16 TiB."""
    def handler(c):
        handshake(c, go_infos=[info_export(size=HUGE, eflags=DEFAULT_EFLAGS |
                                           0x400)],
                  eh=MODE["eh"])
        for _ in range(1 << 20):
            flags, typ, cookie, off, length, _ = read_request(c)
            if typ == CMD_DISC:
                return
            seen.append((typ, off, length))
            if typ == CMD_BLOCK_STATUS:
                bs_chunk(CONTEXT_ID, [(length, 3)])(c, (flags, typ, cookie))
            elif c.eh:
                chunk(c, cookie, T_NONE)
            else:
                simple_reply(c, cookie)
    return handler


def check_lengths(eh):
    """64-bit lengths: one request each under extended headers
    ("only when length is used as an effect length will it utilize a full
    64-bit value"); a compact server gets 32-bit pieces covering it."""
    seen = []
    ops = ["zero:0:%d" % HUGE, "trim:0:%d" % HUGE, "cache:0:%d" % HUGE,
           "bs:0:%d" % HUGE]
    MODE["eh"] = eh
    name = "16 TiB zero, trim, cache, block status, %s" % (
        "extended: one request each" if eh else "compact: split")
    ok = check(name, recorder(seen), ops, 0,
               ["ok " + op for op in ops])
    if not ok:
        return False
    by_type = {}
    for typ, off, length in seen:
        by_type.setdefault(typ, []).append((off, length))
    for typ in (CMD_WRITE_ZEROES, CMD_TRIM, CMD_CACHE):
        parts = by_type.get(typ, [])
        covered = sum(n for _, n in parts)
        if covered != HUGE or (eh and len(parts) != 1) or \
                any(n >= 1 << 32 for _, n in parts if not eh):
            print("FAIL: %s: command %d sent as %d parts covering %d" %
                  (name, typ, len(parts), covered))
            return False
    bs = by_type.get(CMD_BLOCK_STATUS, [])
    want_bs = HUGE if eh else 1 << 30
    if [n for _, n in bs] != [want_bs]:
        print("FAIL: %s: block status asked %r" % (name, bs))
        return False
    return True


def copy_holes(eh):
    """snbd-copy zeroes a hole "in single 64-bit requests when it can":
    a 1 TiB sparse file copied to a server with extended headers takes a
    handful of WRITE_ZEROES covering it (one per worker at most); a
    compact server gets the same bytes in pieces under 2^32, in runs of
    16 GiB."""
    size = 1 << 40
    path = os.path.join(os.environ["TMPDIR"], "holes.img")
    with open(path, "wb") as f:
        f.truncate(size)
    seen = []

    def handler(c):
        handshake(c, go_infos=[info_export(size=size)], eh=eh)
        for _ in range(1 << 20):
            flags, typ, cookie, off, length, _ = read_request(c)
            if typ == CMD_DISC:
                return
            seen.append((typ, off, length))
            (chunk(c, cookie, T_NONE) if c.eh else simple_reply(c, cookie))
    name = "snbd-copy of a 1 TiB hole, %s" % ("extended" if eh else "compact")
    with ScriptedServer(handler) as srv:
        p = subprocess.run([os.environ["SNBD_COPY"], path, srv.uri],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120)
    os.unlink(path)
    zeroes = [(off, n) for typ, off, n in seen if typ == CMD_WRITE_ZEROES]
    problems = []
    if p.returncode != 0 or srv.error:
        problems.append("exit %d, %r: %s" % (p.returncode, srv.error,
                                             p.stdout.decode()))
    if sum(n for _, n in zeroes) != size or \
            any(typ != CMD_WRITE_ZEROES for typ, _, _ in seen):
        problems.append("requests do not zero the export exactly: %r" %
                        sorted(set(t for t, _, _ in seen)))
    if eh and len(zeroes) > 8:
        problems.append("%d zero requests with extended headers" %
                        len(zeroes))
    if not eh and (len(zeroes) < 64 or max(n for _, n in zeroes) >= 1 << 32):
        problems.append("compact: %d zero requests, largest %d" %
                        (len(zeroes), max(n for _, n in zeroes)))
    if problems:
        print("FAIL: %s:\n  %s" % (name, "\n  ".join(problems)))
        return False
    print("ok: %s: %d zero requests" % (name, len(zeroes)))
    return True


def check(name, handler, ops, want_rc, expect, args=()):
    start = time.monotonic()
    with ScriptedServer(handler) as srv:
        rc, out = run_driver(srv.uri, *ops, args=args)
    problems = []
    if srv.error:
        problems.append("scripted server failed: %r" % srv.error)
    if rc != want_rc:
        problems.append("exit status %d, expected %d" % (rc, want_rc))
    for e in expect:
        if e not in out:
            problems.append("output lacks %r" % e)
    for line in out.splitlines():
        if line.startswith("stale=") and line != "stale=0":
            problems.append("read buffer kept stale bytes: " + line)
    if problems:
        print("FAIL: %s:\n  %s\n  output:\n%s" % (name, "\n  ".join(problems),
                                                  out))
        return False
    print("ok: %s (%.2fs)" % (name, time.monotonic() - start))
    return True


# ---- Old servers, which must still work in clear text ----


def export_name_reply(c, zeroes):
    c.send(struct.pack(">QH", SIZE, 0x1 | 0x4) + b"\0" * (124 if zeroes else 0))


def go_unsupported(c):
    """Fixed newstyle, but no NBD_OPT_GO: NBD_OPT_EXPORT_NAME instead."""
    def hook(c, opt, data):
        if opt == OPT_GO:
            reply(c, opt, REP_ERR_UNSUP)
            return True
        if opt == OPT_EXPORT_NAME:
            export_name_reply(c, zeroes=False)
            return "done"
        return False
    handshake(c, on_option=hook)
    good_read(c, read_request(c))


def nonfixed_newstyle(c):
    greeting(c, gflags=0)
    opt, _ = read_option(c)
    assert opt == OPT_EXPORT_NAME, opt
    export_name_reply(c, zeroes=True)
    _, _, cookie, _, length, _ = read_request(c)
    simple_reply(c, cookie, 0, b"\x55" * length)


def oldstyle(c):
    c.send(struct.pack(">QQQI", NBD_MAGIC, OLDSTYLE_MAGIC, SIZE, 0x1 | 0x4) +
           b"\0" * 124)
    _, _, cookie, _, length, _ = read_request(c)
    simple_reply(c, cookie, 0, b"\x55" * length)


OLD = [
    ("NBD_OPT_GO unsupported: NBD_OPT_EXPORT_NAME", go_unsupported,
     ["connected size=1048576 sr=1", "ok " + READ]),
    ("non-fixed newstyle server", nonfixed_newstyle,
     ["connected size=1048576 sr=0", "ok " + READ]),
    ("oldstyle server", oldstyle, ["connected size=1048576 sr=0", "ok " + READ]),
]


def main():
    ok = True
    for name, handler, expect in HANDSHAKE:
        ok &= check(name, handler, [], 1, ["error connect"] + expect)
    for name, handler, ops, expect in TRANSMISSION:
        ok &= check(name, handler, ops, 0, ["connected"] + expect)
    MODE["eh"] = True
    for name, handler, ops, expect in TRANSMISSION:
        if name in BOTH_MODES:
            ok &= check("extended: " + name, handler, ops, 0,
                        ["connected", "eh=1"] + expect)
    MODE["eh"] = False
    for name, handler, ops, expect in EXTENDED:
        ok &= check(name, handler, ops, 0, ["connected"] + expect)
    ok &= check("extended headers acknowledged, then GO unsupported",
                go_unsup_after_eh, [], 1,
                ["error connect", "after agreeing to extended headers"])
    for rtype in (REP_ERR_UNSUP, REP_ERR_INVALID, REP_ERR_POLICY):
        ok &= check("extended headers refused (%#x): structured replies" %
                    rtype, ext_refused_by(rtype), [READ], 0,
                    ["sr=1", "eh=0", "ok " + READ])
    ok &= check("--no-eh: extended headers not asked for", not_asked, [READ],
                0, ["sr=1", "eh=0", "ok " + READ], args=("--no-eh",))
    for eh in (True, False):
        ok &= check_lengths(eh)
        ok &= copy_holes(eh)
    MODE["eh"] = False
    ok &= check("server that stalls in the handshake", stall, [], 1,
                ["errno=ETIMEDOUT"], args=("--timeout=1",))
    for name, handler, expect in OLD:
        ok &= check(name, handler, [READ], 0, expect)
    ok &= check("list entry with a name longer than the reply", list_bad_entry,
                ["list"], 0, ["invalid NBD_REP_SERVER"], args=("--opt",))
    # An information type nobody knows is ignored, as doc/proto.md says.
    ok &= check("unknown NBD_INFO type is ignored",
                go_with(info_export(), struct.pack(">H", 99) + b"junk"),
                [], 0, ["connected size=1048576"])
    print("hostile server: %s" % ("all checks passed" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


main()
