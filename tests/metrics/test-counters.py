#!/usr/bin/python3
"""snbd-server --metrics: each counter moves as it should, the page passes
`promtool check metrics`, and the endpoint is only where it was asked to
be (docs/security.md 42).

  requests   reads, writes, a flush and a refused read on a Unix socket
             metrics endpoint: requests, bytes (failed ones not), errors,
             the duration histogram, the connections gauge in and out of
             transmission, queued bytes back to 0, handshakes ok; the
             same counts after the connection ended, and a second
             connection's added to them; an
             export name with a quote, a backslash and a newline comes
             back whole through the label escaping; promtool accepts it;
  errors     the error: backend (EIO on every storage operation): errors
             by export, op and NBD error, scraped over loopback TCP;
  tls        X.509: a client that breaks its TLS handshake counts as
             tls_failed and in the TLS duration histogram, a good one as
             ok and in the tls="yes" gauge; the certificate expiry is the
             certificate's notAfter; SIGHUP reloads count ok, and failed
             after the key is spoilt;
  policy     PSK with allow=psk:alice: bob is denied (policy_denials of
             that export, handshakes policy_denied), a plain-text GO in
             FORCEDTLS too; no certificate, no expiry sample;
  endings    a client that never finishes negotiating: timeout; one
             dropped by --max-negotiating: dropped (the gauge keeps one
             negotiating); NBD_OPT_ABORT and a client that just leaves:
             aborted;
  refusals   a non-loopback --metrics address, malformed ones, and other
             URLs and methods are refused;
  hostile    garbage, a 1 MiB header, a 1 MiB URL, a body on GET: an HTTP
             error or a close, and the server and the page still work;
  shutdown   SIGTERM with a scraper's connection still open: the server
             exits 0 and removes the metrics socket.
"""
import os
import signal
import socket
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tls-interop"))
import nbdraw                                             # noqa: E402
from nbdraw import (CMD_FLUSH, CMD_READ, CMD_WRITE, OPT_GO, OPT_STARTTLS,
                    REP_ACK, REP_ERR_TLS_REQD, Server, check,
                    expect_eq, info_payload)              # noqa: E402
import metricslib as ml                                   # noqa: E402
import tlsinterop as ti                                   # noqa: E402

TMP = os.environ["TMPDIR"]
WEIRD = 'we"ird\\na\nme'
SNBD = os.environ["SNBD_SERVER"]


def unix_addr(tag):
    return "unix:" + os.path.join(TMP, "metrics-%s.sock" % tag)


