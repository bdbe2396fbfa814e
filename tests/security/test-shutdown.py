#!/usr/bin/python3
"""SIGTERM with clients attached (docs/security.md 18).

proto.md: during option haggling a server being shut down "SHOULD error
further options received (other than an NBD_OPT_ABORT) with
NBD_REP_ERR_SHUTDOWN"; in transmission it "SHOULD wait for inflight
requests to be serviced" and answer later ones with NBD_ESHUTDOWN.  The
server must then exit 0, promptly, with no sanitizer report.  Each case
has its own server, as SIGTERM ends it.
"""

import os
import signal
import sys
import time

from nbdraw import *                      # noqa: F401,F403 (test vocabulary)

EXIT_WITHIN = 10.0     # seconds from SIGTERM, all clients having left


def sigterm(srv):
    os.kill(srv.pid, signal.SIGTERM)
    return time.monotonic()


def shutdown_barrier(srv, h):
    """Returns once the server is shutting down.  First its listener
    closes; then h, a client idle in option haggling, gets ERR_SHUTDOWN
    for its next option or is closed.  Until the signal is handled an
    option may still be answered normally: poll, bounded."""
    srv.wait_for("the listener to close", lambda: not srv.accepts(), 5)
    for _ in range(250):
        try:
            h.send_option(OPT_INFO, info_payload(""))
            reps = h.read_option_replies(OPT_INFO)
        except Closed as e:
            check(not e.got, "%d stray bytes before the close", len(e.got))
            return "closed"
        if reps[-1].type == REP_ERR_SHUTDOWN:
            expect_eq("replies with ERR_SHUTDOWN", 1, len(reps))
            return "ERR_SHUTDOWN"
        expect_eq("option before shutdown", rep_name(REP_ACK),
                  rep_name(reps[-1].type))
        time.sleep(0.02)
    raise TestFailure("options still served normally 5 s after SIGTERM")


def soft_disconnect_in_handshake(h):
    """"If the client receives NBD_REP_ERR_SHUTDOWN it MUST initiate a
    soft disconnect": ABORT is answered ACK (or the server has gone)."""
    try:
        h.send_option(OPT_ABORT)
        r = h.read_option_reply()
        expect_eq("ABORT during shutdown", rep_name(REP_ACK),
                  rep_name(r.type))
    except (Closed, OSError):          # gone (over TLS: an SSL error)
        pass
    try:
        h.read_until_eof()
    except OSError:
        pass
    h.close()


def exits_cleanly(srv, t0):
    srv.wait_exit(EXIT_WITHIN)
    took = time.monotonic() - t0
    check(took < EXIT_WITHIN, "exit took %.1f s", took)
    return took


def case_sigterm_mid_handshake(_):
    with Server("memory:16M") as srv:
        h1 = srv.connect()
        h1.handshake()
        h2 = srv.connect()
        h2.handshake()
        h2.expect_option(REP_ACK, OPT_LIST)
        h3 = srv.connect()             # greeting unread, flags unsent
        idle = srv.client(structured=False)
        t0 = sigterm(srv)
        log("  first option after SIGTERM: %s", shutdown_barrier(srv, h1))
        for c, opt, payload in ((h2, OPT_GO, info_payload("")),
                                (h2, OPT_STRUCTURED_REPLY, b""),
                                (h2, 0x1234, b"u" * 100)):
            try:
                reps = c.option(opt, payload)
            except Closed as e:
                check(not e.got, "stray bytes before the close")
                break
            expect_eq("%s during shutdown" % opt_name(opt),
                      [rep_name(REP_ERR_SHUTDOWN)],
                      [rep_name(r.type) for r in reps])
        try:                            # h3: greeting, then refused or gone
            h3.handshake()
            h3.send_option(OPT_GO, info_payload(""))
            reps = h3.read_option_replies(OPT_GO)
            expect_eq("GO during shutdown", [rep_name(REP_ERR_SHUTDOWN)],
                      [rep_name(r.type) for r in reps])
        except Closed:
            pass
        try:                            # transmission: ESHUTDOWN or closed
            r = idle.cmd(CMD_READ, 0, 512)
            expect_eq("READ after SIGTERM", ESHUTDOWN, r.error)
            idle.disconnect()
        except Closed as e:
            check(not e.got, "stray bytes before the close")
        for c in (h1, h2, h3):
            soft_disconnect_in_handshake(c)
        idle.close()
        log("  exit %.1f s after SIGTERM", exits_cleanly(srv, t0))


