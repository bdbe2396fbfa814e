#!/usr/bin/python3
"""Graceful shutdown under load (docs/security.md 18).

proto.md "Terminating the transmission phase" / NBD_ESHUTDOWN: a server
shutting down SHOULD let requests in flight finish and answer later ones
with NBD_ESHUTDOWN; the client then disconnects.  snbd also flushes every
export before it exits.

1. Four libnbd connections keep FUA and plain writes in flight to a file
   export; SIGTERM arrives mid-stream.  The server must exit 0 within a
   few seconds; every request gets a reply (success or ESHUTDOWN, never a
   dropped connection while the client still waits); every write
   acknowledged as done is in the file afterwards, and nothing else was
   written.
2. nbdcopy --connections=4 copies a rate-limited nbdkit pattern disk into
   a file export and gets SIGTERM mid-copy: the server exits 0 in time,
   nbdcopy stops (with the shutdown error) instead of hanging, and every
   page of the copy is either its pattern data or still zero.
"""

import errno
import os
import shutil
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultlib import (KiB, MiB, SLOW, Server, check, ename,  # noqa: E402
                      expect_eq, log, nbd, pattern, wait_until)

EXIT_WITHIN = 8.0      # seconds from SIGTERM (the server gives clients 2 s)
SLOT = 256 * KiB
CONNS = 4
INFLIGHT = 16


class Writer:
    """One connection writing fresh slots until told of the shutdown."""

    def __init__(self, h, first_slot, nslots, tag):
        self.h, self.tag = h, tag
        self.next, self.end = first_slot, first_slot + nslots
        self.pending = {}           # cookie -> (slot, buffer)
        self.acked, self.shutdown_errs, self.other_errs = [], 0, []
        self.sent = set()
        self.stopping = False
        self.done = False

    def issue(self):
        while (not self.stopping and len(self.pending) < INFLIGHT and
               self.next < self.end):
            s = self.next
            self.next += 1
            buf = nbd.Buffer.from_bytearray(pattern((self.tag, s), SLOT))
            fl = nbd.CMD_FLAG_FUA if s % 3 == 0 else 0
            self.pending[self.h.aio_pwrite(buf, s * SLOT, flags=fl)] = (s,
                                                                         buf)
            self.sent.add(s)

    def retire(self):
        for cookie, (s, _) in list(self.pending.items()):
            try:
                if not self.h.aio_command_completed(cookie):
                    continue
                self.acked.append(s)
            except nbd.Error as e:
                if e.errnum == errno.ESHUTDOWN:
                    self.shutdown_errs += 1
                    self.stopping = True      # proto.md: soft disconnect
                else:
                    self.other_errs.append((s, ename(e.errnum), e.string))
            del self.pending[cookie]

    def step(self):
        """One round of send/poll/retire; done once disconnected."""
        if self.done:
            return
        try:
            self.issue()
            if self.pending:
                self.h.poll(50)
        except nbd.Error as e:
            self.other_errs.append((None, ename(e.errnum), e.string))
        self.retire()
        if self.h.aio_is_dead() and self.pending:
            self.other_errs.append((None, "dead with requests pending",
                                    len(self.pending)))
            self.pending.clear()
        if self.stopping and not self.pending:
            if not self.h.aio_is_dead() and not self.h.aio_is_closed():
                try:
                    self.h.shutdown()
                except nbd.Error as e:
                    self.other_errs.append((None, "shutdown", e.string))
            self.done = True
        elif self.h.aio_is_dead() or self.h.aio_is_closed():
            self.done = True