def case_requests(_):
    maddr = unix_addr("requests")
    with Server("disk=memory:16M", WEIRD + "=memory:1M",
                args=["--metrics", maddr]) as srv:
        c = srv.client("disk")
        for i in range(5):
            c.write(i * 4096, nbdraw.pattern(i, 4096))
        for i in range(3):
            c.read(i * 4096, 4096)
        c.expect_cmd(0, "flush", CMD_FLUSH)
        c.expect_cmd(22, "read past the end", CMD_READ, 16 << 20, 4096)
        s = ml.Scrape(maddr)
        v = s.value
        expect_eq("writes", 5, v("snbd_requests_total", export="disk",
                                 op="write"))
        expect_eq("reads", 4, v("snbd_requests_total", export="disk",
                                op="read"))
        expect_eq("flushes", 1, v("snbd_requests_total", export="disk",
                                  op="flush"))
        expect_eq("bytes written", 5 * 4096,
                  v("snbd_request_bytes_total", export="disk", op="write"))
        expect_eq("bytes read (not the refused read)", 3 * 4096,
                  v("snbd_request_bytes_total", export="disk", op="read"))
        expect_eq("refused read", 1, v("snbd_request_errors_total",
                                       export="disk", op="read",
                                       error="einval"))
        expect_eq("write durations", 5, v(
            "snbd_request_duration_seconds_count", op="write"))
        expect_eq("writes under +Inf", 5, v(
            "snbd_request_duration_seconds_bucket", op="write", le="+Inf"))
        expect_eq("in transmission", 1, v(
            "snbd_connections", state="transmission", transport="unix",
            tls="no"))
        expect_eq("odd export name, unescaped", 1 << 20, v(
            "snbd_export_size_bytes", export=WEIRD))
        expect_eq("export size", 16 << 20, v("snbd_export_size_bytes",
                                             export="disk"))
        expect_eq("nothing queued at rest", 0, v("snbd_memory_queued_bytes"))
        expect_eq("handshakes ok", 1, v("snbd_handshakes_total",
                                        result="ok"))
        ml.promtool_check(s.text)
        c.disconnect()
        s = ml.wait_value(maddr, "the connection to leave the gauge",
                          "snbd_connections", lambda n: n == 0,
                          state="transmission", transport="unix", tls="no")
        # A connection counts what its own thread answers in counters of
        # its own (read live above), added to the export's when it ends:
        # nothing lost or counted twice then, and the next connection's
        # requests add to them.
        expect_eq("writes after the end", 5, s.value(
            "snbd_requests_total", export="disk", op="write"))
        expect_eq("write durations after the end", 5, s.value(
            "snbd_request_duration_seconds_count", op="write"))
        expect_eq("bytes read after the end", 3 * 4096, s.value(
            "snbd_request_bytes_total", export="disk", op="read"))
        c = srv.client("disk")
        for i in range(2):
            c.write(i * 4096, nbdraw.pattern(i, 4096))
        v = ml.Scrape(maddr).value
        expect_eq("writes of two connections", 7, v(
            "snbd_requests_total", export="disk", op="write"))
        expect_eq("write durations of two connections", 7, v(
            "snbd_request_duration_seconds_count", op="write"))
        expect_eq("bytes written by two connections", 7 * 4096, v(
            "snbd_request_bytes_total", export="disk", op="write"))
        c.disconnect()


def case_errors(_):
    maddr = "127.0.0.1:%d" % ml.free_port()      # TCP this time
    srv = Server("bad=error:1:EIO:memory:1M", args=["--metrics", maddr])
    with srv:
        c = srv.client("bad")
        c.expect_cmd(5, "read", CMD_READ, 0, 4096)
        c.expect_cmd(5, "write", CMD_WRITE, 0, 4096, data=b"x" * 4096)
        c.expect_cmd(5, "write", CMD_WRITE, 0, 4096, data=b"x" * 4096)
        s = ml.Scrape(maddr)
        expect_eq("read EIO", 1, s.value("snbd_request_errors_total",
                                         export="bad", op="read",
                                         error="eio"))
        expect_eq("write EIO", 2, s.value("snbd_request_errors_total",
                                          export="bad", op="write",
                                          error="eio"))
        expect_eq("no bytes for failed requests", 0, s.value(
            "snbd_request_bytes_total", export="bad", op="write"))
        ml.promtool_check(s.text)
        c.disconnect()
        # The final flush fails too, as it should: exit status 1.
        os.kill(srv.pid, signal.SIGTERM)
        srv.wait_exit(want=1)


def break_tls_handshake(srv):
    """STARTTLS accepted, then bytes that are not TLS."""
    with srv.connect() as c:
        c.handshake()
        c.send_option(OPT_STARTTLS)
        r = c.read_option_reply()
        expect_eq("STARTTLS reply", REP_ACK, r.type)
        c.send(b"\x16\x03\x01\x00\x05hello, this is not TLS" * 4)
        try:
            while c.sock.recv(4096):
                pass
        except OSError:
            pass


def cert_not_after(path):
    d = ssl._ssl._test_decode_cert(path)
    return ssl.cert_time_to_seconds(d["notAfter"])


def reload_and_wait(srv, maddr, result, before):
    os.kill(srv.pid, signal.SIGHUP)
    ml.wait_value(maddr, "a %s credential reload" % result,
                  "snbd_credential_reloads_total", lambda n: n == before + 1,
                  result=result)


