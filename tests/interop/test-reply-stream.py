"""Replies never interleave (docs/design.md, reply.c): many large READs in
flight on a memory export, so replies are cut short by a full socket and
finished by the writer thread while the reader keeps sending others, mixed
with error replies (which always go through the writer).  Every byte is
checked; a reply that landed inside another shows up as corrupt data or a
dropped connection.  Bounded: 600 reads, at most 30 s."""
import os
import random
import subprocess
import sys
import time

import nbd

SIZE = 64 * 1024 * 1024
MiB = 1024 * 1024


def pattern_at(off, n):
    # 8-byte big-endian offsets: every position is distinguishable.
    start = off - off % 8
    words = b"".join((x).to_bytes(8, "big")
                     for x in range(start, off + n + 8, 8))
    return words[off - start: off - start + n]


def main():
    tmp = os.environ["TMPDIR"]
    sock = os.path.join(tmp, "sock")
    srv = subprocess.Popen([os.environ["SNBD_SERVER"], "-U", sock,
                            "memory:%d" % SIZE])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            if time.monotonic() > deadline or srv.poll() is not None:
                sys.exit("server did not start")
            time.sleep(0.02)
        uri = "nbd+unix:///?socket=" + sock
        h = nbd.NBD()
        h.connect_uri(uri)
        for off in range(0, SIZE, 4 * MiB):
            h.pwrite(pattern_at(off, 4 * MiB), off)
        rnd = random.Random(7)
        end = time.monotonic() + 30
        pending, bad, done, errors = [], [], 0, 0
        for i in range(600):
            if time.monotonic() > end:
                break
            if i % 7 == 3:       # an error reply, queued to the writer
                try:
                    h.pread(512, SIZE)
                    bad.append("read past the end succeeded")
                except nbd.Error:
                    errors += 1
            n = rnd.choice((4096, 300 * 1024, MiB, 2 * MiB))
            off = rnd.randrange(0, SIZE - n)
            buf = nbd.Buffer(n)
            pending.append((h.aio_pread(buf, off), buf, off, n))
            while len(pending) >= 16 or (i == 599 and pending):
                h.poll(-1)
                for p in [p for p in pending if h.aio_command_completed(p[0])]:
                    pending.remove(p)
                    done += 1
                    if p[1].to_bytearray() != pattern_at(p[2], p[3]):
                        bad.append("read of %d at %d" % (p[3], p[2]))
        while pending:
            h.poll(-1)
            for p in [p for p in pending if h.aio_command_completed(p[0])]:
                pending.remove(p)
                done += 1
                if p[1].to_bytearray() != pattern_at(p[2], p[3]):
                    bad.append("read of %d at %d" % (p[3], p[2]))
        h.shutdown()
        print("%d reads, %d error replies, %d bad" % (done, errors, len(bad)))
        if bad or done < 100 or errors == 0:
            sys.exit("FAIL: %s" % bad[:5])
    finally:
        srv.terminate()
        rc = srv.wait(30)
        if rc != 0:
            sys.exit("server exit status %d" % rc)


main()
