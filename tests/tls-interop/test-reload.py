"""SIGHUP reloads snbd-server's TLS credentials (certificates, CRL, PSK
file; docs/security.md 29): new connections get the new ones, sessions already open go on with
theirs, and a reload that fails keeps the old credentials and says why.

  rotate     the server certificate moves from CA A to CA B and alice's
             PSK key changes (bob is added): afterwards only clients
             trusting B connect over X.509 (the certificate Python's ssl
             sees is B's, byte for byte), the old PSK key is refused, the
             new one and bob work, and libnbd sessions opened before the
             reload, with A and with the old key, still write and read;
  broken     a garbage server-key.pem: the reload fails, the log says so,
             the certificate in use stays the same and new clients work;
  crl        under --tls-verify-peer, a client certificate revoked in a
             reloaded ca-crl.pem is refused from then on, while a session
             it opened before keeps working;
  crl_removed  ca-crl.pem deleted: the reload keeps the old credentials
             (the certificate stays revoked) and says why; an empty CRL
             is loaded; each reload logs what it loaded.
"""
import os
import shutil
import signal
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdraw                                             # noqa: E402
from nbdraw import check, expect_eq, Server              # noqa: E402
import tlsinterop as ti                                   # noqa: E402

TMP = os.environ["TMPDIR"]
A, B = os.path.join(TMP, "pkiA"), os.path.join(TMP, "pkiB")


def path(*p):
    return os.path.join(TMP, *p)


def install(src_dir, dst_dir, *names):
    """Copies files into the server's directory, each by an atomic rename
    (as a certificate manager would)."""
    for n in names:
        tmp = os.path.join(dst_dir, ".%s.tmp" % n)
        shutil.copyfile(os.path.join(src_dir, n), tmp)
        os.replace(tmp, os.path.join(dst_dir, n))