def case_tls(_):
    pki = os.path.join(TMP, "pki")
    ti.tls_sh("make_x509", pki)
    # Unix: Server finds its NBD port as the server's one TCP listener.
    maddr = unix_addr("tls")
    with Server("disk=memory:1M", tcp=True,
                args=["--metrics", maddr, "--tls-certificates", pki]) as srv:
        break_tls_handshake(srv)
        s = ml.wait_value(maddr, "the failed TLS handshake",
                          "snbd_handshakes_total", lambda n: n == 1,
                          result="tls_failed")
        expect_eq("TLS handshakes timed", 1, s.value(
            "snbd_tls_handshake_duration_seconds_count"))
        uri = "nbds://127.0.0.1:%d/disk?tls-certificates=%s" % (srv.port,
                                                              pki)
        rc, out = ti.nbdinfo(uri, "--size")
        check(rc == 0, "nbdinfo over TLS: %s", out)
        s = ml.wait_value(maddr, "the good handshake", "snbd_handshakes_total",
                          lambda n: n == 1, result="ok")
        expect_eq("TLS handshakes timed", 2, s.value(
            "snbd_tls_handshake_duration_seconds_count"))
        expect_eq("certificate expiry",
                  cert_not_after(os.path.join(pki, "server-cert.pem")),
                  s.value("snbd_certificate_expiry_timestamp_seconds"))
        ml.promtool_check(s.text)
        reload_and_wait(srv, maddr, "ok", 0)
        with open(os.path.join(pki, "server-key.pem"), "w") as f:
            f.write("not a key\n")
        reload_and_wait(srv, maddr, "failed", 0)
        expect_eq("reloads ok", 1, ml.Scrape(maddr).value(
            "snbd_credential_reloads_total", result="ok"))


def case_policy(_):
    psk = os.path.join(TMP, "keys.psk")
    ti.tls_sh("make_psk", psk, "alice")
    ti.tls_sh("make_psk", psk, "bob")
    maddr = unix_addr("policy")
    with Server("secret=memory:1M,allow=psk:alice", tcp=True,
                args=["--metrics", maddr, "--tls-psk", psk]) as srv:
        base = "nbds://%%s@127.0.0.1:%d/secret?tls-psk-file=%s" % (srv.port,
                                                                  psk)
        rc, out = ti.nbdinfo(base % "bob", "--size")
        check(rc != 0, "bob was let in: %s", out)
        s = ml.wait_value(maddr, "bob's refusal", "snbd_handshakes_total",
                          lambda n: n == 1, result="policy_denied")
        check(s.value("snbd_policy_denials_total", export="secret") >= 1,
              "no denial counted for export secret")
        rc, out = ti.nbdinfo(base % "alice", "--size")
        check(rc == 0, "alice: %s", out)
        # FORCEDTLS: GO in clear text is refused by the policy too.
        with srv.connect() as c:
            c.handshake()
            c.send_option(OPT_GO, info_payload("secret"))
            expect_eq("GO before STARTTLS", REP_ERR_TLS_REQD,
                      c.read_option_reply().type)
        s = ml.wait_value(maddr, "the clear-text refusal",
                          "snbd_handshakes_total", lambda n: n == 2,
                          result="policy_denied")
        expect_eq("alice's handshake", 1, s.value("snbd_handshakes_total",
                                                  result="ok"))
        check(s.get("snbd_certificate_expiry_timestamp_seconds") is None,
              "a certificate expiry without a certificate")
        ml.promtool_check(s.text)


