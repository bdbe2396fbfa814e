#!/usr/bin/python3
"""Storage errors reach the client as the right NBD error, on the right
request, and nothing else fails (docs/security.md 17, 31, 32).

The error backend (server/backends/error.c, "error:RATE:ERRNAME:SPEC")
makes pread, pwrite, flush, trim and zero of SPEC fail with ERRNAME at
probability RATE; extents and cache pass through.  proto.md "Error
values": EIO and ENOSPC travel as NBD_EIO (5) and NBD_ENOSPC (28), which
libnbd turns back into errno EIO / ENOSPC.

1. Rate 1: every storage operation of the export fails with exactly EIO
   (or ENOSPC), in simple and structured replies, while BLOCK_STATUS and
   CACHE on the same connection, and another export of the same server,
   keep working; the failed writes never reach the file.
2. Rate 0.3 with a fixed SNBD_ERROR_SEED, many requests in flight on two
   connections: every failure is EIO, a failed write left the old data, a
   successful one is there, and an error is never attributed to another
   request (a reply sent for the wrong cookie would show up as a
   mismatch).
3. The same seed gives the same failures in a single-threaded run, a
   different seed different ones (tests can be reproduced).
"""

import errno
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultlib import (KiB, MiB, Server, check, expect_eq, log,  # noqa: E402
                      nbd, nbd_errnum, ename, pattern, run_cases)

BLOCK = 4 * KiB


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_image(path, size, tag):
    with open(path, "wb") as f:
        f.write(pattern(tag, size))


def every_op_fails(h, err, what):
    """Each storage operation fails with exactly err; the others work."""
    ops = [
        ("read", lambda: h.pread(BLOCK, 0)),
        ("read past a block", lambda: h.pread(3 * BLOCK + 17, 5)),
        ("write", lambda: h.pwrite(b"\xee" * BLOCK, BLOCK)),
        ("write FUA", lambda: h.pwrite(b"\xee" * BLOCK, 0,
                                       nbd.CMD_FLAG_FUA)),
        ("flush", lambda: h.flush()),
        ("trim", lambda: h.trim(BLOCK, 2 * BLOCK)),
        ("zero", lambda: h.zero(BLOCK, 3 * BLOCK)),
        ("zero NO_HOLE", lambda: h.zero(BLOCK, 3 * BLOCK,
                                        nbd.CMD_FLAG_NO_HOLE)),
    ]
    for name, op in ops:
        got = nbd_errnum(op)
        expect_eq("%s: %s" % (what, name), ename(err), ename(got))
    # Not storage operations: they pass through the error backend.
    expect_eq("%s: cache" % what, 0, nbd_errnum(h.cache, BLOCK, 0))
    if h.can_meta_context("base:allocation"):     # structured replies
        seen = []
        h.block_status(64 * KiB, 0,
                       lambda ctx, off, ents, e: seen.append(list(ents)))
        check(seen and seen[0], "%s: no block status reply", what)
    # Still in step after all that: the next read fails the same way.
    expect_eq("%s: read after the rest" % what, ename(err),
              ename(nbd_errnum(h.pread, 512, 1024)))
    check(h.aio_in_flight() == 0, "%s: requests left in flight", what)


def case_rate_one():
    imgs = {name: "img-%s" % name for name in ("eio", "enospc", "ok")}
    for name, path in imgs.items():
        make_image(path, 1 * MiB, name)
    before = {name: sha(path) for name, path in imgs.items()}
    exports = ["eio=error:1:EIO:file:" + imgs["eio"],
               "enospc=error:1:ENOSPC:file:" + imgs["enospc"],
               "ok=file:" + imgs["ok"]]
    with Server(exports) as srv:
        ok = srv.nbd("ok")
        for structured in (True, False):
            for name, err in (("eio", errno.EIO), ("enospc", errno.ENOSPC)):
                h = nbd.NBD()
                h.set_request_structured_replies(structured)
                h.add_meta_context("base:allocation")
                h.connect_uri(srv.uri_for(name))
                expect_eq("structured replies on %s" % name, structured,
                          h.get_structured_replies_negotiated())
                what = "%s (%s replies)" % (name, "structured" if structured
                                           else "simple")
                every_op_fails(h, err, what)
                # The healthy export, on a connection open all along.
                data = pattern(("ok", name, structured), 2 * BLOCK)
                ok.pwrite(data, 8 * BLOCK, nbd.CMD_FLAG_FUA)
                expect_eq("healthy export read back", data,
                          ok.pread(2 * BLOCK, 8 * BLOCK))
                h.shutdown()
        ok.shutdown()
        # The final flush of the failing exports fails too, and a server
        # whose last flush failed must say so with its exit status.
        srv.signal_term()
        srv.wait_exit(15, want=1)
    for name in ("eio", "enospc"):
        expect_eq("%s image after failed writes" % name, before[name],
                  sha(imgs[name]))
    check(sha(imgs["ok"]) != before["ok"], "healthy export not written")