def case_writers():
    nslots = 256                        # per connection: 64 MiB each
    img = os.path.join(os.getcwd(), "writers.img")
    with open(img, "wb") as f:
        f.truncate(CONNS * nslots * SLOT)
    srv = Server(["file:" + img]).start()
    try:
        ws = [Writer(srv.nbd(), i * nslots, nslots, i) for i in range(CONNS)]
        t_term = None
        deadline = time.monotonic() + 30 * SLOW
        while not all(w.done for w in ws):
            check(time.monotonic() < deadline, "writers never finished")
            for w in ws:
                w.step()
                # A writer that ran out of slots before the shutdown
                # would not test it.
                check(w.next < w.end or t_term, "writer %s ran out of "
                      "slots before SIGTERM", w.tag)
            if t_term is None and sum(len(w.acked) for w in ws) >= 100:
                t_term = srv.signal_term()
        took = srv.wait_exit(EXIT_WITHIN)
        log("  server exited %.1f s after SIGTERM", time.monotonic() - t_term)
        check(took < EXIT_WITHIN * SLOW, "exit took %.1f s", took)
    finally:
        srv.kill()
    for w in ws:
        log("  conn %d: %d sent, %d acked, %d ESHUTDOWN, other errors %s",
            w.tag, len(w.sent), len(w.acked), w.shutdown_errs,
            w.other_errs[:3])
        check(not w.other_errs, "conn %d: requests failed otherwise than "
              "with ESHUTDOWN: %s", w.tag, w.other_errs[:5])
        expect_eq("conn %d: replies" % w.tag, len(w.sent),
                  len(w.acked) + w.shutdown_errs)
    check(sum(w.shutdown_errs for w in ws) > 0,
          "no request got ESHUTDOWN: the shutdown did not meet the load")
    with open(img, "rb") as f:
        for w in ws:
            acked = set(w.acked)
            for s in range(w.tag * nslots, w.end):
                f.seek(s * SLOT)
                got = f.read(SLOT)
                if s in acked:
                    check(got == pattern((w.tag, s), SLOT),
                          "acknowledged write to slot %d is not on disk", s)
                elif got != bytes(SLOT):
                    # Written but not acknowledged: only ESHUTDOWN-refused
                    # requests qualify, and those must not run.
                    raise AssertionError("slot %d was written though its "
                                         "write was refused" % s)


def pattern_page(off, n=4 * KiB):
    """nbdkit-pattern-plugin: each 8-byte word is its own offset (BE)."""
    return struct.pack(">%dQ" % (n // 8), *range(off, off + n, 8))


def case_nbdcopy():
    for tool in ("nbdcopy", "nbdkit"):
        if not shutil.which(tool):
            log("  SKIP nbdcopy case: %s is not installed", tool)
            return
    size = 128 * MiB
    img = os.path.join(os.getcwd(), "copy.img")
    with open(img, "wb") as f:
        f.truncate(size)
    srv = Server(["file:" + img]).start()
    # rate= is in bits per second: the copy takes a few seconds.
    src = ["[", "nbdkit", "--exit-with-parent", "--filter=rate",
           "pattern", "%d" % size, "rate=128M", "]"]
    with open("nbdcopy.err", "wb") as errf:
        copy = subprocess.Popen(["nbdcopy", "--connections=4", "--"] + src +
                                [srv.uri], stdout=errf, stderr=errf)
    try:
        wait_until("8 MiB copied", lambda: copy.poll() is None and
                   os.stat(img).st_blocks * 512 >= 8 * MiB or
                   copy.poll() is not None, 20)
        check(copy.poll() is None, "nbdcopy ended before SIGTERM (rc %s)",
              copy.returncode)
        t0 = srv.signal_term()
        took = srv.wait_exit(EXIT_WITHIN)
        rc = copy.wait(10 * SLOW)
        log("  server exited %.1f s after SIGTERM; nbdcopy rc %d",
            time.monotonic() - t0, rc)
        check(took < EXIT_WITHIN * SLOW, "exit took %.1f s", took)
    finally:
        srv.kill()
        if copy.poll() is None:
            copy.kill()
            copy.wait()
    with open("nbdcopy.err", "rb") as f:
        err = f.read().decode(errors="replace")
    log("  nbdcopy said: %s", err.strip()[-300:])
    if rc != 0:
        check(os.strerror(errno.ESHUTDOWN) in err,
              "nbdcopy failed, but not with the shutdown: %s", err[-500:])
    written = 0
    with open(img, "rb") as f:
        for off in range(0, size, 4 * KiB):
            page = f.read(4 * KiB)
            if page == bytes(4 * KiB):
                continue
            written += 1
            check(page == pattern_page(off), "page at %d is corrupt", off)
    log("  %d of %d pages copied before the shutdown", written,
        size // (4 * KiB))
    check(written >= 8 * MiB // (4 * KiB), "too little was copied")


if __name__ == "__main__":
    for case in (case_writers, case_nbdcopy):
        t = time.monotonic()
        log("%s ...", case.__name__)
        case()
        log("%s ok (%.1f s)", case.__name__, time.monotonic() - t)