def late_replies(c, cookies, what):
    """Requests sent after shutdown began: the first is read at once and
    answered NBD_ESHUTDOWN; the server may hard-disconnect (after its
    in-flight replies) before reading later ones."""
    for i, cookie in enumerate(cookies):
        try:
            r = c.reply(cookie)
        except Closed as e:
            check(i > 0 and not e.got, "%s %d sent after SIGTERM: closed "
                  "with no reply (%d bytes)", what, i, len(e.got))
            return
        expect_eq("%s sent after SIGTERM: error" % what, ESHUTDOWN, r.error)
        check(not c.structured or r.message, "ESHUTDOWN without a message")


def case_sigterm_requests_in_flight(_):
    """Requests in flight at SIGTERM (their replies stuck behind 32 MiB
    reads nobody reads yet) complete; later ones get NBD_ESHUTDOWN; the
    acknowledged writes are on disk once the server has exited."""
    path = os.path.join(os.environ["TMPDIR"], "disk.img")
    with open(path, "wb") as f:
        f.truncate(8 * MiB)
    with Server("memory:1G", "f=file:" + path) as srv:
        t = srv.client(structured=True)
        for k in range(4):
            t.write(k * MAX_PAYLOAD, pattern(k, 4096))
        reads = [t.request(CMD_READ, k * MAX_PAYLOAD, MAX_PAYLOAD)
                 for k in range(4)]
        w = srv.client("f", structured=False)
        wreads = [w.request(CMD_READ, 0, 8 * MiB) for _ in range(4)]
        writes = [w.request(CMD_WRITE, k * 65536, 65536,
                            data=pattern(100 + k, 65536)) for k in range(16)]
        t.wait_server_blocked()        # all of these are in flight now
        w.wait_server_blocked()
        w.wait_server_read()
        h = srv.connect()
        h.handshake()
        t0 = sigterm(srv)
        shutdown_barrier(srv, h)
        late = [t.request(CMD_READ, 0, 4096) for _ in range(3)]
        late_w = [w.request(CMD_WRITE, 2 * MiB + k * 4096, 4096,
                            data=b"L" * 4096) for k in range(2)]
        for k, cookie in enumerate(reads):
            r = t.reply(cookie)
            expect_eq("in-flight READ %d: error" % k, 0, r.error)
            check(r.data[:4096] == pattern(k, 4096) and
                  r.data[4096:] == bytes(MAX_PAYLOAD - 4096),
                  "in-flight READ %d: wrong data", k)
        for cookie in wreads:
            expect_eq("in-flight READ on f", 0, w.reply(cookie).error)
        for k, cookie in enumerate(writes):
            expect_eq("in-flight WRITE %d: error" % k, 0,
                      w.reply(cookie).error)
        late_replies(t, late, "READ")
        late_replies(w, late_w, "WRITE")
        for c in (t, w):
            try:
                c.disconnect()
            except Closed:
                pass
        soft_disconnect_in_handshake(h)
        log("  exit %.1f s after SIGTERM", exits_cleanly(srv, t0))
    with open(path, "rb") as f:
        disk = f.read()
    for k in range(16):
        check(disk[k * 65536:(k + 1) * 65536] == pattern(100 + k, 65536),
              "acknowledged WRITE %d is not on disk", k)
    expect_eq("refused writes left the disk alone", bytes(8192),
              disk[2 * MiB:2 * MiB + 8192])


def reply_or_cut(t, cookie, what):
    """The reply to cookie; a connection cut before it is a failure."""
    try:
        return t.reply(cookie)
    except Closed:
        raise TestFailure("%s: connection cut before its reply" % what)


