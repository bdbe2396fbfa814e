#!/usr/bin/python3
"""The tools against servers that stall or drip (docs/security.md 39),
each a scripted server (nbdscript.py) on a private Unix socket:

  silent      replies to nothing after NBD_OPT_GO: snbd-copy --timeout 2
              and snbd-info --map --timeout 2 give up, saying why (the
              request timeout of libsnbd; before, they waited for ever);
  one_byte    answers BLOCK_STATUS with one 1-byte extent at a time on a
              256 MiB export: snbd-info --map and snbd-copy finish,
              treating what block status does not describe as data, and
              the copy has every byte (before, ~2^28 round trips);
  list_flood  answers NBD_OPT_LIST with 4,000-byte names for ever:
              snbd-info --list gives up after a bounded number of names
              and bytes, with a small RSS (before, ~410 MiB).
"""
import os
import resource
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbdscript import (CMD_BLOCK_STATUS, CMD_DISC, CMD_READ, CONTEXT_ID,  # noqa: E402
                       OPT_LIST, REP_SERVER, REPLY_FLAG_DONE, T_BLOCK_STATUS,
                       T_DATA, Closed, ScriptedServer, chunk, handshake,
                       info_export, read_request, reply)

INFO = os.environ["SNBD_INFO"]
COPY = os.environ["SNBD_COPY"]
BIG = 256 << 20
failures = []


def run(cmd, timeout=120):
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "did not finish in %d s" % timeout, timeout
    return p.returncode, p.stdout.decode("utf-8", "replace"), \
        time.monotonic() - t0


def expect(name, ok, detail):
    print("%s: %s%s" % ("ok" if ok else "FAIL", name,
                        "" if ok else "\n  " + detail))
    if not ok:
        failures.append(name)


def silent(c):
    handshake(c)
    while True:
        read_request(c)           # and never answer


def serve_drip(c):
    """1-byte block status extents; READs answered with 0x55 bytes."""
    handshake(c, go_infos=[info_export(size=BIG)])
    while True:
        _, typ, cookie, off, length, _ = read_request(c)
        if typ == CMD_DISC:
            raise Closed()
        if typ == CMD_BLOCK_STATUS:
            chunk(c, cookie, T_BLOCK_STATUS,
                  struct.pack(">III", CONTEXT_ID, 1, 0))
        elif typ == CMD_READ:
            chunk(c, cookie, T_DATA, struct.pack(">Q", off) +
                  b"\x55" * length, flags=REPLY_FLAG_DONE)
        else:
            raise AssertionError("unexpected command %d" % typ)


def list_flood(c):
    name = b"n" * 4000

    def hook(c, opt, data):
        if opt != OPT_LIST:
            return False
        for i in range(200000):
            n = b"%08d" % i + name
            reply(c, opt, REP_SERVER, struct.pack(">I", len(n)) + n)
        return True
    handshake(c, on_option=hook)


def case_silent():
    for what, cmd in (("snbd-copy", [COPY, "--timeout", "2"]),
                      ("snbd-info --map", [INFO, "--map", "--timeout", "2"])):
        with ScriptedServer(silent) as srv:
            args = [srv.uri, "null:"] if what == "snbd-copy" else [srv.uri]
            rc, out, secs = run(cmd + args, timeout=60)
        expect("%s against a silent server gives up" % what,
               rc == 1 and "no reply from the server for 2 s" in out,
               "exit %s after %.1f s: %s" % (rc, secs, out[-500:]))


def case_one_byte():
    with ScriptedServer(serve_drip) as srv:
        rc, out, secs = run([INFO, "--map", srv.uri])
    lines = [ln.split() for ln in (out or "").splitlines()
             if ln.strip() and not ln.startswith("snbd-info:")]
    expect("snbd-info --map against 1-byte extents finishes, all data",
           rc == 0 and lines == [["0", str(BIG), "0", "data"]] and
           "no progress" in out,
           "exit %s after %.1f s: %s" % (rc, secs, out[-500:]))
    dst = os.path.join(os.environ["TMPDIR"], "copy.raw")
    with ScriptedServer(serve_drip) as srv:
        rc, out, secs = run([COPY, "-C", "1", srv.uri, dst])
    good = rc == 0 and os.path.getsize(dst) == BIG
    if good:
        with open(dst, "rb") as f:
            while good:
                b = f.read(1 << 20)
                if not b:
                    break
                good = b == b"\x55" * len(b)
    expect("snbd-copy from 1-byte extents finishes with every byte", good,
           "exit %s after %.1f s: %s" % (rc, secs, out[-500:]))


def case_list_flood():
    with ScriptedServer(list_flood) as srv:
        rc, out, secs = run([INFO, "--list", srv.uri])
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print("  snbd-info --list: exit %s after %.1f s, max RSS %d KiB" %
          (rc, secs, peak))
    expect("snbd-info --list against an endless list gives up, bounded",
           rc == 1 and "lists more than" in out and peak < 64 * 1024,
           "exit %s after %.1f s, max RSS %d KiB: %s" % (rc, secs, peak,
                                                         out[-500:]))


if __name__ == "__main__":
    case_list_flood()             # first: RUSAGE_CHILDREN is a maximum
    case_silent()
    case_one_byte()
    sys.exit(1 if failures else 0)
