#!/usr/bin/python3
"""Peers that hang up at every step (docs/security.md 12).

A plain server (Unix socket and an ephemeral loopback TCP port, for
resets) and a TLS-required one.  Each case leaves the server with a
connection cut somewhere; afterwards the server must serve a fresh client,
give back every descriptor and thread it used (no leak, no thread stuck or
spinning), and not have logged a storm.
"""

import os
import socket
import struct
import sys
import time

from nbdraw import *                      # noqa: F401,F403 (test vocabulary)

LOG_LIMIT = 256 * 1024            # bytes of (verbose) log one case may add


def scripted_client():
    """Everything a pipelining client sends, from client flags to a few
    requests: cut at each byte, it exercises every read in the server."""
    s = u32(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES)
    s += option_bytes(OPT_STRUCTURED_REPLY)
    s += option_bytes(OPT_SET_META_CONTEXT,
                      meta_payload("", ["base:allocation"]))
    s += option_bytes(0x1234, b"u" * 40)
    s += option_bytes(OPT_INFO, info_payload("", [INFO_BLOCK_SIZE]))
    s += option_bytes(OPT_GO, info_payload(""))
    handshake_len = len(s)
    s += request_bytes(CMD_WRITE, 0, 512, cookie=1, data=b"w" * 512)
    s += request_bytes(CMD_READ, 0, 4096, cookie=2)
    s += request_bytes(CMD_BLOCK_STATUS, 0, 4096, cookie=3)
    return s, handshake_len


class Watch:
    """Resource baseline of a server; check() waits for it to return."""

    def __init__(self, srv, serves=None):
        self.serves = serves or srv.check_serves
        self.serves()
        # the warm-up client's thread may still be ending: take the
        # baseline once the counts have held still for 100 ms (bounded)
        last, same = None, 0
        for _ in range(100):
            now = (srv.nfds(), srv.threads())
            same = same + 1 if now == last else 0
            if same >= 5:
                break
            last = now
            time.sleep(0.02)
        self.fds, self.threads = last
        self.log_len = len(srv.stderr_bytes())

    def check(self, srv):
        self.serves()
        srv.wait_for("descriptors back to %d (now %d)" %
                     (self.fds, srv.nfds()),
                     lambda: srv.nfds() <= self.fds, 10)
        srv.wait_for("threads back to %d (now %d)" %
                     (self.threads, srv.threads()),
                     lambda: srv.threads() <= self.threads, 10)
        n = len(srv.stderr_bytes())
        check(n - self.log_len < LOG_LIMIT, "server logged %d bytes in one "
              "case", n - self.log_len)
        self.log_len = n


def cut(c, data):
    """Send data (the server may already be gone), then hang up."""
    c.send_partial(data)
    c.close()


# ---- plain ----

def case_close_before_greeting(srv):
    srv.connect().close()


def case_close_after_greeting(srv):
    c = srv.connect()
    c.greeting()
    c.close()


def case_close_inside_client_flags(srv):
    c = srv.connect()
    c.greeting()
    cut(c, b"\x00\x00")


def case_close_inside_option_header(srv):
    for n in (1, 8, 12, 15):
        c = srv.connect()
        c.handshake()
        cut(c, option_bytes(OPT_INFO, info_payload(""))[:n])


def case_close_inside_option_payload(srv):
    for opt in (OPT_INFO, OPT_GO, OPT_SET_META_CONTEXT, OPT_EXPORT_NAME):
        c = srv.connect()
        c.handshake()
        cut(c, option_bytes(opt, length=100) + b"x" * 10)


def case_close_inside_discarded_payload(srv):
    c = srv.connect()
    c.handshake()
    cut(c, option_bytes(0x1234, length=MiB) + b"x" * 100000)
    c = srv.connect()
    c.handshake()
    cut(c, option_bytes(OPT_LIST, length=1000) + b"x" * 10)


def case_half_close_in_handshake(srv):
    """The client shuts down its sending side: the server sees EOF and
    must close its side too (no spinning on EOF)."""
    c = srv.connect()
    c.handshake()
    c.sock.shutdown(socket.SHUT_WR)
    c.expect_close("handshake after the client's SHUT_WR")
    c.close()
    c = srv.connect()
    c.handshake()
    c.send(option_bytes(OPT_INFO, info_payload("")))
    c.sock.shutdown(socket.SHUT_WR)
    reps = c.read_option_replies(OPT_INFO)
    expect_eq("INFO answered before EOF", rep_name(REP_ACK),
              rep_name(reps[-1].type))
    c.expect_close("after the answered INFO and EOF")
    c.close()


def case_close_in_transmission(srv):
    c = srv.client()
    c.close()
    c = srv.client()
    cut(c, request_bytes(CMD_READ, 0, 512, cookie=1)[:10])
    c = srv.client()
    c.sock.shutdown(socket.SHUT_WR)
    c.expect_close("transmission after the client's SHUT_WR")
    c.close()


def case_close_with_replies_queued(srv):
    """100 reads of 1 MiB each and no one reading the replies."""
    for structured in (False, True):
        c = srv.client(structured=structured)
        c.send(b"".join(request_bytes(CMD_READ, (i % 16) * MiB, MiB,
                                      cookie=i) for i in range(100)))
        c.close()