def stopped_reading(srv, seconds):
    """Waits (bounded) until the server logs that a connection's reader
    has stopped taking requests in; False if it never says so."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if "shutting down: no more requests read" in srv.stderr():
            return True
        time.sleep(0.05)
    return False


def case_sigterm_tls_replies_in_flight(_):
    """The same over TLS: replies being written (the socket full) when
    SIGTERM comes are finished, not cut, however slowly the client reads.
    The client reads the four 32 MiB replies, then reads nothing more
    until the server has stopped reading requests (its log says so, 2 s
    after the reader found none), with 16 MiB of smaller replies still
    queued or their requests still unread, and only then reads those.
    The server used to end that 2 s window with the transport's deadline,
    which also stopped it taking in requests the client had sent before
    SIGTERM and bounded its sends, so a client slower than 2 s (on a
    loaded machine, or pausing here) lost replies."""
    d = make_x509(os.path.join(os.environ["TMPDIR"], "x509"))
    ctx = client_context(d)
    with Server("memory:1G", args=["--tls=require", "--tls-certificates",
                                   d]) as srv:
        t = srv.connect()
        t.handshake()
        t.starttls(ctx)
        t.structured_reply()
        t.go("")
        for k in range(4):
            t.write(k * MAX_PAYLOAD, pattern(k, 4096))
        reads = [t.request(CMD_READ, k * MAX_PAYLOAD, MAX_PAYLOAD)
                 for k in range(4)]
        # more than the 64 requests a connection may have in flight, so
        # the server's reader for t is waiting for room, not reading, and
        # 16 MiB: more than the sockets hold while the client pauses
        small = [t.request(CMD_READ, 0, 256 << 10) for _ in range(66)]
        h = srv.connect()              # FORCEDTLS: TLS_REQD until TLS
        h.handshake()
        h.starttls(ctx)
        t.wait_server_blocked()        # replies are being written
        t0 = sigterm(srv)
        shutdown_barrier(srv, h)
        for k, cookie in enumerate(reads):
            r = reply_or_cut(t, cookie, "TLS READ %d in flight at SIGTERM"
                             % k)
            expect_eq("in-flight READ %d over TLS: error" % k, 0, r.error)
            check(r.data[:4096] == pattern(k, 4096),
                  "in-flight READ %d over TLS: wrong data", k)
        # A server that never says so gets the same pause, bounded.
        if not stopped_reading(srv, EXIT_WITHIN / 2):
            log("  the server never said it stopped reading requests")
        for i, cookie in enumerate(small):
            r = reply_or_cut(t, cookie, "queued READ %d, after the client "
                             "paused" % i)
            check(r.error in (0, ESHUTDOWN), "queued READ: error %d",
                  r.error)
        try:
            t.disconnect()
        except (Closed, OSError):      # it stopped reading: may be gone
            pass
        soft_disconnect_in_handshake(h)
        exits_cleanly(srv, t0)


def case_sigterm_with_half_sent_request(_):
    """A request header half received when SIGTERM comes: the rest still
    belongs to it.  Every reply must carry a cookie the client sent; the
    server must not resynchronise in the middle of a header (cookie and
    offset below are chosen so that a misaligned parse finds a valid
    request magic and answers for a cookie never sent)."""
    cookie1 = 0x0102030405062560       # ends in the magic's first half
    off1 = 0x9513000000000000          # starts with its second half
    req1 = request_bytes(CMD_READ, off1, 512, cookie=cookie1)
    req2 = request_bytes(CMD_READ, 0, 512, cookie=2)
    with Server("memory:16M") as srv:
        t = srv.client(structured=True)
        h = srv.connect()
        h.handshake()
        t.send(req1[:14])
        t.wait_server_read()           # the server holds half a header
        t0 = sigterm(srv)
        shutdown_barrier(srv, h)
        t.send_partial(req1[14:] + req2)
        t.sock.settimeout(5)
        replies = []
        try:
            for _ in range(10):
                replies.append(t.recv_message())
        except Closed as e:
            check(not e.got, "partial reply before the close")
        t.close()
        soft_disconnect_in_handshake(h)
        for m in replies:
            check(m.cookie in (cookie1, 2),
                  "reply for cookie 0x%x, never sent: the server parsed a "
                  "request header from the middle of one", m.cookie)
            allowed = (ESHUTDOWN, EINVAL) if m.cookie == cookie1 else \
                      (ESHUTDOWN, 0)
            check((m.error or 0) in allowed, "cookie 0x%x: error %s",
                  m.cookie, m.error)
        exits_cleanly(srv, t0)


def case_sigterm_with_half_sent_write_payload(_):
    """A WRITE whose payload is half received at SIGTERM is in flight: the
    server "SHOULD wait for inflight requests to be serviced" (proto.md
    "Terminating the transmission phase"), so once the rest arrives the
    request gets a reply (done, or NBD_ESHUTDOWN), not a silent close."""
    with Server("memory:16M") as srv:
        t = srv.client(structured=True)
        h = srv.connect()
        h.handshake()
        data = pattern(5, MiB)
        cookie = t.request(CMD_WRITE, 0, MiB)
        t.send(data[:MiB // 2])
        t.wait_server_read()           # the server is reading the payload
        t0 = sigterm(srv)
        shutdown_barrier(srv, h)
        t.send_partial(data[MiB // 2:])
        try:
            r = t.reply(cookie)
        except Closed as e:
            raise TestFailure("WRITE in flight at SIGTERM: connection "
                              "closed with no reply (%d bytes)" % len(e.got))
        check(r.error in (0, ESHUTDOWN), "WRITE in flight: error %d",
              r.error)
        try:
            t.disconnect()
        except Closed:
            pass
        soft_disconnect_in_handshake(h)
        exits_cleanly(srv, t0)


def main():
    failed = run_cases(cases_of(globals()))
    if failed:
        log("%d case(s) failed", failed)
        sys.exit(1)


if __name__ == "__main__":
    main()
