#!/usr/bin/python3
"""Clients that send requests and never read their replies pin bounded
memory server-wide, a fresh client is served meanwhile, and the memory
goes back once they close (docs/security.md 38).

One snbd-server (defaults: --max-queued-mib 256) with a 1 GiB memory
export, written first so that reads return real data:

  1. 16 hostile clients (each with a 4 KiB receive buffer) send 64 READs
     of 1 MiB each, the per-connection limit (64 MiB), and never read:
     before the server-wide bound they took the server from ~74 MiB to
     1.6 GiB.  We wait until the server's RSS has stopped growing (the
     same value twice, 1 s apart), then check its peak: at most
     256 MiB + 16 x 1 MiB (each connection with nothing in flight may
     take one request of up to 1 MiB) + 96 MiB for everything else.
  2. Meanwhile a fresh client reads 4 KiB and 1 MiB and gets its data.
  3. The hostile clients close while the fresh one stays connected: the
     server's RSS comes back within 128 MiB of its idle RSS within 10 s
     (malloc_trim when a connection with large buffers closes).

Idle, peak and settled RSS are printed.  The RSS bounds are checked on a
plain build only (under ASan or valgrind RSS measures the tool); the
fresh client is checked on every build.
"""
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "faults"))
import nbdraw                                             # noqa: E402
from nbdraw import Conn, Server, check, log               # noqa: E402
from faultlib import instrumented                         # noqa: E402

MiB = 1 << 20
HOSTILE = 16
READS = 64
READ_SIZE = MiB
BUDGET_MIB = 256
SLACK_MIB = 96
SETTLED_MIB = 128


def hostile(srv):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(srv.sock_path)
    c = Conn(s, 10)
    c.open("", structured=False, meta=False)
    for i in range(READS):
        c.request(nbdraw.CMD_READ, (i * READ_SIZE) % (1 << 30), READ_SIZE)
    return c


def rss_mib(srv):
    return srv.rss_kib() // 1024


def wait_settled(srv, timeout=60):
    """Until the RSS is the same (within 1 MiB) twice, 1 s apart."""
    last = rss_mib(srv)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1)
        now = rss_mib(srv)
        if abs(now - last) <= 1:
            return now
        last = now
    raise nbdraw.TestFailure("server RSS still moving after %d s" % timeout)


def fill(srv):
    """Write the export once, so reads copy real pages."""
    with srv.client("", structured=False) as c:
        chunk = b"\x5a" * (8 * MiB)
        for off in range(0, 1 << 30, len(chunk)):
            c.request(nbdraw.CMD_WRITE, off, len(chunk), data=chunk)
            r = c.reply()
            check(r.error == 0, "prefill write failed: %d", r.error)
        c.disconnect()


def main():
    why = instrumented()
    with Server("memory:1G") as srv:
        fill(srv)
        idle = wait_settled(srv)
        srv.reset_peak_rss()
        bad = [hostile(srv) for _ in range(HOSTILE)]
        settled = wait_settled(srv)
        peak = srv.peak_rss_kib() // 1024
        with srv.client("", structured=False) as fresh:
            for n in (4096, MiB):
                r = fresh.cmd(nbdraw.CMD_READ, 0, n)
                check(r.error == 0 and r.data == b"\x5a" * n,
                      "fresh client's %d-byte read failed", n)
            for c in bad:
                c.close()
            t0 = time.monotonic()
            try:
                srv.wait_for("RSS within %d MiB of idle" % SETTLED_MIB,
                             lambda: rss_mib(srv) <= idle + SETTLED_MIB, 10)
                back = time.monotonic() - t0
            except nbdraw.TestFailure:
                back = None
            after = rss_mib(srv)
            r = fresh.cmd(nbdraw.CMD_READ, 0, 4096)
            check(r.error == 0, "fresh client after the others closed")
            fresh.disconnect()
        log("RSS (MiB): idle %d, with %d clients not reading: %d (peak "
            "%d), after they closed: %d (%s)", idle, HOSTILE, settled, peak,
            after, "within %d MiB of idle in %.1f s" % (SETTLED_MIB, back)
            if back is not None else "not back within 10 s")
        if why:
            log("RSS bounds not checked: %s", why)
            return
        bound = BUDGET_MIB + HOSTILE * READ_SIZE // MiB + SLACK_MIB
        check(peak - idle <= bound, "peak RSS grew by %d MiB with %d "
              "clients not reading (bound %d MiB)", peak - idle, HOSTILE,
              bound)
        check(back is not None, "RSS %d MiB 10 s after the clients closed, "
              "idle was %d MiB", after, idle)


if __name__ == "__main__":
    main()
