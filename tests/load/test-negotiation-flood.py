#!/usr/bin/python3
"""A flood of silent connections does not evict slow real clients
(docs/security.md 11).

One snbd-server over TCP on 127.0.0.1 with X.509 (FORCEDTLS) and the
default limits (--max-negotiating 256, --max-negotiating-per-source 16).
Linux lets a client bind any 127.x.y.z address, so sources are distinct
addresses without leaving the host.

  flood        a thread opens connections from 32 addresses (127.1.0.1 to
               127.1.0.32: 32 x 16 is twice the server's 256 slots, so
               the per-source limit alone cannot save anyone) at up to
               2,000 a second and never sends a byte.  Meanwhile five
               TLS clients from 127.2.0.x take 100 ms over every step
               (client flags, STARTTLS, each TLS flight, GO, a read), one
               after another.  At least 4 of 5 must be served: they have
               made progress, the flood has not, and their address holds
               one negotiation where each flood address holds many.  The
               flood stays bounded: the server's descriptors never exceed
               its limit plus the clients (with slack for connections
               dropped whose thread has not yet closed them).
  per_source   twenty silent connections from one address: 16 stay, the
               4 oldest are dropped; twenty from twenty addresses all
               stay.

The achieved flood rate and the slow clients' results are printed.
"""
import os
import selectors
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "faults"))
import nbdraw                                             # noqa: E402
from nbdraw import (BioSock, Closed, Conn, Server, TlsBio, check,  # noqa: E402
                    client_context, log, make_x509)
from faultlib import raise_nofile                         # noqa: E402

MAX_NEGOTIATING = 256
PER_SOURCE = 16
FLOOD_SOURCES = ["127.1.0.%d" % i for i in range(1, 33)]
FLOOD_RATE = 2000
STEP = 0.1
SLOW_CLIENTS = 5


def connect_from(src, port, timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


class Flood(threading.Thread):
    """Silent connections at up to FLOOD_RATE a second, round robin over
    FLOOD_SOURCES; each is closed once the server has closed it."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.opened = 0
        self.failed = 0
        self.sel = selectors.DefaultSelector()

    def _open(self, src):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.bind((src, 0))
            s.connect_ex(("127.0.0.1", self.port))
        except OSError:
            s.close()
            self.failed += 1
            return
        self.sel.register(s, selectors.EVENT_READ)
        self.opened += 1

    def _reap(self, timeout):
        for key, _ in self.sel.select(timeout):
            s = key.fileobj
            try:
                gone = s.recv(4096) == b""      # the greeting, or EOF
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                self.sel.unregister(s)
                s.close()

    def run(self):
        start = time.monotonic()
        i = 0
        while not self.stop.is_set():
            due = start + i / FLOOD_RATE
            now = time.monotonic()
            if now >= due:
                self._open(FLOOD_SOURCES[i % len(FLOOD_SOURCES)])
                i += 1
                self._reap(0)
            else:
                self._reap(due - now)
        self.seconds = time.monotonic() - start
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


def slow_client(port, ctx, src):
    """A TLS client taking STEP seconds over every step; True if served."""
    with Conn(connect_from(src, port), 10) as c:
        c.greeting()
        time.sleep(STEP)
        c.send(nbdraw.u32(nbdraw.FLAG_C_FIXED_NEWSTYLE |
                          nbdraw.FLAG_C_NO_ZEROES))
        time.sleep(STEP)
        c.expect_option(nbdraw.REP_ACK, nbdraw.OPT_STARTTLS)
        t = TlsBio(c.sock, ctx)
        slow_tls_handshake(t)
        tc = Conn(BioSock(t), 10)
        time.sleep(STEP)
        tc.go("")
        time.sleep(STEP)
        check(tc.read(0, 4096) == bytes(4096), "read: wrong data")
        tc.disconnect()
    return True


def slow_tls_handshake(t):
    """TlsBio.handshake with STEP seconds before each flight we send."""
    import ssl
    for _ in range(100):
        try:
            t.obj.do_handshake()
            out = t.outb.read()
            if out:
                time.sleep(STEP)
                t.sock.sendall(out)
            return
        except ssl.SSLWantReadError:
            out = t.outb.read()
            if out:
                time.sleep(STEP)
                t.sock.sendall(out)
            data = t.sock.recv(65536)
            if not data:
                raise Closed("TLS handshake")
            t.inb.write(data)
    raise nbdraw.TestFailure("TLS handshake does not end")


def case_flood(srv):
    flood = Flood(srv.port)
    flood.start()
    results, peak_fds = [], 0
    try:
        # Let the flood fill the server's slots first.
        srv.wait_for("the flood to fill the negotiation slots",
                     lambda: flood.opened >= 2 * MAX_NEGOTIATING, 30)
        for i in range(SLOW_CLIENTS):
            try:
                ok = slow_client(srv.port, srv.ctx, "127.2.0.%d" % (i + 1))
            except (Closed, OSError, nbdraw.TestFailure) as e:
                log("slow client %d failed: %s", i + 1, e)
                ok = False
            results.append(ok)
            peak_fds = max(peak_fds, srv.nfds())
    finally:
        flood.stop.set()
        flood.join(30)
    rate = flood.opened / flood.seconds
    log("flood: %d connections in %.1f s (%.0f/s, %d failed to open); slow "
        "clients served: %d of %d; server descriptors at most %d",
        flood.opened, flood.seconds, rate, flood.failed, sum(results),
        len(results), peak_fds)
    check(sum(results) >= 4, "only %d of %d slow clients served during the "
          "flood", sum(results), len(results))
    bound = 2 * MAX_NEGOTIATING + 64
    check(peak_fds <= bound, "the flood is not bounded: %d descriptors "
          "(bound %d)", peak_fds, bound)


def open_silent(port, sources):
    socks = []
    for src in sources:
        s = connect_from(src, port)
        nbdraw.Conn(s).recv_exact(18, "greeting")  # taken on by the server
        socks.append(s)
    return socks


def case_per_source(srv):
    one = open_silent(srv.port, ["127.3.0.1"] * 20)
    many = open_silent(srv.port, ["127.4.0.%d" % i for i in range(1, 21)])
    try:
        # Each drop happened before the next connection was greeted.
        check(nbdraw.closed_by_peer(one) == [True] * 4 + [False] * 16,
              "one address: not the 4 oldest dropped: %s", nbdraw.closed_by_peer(one))
        check(not any(nbdraw.closed_by_peer(many)), "twenty addresses: some dropped: %s",
              nbdraw.closed_by_peer(many))
    finally:
        for s in one + many:
            s.close()


def main():
    raise_nofile(16384)
    pki = make_x509(os.path.join(os.environ["TMPDIR"], "pki"))
    with Server("memory:1M", args=["--tls-certificates", pki,
                                   "--handshake-timeout", "10"],
                tcp=True) as srv:
        srv.ctx = client_context(pki)
        failed = nbdraw.run_cases(nbdraw.cases_of(globals()), srv,
                                  lambda s: s.check_alive())
    if failed:
        log("%d case(s) failed", failed)
        sys.exit(1)


if __name__ == "__main__":
    main()
