#!/usr/bin/python3
"""A file in RAM cut short under the server, and its holes (docs/architecture.md
"Zero-copy file I/O"; docs/security.md 17, 32).

On tmpfs the server receives WRITE payloads into a shared mapping of the
file and sends large READs without a buffer: with sendfile, or to a TCP
peer on this host by copying from the mapping.  Both ways are tried (Unix
socket, TCP on 127.0.0.1).  When another process truncates the file, none
may crash the server (SIGBUS), hang, or hand out wrong bytes: a large read
past the new end ends that connection (its reply header is already on its
way); a small one (pread) answers EIO; a write there falls back to pwrite,
which succeeds and grows the file again; written data reads back; the
server keeps serving new clients and stops cleanly.  Reading holes reads
zeroes and allocates nothing (a read through a shared tmpfs mapping would
allocate the pages it touches).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultlib import (KiB, MiB, Server, check, ename,  # noqa: E402
                      expect_eq, log, nbd, nbd_errnum, pattern, skip)

SIZE = 16 * MiB
HALF = SIZE // 2


def shrink(srv, img):
    h = srv.nbd()
    data = pattern("before", SIZE)
    for off in range(0, SIZE, MiB):       # mapped writes
        h.pwrite(data[off:off + MiB], off)
    expect_eq("1 MiB read back", True,
              h.pread(MiB, 3 * MiB) == data[3 * MiB:4 * MiB])
    os.truncate(img, HALF)
    # Inside what is left: unchanged.
    expect_eq("read below the cut", True,
              h.pread(MiB, HALF - MiB) == data[HALF - MiB:HALF])
    # A small read past the end: pread answers EIO.
    expect_eq("4 KiB read past the cut", "EIO",
              ename(nbd_errnum(h.pread, 4 * KiB, HALF + MiB)))
    # A large one: the connection ends, no data is delivered.
    try:
        got = h.pread(MiB, HALF + 2 * MiB)
        raise AssertionError("1 MiB read past the cut returned %d "
                             "bytes" % len(got))
    except nbd.Error as e:
        log("  1 MiB read past the cut: %s", e)
    # (had it gone through pread, this would be an EIO reply on a
    # connection still alive)
    check(h.aio_is_dead() or h.aio_is_closed(),
          "connection still up after a large read past the cut")
    check(srv.running(), "server died on a read past the cut")
    # A write past the cut (the mapping has no page there): it
    # lands through pwrite and reads back.
    h2 = srv.nbd()
    new = pattern("after", MiB)
    h2.pwrite(new, HALF + 4 * MiB)
    expect_eq("write past the cut reads back", True,
              h2.pread(MiB, HALF + 4 * MiB) == new)
    check(os.path.getsize(img) == HALF + 5 * MiB,
          "file size %d after a write at %d", os.path.getsize(img),
          HALF + 4 * MiB)
    expect_eq("data below the cut", True,
              h2.pread(MiB, 0) == data[:MiB])
    h2.shutdown()
    srv.stop()

def holes(srv, img):
    h = srv.nbd()
    data = pattern("data", MiB)
    h.pwrite(data, 4 * MiB)                   # a whole read's worth
    h.pwrite(data[:64 * KiB], 8 * MiB + 512 * KiB)  # part of one
    h.flush()
    blocks = os.stat(img).st_blocks
    want = bytearray(SIZE)
    want[4 * MiB:5 * MiB] = data
    want[8 * MiB + 512 * KiB:8 * MiB + 576 * KiB] = data[:64 * KiB]
    for off in range(0, SIZE, MiB):
        expect_eq("1 MiB read at %d MiB" % (off // MiB), True,
                  h.pread(MiB, off) == want[off:off + MiB])
    expect_eq("blocks allocated after reading every hole", blocks,
              os.stat(img).st_blocks)
    h.shutdown()
    srv.stop()

def main():
    if not os.path.isdir("/dev/shm"):
        skip("no /dev/shm")
    img = os.path.join("/dev/shm", "snbd-shrink-%d.img" % os.getpid())
    for case in (shrink, holes):
        for tcp in (False, True):
            log("%s, %s", case.__name__, "TCP" if tcp else "Unix socket")
            try:
                with open(img, "wb") as f:
                    f.truncate(SIZE)
                with Server(["file:" + img], tcp=tcp) as srv:
                    case(srv, img)
            finally:
                if os.path.exists(img):
                    os.unlink(img)


if __name__ == "__main__":
    main()
