"""Run gnutls-cli (a real TLS peer whose versions, ciphers and credentials
we choose) against an NBD server's STARTTLS.

gnutls-cli speaks TLS from its first byte and knows nothing of NBD, so this
helper sits in between: it listens on an ephemeral loopback port, starts
gnutls-cli against it, connects to the NBD server, does the fixed-newstyle
greeting and NBD_OPT_STARTTLS in clear text itself (proto.md "Option
haggling", NBD_OPT_STARTTLS), and from the server's ACK on copies bytes
both ways untouched.  The TLS handshake is gnutls-cli's and the server's.

  $PYTHON starttls_proxy.py [--inject TEXT] HOST PORT -- GNUTLS_CLI_ARGS...

--inject sends TEXT right after the STARTTLS option, before the server's
reply (the plain-text injection of nbdkit CVE-2021-3716).

Prints gnutls-cli's output, then "gnutls-cli exit status N", and exits
with gnutls-cli's status (124 if it had to be killed, 2 if the NBD part
failed).  Every wait is bounded.
"""
import os
import select
import socket
import struct
import subprocess
import sys
import time

TIMEOUT = 20                          # seconds, for the whole exchange
NBD_MAGIC = b"NBDMAGIC"
IHAVEOPT = b"IHAVEOPT"
REPLY_MAGIC = 0x3E889045565A9
NBD_OPT_STARTTLS = 5
NBD_REP_ACK = 1
NBD_FLAG_FIXED_NEWSTYLE = 1
NBD_FLAG_C_FIXED_NEWSTYLE = 1


def die(msg):
    print("starttls_proxy: " + msg, flush=True)
    sys.exit(2)


def recv_exact(sock, n, deadline):
    buf = b""
    while len(buf) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(n - len(buf))
        except socket.timeout:
            die("timed out reading from the NBD server")
        if not data:
            die("NBD server closed the connection after %d bytes" % len(buf))
        buf += data
    return buf


def starttls(host, port, inject, deadline):
    """Plain-text part of the NBD handshake; returns the socket after the
    server's ACK to NBD_OPT_STARTTLS."""
    srv = socket.create_connection((host, port), timeout=TIMEOUT)
    greeting = recv_exact(srv, 18, deadline)
    magic, opt_magic, flags = struct.unpack(">8s8sH", greeting)
    if magic != NBD_MAGIC or opt_magic != IHAVEOPT:
        die("not a newstyle NBD server: %r" % greeting)
    if not flags & NBD_FLAG_FIXED_NEWSTYLE:
        die("server is not fixed newstyle")
    srv.sendall(struct.pack(">I", NBD_FLAG_C_FIXED_NEWSTYLE) +
                IHAVEOPT + struct.pack(">II", NBD_OPT_STARTTLS, 0) + inject)
    magic, opt, rtype, length = struct.unpack(
        ">QIII", recv_exact(srv, 20, deadline))
    if magic != REPLY_MAGIC or opt != NBD_OPT_STARTTLS:
        die("bad option reply magic %#x option %d" % (magic, opt))
    if rtype != NBD_REP_ACK or length != 0:
        die("STARTTLS refused: reply type %#x length %d" % (rtype, length))
    return srv


def splice(a, b, deadline):
    """Copies bytes both ways until both sides have finished sending."""
    open_dirs = {a: b, b: a}
    while open_dirs and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_dirs), [], [],
                                    max(0.01, deadline - time.monotonic()))
        for src in ready:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            dst = open_dirs[src]
            if data:
                try:
                    dst.sendall(data)
                    continue
                except OSError:
                    pass
            del open_dirs[src]
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def main():
    args = sys.argv[1:]
    inject = b""
    if args[:1] == ["--inject"]:
        inject = args[1].encode()
        args = args[2:]
    if len(args) < 3 or args[2] != "--":
        die("usage: starttls_proxy.py [--inject TEXT] HOST PORT -- ARGS...")
    host, port, cli_args = args[0], int(args[1]), args[3:]
    deadline = time.monotonic() + TIMEOUT

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    cli = subprocess.Popen(
        ["gnutls-cli", "-p", str(lsock.getsockname()[1]), "127.0.0.1"]
        + cli_args,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    try:
        lsock.settimeout(TIMEOUT)
        try:
            conn, _ = lsock.accept()
        except socket.timeout:
            die("gnutls-cli never connected")
        srv = starttls(host, port, inject, deadline)
        splice(conn, srv, deadline)
        conn.close()
        srv.close()
        out, _ = cli.communicate(timeout=max(1, deadline - time.monotonic()))
        status = cli.returncode
    except subprocess.TimeoutExpired:
        cli.kill()
        out, _ = cli.communicate()
        status = 124
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    sys.stdout.write(out.decode(errors="replace"))
    print("gnutls-cli exit status %d" % status, flush=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
