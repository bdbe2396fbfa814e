"""Replies never interleave (docs/architecture.md "Transmission: the path of
a request"; docs/security.md 31): many large READs in flight, so replies
are cut short by a full socket and finished by the writer thread while the
reader keeps sending others, mixed with error replies (which always go
through the writer) and with WRITEs of odd sizes at odd offsets. On a
memory export, then on a file in /dev/shm over Unix and TCP, where large
reads go out with sendfile (a reply cut short inside its file piece) and
write payloads are received into a mapping of the file (partly from the
read-ahead buffer, partly from the socket). Every byte is checked against
a model; a reply that landed inside another shows up as corrupt data or a
dropped connection. Bounded: 600 reads per run, at most 30 s each."""
import os
import random
import socket
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(sock, port):
    """The Unix socket and, if port, the TCP port take connections (the
    socket file exists from bind, before listen: a slow server, e.g.
    under valgrind, refuses in between)."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(sock)
        if port is not None:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def run(export, tcp=False):
    tmp = os.environ["TMPDIR"]
    sock = os.path.join(tmp, "sock")
    if os.path.exists(sock):
        os.unlink(sock)
    port = free_port()
    srv = subprocess.Popen([os.environ["SNBD_SERVER"], "-U", sock] +
                           (["-i", "127.0.0.1", "-p", str(port)] if tcp
                            else []) + [export])
    try:
        deadline = time.monotonic() + 30
        while not listening(sock, port if tcp else None):
            if time.monotonic() > deadline or srv.poll() is not None:
                sys.exit("server did not start")
            time.sleep(0.02)
        uri = ("nbd://127.0.0.1:%d/" % port if tcp
               else "nbd+unix:///?socket=" + sock)
        h = nbd.NBD()
        h.connect_uri(uri)
        model = bytearray(SIZE)
        for off in range(0, SIZE, 4 * MiB):
            model[off:off + 4 * MiB] = pattern_at(off, 4 * MiB)
            h.pwrite(bytes(model[off:off + 4 * MiB]), off)
        rnd = random.Random(7)
        end = time.monotonic() + 30
        pending, bad, done, errors, writes = [], [], 0, 0, 0

        def reap():
            nonlocal done
            h.poll(-1)
            for p in [p for p in pending if h.aio_command_completed(p[0])]:
                pending.remove(p)
                done += 1
                if p[1] is not None and \
                   p[1].to_bytearray() != model[p[2]:p[2] + p[3]]:
                    bad.append("read of %d at %d" % (p[3], p[2]))

        def wait_clear(off, n, writes_only):
            """Reaps until no request in flight (only writes, if
            writes_only) overlaps [off, off+n)."""
            while any(p[2] < off + n and off < p[2] + p[3] and
                      (p[1] is None or not writes_only) for p in pending):
                reap()

        for i in range(600):
            if time.monotonic() > end:
                break
            if i % 7 == 3:       # an error reply, queued to the writer
                try:
                    h.pread(512, SIZE)
                    bad.append("read past the end succeeded")
                except nbd.Error:
                    errors += 1
            if i % 5 == 1:
                # A write the model takes at once: no read in flight may
                # overlap it, so wait for those that do.
                n = rnd.choice((1, 4095, 70000, 300 * 1024 + 3, MiB + 1))
                off = rnd.randrange(0, SIZE - n)
                wait_clear(off, n, writes_only=False)
                data = os.urandom(n)
                model[off:off + n] = data
                pending.append((h.aio_pwrite(nbd.Buffer.from_bytearray(
                    bytearray(data)), off), None, off, n))
                writes += 1
            n = rnd.choice((4096, 300 * 1024, MiB, 2 * MiB))
            off = rnd.randrange(0, SIZE - n)
            wait_clear(off, n, writes_only=True)
            buf = nbd.Buffer(n)
            pending.append((h.aio_pread(buf, off), buf, off, n))
            while len(pending) >= 16:
                reap()
        while pending:
            reap()
        if h.pread(SIZE // 2, 0) + h.pread(SIZE // 2, SIZE // 2) != model:
            bad.append("the export differs from the model at the end")
        h.shutdown()
        print("%s over %s: %d reads and writes (%d writes), %d error "
              "replies, %d bad" % (export, "TCP" if tcp else "Unix", done,
                                   writes, errors, len(bad)))
        if bad or done < 100 or errors == 0:
            sys.exit("FAIL: %s" % bad[:5])
    finally:
        srv.terminate()
        rc = srv.wait(30)
        if rc != 0:
            sys.exit("server exit status %d" % rc)


def main():
    run("memory:%d" % SIZE)
    if not os.path.isdir("/dev/shm"):
        print("no /dev/shm: the file export is not tested")
        return
    img = os.path.join("/dev/shm", "snbd-stream-%d.img" % os.getpid())
    try:
        with open(img, "wb") as f:
            f.truncate(SIZE)
        run("file:" + img)
        run("file:" + img, tcp=True)
    finally:
        os.unlink(img)


main()
