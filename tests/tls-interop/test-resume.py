#!/usr/bin/python3
"""TLS session resumption on snbd-server (docs/security.md 40), with
Python's ssl (OpenSSL) and libsnbd (snbd-copy) as clients:

  resume       a client with a certificate connects, reads, and resumes
               its session on the next connection: an abbreviated
               handshake, and the same identity (allow= lets it GO to its
               own export and refuses the other one, as after a full
               handshake);
  revoked      under --tls-verify-peer, a client revoked by a reloaded CRL
               (SIGHUP) cannot resume the session it had: no resumption,
               and its full handshake is refused; a client not revoked
               still connects (fully: the reload made a new ticket key);
  psk_removed  a PSK user removed from the PSK file by a SIGHUP cannot
               resume (snbd-copy with --tls-psk-file style URI, twice);
  off          --tls-session-tickets=off: no ticket, no resumption;
  snbd_copy    snbd-copy's extra connections resume the first one's
               session (the server logs which handshakes were resumed).
"""
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdraw                                             # noqa: E402
from nbdraw import check, expect_eq, Server              # noqa: E402
import tlsinterop as ti                                   # noqa: E402

TMP = os.environ["TMPDIR"]
PKI = os.path.join(TMP, "pki")
SNBD_COPY = os.path.join(os.environ["SNBD_BUILD"], "tools", "snbd-copy")


def path(*p):
    return os.path.join(TMP, *p)


def connect(srv, ctx, session=None):
    """A TLS connection through STARTTLS, ready for options."""
    c = srv.connect_tcp()
    c.handshake()
    c.starttls(ctx, session=session)
    return c


def go_read(c, name):
    """GO on name and one read (which also brings the client the server's
    session ticket); returns the ssl session to resume next time."""
    c.go(name)
    c.read(0, 512)
    session = c.sock.session
    c.disconnect()
    return session


def one_session(srv, ctx, name, session=None):
    c = connect(srv, ctx, session)
    reused = c.sock.session_reused
    s = go_read(c, name)
    c.close()
    return reused, s


def hup(srv):
    start = len(srv.stderr())
    os.kill(srv.pid, signal.SIGHUP)
    return ti.wait_log(srv, "reload", "reloaded", start)


def case_resume(_):
    args = ["--tls-certificates", PKI, "--tls-verify-peer", "--tls=require"]
    exports = ["mine=memory:1M,allow=cn=client1", "other=memory:1M,allow=cn=x"]
    with Server(*exports, args=args, tcp=True) as srv:
        ctx = nbdraw.client_context(PKI)
        reused, s = one_session(srv, ctx, "mine")
        check(not reused, "first connection resumed a session")
        check(s.has_ticket, "no session ticket from the server")
        start = len(srv.stderr())
        reused, s2 = one_session(srv, ctx, "mine", s)
        check(reused, "the session was not resumed")
        ti.wait_log(srv, "resumption in the log", "resumed session", start)
        # Same identity after resumption: its own export only.
        c = connect(srv, ctx, s2)
        check(c.sock.session_reused, "third connection not resumed")
        c.send_option(nbdraw.OPT_GO, nbdraw.info_payload("other"))
        rep = c.read_option_replies(nbdraw.OPT_GO)[-1]
        check(rep.is_error, "resumed session allowed into another "
              "identity's export: %r", rep)
        c.close()


def case_revoked(_):
    srvdir, c3 = path("srvrev"), path("c3")
    subprocess.run(["cp", "-r", PKI, srvdir], check=True)
    ti.tls_sh("make_client_cn", srvdir, c3, "client3")
    args = ["--tls-certificates", srvdir, "--tls-verify-peer"]
    with Server("memory:1M", args=args, tcp=True) as srv:
        ctx3 = nbdraw.client_context(c3)
        ctx1 = nbdraw.client_context(srvdir)
        _, s3 = one_session(srv, ctx3, "")
        _, s1 = one_session(srv, ctx1, "")
        check(one_session(srv, ctx3, "", s3)[0], "client3 did not resume")
        _, s3 = one_session(srv, ctx3, "")
        ti.tls_sh("revoke_cert", srvdir, os.path.join(c3, "client-cert.pem"))
        hup(srv)
        start = len(srv.stderr())
        try:
            reused, _ = one_session(srv, ctx3, "", s3)
            check(False, "revoked client connected (resumed: %s)", reused)
        except (OSError, nbdraw.Closed) as e:
            nbdraw.log("revoked client refused: %s", e)
        ti.wait_log(srv, "refusal in the log", "revoked", start)
        reused, _ = one_session(srv, ctx1, "", s1)
        check(not reused, "a ticket from before the reload was accepted")


def case_psk_removed(_):
    psk = path("keys.psk")
    ti.tls_sh("make_psk", psk, "alice")
    ti.tls_sh("make_psk", psk, "bob")
    with Server("memory:1M", args=["--tls-psk", psk], tcp=True) as srv:
        uri = "nbds://alice@localhost:%d/?tls-psk-file=%s" % (srv.port, psk)
        start = len(srv.stderr())
        rc, out = ti.run([SNBD_COPY, "-C", "2", uri, "null:"])
        check(rc == 0, "copy as alice: %s", out)
        ti.wait_log(srv, "alice resumed", "psk:alice (resumed session)",
                    start)
        with open(psk) as f:
            kept = [ln for ln in f if not ln.startswith("alice:")]
        with open(psk, "w") as f:
            f.writelines(kept)
        hup(srv)
        rc, out = ti.run([SNBD_COPY, "-C", "2", uri, "null:"])
        check(rc != 0, "alice, removed, still copies: %s", out)


def case_off(_):
    args = ["--tls-certificates", PKI, "--tls-session-tickets=off"]
    with Server("memory:1M", args=args, tcp=True) as srv:
        ctx = nbdraw.client_context(PKI)
        _, s = one_session(srv, ctx, "")
        check(not s.has_ticket, "a ticket with --tls-session-tickets=off")
        check(not one_session(srv, ctx, "", s)[0], "resumed without tickets")


def case_snbd_copy(_):
    src = path("src.img")
    with open(src, "wb") as f:
        f.write(os.urandom(4 << 20))
    args = ["--tls-certificates", PKI, "--tls-verify-peer"]
    with Server("memory:4M", args=args, tcp=True) as srv:
        uri = "nbds://localhost:%d/?tls-certificates=%s" % (srv.port, PKI)
        start = len(srv.stderr())
        rc, out = ti.run([SNBD_COPY, "-C", "4", src, uri])
        check(rc == 0, "snbd-copy: %s", out)
        log = srv.stderr()[start:]
        tls = log.count("TLS TLS1.3")
        resumed = log.count("(resumed session)")
        nbdraw.log("snbd-copy: %d TLS handshakes, %d resumed", tls, resumed)
        expect_eq("TLS handshakes", 4, tls)
        expect_eq("resumed handshakes", 3, resumed)


if __name__ == "__main__":
    for tool in ("certtool", "psktool"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ["PATH"].split(os.pathsep)):
            nbdraw.skip("%s is not installed" % tool)
    ti.tls_sh("make_x509", PKI)
    ti.main(nbdraw.cases_of(globals()))