def case_endings(_):
    maddr = unix_addr("timeout")
    with Server("memory:1M", args=["--metrics", maddr,
                                   "--handshake-timeout", "1"]) as srv:
        with srv.connect() as c:
            c.greeting()
            ml.wait_value(maddr, "the handshake deadline",
                          "snbd_handshakes_total", lambda n: n == 1,
                          result="timeout")
    maddr = unix_addr("endings")
    with Server("memory:1M", args=["--metrics", maddr,
                                   "--max-negotiating", "1"]) as srv:
        # Server.start's probe connected and left: aborted.
        ml.wait_value(maddr, "the start-up probe", "snbd_handshakes_total",
                      lambda n: n == 1, result="aborted")
        with srv.connect() as old:
            old.greeting()
            with srv.connect() as new:     # one too many: old is dropped
                s = ml.wait_value(maddr, "the drop", "snbd_handshakes_total",
                                  lambda n: n == 1, result="dropped")
                expect_eq("negotiating", 1, s.value(
                    "snbd_connections", state="negotiating",
                    transport="unix", tls="no"))
                new.handshake()
                new.send_option(nbdraw.OPT_ABORT)
                ml.wait_value(maddr, "NBD_OPT_ABORT", "snbd_handshakes_total",
                              lambda n: n == 2, result="aborted")


def refused(args, why):
    r = subprocess.run([SNBD, "-U", os.path.join(TMP, "r.sock")] + args +
                       ["memory:1M"], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode != 0, "%s: the server started", args)
    check(why in r.stderr, "%s: no %r in %r", args, why, r.stderr)


def case_refusals(_):
    port = ml.free_port()
    # Refused before anything is bound.
    refused(["--metrics", "0.0.0.0:%d" % port], "--metrics-allow-remote")
    refused(["--metrics", "[::]:%d" % port], "--metrics-allow-remote")
    for bad in ("127.0.0.1", "127.0.0.1:", ":9100", "127.0.0.1:70000",
                "127.0.0.1:x"):
        refused(["--metrics", bad], "HOST:PORT or unix:PATH")
    maddr = unix_addr("refusals")
    with Server("memory:1M", args=["--metrics", maddr]):
        expect_eq("other URL", 404, ml.http_get(maddr, "/")[0])
        expect_eq("POST", 405, ml.http_get(maddr, method="POST")[0])
        expect_eq("GET", 200, ml.http_get(maddr)[0])


def http_raw(maddr, data):
    """Sends data to the metrics socket; what comes back until it closes
    (bounded by the socket timeout)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(maddr[5:])
    got = b""
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except OSError:        # a reset for what it did not read is fine
        pass
    finally:
        s.close()
    return got


def case_hostile(_):
    maddr = unix_addr("hostile")
    with Server("disk=memory:1M", args=["--metrics", maddr]) as srv:
        for what, data in [
                ("garbage", b"\x00\xff\x16\x03 not HTTP at all\r\n\r\n"),
                ("a 1 MiB header", b"GET /metrics HTTP/1.1\r\nX: " +
                 b"a" * (1 << 20) + b"\r\n\r\n"),
                ("a 1 MiB URL", b"GET /" + b"m" * (1 << 20) +
                 b" HTTP/1.1\r\n\r\n"),
                ("a body on GET", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 100000\r\n\r\n" + b"b" * 100000)]:
            got = http_raw(maddr, data)
            check(not got or got.startswith(b"HTTP/1."),
                  "%s: answered %r", what, got[:100])
            check(not got.startswith(b"HTTP/1.1 200") or what ==
                  "a body on GET", "%s: answered 200", what)
        srv.check_serves("disk")
        ml.promtool_check(ml.Scrape(maddr).text)


def case_shutdown(_):
    maddr = unix_addr("shutdown")
    srv = Server("memory:1M", args=["--metrics", maddr]).start()
    idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    idle.connect(maddr[5:])
    idle.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
    srv.stop()        # exit 0, within Server.stop's bound
    check(not os.path.exists(maddr[5:]), "metrics socket left behind")
    idle.close()


def main():
    ml.need("promtool")
    ti.main([("requests", case_requests), ("errors", case_errors),
             ("tls", case_tls), ("policy", case_policy),
             ("endings", case_endings), ("refusals", case_refusals),
             ("hostile", case_hostile), ("shutdown", case_shutdown)])


if __name__ == "__main__":
    main()
