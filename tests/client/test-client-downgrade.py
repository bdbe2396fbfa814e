"""Downgrade attacks (docs/security.md 21, libnbd CVE-2019-14842): a
man-in-the-middle between libsnbd and a TLS-requiring nbdkit strips
NBD_OPT_STARTTLS, answers it with an error, pretends to be a non-fixed-
newstyle or oldstyle server, or acknowledges STARTTLS and then talks in
clear text.  A client that requires TLS (nbds:// or SNBD_TLS_REQUIRE) must
fail, and every byte it sent in clear must be the client flags and the
STARTTLS option, nothing else.  A transparent relay is the control: the
same client succeeds through it, over TLS."""
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbdscript import (ERR, NBD_MAGIC, OLDSTYLE_MAGIC, OPT_STARTTLS,  # noqa
                       OPTS_MAGIC, REP_ACK, REP_MAGIC, driver_path)

TMP = os.environ["TMPDIR"]
INFO = os.environ["SNBD_INFO"]
PKI = os.path.join(TMP, "pki")
UPSTREAM = os.path.join(TMP, "upstream.sock")
PROXY = os.path.join(TMP, "proxy.sock")
STARTTLS = struct.pack(">QII", OPTS_MAGIC, OPT_STARTTLS, 0)


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise ConnectionError("EOF")
        buf += b
    return buf


class Proxy:
    """Accepts one client; mode decides what it does.  self.sent collects
    every byte the client sent, in order."""

    def __init__(self, mode, arg=None):
        self.mode, self.arg = mode, arg
        self.sent = b""
        self.error = None
        if os.path.exists(PROXY):
            os.unlink(PROXY)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(PROXY)
        self.listener.listen(1)
        self.listener.settimeout(15)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def from_client(self, c, n):
        data = recv_exact(c, n)
        self.sent += data
        return data

    def pump(self, src, dst, capture):
        try:
            while True:
                b = src.recv(65536)
                if not b:
                    break
                if capture:
                    self.sent += b
                dst.sendall(b)
        except OSError:
            pass
        for s in (dst,):
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def relay(self, c, u):
        t = threading.Thread(target=self.pump, args=(u, c, False), daemon=True)
        t.start()
        self.pump(c, u, True)
        t.join(15)

    def run(self):
        try:
            c, _ = self.listener.accept()
            c.settimeout(15)
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            u.connect(UPSTREAM)
            u.settimeout(15)
            getattr(self, "mode_" + self.mode)(c, u)
        except (ConnectionError, socket.timeout):
            pass
        except Exception as e:
            self.error = e
        finally:
            # Whatever else the client still sends is captured too.
            try:
                c.settimeout(5)
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    self.sent += b
            except Exception:
                pass
            for s in ("c", "u"):
                if s in locals():
                    locals()[s].close()

    # The greeting passes; the first option is the client's business.
    def greet(self, c, u, gflags=None):
        g = recv_exact(u, 18)
        if gflags is not None:
            g = g[:16] + struct.pack(">H", gflags)
        c.sendall(g)
        u.sendall(self.from_client(c, 4))

    def first_option(self, c):
        hdr = self.from_client(c, 16)
        _, opt, length = struct.unpack(">QII", hdr)
        if length:
            self.from_client(c, length)
        return opt

    def mode_relay(self, c, u):
        self.relay(c, u)

    def mode_strip(self, c, u):
        """Drop STARTTLS and claim the server does not know it."""
        self.greet(c, u)
        opt = self.first_option(c)
        c.sendall(struct.pack(">QIII", REP_MAGIC, opt, ERR | 1, 0))
        self.relay(c, u)

    def mode_error(self, c, u):
        """Answer STARTTLS with the error self.arg, with a message."""
        self.greet(c, u)
        opt = self.first_option(c)
        msg = b"TLS is not available today"
        c.sendall(struct.pack(">QIII", REP_MAGIC, opt, self.arg, len(msg)) + msg)
        self.relay(c, u)

    def mode_nonfixed(self, c, u):
        """Hide NBD_FLAG_FIXED_NEWSTYLE from the client."""
        g = recv_exact(u, 18)
        c.sendall(g[:16] + struct.pack(">H", 0))
        self.relay(c, u)

    def mode_oldstyle(self, c, u):
        c.sendall(struct.pack(">QQQI", NBD_MAGIC, OLDSTYLE_MAGIC, 1 << 20, 1) +
                  b"\0" * 124)
        self.relay(c, u)

    def mode_ack_then_clear(self, c, u):
        """Acknowledge STARTTLS, then speak NBD in clear text."""
        self.greet(c, u)
        opt = self.first_option(c)
        c.sendall(struct.pack(">QIII", REP_MAGIC, opt, REP_ACK, 0))
        # What a plain server would answer to the next option.
        c.sendall(struct.pack(">QIII", REP_MAGIC, 8, REP_ACK, 0))
        self.relay(c, u)

    def mode_ack_payload(self, c, u):
        self.greet(c, u)
        opt = self.first_option(c)
        c.sendall(struct.pack(">QIII", REP_MAGIC, opt, REP_ACK, 4) + b"\0" * 4)
        self.relay(c, u)

    def mode_hangup(self, c, u):
        self.greet(c, u)
        self.first_option(c)
        c.shutdown(socket.SHUT_WR)

    def finish(self):
        self.listener.close()
        self.thread.join(20)
        assert not self.thread.is_alive(), "proxy stuck"


