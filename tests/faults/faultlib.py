"""faultlib: helpers for snbd's fault, crash-safety and load tests.

    srv = Server(["file:" + img]).start()  # $SNBD_SERVER on a Unix socket
    h = srv.nbd()                           # a connected libnbd handle
    ...
    srv.stop()          # SIGTERM: must exit 0 with a clean stderr
    srv.kill()          # SIGKILL (crash tests)

Unlike a captive `--run` server, a Server here can be killed and started
again on the same socket, and the test sees its PID (for signals and RSS).
Every wait is bounded; a test that would hang fails instead.

Under a wrapper (SNBD_SERVER_WRAPPER, e.g. valgrind) the server is several
times slower: time limits are multiplied by SLOW.
"""

import errno
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

import nbd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "lib"))
from nbdraw import tcp_listen_port  # noqa: E402

SLOW = float(os.environ.get("SNBD_TIME_FACTOR") or
             (6 if os.environ.get("SNBD_SERVER_REAL") else 1))
KiB = 1024
MiB = 1024 * KiB


class TestFailure(AssertionError):
    pass


def log(msg, *args):
    print(msg % args if args else msg, flush=True)


def check(cond, msg, *args):
    if not cond:
        raise TestFailure(msg % args if args else msg)


def expect_eq(what, want, got):
    if want != got:
        raise TestFailure("%s: expected %r, got %r" % (what, want, got))


def skip(msg):
    print("SKIP: %s" % msg, flush=True)
    sys.exit(77)


def ename(e):
    return errno.errorcode.get(e, str(e))


def pattern(tag, n):
    """n bytes that are different for every tag (any hashable)."""
    return random.Random(repr(tag)).randbytes(n)


def nbd_errnum(fn, *args, **kw):
    """Run a libnbd call; 0 if it succeeded, else the errno it failed
    with."""
    try:
        fn(*args, **kw)
        return 0
    except nbd.Error as e:
        return e.errnum


