"""A TLS client that stops reading or vanishes while snbd-server is sending
it a lot (docs/security.md 12 and 18, over TLS): the server's senders must
wait, not spin, must notice the hang-up, keep serving others, and still
shut down promptly on SIGTERM.  (An earlier build spun in its TLS send
loop at 100% CPU after such a client was killed, and then ignored
SIGTERM.)
"""
import fcntl
import os
import socket
import struct
import sys
import termios
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdraw                                             # noqa: E402
from nbdraw import check, Server                          # noqa: E402
import tlsinterop as ti                                   # noqa: E402

TMP = os.environ["TMPDIR"]
PKI = os.path.join(TMP, "pki")
READ = 32 << 20                           # the server's maximum payload
NREADS = 8


def tls_client(srv):
    """A TLS session in transmission on the default export, over TCP.
    Simple replies: a read of the (sparse) memory export then carries all
    its bytes, where a structured reply would be one small hole chunk."""
    c = srv.connect_tcp()
    c.handshake()
    c.starttls(nbdraw.client_context(PKI))
    c.go("")
    return c


def flood_reads(c):
    """Asks for NREADS x 32 MiB and reads none of it: the server's sends
    back up."""
    for i in range(NREADS):
        c.request(nbdraw.CMD_READ, i * READ, READ)


def busy_over(srv, seconds):
    """How long the server's threads were running or waiting for a CPU
    during an interval: a spinning sender counts ~1 s per second even on
    a loaded machine, a blocked one nothing (nbdraw busy_seconds)."""
    t0 = srv.busy_seconds()
    time.sleep(seconds)           # measuring an interval, not waiting
    return srv.busy_seconds() - t0


def wait_sends_stalled(srv, c):
    """Until the kernel holds a lot of unread data for the client and it
    stopped growing: the server has sent all it can and must now wait."""
    last = [-1]

    def stalled():
        n = unread(c)
        grown, last[0] = n != last[0], n
        if n <= 64 * 1024 or grown:
            time.sleep(0.2)
            return False
        return True
    srv.wait_for("the server's sends to back up", stalled, timeout=60)


def serves_tls(srv):
    rc, out = ti.nbdinfo("nbds://localhost:%d/?tls-certificates=%s" %
                         (srv.port, PKI), "--size")
    check(rc == 0 and out.strip() == str(NREADS * READ),
          "a fresh TLS client fails: %d %s", rc, out)


def args():
    return ["--tls-certificates", PKI]


def case_stalled_reader(_):
    """Client alive but not reading: senders block without burning CPU;
    then the client reads some, and everything it gets is right."""
    with Server("memory:%d" % (NREADS * READ), args=args(), tcp=True) as srv:
        c = tls_client(srv)
        flood_reads(c)
        wait_sends_stalled(srv, c)
        used = busy_over(srv, 1.0)
        check(used < 0.3, "server threads ran or were runnable %.2f s in "
              "1 s while its client did not read", used)
        serves_tls(srv)
        # The client now reads one whole reply: the stream is intact.
        r = c.reply()
        check(r.error == 0 and len(r.data) == READ,
              "first read after the stall: error %d, %d bytes", r.error,
              len(r.data))
        c.close()


def case_vanishing_reader(_):
    """Client killed mid-transfer (reset): the server cleans up, does not
    spin, keeps serving, and exits promptly on SIGTERM."""
    with Server("memory:%d" % (NREADS * READ), args=args(), tcp=True) as srv:
        idle_fds = srv.nfds()
        for _ in range(3):
            c = tls_client(srv)
            flood_reads(c)
            c.recv_exact(4096, "some of the data")
            # RST instead of FIN: SO_LINGER with a zero timeout.
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              struct.pack("ii", 1, 0))
            c.close()
        srv.wait_for("the server to drop the dead sessions",
                     lambda: srv.nfds() <= idle_fds, timeout=10)
        used = busy_over(srv, 1.0)
        check(used < 0.3, "server threads ran or were runnable %.2f s in "
              "1 s after its clients vanished", used)
        serves_tls(srv)
        t0 = time.monotonic()
        srv.stop(timeout=15)
        check(time.monotonic() - t0 < 5, "SIGTERM took %.1f s",
              time.monotonic() - t0)


def case_sigterm_with_stalled_reader(_):
    """SIGTERM while a sender is blocked on a client that does not read:
    the server still exits, within its shutdown grace period."""
    with Server("memory:%d" % (NREADS * READ), args=args(), tcp=True) as srv:
        c = tls_client(srv)
        flood_reads(c)
        srv.wait_for("the server's sends to back up",
                     lambda: send_queue_full(c), timeout=10)
        t0 = time.monotonic()
        srv.stop(timeout=20)
        nbdraw.log("exit %.1f s after SIGTERM with a stalled reader",
                   time.monotonic() - t0)
        c.close()


def unread(c):
    """Bytes the kernel holds for the client, unread."""
    buf = fcntl.ioctl(c.sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return struct.unpack("i", buf)[0]


def send_queue_full(c):
    """True once the kernel holds a lot of unread data for us."""
    return unread(c) > 64 * 1024


if __name__ == "__main__":
    if not any(os.access(os.path.join(d, "nbdinfo"), os.X_OK)
               for d in os.environ["PATH"].split(os.pathsep)):
        nbdraw.skip("nbdinfo is not installed")
    nbdraw.make_x509(PKI)
    ti.main(nbdraw.cases_of(globals()))
