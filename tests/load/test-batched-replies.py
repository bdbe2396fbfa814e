#!/usr/bin/python3
"""Replies to requests that arrive together share sends (docs/architecture.md
"Transmission: the path of a request"): the reader runs a RAM export's
READ itself and, while the next request's header is already buffered,
holds the reply back to go out with the next ones (at most 16 a send).

The client writes 64 READs of 4 KiB in one send on a Unix socket (they
reach the server in one piece), then reads the 64 replies and checks
them.  The server runs under strace, which counts its send calls
(sendmsg, sendto, write, writev) for the whole session: the handshake
takes a handful; 64 replies in batches of 16 take 4.  A server that sends
each reply alone makes 64 calls (a check of the server-wide queue bound
once flushed the held replies on every READ, which undid the batching
and cost a sendmsg per request: 1.1-1.4x the server CPU per 4 KiB
request in make bench).  Bounded: one connection, at most 30 s.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import nbdraw                                             # noqa: E402
from nbdraw import Conn, check, expect_eq, log            # noqa: E402

READS = 64
SIZE = 4096
# The handshake's sends plus generous room for batches cut short; a
# server that sends each reply alone needs at least READS.
MAX_SENDS = READS // 2


def main():
    if not shutil.which("strace"):
        print("SKIP: strace is not installed (scripts/deps.sh)")
        return 77
    d = tempfile.mkdtemp(prefix="batch.", dir=os.environ.get("TMPDIR"))
    sock, pidf, trace = (os.path.join(d, n) for n in ("sock", "pid", "trace"))
    err_path = os.path.join(d, "stderr")
    err = open(err_path, "wb")
    # LeakSanitizer cannot run under ptrace (a sanitizer build would exit
    # 1 at the end); the other suites check that build for leaks.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(filter(None, [
        env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    proc = subprocess.Popen(
        ["strace", "-f", "-qq", "-o", trace,
         "-e", "trace=sendmsg,sendto,write,writev",
         os.environ["SNBD_SERVER"], "-U", sock, "-P", pidf, "memory:1M"],
        stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(pidf) or not os.path.exists(sock):
            check(proc.poll() is None, "server exited at start")
            check(time.monotonic() < deadline, "server not up after 20 s")
            time.sleep(0.05)
        time.sleep(0.2)                      # the pid file is written whole
        pid = int(open(pidf).read())

        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        c = Conn(s, 10)
        c.open("", structured=False)
        c.send(b"".join(nbdraw.request_bytes(nbdraw.CMD_READ, i * SIZE, SIZE,
                                             cookie=i)
                        for i in range(READS)))
        got = set()
        for _ in range(READS):
            hdr = c.recv_exact(16, "simple reply")
            magic, error, cookie = (int.from_bytes(hdr[0:4], "big"),
                                    int.from_bytes(hdr[4:8], "big"),
                                    int.from_bytes(hdr[8:16], "big"))
            expect_eq("reply magic", nbdraw.SIMPLE_MAGIC, magic)
            expect_eq("error of READ %d" % cookie, 0, error)
            expect_eq("data of READ %d" % cookie, bytes(SIZE),
                      c.recv_exact(SIZE, "read data"))
            got.add(cookie)
        expect_eq("replies", set(range(READS)), got)
        c.close()
        os.kill(pid, signal.SIGTERM)
        rc = proc.wait(timeout=20)
        check(rc == 0, "server exited %d: %s", rc, open(err_path).read()[-2000:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    calls = [line for line in open(trace)
             if re.match(r"\d+ +(sendmsg|sendto|write|writev)\(", line)]
    log("%d READs answered with %d send calls in the whole session",
        READS, len(calls))
    check(len(calls) <= MAX_SENDS, "%d send calls for %d pipelined READs "
          "(at most %d: their replies should share sends)",
          len(calls), READS, MAX_SENDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