def case_close_inside_write_payload(srv):
    c = srv.client()
    cut(c, request_bytes(CMD_WRITE, 0, MiB, cookie=1) + b"p" * (MiB // 2))
    c = srv.client()                   # a refused write being drained
    cut(c, request_bytes(CMD_WRITE, 0, 0xFFFFFFFF, cookie=1) + b"p" * MiB)
    c = srv.client()                   # after good writes in flight
    cut(c, b"".join(request_bytes(CMD_WRITE, i * 65536, 65536, cookie=i,
                                  data=b"q" * 65536) for i in range(20)) +
        request_bytes(CMD_WRITE, 0, 65536, cookie=99) + b"q" * 1000)


def case_reset_over_tcp(srv):
    """RST instead of FIN (SO_LINGER 0), in the handshake and with
    requests and replies in flight."""
    linger = struct.pack("ii", 1, 0)
    for stage in ("greeting", "option", "requests"):
        c = srv.connect_tcp()
        c.greeting()
        if stage != "greeting":
            c.send(u32(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES))
            c.send(option_bytes(OPT_GO, length=50) + b"x" * 5)
        if stage == "requests":
            c.close()
            c = srv.connect_tcp()
            c.open()
            c.send(b"".join(request_bytes(CMD_READ, 0, MiB, cookie=i)
                            for i in range(50)))
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        c.close()


def case_hangup_at_every_byte(srv):
    """A whole pipelined session cut after each byte of the handshake and
    at steps through the requests."""
    stream, hs_len = scripted_client()
    cuts = list(range(hs_len + 1)) + list(range(hs_len + 1, len(stream), 13))
    for k in cuts:
        c = srv.connect()
        cut(c, stream[:k])
    c = srv.connect()                  # and the whole stream works
    c.structured = True
    c.greeting()
    c.send(stream)
    for opt in (OPT_STRUCTURED_REPLY, OPT_SET_META_CONTEXT, 0x1234, OPT_INFO,
                OPT_GO):
        c.read_option_replies(opt)
    c.pending = {1: [(CMD_WRITE, 0, 512)], 2: [(CMD_READ, 0, 4096)],
                 3: [(CMD_BLOCK_STATUS, 0, 4096)]}
    for cookie in (1, 2, 3):
        expect_eq("request %d" % cookie, 0, c.reply(cookie).error)
    c.disconnect()


# ---- TLS ----

def tls_client(srv):
    c = srv.connect()
    c.handshake()
    c.expect_option(REP_ACK, OPT_STARTTLS)
    return c


def case_tls_close_after_starttls_ack(srv):
    tls_client(srv).close()


def case_tls_close_inside_handshake(srv):
    hello = TlsBio(socket.socket(), srv.ctx).client_hello()
    check(len(hello) > 100, "ClientHello of %d bytes", len(hello))
    for n in (1, 5, 6, len(hello) // 2, len(hello) - 1, len(hello)):
        cut(tls_client(srv), hello[:n])


def case_tls_half_close_inside_handshake(srv):
    """The nbd-server 2024 bug: EOF in the TLS handshake made it spin."""
    c = tls_client(srv)
    hello = TlsBio(c.sock, srv.ctx).client_hello()
    c.send(hello[:len(hello) // 2])
    t0 = srv.cpu_seconds()
    c.sock.shutdown(socket.SHUT_WR)
    c.read_until_eof(timeout=5)
    c.close()
    check(srv.cpu_seconds() - t0 < 1.0, "server spun %.1f s of CPU",
          srv.cpu_seconds() - t0)


def case_tls_garbage_instead_of_handshake(srv):
    c = tls_client(srv)
    c.send(option_bytes(OPT_GO, info_payload("")) + b"\x16\x03\x01\xff\xff")
    c.read_until_eof(timeout=5)
    c.close()


def case_tls_close_inside_record(srv):
    """TLS is up; the peer cuts a record in the middle, inside an option
    and inside a request."""
    for stage in ("option", "request"):
        c = tls_client(srv)
        t = TlsBio(c.sock, srv.ctx)
        t.handshake()
        data = option_bytes(OPT_STRUCTURED_REPLY)
        if stage == "request":
            # GO's replies are left unread: the server sends them and
            # goes on to read the request
            c.send(t.records(option_bytes(OPT_GO, info_payload(""))))
            data = request_bytes(CMD_READ, 0, 4096, cookie=1)
        rec = t.records(data)
        cut(c, rec[:len(rec) // 2])


def run_tls(failed):
    d = os.path.join(os.environ["TMPDIR"], "x509")
    try:
        make_x509(d)
    except SkipCase as e:
        log("skip the TLS cases: %s", e)
        return failed
    with Server("memory:16M", args=["--tls=require", "--tls-certificates",
                                    d]) as srv:
        srv.ctx = client_context(d)
        watch = Watch(srv, lambda: tls_serves(srv))
        failed += run_cases([(n, f) for n, f in cases_of(globals())
                             if n.startswith("tls_")], srv, watch.check)
    return failed


def tls_serves(srv):
    srv.check_alive()
    c = srv.connect()
    c.handshake()
    c.starttls(srv.ctx)
    c.structured_reply()
    c.go("")
    expect_eq("read over TLS", bytes(512), c.read(0, 512))
    c.disconnect()


def main():
    plain = [(n, f) for n, f in cases_of(globals())
             if not n.startswith("tls_")]
    with Server("memory:16M", tcp=True) as srv:
        failed = run_cases(plain, srv, Watch(srv).check)
    failed = run_tls(failed)
    if failed:
        log("%d case(s) failed", failed)
        sys.exit(1)


if __name__ == "__main__":
    main()