def raise_nofile(want):
    """Raise the soft fd limit (inherited by servers started later)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        skip("the hard fd limit (%d) is below %d" % (hard, want))
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def instrumented():
    """Why the server's memory use is not its own (None if it is): run
    under valgrind (SNBD_SERVER_WRAPPER) or built with AddressSanitizer,
    whose shadow memory and quarantine dominate RSS."""
    if os.environ.get("SNBD_SERVER_REAL"):
        return "run under %s" % os.path.basename(os.environ["SNBD_SERVER"])
    try:
        with open(os.environ.get("SNBD_SERVER", ""), "rb") as f:
            if b"__asan_init" in f.read():
                return "built with AddressSanitizer"
    except OSError:
        pass
    return None


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise TestFailure("no VmRSS for pid %d" % pid)


def thread_count(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise TestFailure("no Threads for pid %d" % pid)


def settled_thread_count(pid, seconds=5):
    """The server's thread count once it stops changing (a connection
    that just closed takes a moment to end its thread)."""
    last = [thread_count(pid)]

    def same():
        n = thread_count(pid)
        if n == last[0]:
            return True
        last[0] = n
        return False
    wait_until("the server's thread count to settle", same, seconds, 0.1)
    return last[0]


def wait_until(what, cond, seconds, step=0.02):
    """Poll cond() until true, at most `seconds` (times SLOW)."""
    deadline = time.monotonic() + seconds * SLOW
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TestFailure("timed out after %.1f s waiting for %s" %
                              (seconds * SLOW, what))
        time.sleep(step)


SANITIZER_MARKS = (b"AddressSanitizer", b"LeakSanitizer",
                   b"runtime error:", b"UndefinedBehaviorSanitizer",
                   b"ThreadSanitizer")


class Server:
    """$SNBD_SERVER with `exports` on a Unix socket in a private
    directory (the same path across restarts); with tcp, clients from
    nbd() connect over TCP on 127.0.0.1 instead (any free port)."""

    def __init__(self, exports, args=(), env=None, sock_dir=None, tcp=False):
        self.exports = list(exports)
        self.args = list(args)
        self.tcp = tcp
        self.port = None
        self.env = dict(os.environ, **(env or {}))
        self.dir = sock_dir or tempfile.mkdtemp(
            prefix="srv.", dir=os.environ.get("TMPDIR"))
        self.sock = os.path.join(self.dir, "sock")
        self.pid_file = os.path.join(self.dir, "pid")
        self.proc = None
        self.starts = 0
        self.err_path = None

    @property
    def uri(self):
        return self.uri_for("")

    def uri_for(self, name):
        if self.tcp:
            return "nbd://127.0.0.1:%d/%s" % (self.port, name)
        return "nbd+unix:///%s?socket=%s" % (name, self.sock)

    def start(self):
        binary = os.environ.get("SNBD_SERVER")
        check(binary and os.access(binary, os.X_OK),
              "$SNBD_SERVER (%r) is not executable", binary)
        check(self.proc is None or self.proc.poll() is not None,
              "server already running")
        for p in (self.pid_file, self.sock):
            if os.path.exists(p):
                os.unlink(p)
        self.starts += 1
        self.err_path = os.path.join(self.dir, "stderr.%d" % self.starts)
        self.cmd = ([binary, "-U", self.sock, "-P", self.pid_file] +
                    (["-i", "127.0.0.1", "-p", "0"] if self.tcp else []) +
                    self.args + self.exports)
        with open(self.err_path, "wb") as errf:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                         stdout=errf, stderr=errf,
                                         env=self.env)
        self.pid = self.proc.pid
        wait_until("the server to listen (%s)" % " ".join(self.cmd),
                   self._ready, 20)
        if self.tcp:
            self.port = tcp_listen_port(self.pid)
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise TestFailure("server exited with %d at start: %s\n%s" %
                              (self.proc.returncode, " ".join(self.cmd),
                               self.stderr()[-2000:]))
        if not os.path.exists(self.pid_file):
            return False
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(2)
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            with open(self.err_path, "rb") as f:
                return f.read().decode(errors="replace")
        except (OSError, TypeError):
            return ""

    def check_stderr(self):
        data = self.stderr().encode()
        for m in SANITIZER_MARKS:
            check(m not in data, "sanitizer report in server stderr:\n%s",
                  data.decode(errors="replace")[-4000:])

    def nbd(self, name=None, strict=True):
        h = nbd.NBD()
        if not strict:
            h.set_strict_mode(0)
        h.connect_uri(self.uri if name is None else self.uri_for(name))
        return h

    def kill(self):
        """SIGKILL, for crash tests (and cleanup)."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def signal_term(self):
        check(self.running(), "server died: exit status %s\n%s",
              self.proc and self.proc.returncode, self.stderr()[-3000:])
        os.kill(self.pid, signal.SIGTERM)
        return time.monotonic()

    def wait_exit(self, seconds, want=0):
        """Wait for the exit (bounded); returns seconds waited."""
        t0 = time.monotonic()
        try:
            rc = self.proc.wait(seconds * SLOW)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure("server still running %.0f s after SIGTERM\n%s"
                              % (seconds * SLOW, self.stderr()[-3000:]))
        self.check_stderr()
        wants = want if isinstance(want, tuple) else (want,)
        if rc not in wants:
            raise TestFailure("server exit status: expected %s, got %d\n%s" %
                              (want, rc, self.stderr()[-3000:]))
        return time.monotonic() - t0

    def stop(self, seconds=15):
        self.signal_term()
        return self.wait_exit(seconds)

    def __enter__(self):
        return self if self.running() else self.start()

    def __exit__(self, etype, exc, tb):
        if etype is not None and self.proc is not None:
            log("server stderr (last lines):\n%s", self.stderr()[-3000:])
        if self.running():
            if etype is None:
                self.stop()
            else:
                self.kill()


def run_cases(cases):
    """Run each case(name -> fn); print progress; exit 1 on a failure."""
    for fn in cases:
        t0 = time.monotonic()
        log("%s ...", fn.__name__)
        fn()
        log("%s ok (%.1f s)", fn.__name__, time.monotonic() - t0)
