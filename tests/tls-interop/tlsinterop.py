"""Helpers for tests/tls-interop/test-*.py: credentials from tests/lib/tls.sh,
real TLS clients (gnutls-cli, libnbd through $PYTHON, nbdinfo) pointed at a
captive snbd-server (nbdraw.Server), and a STARTTLS relay.

gnutls-cli speaks TLS from its first byte and knows nothing of NBD, so
Relay sits in between: it listens on an ephemeral loopback port, and for
the connection gnutls-cli makes it opens one to the NBD server, does the
fixed-newstyle greeting and NBD_OPT_STARTTLS itself (proto.md "Option
haggling", NBD_OPT_STARTTLS), and from the server's ACK on copies bytes
both ways untouched: the TLS handshake is gnutls-cli's and the server's.

Every wait is bounded.
"""

import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

import nbdraw
from nbdraw import check, TestFailure

SRC = os.environ["SNBD_SRC"]
TLS_SH = os.path.join(SRC, "tests", "lib", "tls.sh")
PYTHON = os.environ.get("PYTHON", "/usr/bin/python3")


def tls_sh(func, *args):
    """Runs a tests/lib/tls.sh function (make_x509, make_psk, ...)."""
    r = subprocess.run(["bash", "-c", '. "$0" && "$@"', TLS_SH, func]
                       + [str(a) for a in args],
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "%s %s failed: %s", func, args, r.stderr)


def psk_key(path, user):
    """The hex key of USER in a psktool file."""
    with open(path) as f:
        for line in f:
            u, _, key = line.strip().partition(":")
            if u == user:
                return key
    raise TestFailure("no user %s in %s" % (user, path))


def run(cmd, timeout=30, env=None):
    """(exit status, stdout + stderr) of a client command; a hang fails."""
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise TestFailure("%s did not finish in %d s" % (cmd[0], timeout))
    return r.returncode, r.stdout.decode("utf-8", "replace")


def nbdinfo(uri, *args, timeout=30):
    return run(["nbdinfo"] + list(args) + [uri], timeout)


def wait_log(srv, what, pattern, start=0, timeout=10.0):
    """Waits until the server's stderr, from offset start, contains
    pattern; returns the text from start."""
    return srv.wait_log(what, pattern, start, timeout)


# ---- plain-text NBD up to STARTTLS ----

def recv_exact(sock, n, deadline):
    buf = b""
    while len(buf) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(n - len(buf))
        except socket.timeout:
            raise TestFailure("timed out reading from the NBD server")
        if not data:
            raise nbdraw.Closed("NBD server", buf)
        buf += data
    return buf


def starttls_preamble(sock, deadline):
    """Greeting, client flags, NBD_OPT_STARTTLS; returns once the server's
    ACK has been read, so the next byte on sock is TLS."""
    g = recv_exact(sock, 18, deadline)
    magic, opts, _ = struct.unpack(">QQH", g)
    check(magic == nbdraw.NBDMAGIC and opts == nbdraw.IHAVEOPT,
          "not a newstyle NBD server: %r", g)
    sock.sendall(nbdraw.u32(nbdraw.FLAG_C_FIXED_NEWSTYLE |
                            nbdraw.FLAG_C_NO_ZEROES) +
                 nbdraw.option_bytes(nbdraw.OPT_STARTTLS))
    magic, opt, rtype, n = struct.unpack(">QIII", recv_exact(sock, 20,
                                                             deadline))
    check(magic == nbdraw.REP_MAGIC and opt == nbdraw.OPT_STARTTLS,
          "bad reply to STARTTLS: magic %#x option %d", magic, opt)
    check(rtype == nbdraw.REP_ACK and n == 0,
          "STARTTLS refused: reply %s length %d", nbdraw.rep_name(rtype), n)


def splice(a, b, deadline):
    """Copies bytes both ways until both sides have finished sending or
    the deadline passes."""
    peers = {a: b, b: a}
    while peers and time.monotonic() < deadline:
        ready, _, _ = select.select(list(peers), [], [],
                                    max(0.01, deadline - time.monotonic()))
        for src in ready:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            dst = peers[src]
            if data:
                try:
                    dst.sendall(data)
                    continue
                except OSError:
                    pass
            del peers[src]
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


class Relay:
    """One-connection STARTTLS relay to the server at address (a Unix
    socket path or a (host, port) pair)."""

    def __init__(self, address, timeout=20.0):
        self.address = address
        self.deadline = time.monotonic() + timeout
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.error = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _connect(self):
        if isinstance(self.address, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(self.address)
            return s
        return socket.create_connection(self.address, timeout=10)

    def _serve(self):
        conn = srv = None
        try:
            self.lsock.settimeout(max(0.1, self.deadline - time.monotonic()))
            conn, _ = self.lsock.accept()
            srv = self._connect()
            starttls_preamble(srv, self.deadline)
            splice(conn, srv, self.deadline)
        except Exception as e:               # reported by join()
            self.error = e
        finally:
            for s in (conn, srv, self.lsock):
                if s:
                    s.close()

    def join(self):
        self.thread.join(max(0.1, self.deadline - time.monotonic()) + 1)
        check(not self.thread.is_alive(), "relay did not finish")
        if self.error:
            raise self.error


def gnutls_cli(address, args, timeout=20.0):
    """gnutls-cli ARGS through a Relay to the NBD server; returns (exit
    status, output).  Its stdin is empty, so after a successful handshake
    it closes and exits 0."""
    relay = Relay(address, timeout)
    rc, out = run(["gnutls-cli", "-p", str(relay.port), "127.0.0.1"] + args,
                  timeout)
    relay.join()
    return rc, out


# ---- a long-lived libnbd session in another process ----

SESSION_SCRIPT = r"""
import os, sys, nbd
h = nbd.NBD()
h.set_uri_allow_local_file(True)
h.connect_uri(sys.argv[1])
base = int(sys.argv[2])
assert h.get_tls_negotiated()
print("connected", flush=True)
n = 0
for line in sys.stdin:
    if line.strip() == "quit":
        break
    n += 1
    off = base + n * 65536
    buf = os.urandom(65536)
    h.pwrite(buf, off)
    h.flush()
    assert h.pread(65536, off) == buf, "read back differs"
    print("io ok", flush=True)
h.shutdown()
print("bye", flush=True)
"""


class Session:
    """A libnbd handle (python3-libnbd, the library nbdsh wraps) held open
    in a child process; io() makes it write, flush and read back 64 KiB,
    at base + 64 KiB, base + 128 KiB, ... (one step further each time)."""

    def __init__(self, uri, base=0, timeout=20.0):
        self.timeout = timeout
        self.proc = subprocess.Popen([PYTHON, "-c", SESSION_SCRIPT, uri,
                                      str(base)],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self._expect("connected")

    def _expect(self, want):
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        line = self.proc.stdout.readline() if ready else "(no answer)\n"
        if line.strip() != want:
            rest = ""
            if self.proc.poll() is not None:
                rest = self.proc.stdout.read()
            self.close()
            raise TestFailure("libnbd session: expected %r, got %r %s" %
                              (want, line, rest))

    def io(self):
        self.proc.stdin.write("io\n")
        self.proc.stdin.flush()
        self._expect("io ok")

    def quit(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self._expect("bye")
        self.close()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def main(cases):
    """Runs (name, fn) cases, prints a summary, exits 1 on any failure."""
    failed = nbdraw.run_cases(cases)
    if failed:
        nbdraw.log("%d case(s) failed", failed)
        sys.exit(1)
    nbdraw.log("all cases passed")
