"""Slowloris against snbd-server with TLS required (docs/security.md 11, QEMU
CVE-2024-7409): with --handshake-timeout 2, connections that are silent,
trickle a byte every 0.4 s, stall half-way through a ClientHello, or stall
after the server's TLS flight are all closed at about 2 s after they
connected, while meanwhile real clients (nbdcopy both ways, checksums
compared, and a libnbd session opened before them that keeps working past
the deadline) are unaffected.  With --max-negotiating 5, twenty silent
connections do not lock out nbdinfo: the oldest are dropped first.
"""
import hashlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdraw                                             # noqa: E402
from nbdraw import check, Server                          # noqa: E402
import tlsinterop as ti                                   # noqa: E402

TMP = os.environ["TMPDIR"]
PKI = os.path.join(TMP, "pki")
PSK = os.path.join(TMP, "keys.psk")
IMG = os.path.join(TMP, "src.img")
IMG_SIZE = 32 << 20
DEADLINE = 2.0
# Closed no earlier than the deadline (less scheduling jitter), and not
# much later: a sanitizer build is slower, so the upper slack is generous.
EARLIEST, LATEST = DEADLINE - 0.3, DEADLINE + 2.5


def psk_uri(srv):
    return ("nbds://alice@127.0.0.1:%d/?tls-psk-file=%s" % (srv.port, PSK))


def wait_eof(sock, until):
    """Reads until EOF or reset; returns True if the server closed before
    `until` (a monotonic time)."""
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except (ConnectionResetError, ssl.SSLError):
            return True
    return False


# ---- the slow clients: each returns seconds from connect to close ----

def silent(srv, until):
    s = socket.create_connection(("127.0.0.1", srv.port))
    t0 = time.monotonic()
    with s:
        check(wait_eof(s, until), "silent connection never closed")
        return time.monotonic() - t0


def trickle(srv, until):
    """Valid handshake bytes, one every 0.4 s: activity must not extend
    the deadline."""
    s = socket.create_connection(("127.0.0.1", srv.port))
    t0 = time.monotonic()
    data = nbdraw.u32(nbdraw.FLAG_C_FIXED_NEWSTYLE) + nbdraw.option_bytes(
        nbdraw.OPT_LIST) * 4
    with s:
        ti.recv_exact(s, 18, until)
        for b in data:
            try:
                s.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - t0
            if wait_eof(s, min(until, time.monotonic() + 0.4)):
                return time.monotonic() - t0
        raise nbdraw.TestFailure("trickling connection never closed")