def server_cert_der(srv):
    """The certificate the server presents to a new TLS client."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE          # we only look at it
    with srv.connect_tcp() as c:
        c.handshake()
        c.starttls(ctx)
        der = c.sock.getpeercert(binary_form=True)
        c.send_option(nbdraw.OPT_ABORT)
    return der


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def x509_uri(srv, client_dir):
    return "nbds://localhost:%d/?tls-certificates=%s" % (srv.port,
                                                         client_dir)


def psk_uri(srv, user, psk_file):
    return "nbds://%s@localhost:%d/?tls-psk-file=%s" % (user, srv.port,
                                                        psk_file)


def works(uri, what):
    rc, out = ti.nbdinfo(uri, "--size")
    check(rc == 0 and out.strip() == str(16 << 20), "%s: %d %s", what, rc,
          out)


def refused(uri, what):
    rc, out = ti.nbdinfo(uri, "--size")
    check(rc != 0, "%s: connected, expected a refusal: %s", what, out)


def hup(srv, want):
    start = len(srv.stderr())
    os.kill(srv.pid, signal.SIGHUP)
    return ti.wait_log(srv, "reload", want, start)


def case_rotate_and_broken(_):
    srvdir, psk = path("srv"), path("srv.psk")
    os.mkdir(srvdir)
    install(A, srvdir, "ca-cert.pem", "server-cert.pem", "server-key.pem")
    ti.tls_sh("make_psk", psk, "alice")
    old_psk = path("old.psk")
    shutil.copyfile(psk, old_psk)
    args = ["--tls-certificates", srvdir, "--tls-psk", psk]
    with Server("memory:16M", args=args, tcp=True) as srv:
        works(x509_uri(srv, path("onlyA")), "trusting A, before")
        refused(x509_uri(srv, path("onlyB")), "trusting B, before")
        expect_eq("certificate before", der_of(path(A, "server-cert.pem")),
                  server_cert_der(srv))
        old_x509 = ti.Session(x509_uri(srv, path("onlyA")))
        old_psk_session = ti.Session(psk_uri(srv, "alice", old_psk),
                                     base=8 << 20)
        old_x509.io()
        old_psk_session.io()
        refused(psk_uri(srv, "bob", psk), "bob, before")

        # Rotate: server certificate to B, alice's key replaced, bob added.
        install(B, srvdir, "server-cert.pem", "server-key.pem")
        ti.tls_sh("make_psk", psk, "alice")
        ti.tls_sh("make_psk", psk, "bob")
        check(ti.psk_key(psk, "alice") != ti.psk_key(old_psk, "alice"),
              "psktool kept alice's key")
        hup(srv, "SIGHUP: TLS credentials reloaded")
        expect_eq("certificate after rotation",
                  der_of(path(B, "server-cert.pem")), server_cert_der(srv))
        works(x509_uri(srv, path("onlyB")), "trusting B, after")
        refused(x509_uri(srv, path("onlyA")), "trusting A, after")
        works(psk_uri(srv, "alice", psk), "alice's new key")
        works(psk_uri(srv, "bob", psk), "bob, after")
        refused(psk_uri(srv, "alice", old_psk), "alice's old key")
        old_x509.io()
        old_psk_session.io()

        # A broken key file: the reload fails and changes nothing.
        with open(path("srv", "server-key.pem"), "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n"
                    "-----END PRIVATE KEY-----\n")
        text = hup(srv, "SIGHUP: keeping the old credentials: ")
        line = [ln for ln in text.splitlines() if "keeping the old" in ln][0]
        check("server-key.pem" in line or "key" in line.split(": ", 2)[-1],
              "the log does not say what is wrong: %r", line)
        nbdraw.log("broken reload logged: %s", line)
        expect_eq("certificate after a failed reload",
                  der_of(path(B, "server-cert.pem")), server_cert_der(srv))
        works(x509_uri(srv, path("onlyB")), "trusting B, after failure")
        works(psk_uri(srv, "bob", psk), "bob, after failure")
        old_x509.io()
        old_psk_session.io()
        old_x509.quit()
        old_psk_session.quit()


def case_crl(_):
    srvdir = path("srvcrl")
    os.mkdir(srvdir)
    install(A, srvdir, "ca-cert.pem", "server-cert.pem", "server-key.pem",
            "ca-crl.pem")
    c3 = path("c3")
    ti.tls_sh("make_client_cn", A, c3, "client3")
    args = ["--tls-certificates", srvdir, "--tls-verify-peer"]
    with Server("memory:16M", args=args, tcp=True) as srv:
        works(x509_uri(srv, c3), "client3, before revocation")
        session = ti.Session(x509_uri(srv, c3))
        session.io()
        ti.tls_sh("revoke_cert", A, os.path.join(c3, "client-cert.pem"))
        install(A, srvdir, "ca-crl.pem")
        hup(srv, "SIGHUP: TLS credentials reloaded")
        start = len(srv.stderr())
        refused(x509_uri(srv, c3), "client3, revoked")
        ti.wait_log(srv, "revocation in the log", "revoked", start)
        works(x509_uri(srv, A), "client1, not revoked")
        session.io()
        session.quit()


def case_crl_removed(_):
    """Deleting ca-crl.pem and sending SIGHUP does not un-revoke: the
    reload keeps the old credentials and says why; an empty CRL put there
    instead is the operator saying so, and is loaded.  Every reload logs
    what it loaded (CA subject, CRL entries, certificate expiry, PSK
    users)."""
    srvdir, psk = path("srvrm"), path("rm.psk")
    os.mkdir(srvdir)
    c4 = path("c4")
    ti.tls_sh("make_client_cn", A, c4, "client4")
    ti.tls_sh("revoke_cert", A, os.path.join(c4, "client-cert.pem"))
    install(A, srvdir, "ca-cert.pem", "server-cert.pem", "server-key.pem",
            "ca-crl.pem")
    ti.tls_sh("make_psk", psk, "alice")
    ti.tls_sh("make_psk", psk, "bob")
    args = ["--tls-certificates", srvdir, "--tls-psk", psk,
            "--tls-verify-peer"]
    with Server("memory:16M", args=args, tcp=True) as srv:
        refused(x509_uri(srv, c4), "client4, revoked")
        text = hup(srv, "SIGHUP: TLS credentials reloaded")
        line = [ln for ln in text.splitlines()
                if "TLS credentials loaded: " in ln][-1]
        for want in ('CA "CN=snbd test CA,O=snbd"', "CRL revoking 1",
                     'certificate "CN=localhost,O=snbd" expires 20',
                     "PSK: 2 users"):
            check(want in line, "reload log lacks %r: %r", want, line)
        os.unlink(os.path.join(srvdir, "ca-crl.pem"))
        text = hup(srv, "SIGHUP: keeping the old credentials: ")
        check("ca-crl.pem" in text and "revocations" in text,
              "the log does not say the CRL would be lost: %r", text)
        refused(x509_uri(srv, c4), "client4, CRL deleted and SIGHUP")
        works(x509_uri(srv, A), "client1, CRL deleted and SIGHUP")
        # An empty CRL from the same CA: revocations dropped on purpose.
        ti.tls_sh("_tls_crl", A)
        install(A, srvdir, "ca-crl.pem")
        text = hup(srv, "SIGHUP: TLS credentials reloaded")
        check("CRL revoking 0" in text, "empty CRL not logged: %r", text)
        works(x509_uri(srv, c4), "client4, empty CRL installed")


if __name__ == "__main__":
    for tool in ("certtool", "psktool", "nbdinfo"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ["PATH"].split(os.pathsep)):
            nbdraw.skip("%s is not installed" % tool)
    ti.tls_sh("make_x509", A)
    ti.tls_sh("make_x509", B)
    # Clients that trust only one CA and have no certificate of their own.
    ti.tls_sh("make_client_dir", A, path("onlyA"))
    ti.tls_sh("make_client_dir", B, path("onlyB"))
    ti.main(nbdraw.cases_of(globals()))