def run_writes(handles, blocks, gen, state):
    """Write generation `gen` of every block, up to 64 requests in flight
    per connection; record each outcome.  Returns the failures' errnos."""
    errs = []
    pending = [dict() for _ in handles]        # cookie -> block
    todo = list(blocks)
    bufs = {}
    for _ in range(1000000):
        for i, h in enumerate(handles):
            while todo and len(pending[i]) < 64:
                b = todo.pop()
                bufs[b] = nbd.Buffer.from_bytearray(pattern((b, gen), BLOCK))
                pending[i][h.aio_pwrite(bufs[b], b * BLOCK)] = b
            if pending[i]:
                h.poll(1000)
            for cookie, b in list(pending[i].items()):
                try:
                    if not h.aio_command_completed(cookie):
                        continue
                    state[b] = gen
                except nbd.Error as e:
                    errs.append(e.errnum)
                del pending[i][cookie]
        if not todo and not any(pending):
            return errs
    raise AssertionError("writes never finished")


def read_retrying(h, b, errs):
    for _ in range(60):                # 0.3^60: never by chance
        try:
            return h.pread(BLOCK, b * BLOCK)
        except nbd.Error as e:
            errs.append(e.errnum)
    raise AssertionError("block %d: 60 reads failed" % b)


def case_rate_partial():
    nblocks = 512
    env = {"SNBD_ERROR_SEED": "0x5eed"}
    with Server(["error:0.3:EIO:memory:%d" % (nblocks * BLOCK)],
                env=env) as srv:
        handles = [srv.nbd(), srv.nbd()]
        check(handles[0].can_multi_conn(), "memory export: no multi-conn")
        state = {}                       # block -> last generation written
        werrs = []
        for gen in (1, 2):
            werrs += run_writes(handles, range(nblocks), gen, state)
        rerrs = []
        bad = []
        for b in range(nblocks):
            got = read_retrying(handles[b % 2], b, rerrs)
            want = (pattern((b, state[b]), BLOCK) if b in state
                    else bytes(BLOCK))
            if got != want:
                bad.append((b, state.get(b)))
        for h in handles:
            h.shutdown()
        # The flush at exit is subject to injection too: 0 or 1.
        srv.signal_term()
        srv.wait_exit(15, want=(0, 1))
    log("  %d of %d writes failed, %d reads failed (retried)", len(werrs),
        2 * nblocks, len(rerrs))
    check(not bad, "%d blocks do not hold their last acknowledged write "
          "(block, generation): %s", len(bad), bad[:10])
    for e in werrs + rerrs:
        expect_eq("injected error", "EIO", ename(e))
    # Rate 0.3 over ~1,000 draws: far outside chance if not about 30%.
    check(0.2 * 2 * nblocks < len(werrs) < 0.4 * 2 * nblocks,
          "%d of %d writes failed at rate 0.3", len(werrs), 2 * nblocks)
    check(rerrs, "no read failed: reads were not subject to injection")


def outcomes(seed):
    with Server(["error:0.3:ENOSPC:memory:1M"],
                env={"SNBD_ERROR_SEED": seed}) as srv:
        h = srv.nbd()
        r = [nbd_errnum(h.pwrite, b"x" * 512, 512 * i) for i in range(64)]
        h.shutdown()
        srv.signal_term()                # exit flush may fail: 0 or 1
        srv.wait_exit(15, want=(0, 1))
    check(set(r) <= {0, errno.ENOSPC}, "unexpected errors %s", set(r))
    return r


def case_seed_repeats():
    a, b, c = outcomes("42"), outcomes("42"), outcomes("43")
    expect_eq("failures with SNBD_ERROR_SEED=42, second run", a, b)
    check(a != c, "seeds 42 and 43 gave the same 64 outcomes")
    check(0 < a.count(errno.ENOSPC) < 64, "rate 0.3 gave %d/64 failures",
          a.count(errno.ENOSPC))


if __name__ == "__main__":
    run_cases([case_rate_one, case_rate_partial, case_seed_repeats])
