"""Helpers for the libnbd (Python) scripts run by tests/interop/test-nbdsh-*.sh.

The scripts run inside `serve` (tests/lib/common.sh), so $unixsocket names
the captive server's socket.  Each check is a function named check_*; run()
calls them in order and exits non-zero at the first failed assertion.
"""

import errno
import os
import random
import sys
import traceback

import nbd

M = 1 << 20


def uri(name=""):
    """nbd+unix URI of export NAME on the captive server (doc/uri.md)."""
    return "nbd+unix:///%s?socket=%s" % (name, os.environ["unixsocket"])


def connect(name="", opt_mode=False, strict=True, structured=True,
            full_info=False, contexts=()):
    """A libnbd handle connected to export NAME.

    strict=False turns off libnbd's client-side checks (bounds, flags,
    read-only, ...) so that bad requests really reach the server and the
    error we see is the server's."""
    h = nbd.NBD()
    h.set_handle_name("check")
    if not strict:
        h.set_strict_mode(0)
    h.set_request_structured_replies(structured)
    h.set_full_info(full_info)
    for c in contexts:
        h.add_meta_context(c)
    if opt_mode:
        h.set_opt_mode(True)
    h.connect_uri(uri(name))
    return h


def expect_error(want, what, fn, *args, **kw):
    """fn(*args) must fail with errno WANT (None: any errno)."""
    try:
        fn(*args, **kw)
    except nbd.Error as e:
        if want is not None and e.errnum != want:
            raise AssertionError("%s: expected %s, got %s (%s)" % (
                what, errno.errorcode[want],
                errno.errorcode.get(e.errnum, e.errnum), e.string))
        return e
    raise AssertionError("%s: succeeded, expected %s" % (
        what, "an error" if want is None else errno.errorcode[want]))


def pattern(seed, n):
    """n pseudo-random bytes, the same for the same seed."""
    return random.Random(seed).randbytes(n)


def extents(h, length, offset, flags=0, ctx="base:allocation"):
    """Block status as a list of (offset, length, flags) for context CTX."""
    got = []

    def cb(metacontext, off, entries, err):
        if metacontext == ctx:
            pos = off
            for i in range(0, len(entries), 2):
                got.append((pos, entries[i], entries[i + 1]))
                pos += entries[i]
        return 0

    h.block_status(length, offset, cb, flags)
    if not got:
        raise AssertionError("block status at %d: no extents" % offset)
    return got


def flags_over(h, offset, length):
    """Every base:allocation flag value reported over [offset, offset+length),
    asking again where the server returned less than asked."""
    seen = set()
    pos, end = offset, offset + length
    for _ in range(10000):
        if pos >= end:
            return seen
        for off, ln, fl in extents(h, end - pos, pos):
            if off < end:
                seen.add(fl)
            pos = max(pos, off + ln)
    raise AssertionError("block status never covered [%d,%d)" % (offset, end))


def read_chunks(h, length, offset, flags=0):
    """pread_structured, returning (data, [(offset, len, status)...])."""
    chunks = []
    buf = h.pread_structured(
        length, offset,
        lambda sub, off, status, err: chunks.append((off, len(sub), status))
        or 0,
        flags)
    return bytes(buf), chunks


def run(checks):
    """Run each check; print which one failed, and why, then exit 1.
    NBDCHECK_ONLY=name1,name2 runs only those (for debugging)."""
    only = os.environ.get("NBDCHECK_ONLY")
    if only:
        checks = [fn for fn in checks if fn.__name__ in only.split(",")]
        assert checks, "NBDCHECK_ONLY matches no check"
    for fn in checks:
        try:
            fn()
        except Exception:
            traceback.print_exc()
            print("FAIL: %s" % fn.__name__, file=sys.stderr)
            sys.exit(1)
        print("ok: %s" % fn.__name__)
