#!/usr/bin/python3
"""Backends that complete requests later, from their own thread
(server/backends/backend.h backend_io_complete), serve real traffic.

The test-only async filter ("async:DELAY_US:SPEC", server/backends/async.c)
completes every read, write, flush, trim and zero of SPEC from its own
thread after a random delay up to DELAY_US, so out of order.  The server
submits them from the connection's reader and the completion queues the
reply (server/xmit.c dispatch).

1. Many requests in flight on two connections, one worker thread: every
   reply matches its request (data read back, FUA, trim, zero, block
   status, simple and structured replies) and replies come back out of
   order, so they did not wait for each other.
2. Errors injected under the async filter reach the client as the right
   NBD error on the right request, and the server logs the backend's own
   message with the request.
3. nbdcopy and qemu-img through it: the data arrives whole.
4. SIGTERM with slow requests in flight: each gets its reply, and the
   server exits cleanly (every request completes before its connection
   is freed; ASan builds check the memory).
"""

import errno
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultlib import (KiB, MiB, Server, check, expect_eq, log,  # noqa: E402
                      nbd, nbd_errnum, ename, pattern, run_cases)

BLOCK = 4 * KiB
NBLOCKS = 256


def aio_all(h, submit):
    """Runs submit(i) -> cookie for each i in flight together; returns the
    indexes in the order their replies completed."""
    order = []
    cookies = {}
    for i in range(NBLOCKS):
        cookies[submit(i)] = i
    while cookies:
        h.poll(1000)
        for cookie, i in list(cookies.items()):
            if h.aio_command_completed(cookie):
                order.append(i)
                del cookies[cookie]
    return order


def case_traffic():
    with Server(["async:3000:memory:%d" % (NBLOCKS * BLOCK)],
                args=["--threads", "1"]) as srv:
        for structured in (True, False):
            h = nbd.NBD()
            h.set_request_structured_replies(structured)
            h.add_meta_context("base:allocation")
            h.connect_uri(srv.uri)
            tag = "s" if structured else "p"
            bufs = [nbd.Buffer.from_bytearray(pattern((tag, i), BLOCK))
                    for i in range(NBLOCKS)]
            order = aio_all(h, lambda i: h.aio_pwrite(
                bufs[i], i * BLOCK, flags=nbd.CMD_FLAG_FUA if i % 3 else 0))
            check(order != sorted(order), "writes completed in order")
            # Trim the odd blocks, zero every fourth, flush, read all back.
            aio_all(h, lambda i: h.aio_trim(BLOCK, i * BLOCK)
                    if i % 2 else h.aio_zero(BLOCK, i * BLOCK)
                    if i % 4 == 0 else h.aio_flush())
            rbufs = [nbd.Buffer(BLOCK) for _ in range(NBLOCKS)]
            order = aio_all(h, lambda i: h.aio_pread(rbufs[i], i * BLOCK))
            check(order != sorted(order), "reads completed in order")
            for i in range(NBLOCKS):
                want = (bytes(BLOCK) if i % 2 or i % 4 == 0
                        else pattern((tag, i), BLOCK))
                expect_eq("block %d (%s)" % (i, tag), want,
                          rbufs[i].to_bytearray())
            if structured:
                seen = []
                h.block_status(NBLOCKS * BLOCK, 0,
                               lambda ctx, off, ents, e: seen.append(ents))
                check(seen and sum(seen[0][0::2]) > 0, "no block status")
                h.zero(BLOCK, 0, nbd.CMD_FLAG_FAST_ZERO)
            h.shutdown()


def case_errors():
    with Server(["async:2000:error:1:EIO:memory:1M",
                 "enospc=async:0:error:1:ENOSPC:memory:1M"]) as srv:
        for name, err in (("", errno.EIO), ("enospc", errno.ENOSPC)):
            h = srv.nbd(name)
            ops = [("read", lambda: h.pread(BLOCK, 0)),
                   ("write FUA", lambda: h.pwrite(b"\xee" * BLOCK, 0,
                                                  nbd.CMD_FLAG_FUA)),
                   ("flush", lambda: h.flush()),
                   ("trim", lambda: h.trim(BLOCK, BLOCK)),
                   ("zero", lambda: h.zero(BLOCK, 3 * BLOCK))]
            for what, op in ops:
                expect_eq("%s %s" % (name, what), ename(err),
                          ename(nbd_errnum(op)))
            expect_eq("cache", 0, nbd_errnum(h.cache, BLOCK, 0))
            h.shutdown()
        srv.signal_term()
        srv.wait_exit(15, want=1)          # the final flush fails too
        log_text = srv.stderr()
    check('export "enospc" on async:0:error:1:ENOSPC:memory:1M write '
          'off=0 len=4096: ' in log_text and "injected ENOSPC in pwrite"
          in log_text, "the failure is not logged with the request:\n%s",
          log_text[-2000:])


def case_copy():
    src = "async-src.img"
    with open(src, "wb") as f:
        f.write(random.Random(7).randbytes(8 * MiB))
    with Server(["async:300:memory:8M"]) as srv:
        subprocess.run(["nbdcopy", src, srv.uri], check=True)
        subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw",
                        src, srv.uri], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["nbdcopy", srv.uri, "async-back.img"], check=True)
    with open(src, "rb") as a, open("async-back.img", "rb") as b:
        check(a.read() == b.read(), "copied data differs")


def case_shutdown_in_flight():
    with Server(["async:300000:memory:1M"]) as srv:
        h = srv.nbd()
        bufs = [nbd.Buffer(BLOCK) for _ in range(32)]
        cookies = [h.aio_pread(b, i * BLOCK) for i, b in enumerate(bufs)]
        srv.signal_term()
        answered = 0
        for c in cookies:
            while True:
                try:
                    if h.aio_command_completed(c):
                        answered += 1
                        break
                except nbd.Error as e:
                    check(e.errnum in (errno.ESHUTDOWN, errno.ENOTCONN),
                          "in-flight read: %s", ename(e.errnum))
                    answered += 1
                    break
                h.poll(1000)
        expect_eq("replies to in-flight reads", 32, answered)
        srv.wait_exit(15)


run_cases([case_traffic, case_errors, case_copy, case_shutdown_in_flight])
