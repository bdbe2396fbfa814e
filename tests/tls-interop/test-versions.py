"""TLS protocol versions as gnutls-cli sees snbd-server (docs/security.md 2):
a client offering only TLS 1.0 or only TLS 1.1 fails, and the server log
names the peer and says why; TLS 1.2 only and the default (TLS 1.3) work,
with X.509 and with PSK.  gnutls-cli reaches the server's STARTTLS through
tlsinterop.Relay, which does the plain NBD part itself.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdraw                                             # noqa: E402
from nbdraw import check, Server                          # noqa: E402
import tlsinterop as ti                                   # noqa: E402

TMP = os.environ["TMPDIR"]
PKI = os.path.join(TMP, "pki")
PSK = os.path.join(TMP, "keys.psk")
ONLY = "NORMAL:-VERS-ALL:+VERS-%s"
PSK_KX = ":+ECDHE-PSK:+DHE-PSK:+PSK"
# gnutls-cli 3.7.9 itself crashes (SIGSEGV, also against gnutls-serv) after
# a TLS 1.2 handshake with ECDHE-PSK or DHE-PSK, so its TLS 1.2 PSK case
# offers plain PSK only.
PSK_KX_12 = ":+PSK"


def x509_args(prio):
    return ["--x509cafile", os.path.join(PKI, "ca-cert.pem"),
            "--priority", prio]


def psk_args(prio, kx=PSK_KX):
    return ["--pskusername", "alice", "--pskkey", ti.psk_key(PSK, "alice"),
            "--priority", prio + kx]


def expect_ok(srv, what, args, version):
    rc, out = ti.gnutls_cli(srv.sock_path, args)
    check(rc == 0, "%s: gnutls-cli failed (%d):\n%s", what, rc, out)
    check("- Description: (%s" % version in out,
          "%s: not %s:\n%s", what, version, out)
    check("Handshake was completed" in out, "%s: no handshake:\n%s", what,
          out)


def expect_refused(srv, what, args):
    start = len(srv.stderr())
    rc, out = ti.gnutls_cli(srv.sock_path, args)
    check(rc != 0, "%s: gnutls-cli succeeded:\n%s", what, out)
    check("Handshake was completed" not in out,
          "%s: handshake completed:\n%s", what, out)
    check("protocol version" in out.lower() or "alert" in out.lower(),
          "%s: gnutls-cli gives no TLS reason:\n%s", what, out)
    text = ti.wait_log(srv, what, "TLS handshake failed", start)
    line = [ln for ln in text.splitlines()
            if "TLS handshake failed" in ln][0]
    check(re.match(r"snbd-server: unix#\d+: TLS handshake failed: ", line),
          "%s: log line does not name the peer: %r", what, line)
    check(re.search(r"version|protocol|no supported|handshake failure",
                    line, re.I),
          "%s: log does not say why: %r", what, line)


def case_x509_versions(_):
    with Server("memory:1M", args=["--tls-certificates", PKI]) as srv:
        expect_ok(srv, "x509 default", x509_args("NORMAL"), "TLS1.3")
        expect_ok(srv, "x509 TLS1.2 only", x509_args(ONLY % "TLS1.2"),
                  "TLS1.2")
        for v in ("TLS1.1", "TLS1.0"):
            expect_refused(srv, "x509 %s only" % v, x509_args(ONLY % v))
        srv.check_alive()


def case_psk_versions(_):
    with Server("memory:1M", args=["--tls-psk", PSK]) as srv:
        expect_ok(srv, "psk default", psk_args("NORMAL"), "TLS1.3")
        expect_ok(srv, "psk TLS1.2 only", psk_args(ONLY % "TLS1.2", PSK_KX_12),
                  "TLS1.2")
        for v in ("TLS1.1", "TLS1.0"):
            expect_refused(srv, "psk %s only" % v, psk_args(ONLY % v))
        srv.check_alive()


def case_libnbd_after_refusals(_):
    """The refusals leave the server serving TLS 1.2 libnbd clients too."""
    with Server("memory:1M", args=["--tls-psk", PSK]) as srv:
        expect_refused(srv, "psk TLS1.1 only", psk_args(ONLY % "TLS1.1"))
        rc, out = ti.nbdinfo("nbds+unix://alice@/?socket=%s&tls-psk-file=%s"
                             % (srv.sock_path, PSK), "--size")
        check(rc == 0 and out.strip() == "1048576", "nbdinfo: %d %s", rc,
              out)


if __name__ == "__main__":
    for tool in ("gnutls-cli", "certtool", "psktool", "nbdinfo"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ["PATH"].split(os.pathsep)):
            nbdraw.skip("%s is not installed" % tool)
    ti.tls_sh("make_x509", PKI)
    ti.tls_sh("make_psk", PSK, "alice")
    ti.main(nbdraw.cases_of(globals()))
