"""snbd-server speaks systemd's notification protocol (sd_notify(3), as
Type=notify in dist/snbd-server.service wants it) with a datagram socket
of this test standing in for systemd at $NOTIFY_SOCKET:

  ready      READY=1 (and MAINPID) only once the server listens: a client
             connecting the moment it arrives gets in; --run's command does
             not inherit NOTIFY_SOCKET;
  status     STATUS= follows the connection count, at most once a second
             however fast connections come and go;
  reload     SIGHUP: RELOADING=1 with MONOTONIC_USEC= (the clock now), then
             READY=1;
  stopping   SIGTERM: STOPPING=1 before the server exits;
  abstract   an abstract socket name ("@name") works too.
"""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ["SNBD_SRC"], "tests", "lib"))
import nbdraw                                             # noqa: E402
from nbdraw import check, expect_eq                       # noqa: E402

TMP = os.environ["TMPDIR"]
SERVER = os.environ["SNBD_SERVER"]


class FakeSystemd:
    """A datagram socket at a path (or an abstract name) to pass as
    NOTIFY_SOCKET; messages() parses each datagram into a dict."""

    def __init__(self, name):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if name.startswith("@"):
            self.sock.bind("\0" + name[1:])
        else:
            self.sock.bind(name)
        self.name = name

    def recv(self, timeout=15.0):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            raise nbdraw.TestFailure("no notification in %.0f s" % timeout)
        nbdraw.log("notify: %r", data)
        return dict(line.split("=", 1) for line in data.split("\n") if line)

    def wait_for(self, key, timeout=15.0):
        """Messages until one with key; returns (that one, those before)."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            m = self.recv(max(0.1, deadline - time.monotonic()))
            if key in m:
                return m, seen
            seen.append(m)

    def close(self):
        self.sock.close()


def start(systemd, *args):
    sock = os.path.join(TMP, "nbd.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    env = dict(os.environ, NOTIFY_SOCKET=systemd.name)
    proc = subprocess.Popen([SERVER, "-U", sock] + list(args),
                            env=env, stdin=subprocess.DEVNULL)
    return proc, sock


def stop(proc, systemd):
    proc.send_signal(signal.SIGTERM)
    m, _ = systemd.wait_for("STOPPING")
    expect_eq("STOPPING", "1", m["STOPPING"])
    expect_eq("exit status", 0, proc.wait(30))


def connect(path):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(10)
    c.connect(path)           # no retry: the server must listen already
    return nbdraw.Conn(c)


def ready_then_connect(systemd, proc, sock):
    m, _ = systemd.wait_for("READY")
    expect_eq("READY", "1", m["READY"])
    expect_eq("MAINPID", str(proc.pid), m.get("MAINPID"))
    with connect(sock) as c:
        c.open("")
        c.disconnect()


@contextlib.contextmanager
def serving(name, *args):
    """A server notifying a FakeSystemd at name, past READY=1; stopped
    (STOPPING=1 checked) at the end of the block."""
    systemd = FakeSystemd(name)
    proc, sock = start(systemd, *args)
    try:
        ready_then_connect(systemd, proc, sock)
        yield systemd, proc, sock
        stop(proc, systemd)
    finally:
        if proc.poll() is None:
            proc.kill()
        systemd.close()


def case_ready(_):
    with serving(os.path.join(TMP, "notify"), "memory:1M"):
        pass
    # --run's command must not inherit it (it is the server's, not theirs).
    systemd = FakeSystemd(os.path.join(TMP, "notify-run"))
    proc, _ = start(systemd, "memory:1M", "--run",
                    'test -z "$NOTIFY_SOCKET"')
    expect_eq("--run saw no NOTIFY_SOCKET (its exit status)", 0,
              proc.wait(30))
    systemd.close()


def case_status(_):
    with serving(os.path.join(TMP, "notify-status"), "memory:1M") as (
            systemd, proc, sock):
        conns = [connect(sock) for _ in range(2)]
        for c in conns:
            c.open("")
        m, _ = systemd.wait_for("STATUS")
        while not m["STATUS"].startswith("2 connections"):
            m, _ = systemd.wait_for("STATUS")
        conns.pop().disconnect()
        while not m["STATUS"].startswith("1 connection "):
            m, _ = systemd.wait_for("STATUS")
        # Many changes, few messages: at most one a second.
        t0 = time.monotonic()
        for _ in range(200):
            with connect(sock) as c:
                c.open("")
                c.disconnect()
        conns.pop().disconnect()
        while not m["STATUS"].startswith("0 connections"):
            m, _ = systemd.wait_for("STATUS")
        seconds = time.monotonic() - t0
        n = 1
        systemd.sock.setblocking(False)
        try:
            while systemd.sock.recv(4096):
                n += 1
        except BlockingIOError:
            pass
        nbdraw.log("%d STATUS messages in %.1f s of 200 connections", n,
                   seconds)
        # (one a second, plus the messages of the seconds the window cuts)
        check(n <= seconds + 3, "%d STATUS messages in %.1f s", n, seconds)


def case_reload_and_abstract(_):
    name = "@snbd-test-notify-%d" % os.getpid()
    with serving(name, "memory:1M") as (systemd, proc, sock):
        before = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        m, _ = systemd.wait_for("RELOADING")
        after = time.monotonic()
        usec = int(m["MONOTONIC_USEC"])
        check(before * 1e6 - 1e6 <= usec <= after * 1e6 + 1e6,
              "MONOTONIC_USEC %d is not the time of the reload (%f..%f)",
              usec, before, after)
        m, _ = systemd.wait_for("READY")
        expect_eq("READY after the reload", "1", m["READY"])
        with connect(sock) as c:
            c.open("")
            c.disconnect()


if __name__ == "__main__":
    failed = nbdraw.run_cases(nbdraw.cases_of(globals()))
    sys.exit(1 if failed else 0)
