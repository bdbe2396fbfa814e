#!/usr/bin/python3
"""Crash safety of the file backend (docs/security.md 20, 32).

A writer on two connections (the file export advertises CAN_MULTI_CONN,
so a flush on one covers writes completed on both: proto.md "Flags",
NBD_FLAG_CAN_MULTI_CONN) keeps FUA writes, plain writes and flushes in
flight while the server is killed with SIGKILL at a random moment.  The
server is restarted on the same file and, every round, everything ever
written is checked:

  - every FUA write the writer saw acknowledged reads back intact;
  - every plain write acknowledged before a flush that was sent after it
    and acknowledged reads back intact (proto.md NBD_CMD_FLUSH: the flush
    covers writes "that the server has completed (replied to) prior to
    processing this command");
  - nothing else is corrupt: each 4 KiB page of any write, acknowledged
    or not, holds either its data or zeroes (the kernel stops a killed
    writer between pages), and pages nobody wrote are zero.

Every write goes to a place no other write touches, so "its data or
zeroes" is the whole truth for every page.

Without a real power cut the page cache survives SIGKILL, so this cannot
show that fdatasync happens; it shows that the server never acknowledges
a write before making it, never writes to the wrong place and never
corrupts data when it dies at any point.  (How many acknowledged but
unflushed writes survived is printed, for information: a server may
legitimately lose those.)
"""

import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultlib import (KiB, SLOW, Server, check, log, nbd,  # noqa: E402
                      pattern)

PAGE = 4 * KiB
ROUNDS = 10 if SLOW == 1 else 4   # valgrind: each start takes seconds
REGION = 16384                 # pages per round: each round writes fresh ones
MAX_PAGES = 2                  # per write
INFLIGHT = 8                   # per connection
ROUND_SECONDS = 2.0            # the writer's limit per round


class Write:
    __slots__ = ("page", "n", "tag", "fua", "acked", "safe")

    def __init__(self, page, n, tag, fua):
        self.page, self.n, self.tag, self.fua = page, n, tag, fua
        self.acked = None      # completion sequence number once acked
        self.safe = None       # durable?  Decided when its round ends

    def data(self):
        return pattern(self.tag, self.n * PAGE)


class Journal:
    """What the writer was told, in the order it was told."""

    def __init__(self):
        self.writes = []
        self.seq = 0           # completions observed so far
        self.flushed_upto = 0  # plain writes acked at seq <= this are safe
        self.flushes = 0

    def durable(self, w):
        if w.safe is None:
            return w.acked is not None and (w.fua or
                                            w.acked <= self.flushed_upto)
        return w.safe

    def seal(self):
        """The server died: a flush to the next one covers nothing of
        this round's writes (that server never completed them)."""
        for w in self.writes:
            if w.safe is None:
                w.safe = self.durable(w)


class Round:
    """One round's writer state: the next fresh page, and per connection
    the requests in flight (cookie -> (kind, journal entry, buffer))."""

    def __init__(self, rnd, rng, journal, nconn):
        self.rnd, self.rng, self.journal = rnd, rng, journal
        self.next_page = rnd * REGION
        self.end_page = self.next_page + REGION
        self.pending = [dict() for _ in range(nconn)]

    def issue(self, h, pending):
        rng, journal = self.rng, self.journal
        while len(pending) < INFLIGHT:
            r = rng.random()
            if r < 0.1:
                # Remember the completions seen before the flush was sent.
                pending[h.aio_flush()] = ("f", journal.seq, None)
                continue
            n = rng.randint(1, MAX_PAGES)
            if self.next_page + n > self.end_page:
                return
            w = Write(self.next_page, n, (self.rnd, self.next_page), r < 0.5)
            self.next_page += n
            buf = nbd.Buffer.from_bytearray(w.data())
            cookie = h.aio_pwrite(buf, w.page * PAGE,
                                  flags=nbd.CMD_FLAG_FUA if w.fua else 0)
            journal.writes.append(w)
            pending[cookie] = ("w", w, buf)

    def retire(self, h, pending):
        journal = self.journal
        for cookie, (kind, obj, _) in list(pending.items()):
            try:
                if not h.aio_command_completed(cookie):
                    continue
                journal.seq += 1
                if kind == "w":
                    obj.acked = journal.seq
                else:
                    journal.flushed_upto = max(journal.flushed_upto, obj)
                    journal.flushes += 1
            except nbd.Error:
                pass                  # failed: the server is dying
            del pending[cookie]

    def step(self, i, h):
        """Fill the window, poll once, retire completions.  False once the
        handle is dead."""
        pending = self.pending[i]
        try:
            self.issue(h, pending)
            if pending:
                h.poll(100)
        except nbd.Error:
            return False
        self.retire(h, pending)
        return not h.aio_is_dead()


