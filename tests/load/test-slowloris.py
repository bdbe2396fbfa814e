#!/usr/bin/python3
"""Slowloris: clients that hold a negotiation open are dropped at the
handshake deadline while a normal client is served (docs/security.md 11).

snbd-server --handshake-timeout 3 (TLS optional, X.509) gets 120 peers
that never finish negotiating, 30 of each kind:

  silent         connect and say nothing
  trickle        flags and an NBD_OPT_GO, one byte a second
  starttls       NBD_OPT_STARTTLS acknowledged, then no TLS handshake
  tls-partial    after the STARTTLS ACK, the first 15 bytes of a TLS
                 record, then nothing (stalled inside the TLS handshake)

While they hang on, a normal client copies 32 MiB in and out with nbdcopy
and must get its data back.  Every slow peer must be dropped at the
deadline: not before 3 s from its connect (minus timer slack) and not
much after (3 s plus LATE_SLACK, times SLOW).  Afterwards the server's
threads return to idle and it exits 0 on SIGTERM.  Its VmRSS is printed.
"""

import asyncio
import os
import shutil
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "faults"))
from faultlib import (MiB, SLOW, Server, check, log, raise_nofile,  # noqa
                      settled_thread_count, skip, thread_count, vm_rss_kib,
                      wait_until)
from nbdasync import (FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES,  # noqa: E402
                      OPT_GO, OPT_STARTTLS, REP_ACK, go_payload,
                      option_bytes, x509_context)

DEADLINE = 3.0
EARLY_SLACK = 0.2            # poll() rounding, clocks
LATE_SLACK = 3.0             # a busy 2-core machine
PER_KIND = 30
FLAGS = struct.pack(">I", FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
# A TLS 1.x handshake record header announcing 512 bytes, then 10 of them.
PARTIAL_CLIENT_HELLO = bytes([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00,
                              0x01, 0xfc, 0x03, 0x03]) + b"\0" * 4


async def until_eof(r):
    """Read (and ignore) until the server closes; bounded."""
    limit = time.monotonic() + (DEADLINE + LATE_SLACK) * SLOW + 5
    while time.monotonic() < limit:
        try:
            b = await asyncio.wait_for(r.read(65536),
                                       limit - time.monotonic())
        except (ConnectionError, asyncio.TimeoutError):
            return
        if not b:
            return


async def starttls(r, w):
    await r.readexactly(18)
    w.write(FLAGS + option_bytes(OPT_STARTTLS))
    hdr = await r.readexactly(20)
    rtype, n = struct.unpack(">II", hdr[12:20])
    check(rtype == REP_ACK and n == 0, "STARTTLS not acknowledged: 0x%x",
          rtype)


async def trickle(w):
    data = FLAGS + option_bytes(OPT_GO, go_payload(""))
    for i in range(len(data)):
        try:
            w.write(data[i:i + 1])
            await w.drain()
        except ConnectionError:
            return
        await asyncio.sleep(1.0)       # the point of the test: 1 byte/s


async def slow_peer(path, kind, ready):
    """Returns seconds from connect to the server's close; sets the future
    `ready` once in position."""
    r, w = await asyncio.wait_for(asyncio.open_unix_connection(path), 10)
    t0 = time.monotonic()
    side = None
    try:
        if kind == "trickle":
            side = asyncio.ensure_future(trickle(w))
        elif kind in ("starttls", "tls-partial"):
            await starttls(r, w)
            if kind == "tls-partial":
                w.write(PARTIAL_CLIENT_HELLO)
                await w.drain()
        ready.set_result(True)
        await until_eof(r)
        return time.monotonic() - t0
    finally:
        if side:
            side.cancel()
        w.transport.abort()


async def normal_copy(uri):
    """nbdcopy a random 32 MiB image into the export and back."""
    with open("in.img", "wb") as f:
        f.write(os.urandom(32 * MiB))
    t0 = time.monotonic()
    for args in (["in.img", uri], [uri, "out.img"]):
        p = await asyncio.create_subprocess_exec("nbdcopy", "--", *args)
        rc = await asyncio.wait_for(p.wait(), 30 * SLOW)
        check(rc == 0, "nbdcopy %s failed: %d", " ".join(args), rc)
    took = time.monotonic() - t0
    with open("in.img", "rb") as a, open("out.img", "rb") as b:
        check(a.read() == b.read()[:32 * MiB], "copied data differ")
    return took


async def attack(srv):
    kinds = ("silent", "trickle", "starttls", "tls-partial")
    loop = asyncio.get_running_loop()
    ready = [loop.create_future() for _ in range(len(kinds) * PER_KIND)]
    peers = [asyncio.ensure_future(slow_peer(srv.sock, k,
                                             ready[i * PER_KIND + j]))
             for i, k in enumerate(kinds) for j in range(PER_KIND)]
    # Every slow peer is connected (and past STARTTLS) before the copy.
    await asyncio.wait_for(asyncio.gather(*ready), 10 * SLOW)
    threads = thread_count(srv.pid)
    rss = vm_rss_kib(srv.pid)
    log("  server with %d slow peers: %d threads, VmRSS %d KiB",
        len(peers), threads, rss)
    check(threads >= len(peers), "only %d server threads for %d slow "
          "peers", threads, len(peers))
    took = await normal_copy(srv.uri)
    log("  normal client: 32 MiB in and out in %.1f s", took)
    times = await asyncio.gather(*peers)
    for k, kind in enumerate(kinds):
        t = times[k * PER_KIND:(k + 1) * PER_KIND]
        log("  %-12s dropped after %.2f .. %.2f s", kind, min(t), max(t))
        check(min(t) >= DEADLINE - EARLY_SLACK, "%s peer dropped after "
              "%.2f s, before the %.0f s deadline", kind, min(t), DEADLINE)
        check(max(t) <= (DEADLINE + LATE_SLACK) * SLOW, "%s peer held for "
              "%.2f s with a %.0f s deadline", kind, max(t), DEADLINE)


def main():
    for tool in ("certtool", "nbdcopy"):
        if not shutil.which(tool):
            skip("%s is not installed" % tool)
    raise_nofile(1024)
    x509_context(os.environ["SNBD_SRC"], os.path.abspath("pki"))
    srv = Server(["memory:64M"],
                 args=["--tls=on", "--tls-certificates",
                       os.path.abspath("pki"),
                       "--handshake-timeout", "%d" % DEADLINE])
    with srv:
        idle = settled_thread_count(srv.pid)
        rss0 = vm_rss_kib(srv.pid)
        asyncio.run(attack(srv))
        wait_until("the slow peers' threads to end",
                   lambda: thread_count(srv.pid) <= idle, 10)
        log("VmRSS (KiB): idle %d, after %d", rss0, vm_rss_kib(srv.pid))


if __name__ == "__main__":
    main()
