#!/usr/bin/python3
"""A full disk gives ENOSPC, not EIO and not corruption (docs/security.md
32).

A 32 MiB sparse image lives on an 8 MiB tmpfs.  Writing it from start to
end, the writes that find no space must fail with NBD_ENOSPC (proto.md
"Error values": "NBD_ENOSPC ... SHOULD be sent in case of no space left
on device"), plain or FUA; everything acknowledged before reads back
intact; the space after the failure reads as zeroes; the server stays up,
in step, and serves writes again once a trim frees space.

Needs root (mount -t tmpfs); otherwise skipped.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faultlib import (KiB, MiB, Server, check, ename,  # noqa: E402
                      expect_eq, log, nbd, nbd_errnum, pattern, skip)

FS_SIZE = 8 * MiB
IMG_SIZE = 32 * MiB
# Not a divisor of FS_SIZE: the write that fills the disk is cut short
# by the kernel (a short write, then ENOSPC) rather than refused whole.
CHUNK = 768 * KiB


def mount_tmpfs(path):
    os.mkdir(path)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o",
                        "size=%d,mode=0700" % FS_SIZE, "tmpfs", path],
                       capture_output=True)
    if r.returncode != 0:
        os.rmdir(path)
        skip("cannot mount a tmpfs here: %s" %
             r.stderr.decode(errors="replace").strip())


def umount(path):
    if subprocess.run(["umount", path]).returncode != 0:
        subprocess.run(["umount", "-l", path])
    os.rmdir(path)


def fill(h):
    """Write chunks from the start, every other one FUA, until the
    space runs out.  Returns (chunks written, the chunk that failed)."""
    for i in range(IMG_SIZE // CHUNK):
        flags = nbd.CMD_FLAG_FUA if i % 2 else 0
        err = nbd_errnum(h.pwrite, pattern(i, CHUNK), i * CHUNK, flags)
        if err:
            expect_eq("error of write %d (%s) on a full disk" %
                      (i, "FUA" if flags else "plain"), "ENOSPC", ename(err))
            return i, i
    raise AssertionError("%d MiB fitted on a %d MiB file system" %
                         (IMG_SIZE // MiB, FS_SIZE // MiB))


def full_disk(fs):
    img = os.path.join(fs, "disk.img")
    with open(img, "wb") as f:
        f.truncate(IMG_SIZE)
    with Server(["file:" + img]) as srv:
        h = srv.nbd()
        good, failed = fill(h)
        log("  %d chunks of %d KiB written, write %d got ENOSPC", good,
            CHUNK // KiB, failed)
        check(good >= FS_SIZE // CHUNK // 2,
              "ENOSPC after only %d chunks on an empty %d MiB file system",
              good, FS_SIZE // MiB)
        # Still full: later writes fail the same way, plain and FUA.
        for i, fl in ((failed + 1, 0), (failed + 2, nbd.CMD_FLAG_FUA),
                      (IMG_SIZE // CHUNK - 1, 0)):
            expect_eq("write %d on a full disk" % i, "ENOSPC",
                      ename(nbd_errnum(h.pwrite, pattern(("x", i), CHUNK),
                                       i * CHUNK, fl)))
        expect_eq("flush on a full disk", 0, nbd_errnum(h.flush))
        # WRITE_ZEROES with NO_HOLE promises allocated space: over holes on
        # a full disk it must fail, not succeed leaving a hole.
        i = IMG_SIZE // CHUNK - 2
        expect_eq("zero+NO_HOLE over a hole on a full disk", "ENOSPC",
                  ename(nbd_errnum(h.zero, CHUNK, i * CHUNK,
                                   nbd.CMD_FLAG_NO_HOLE)))
        # Without NO_HOLE a hole is a fine way to read as zeroes.
        expect_eq("zero (may trim) on a full disk", 0,
                  nbd_errnum(h.zero, CHUNK, i * CHUNK))
        # Earlier data intact, later space untouched (zeroes).
        for i in range(good):
            check(h.pread(CHUNK, i * CHUNK) == pattern(i, CHUNK),
                  "chunk %d, acknowledged before the disk filled, changed", i)
        for i in range(failed + 3, IMG_SIZE // CHUNK - 1):
            check(h.pread(CHUNK, i * CHUNK) == bytes(CHUNK),
                  "chunk %d, never written successfully, is not zero", i)
        # Overwriting allocated space needs no new space.
        h.pwrite(pattern("again", CHUNK), 0, nbd.CMD_FLAG_FUA)
        # A second connection works; a trim frees space for new writes.
        h2 = srv.nbd()
        check(h2.can_trim(), "file export on tmpfs cannot trim")
        h2.trim(2 * CHUNK, 0)           # chunk 0 and 1
        h2.flush()
        data = pattern("after trim", CHUNK)
        h2.pwrite(data, failed * CHUNK, nbd.CMD_FLAG_FUA)
        expect_eq("write after trim reads back", True,
                  h.pread(CHUNK, failed * CHUNK) == data)
        for i in range(2, good):
            check(h2.pread(CHUNK, i * CHUNK) == pattern(i, CHUNK),
                  "chunk %d changed after the trim", i)
        h.shutdown()
        h2.shutdown()


def main():
    if os.geteuid() != 0:
        skip("needs root to mount a tmpfs")
    fs = os.path.join(os.getcwd(), "fs")
    mount_tmpfs(fs)
    try:
        full_disk(fs)
    finally:
        umount(fs)


if __name__ == "__main__":
    main()