def tls_partial_hello(srv, until):
    """STARTTLS ACKed, then half a ClientHello and nothing more."""
    s = socket.create_connection(("127.0.0.1", srv.port))
    t0 = time.monotonic()
    with s:
        ti.starttls_preamble(s, until)
        hello = nbdraw.TlsBio(s, client_ctx()).client_hello()
        s.sendall(hello[:len(hello) // 2])
        check(wait_eof(s, until), "half-ClientHello connection never closed")
        return time.monotonic() - t0


def tls_after_flight(srv, until):
    """A whole ClientHello; the server answers, we never finish."""
    s = socket.create_connection(("127.0.0.1", srv.port))
    t0 = time.monotonic()
    with s:
        ti.starttls_preamble(s, until)
        s.sendall(nbdraw.TlsBio(s, client_ctx()).client_hello())
        s.settimeout(max(0.1, until - time.monotonic()))
        check(s.recv(5)[:1] == b"\x16", "no ServerHello")
        check(wait_eof(s, until), "stalled TLS connection never closed")
        return time.monotonic() - t0


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(PKI, "ca-cert.pem"))
    return ctx


def run_thread(results, name, fn, *args):
    def body():
        try:
            results[name] = fn(*args)
        except Exception as e:
            results[name] = e
    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def copy_loop(srv, stop, results):
    """nbdcopy in and out, over and over until stop is set; each round's
    checksum must match (over IMG's length: the session writes past it)."""
    want = hashlib.blake2b(open(IMG, "rb").read()).hexdigest()
    out = os.path.join(TMP, "out.img")
    rounds = 0
    while not stop.is_set() and rounds < 50:
        for cmd in (["nbdcopy", IMG, psk_uri(srv)],
                    ["nbdcopy", psk_uri(srv), out]):
            rc, text = ti.run(cmd, timeout=30)
            if rc != 0:
                results["copy"] = "%s failed: %s" % (cmd, text)
                return
        got = hashlib.blake2b(open(out, "rb").read(IMG_SIZE)).hexdigest()
        if got != want:
            results["copy"] = "round %d: checksum differs" % rounds
            return
        os.unlink(out)
        rounds += 1
    results["copy"] = rounds


def case_deadline(_):
    args = ["--tls-psk", PSK, "--tls-certificates", PKI,
            "--handshake-timeout", "%d" % DEADLINE]
    with Server("memory:%d" % (IMG_SIZE + (1 << 20)), args=args,
                tcp=True) as srv:
        # Negotiated before the slow ones; its I/O stays past IMG_SIZE.
        session = ti.Session(psk_uri(srv), base=IMG_SIZE)
        t_session = time.monotonic()
        results, stop = {}, threading.Event()
        copier = run_thread(results, "copy-thread", copy_loop, srv, stop,
                            results)
        until = time.monotonic() + LATEST + 1
        slow = {"silent": silent, "trickle": trickle,
                "tls_partial_hello": tls_partial_hello,
                "tls_after_flight": tls_after_flight}
        threads = [run_thread(results, n, fn, srv, until)
                   for n, fn in slow.items()]
        for t in threads:
            t.join(LATEST + 3)
        # The session started before the slow ones, so it is past the
        # handshake deadline now: it must still read and write.
        check(time.monotonic() - t_session > DEADLINE, "too quick")
        session.io()
        stop.set()
        copier.join(60)
        session.quit()
        for name in slow:
            r = results.get(name)
            if isinstance(r, Exception):
                raise r
            check(r is not None, "%s: no result", name)
            check(EARLIEST <= r <= LATEST,
                  "%s: closed after %.2f s, expected %.1f..%.1f s", name, r,
                  EARLIEST, LATEST)
            nbdraw.log("%s closed after %.2f s", name, r)
        check(isinstance(results.get("copy"), int) and results["copy"] >= 1,
              "copies during the attack: %s", results.get("copy"))
        nbdraw.log("%d nbdcopy rounds during the attack", results["copy"])
        # Logged with peer and reason (a client that never sent its
        # flags is only logged at debug level, so 3 of the 4).
        err = srv.stderr()
        check(err.count("handshake not finished in 2 s; closing") +
              err.count("TLS handshake failed: timed out")
              >= len(slow) - 1,
              "the server log does not show the slow clients dropped:\n%s",
              err[-3000:])


def case_max_negotiating(_):
    args = ["--tls-psk", PSK, "--handshake-timeout", "30",
            "--max-negotiating", "5"]
    with Server("memory:1M", args=args, tcp=True) as srv:
        socks = []
        try:
            for _ in range(20):
                s = socket.create_connection(("127.0.0.1", srv.port))
                socks.append(s)
                # Read the greeting: the server has taken this one on.
                ti.recv_exact(s, 18, time.monotonic() + 10)

            def closed():
                return nbdraw.closed_by_peer(socks)
            srv.wait_for("15 of 20 silent connections dropped",
                         lambda: sum(closed()) >= 15)
            check(closed() == [True] * 15 + [False] * 5,
                  "not the oldest dropped: %s", closed())
            t0 = time.monotonic()
            rc, out = ti.nbdinfo(psk_uri(srv), "--size", timeout=20)
            check(rc == 0 and out.strip() == "1048576",
                  "nbdinfo during the flood: %d %s", rc, out)
            check(time.monotonic() - t0 < 5, "nbdinfo took %.1f s",
                  time.monotonic() - t0)
            check(sum(closed()) == 16 and closed()[15],
                  "nbdinfo did not displace the oldest silent one: %s",
                  closed())
            check("too many connections negotiating" in srv.stderr(),
                  "no log line for the dropped connections")
        finally:
            for s in socks:
                s.close()


if __name__ == "__main__":
    for tool in ("certtool", "psktool", "nbdcopy", "nbdinfo"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ["PATH"].split(os.pathsep)):
            nbdraw.skip("%s is not installed" % tool)
    ti.tls_sh("make_x509", PKI)
    ti.tls_sh("make_psk", PSK, "alice")
    subprocess.run(["head", "-c", str(IMG_SIZE), "/dev/urandom"],
                   stdout=open(IMG, "wb"), check=True)
    ti.main(nbdraw.cases_of(globals()))