def clients():
    """(name, argv) of clients that require TLS, pointed at the proxy."""
    q = "socket=%s&tls-certificates=%s&tls-hostname=localhost" % (PROXY, PKI)
    return [
        ("snbd-info nbds://", [INFO, "nbds+unix:///?" + q]),
        ("libsnbd SNBD_TLS_REQUIRE",
         [driver_path(), "--tls=require", "nbd+unix:///?" + q, "read:0:512"]),
    ]


def run(argv):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    return p.returncode, p.stdout.decode(errors="replace")


def check(mode, arg, want_sent, want_msg):
    ok = True
    for name, argv in clients():
        proxy = Proxy(mode, arg)
        rc, out = run(argv)
        proxy.finish()
        problems = []
        if proxy.error:
            problems.append("proxy failed: %r" % proxy.error)
        if mode == "relay":
            # Control: TLS through the proxy works; after the clear-text
            # STARTTLS comes a TLS handshake record (0x16).
            if rc != 0:
                problems.append("client failed through a plain relay")
            if proxy.sent[4:20] != STARTTLS or proxy.sent[20:21] != b"\x16":
                problems.append("clear text was not flags + STARTTLS + TLS")
        else:
            if rc == 0:
                problems.append("client accepted a downgraded session")
            if rc not in (1,):
                problems.append("client exit status %d" % rc)
            if want_sent is not None and proxy.sent != want_sent:
                problems.append("client sent %r in clear, expected %r" %
                                (proxy.sent, want_sent))
            if want_sent is None and (
                    proxy.sent[4:20] != STARTTLS or
                    OPTS_MAGIC.to_bytes(8, "big") in proxy.sent[20:]):
                problems.append("client sent an option in clear after "
                                "STARTTLS: %r" % proxy.sent[:80])
            if want_msg not in out:
                problems.append("message lacks %r" % want_msg)
        label = "%s%s: %s" % (mode, " 0x%x" % arg if arg else "", name)
        if problems:
            print("FAIL: %s\n  %s\n  output: %s" % (label, "\n  ".join(problems),
                                                    out))
            ok = False
        else:
            print("ok: " + label)
    return ok


def main():
    subprocess.run(["bash", "-c", '. "$SNBD_SRC/tests/lib/tls.sh" && '
                    'make_x509 "$1"', "-", PKI], check=True)
    server = subprocess.Popen(["nbdkit", "-f", "-U", UPSTREAM, "--tls=require",
                               "--tls-certificates=" + PKI, "memory", "1M"])
    try:
        for _ in range(200):
            if os.path.exists(UPSTREAM):
                break
            time.sleep(0.05)
        else:
            raise SystemExit("nbdkit did not start")
        flags_and_starttls = struct.pack(">I", 3) + STARTTLS
        ok = check("relay", None, None, "")
        ok &= check("strip", None, flags_and_starttls,
                    "refused NBD_OPT_STARTTLS: NBD_REP_ERR_UNSUP")
        for err, name in ((ERR | 2, "NBD_REP_ERR_POLICY"),
                          (ERR | 3, "NBD_REP_ERR_INVALID"),
                          (ERR | 4, "NBD_REP_ERR_PLATFORM"),
                          (ERR | 5, "NBD_REP_ERR_TLS_REQD"),
                          (ERR | 7, "NBD_REP_ERR_SHUTDOWN")):
            ok &= check("error", err, flags_and_starttls, name)
        ok &= check("nonfixed", None, b"", "not fixed-newstyle")
        ok &= check("oldstyle", None, b"", "oldstyle")
        ok &= check("ack_then_clear", None, None, "TLS handshake failed")
        ok &= check("ack_payload", None, flags_and_starttls, "with a payload")
        ok &= check("hangup", None, flags_and_starttls, "closed the connection")
    finally:
        server.terminate()
        server.wait(20)
    print("downgrade: %s" % ("all checks passed" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


main()
