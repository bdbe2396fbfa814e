#!/usr/bin/python3
"""Many connections against one server (misbehaving-peer suite,
"load"), with the server's memory reported and bounded
(docs/security.md 33).

One snbd-server (--tls=on: TLS optional, X.509 made with certtool) with a
2 GiB memory export that is almost empty:

1. 1,000 plain connections each negotiate up to NBD_OPT_GO (at most 64
   negotiating at a time, well under --max-negotiating) and stay open;
2. then 200 more start STARTTLS + TLS handshake + GO all at once;
3. with all 1,200 open, every one reads its own 4 KiB and checks it;
4. all disconnect; the server's threads return to the idle count, and a
   fresh client reads and writes normally; SIGTERM then exits 0.

VmRSS of the server is printed idle, with everything open, and after.
Bounds (documented here, checked below):
  - with 1,200 connections open: RSS < RSS_PEAK_MIB (100 MiB; measured
    about 37 MiB on Debian 12 x86-64, idle about 16 MiB).  Each
    connection costs one thread (256 KiB stack, mostly untouched) and a
    few KiB of buffers; the export holds ~5 MiB of data.  A leak or
    buffer of 64 KiB per connection would break the bound.
  - after they close: RSS < idle + RSS_AFTER_SLACK_MIB (32 MiB; measured
    about +11 MiB): memory of closed connections is released or reused,
    not kept per connection (glibc keeps some freed heap and cached
    thread stacks, hence the slack).
The bounds are checked only for a plain build run directly: under ASan
or valgrind RSS measures the tool (ASan: ~110 MiB idle, ~430 MiB peak).
"""

import asyncio
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "faults"))
from faultlib import (KiB, MiB, Server, check, instrumented,  # noqa: E402
                      log, pattern, raise_nofile, settled_thread_count, skip,
                      thread_count, vm_rss_kib, wait_until)
from nbdasync import Client, x509_context  # noqa: E402

PLAIN = 1000
TLS = 200
HANDSHAKES_AT_ONCE = 64
BLOCK = 4 * KiB
RSS_PEAK_MIB = 100
RSS_AFTER_SLACK_MIB = 32


def offset_of(i):
    return i * MiB                      # each client's block, 1 MiB apart


def prefill(srv):
    h = srv.nbd()
    for i in range(PLAIN + TLS):
        h.pwrite(pattern(i, BLOCK), offset_of(i))
    h.shutdown()


async def open_plain(path, n):
    sem = asyncio.Semaphore(HANDSHAKES_AT_ONCE)

    async def one():
        async with sem:
            return await Client.open(path)
    return await asyncio.gather(*(one() for _ in range(n)))


async def open_tls(path, n, ctx):
    return await asyncio.gather(*(Client.open(path, tls=ctx)
                                  for _ in range(n)))


async def read_all(clients):
    got = await asyncio.gather(*(c.read(offset_of(i), BLOCK)
                                 for i, c in enumerate(clients)))
    bad = [i for i, d in enumerate(got) if d != pattern(i, BLOCK)]
    check(not bad, "%d clients read wrong data (first: %s)", len(bad),
          bad[:5])


async def load(srv, ctx, rss):
    t0 = time.monotonic()
    plain = await open_plain(srv.sock, PLAIN)
    t1 = time.monotonic()
    log("  %d plain connections at GO in %.1f s", PLAIN, t1 - t0)
    tls = await open_tls(srv.sock, TLS, ctx)
    log("  %d concurrent TLS handshakes + GO in %.1f s", TLS,
        time.monotonic() - t1)
    clients = plain + tls
    threads = thread_count(srv.pid)
    rss["peak"] = vm_rss_kib(srv.pid)
    log("  server: %d threads, VmRSS %d KiB with %d connections open",
        threads, rss["peak"], len(clients))
    check(threads >= len(clients), "only %d server threads for %d "
          "connections: not all of them are open", threads, len(clients))
    await read_all(clients)
    rss["peak"] = max(rss["peak"], vm_rss_kib(srv.pid))
    await asyncio.gather(*(c.disconnect() for c in clients))


def main():
    for tool in ("certtool",):
        if not shutil.which(tool):
            skip("%s is not installed" % tool)
    raise_nofile(4096)
    ctx = x509_context(os.environ["SNBD_SRC"], os.path.abspath("pki"))
    srv = Server(["memory:2G"], args=["--tls=on", "--tls-certificates",
                                      os.path.abspath("pki")])
    with srv:
        prefill(srv)
        idle_threads = settled_thread_count(srv.pid)
        rss = {"idle": vm_rss_kib(srv.pid)}
        log("  server idle: %d threads, VmRSS %d KiB", idle_threads,
            rss["idle"])
        asyncio.run(load(srv, ctx, rss))
        wait_until("the server's connection threads to end",
                   lambda: thread_count(srv.pid) <= idle_threads, 20)
        rss["after"] = vm_rss_kib(srv.pid)
        h = srv.nbd()
        h.pwrite(b"\x5a" * BLOCK, 0)
        check(h.pread(BLOCK, 0) == b"\x5a" * BLOCK, "fresh client: bad read")
        h.shutdown()
    log("VmRSS (KiB): idle %d, with %d connections %d, after %d",
        rss["idle"], PLAIN + TLS, rss["peak"], rss["after"])
    why = instrumented()
    if why:
        log("RSS bounds not checked: the server is %s", why)
    else:
        check(rss["peak"] < RSS_PEAK_MIB * 1024, "VmRSS %d KiB with %d "
              "connections: over %d MiB", rss["peak"], PLAIN + TLS,
              RSS_PEAK_MIB)
        check(rss["after"] < rss["idle"] + RSS_AFTER_SLACK_MIB * 1024,
              "VmRSS %d KiB after the connections closed, idle was %d KiB",
              rss["after"], rss["idle"])


if __name__ == "__main__":
    main()