def one_round(srv, rnd, rng, journal):
    """Write until the server dies (killed at a random moment)."""
    handles = [srv.nbd(), srv.nbd()]
    for h in handles:
        check(h.can_multi_conn() and h.can_fua() and h.can_flush(),
              "file export lacks multi-conn, FUA or flush")
    delay = rng.uniform(0.05, 1.0)
    killer = threading.Timer(delay, srv.kill)
    killer.start()
    state = Round(rnd, rng, journal, len(handles))
    t_end = time.monotonic() + ROUND_SECONDS * SLOW
    alive = [True] * len(handles)
    try:
        while any(alive) and time.monotonic() < t_end:
            for i, h in enumerate(handles):
                if alive[i]:
                    alive[i] = state.step(i, h)
    finally:
        killer.cancel()
        srv.kill()
        handles.clear()               # libnbd closes a handle when freed
    return delay, state.next_page - rnd * REGION


def verify(srv, journal, rounds):
    """Read every used page of these rounds back through the restarted
    server."""
    h = srv.nbd()
    by_page = {}
    for w in journal.writes:
        for k in range(w.n):
            by_page[w.page + k] = (w, k)
    lost = []
    torn = []
    survived_unflushed = 0
    for rnd in rounds:
        base = rnd * REGION
        used = max((p for p in by_page if base <= p < base + REGION),
                   default=base - 1) + 1 - base
        if used <= 0:
            continue
        data = b"".join(h.pread(min(2048, used - i) * PAGE,
                                (base + i) * PAGE)
                        for i in range(0, used, 2048))
        cache = {}
        for i in range(used):
            got = data[i * PAGE:(i + 1) * PAGE]
            ent = by_page.get(base + i)
            if ent is None:
                if got != bytes(PAGE):
                    torn.append(("unwritten page", base + i))
                continue
            w, k = ent
            if w not in cache:
                cache[w] = w.data()
            want = cache[w][k * PAGE:(k + 1) * PAGE]
            if journal.durable(w):
                if got != want and (not lost or lost[-1][0] != w.page):
                    lost.append((w.page, w.n, "FUA" if w.fua else "flushed"))
            elif got not in (want, bytes(PAGE)):
                torn.append(("foreign data in write", w.page, k))
            elif got == want and w.acked is not None and k == 0:
                survived_unflushed += 1
    h.shutdown()
    check(not lost, "%d durable writes lost (page, pages, why): %s",
          len(lost), lost[:10])
    check(not torn, "%d corrupt pages: %s", len(torn), torn[:10])
    return survived_unflushed


def main():
    seed = int(os.environ.get("SNBD_TEST_SEED") or time.time_ns() % 10**9)
    log("seed %d (SNBD_TEST_SEED=%d repeats the random choices)", seed, seed)
    rng = random.Random(seed)
    img = os.path.join(os.getcwd(), "disk.img")
    with open(img, "wb") as f:
        f.truncate(ROUNDS * REGION * PAGE)
    srv = Server(["file:" + img])
    journal = Journal()
    try:
        for rnd in range(ROUNDS):
            srv.start()
            delay, used = one_round(srv, rnd, rng, journal)
            journal.seal()
            check(os.path.getsize(img) == ROUNDS * REGION * PAGE,
                  "the image changed size")
            srv.start()
            extra = verify(srv, journal, [rnd])
            srv.kill()
            acked = [w for w in journal.writes if w.acked is not None]
            log("round %d: killed after %.2f s, %d pages used%s; so far %d "
                "writes, %d acked (%d FUA), %d flushes; durable ones intact; "
                "%d acked-unflushed survived", rnd, delay, used,
                " (region full)" if used + MAX_PAGES > REGION else "",
                len(journal.writes), len(acked),
                sum(w.fua for w in acked), journal.flushes, extra)
        durable = sum(journal.durable(w) for w in journal.writes)
        check(durable >= ROUNDS, "only %d durable writes in %d rounds: the "
              "test checked almost nothing", durable, ROUNDS)
        # Later crashes must not have hurt earlier rounds' data.
        srv.start()
        verify(srv, journal, range(ROUNDS))
        srv.stop()
    except BaseException:
        log("server stderr:\n%s", srv.stderr()[-3000:])
        srv.kill()
        raise


if __name__ == "__main__":
    main()
