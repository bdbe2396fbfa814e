"""A man in the middle between a real client (libnbd: python3-libnbd and
nbdinfo; qemu-img) and snbd-server in require mode (FORCEDTLS) tries to
keep the session in clear text (proto.md "TLS support", "Security
considerations": a downgrade attack; docs/security.md 27).  Modes of the
proxy:

  strip    the client's NBD_OPT_STARTTLS never reaches the server; the
           proxy answers it with NBD_REP_ERR_UNSUP (as a NOTLS server
           would), forwarding everything else;
  replace  the client's STARTTLS is replaced by NBD_OPT_GO for the default
           export, i.e. the attacker asks for the export in clear text;
  rewrite  STARTTLS reaches the server, whose ACK the proxy turns into
           NBD_REP_ERR_UNSUP; from then on bytes are relayed untouched;
  pass     everything relayed untouched (control: TLS works through it).

Every byte the server sends before TLS is captured and parsed: it must
hold no NBD_REP_INFO / NBD_REP_SERVER / META reply, not the export's
size, and no export data (the export is filled with a marker that must
not appear in any server byte, TLS or not).  A client that insists on TLS
fails; a client that allows a downgrade (libnbd TLS_ALLOW) fails too,
because the server never serves in clear text.  As a check on the checks,
the same proxy against a SELECTIVETLS server does leak the data, and the
detector says so.
"""
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdraw                                             # noqa: E402
from nbdraw import check, expect_eq, Server, TestFailure  # noqa: E402
import tlsinterop as ti                                   # noqa: E402

TMP = os.environ["TMPDIR"]
PSK = os.path.join(TMP, "keys.psk")
QPSK = os.path.join(TMP, "qpsk")
DISK = os.path.join(TMP, "secret.img")
MARKER = b"SNBD-SECRET!"                  # the export's content, repeated
SIZE = (1 << 20) + 3 * 4096               # a size unlikely by chance
TLS_RECORD_TYPES = (20, 21, 22, 23)       # ChangeCipherSpec .. AppData


class Mitm:
    """One client connection through the proxy to the server's socket."""

    def __init__(self, upstream, mode, timeout=15.0):
        self.upstream, self.mode = upstream, mode
        self.deadline = time.monotonic() + timeout
        self.path = os.path.join(TMP, "mitm-%s.sock" % mode)
        if os.path.exists(self.path):
            os.unlink(self.path)
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(self.path)
        self.lsock.listen(1)
        self.clear = bytearray()          # server -> proxy, before TLS
        self.after = bytearray()          # server -> proxy, relayed raw
        self.after_ack = False            # raw relay began at a STARTTLS ACK
        self.replies = []                 # (option, reply type) in clear
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    # -- reading with capture --
    def _srv_read(self, n):
        b = ti.recv_exact(self.srv, n, self.deadline)
        self.clear += b
        return b

    def _cli_read(self, n):
        return ti.recv_exact(self.cli, n, self.deadline)

    def _forward_replies(self, opt):
        """Relays the server's replies to one option up to its final one
        (ACK or error); returns the final reply's type."""
        for _ in range(10000):
            hdr = self._srv_read(20)
            magic, ropt, rtype, n = struct.unpack(">QIII", hdr)
            check(magic == nbdraw.REP_MAGIC, "bad reply magic %#x", magic)
            check(n <= 1 << 20, "reply of %d bytes", n)
            data = self._srv_read(n)
            self.replies.append((ropt, rtype))
            self.cli.sendall(hdr + data)
            if rtype == nbdraw.REP_ACK or rtype & nbdraw.REP_ERR_BIT:
                return rtype
        raise TestFailure("endless replies to option %d" % opt)

    def _reply_to_client(self, opt, rtype):
        self.cli.sendall(struct.pack(">QIII", nbdraw.REP_MAGIC, opt, rtype,
                                     0))

    def _splice_capture(self):
        """Raw relay both ways; server bytes go to self.after."""
        orig = self.srv.recv

        class Tap:                        # wraps the server socket's recv
            def __init__(s, sock):
                s.sock = sock

            def __getattr__(s, name):
                return getattr(s.sock, name)

            def recv(s, n):
                b = orig(n)
                self.after.extend(b)
                return b
        ti.splice(self.cli, Tap(self.srv), self.deadline)

    # -- the proxy --
    def _run(self):
        self.cli = self.srv = None
        try:
            self.lsock.settimeout(max(0.1, self.deadline - time.monotonic()))
            self.cli, _ = self.lsock.accept()
            self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.srv.connect(self.upstream)
            self.cli.sendall(self._srv_read(18))           # greeting
            self.srv.sendall(self._cli_read(4))            # client flags
            self._options()
        except (nbdraw.Closed, ConnectionError):
            pass                          # either side hung up: normal here
        except Exception as e:            # reported by join()
            self.error = e
        finally:
            for s in (self.cli, self.srv, self.lsock):
                if s:
                    s.close()

    def _options(self):
        for _ in range(1000):
            hdr = self._cli_read(16)
            _, opt, n = struct.unpack(">QII", hdr)
            data = self._cli_read(n)
            if opt == nbdraw.OPT_STARTTLS and self.mode == "strip":
                self._reply_to_client(opt, nbdraw.REP_ERR_UNSUP)
                continue
            if opt == nbdraw.OPT_STARTTLS and self.mode == "replace":
                self.srv.sendall(nbdraw.option_bytes(
                    nbdraw.OPT_GO, nbdraw.info_payload("")))
                self._forward_replies(nbdraw.OPT_GO)
                continue
            self.srv.sendall(hdr + data)
            if opt in (nbdraw.OPT_EXPORT_NAME, nbdraw.OPT_ABORT):
                return self._splice_capture()
            if opt == nbdraw.OPT_STARTTLS and self.mode == "rewrite":
                hdr = self._srv_read(20)
                self.replies.append((opt, struct.unpack(">QIII", hdr)[2]))
                self._reply_to_client(opt, nbdraw.REP_ERR_UNSUP)
                self.after_ack = self.replies[-1][1] == nbdraw.REP_ACK
                return self._splice_capture()
            if self._forward_replies(opt) == nbdraw.REP_ACK and \
               opt == nbdraw.OPT_STARTTLS:
                self.after_ack = True
                return self._splice_capture()
            if opt == nbdraw.OPT_GO and self.replies[-1][1] == nbdraw.REP_ACK:
                return self._splice_capture()         # transmission

    def join(self):
        self.thread.join(max(0.1, self.deadline - time.monotonic()) + 1)
        check(not self.thread.is_alive(), "proxy did not finish")
        if os.path.exists(self.path):
            os.unlink(self.path)
        if self.error:
            raise self.error

    def leaks(self):
        """What of the export the server let through in clear text."""
        found = []
        for opt, rtype in self.replies:
            if rtype in (nbdraw.REP_INFO, nbdraw.REP_SERVER,
                         nbdraw.REP_META_CONTEXT):
                found.append("%s to %s" % (nbdraw.rep_name(rtype),
                                           nbdraw.opt_name(opt)))
        if struct.pack(">Q", SIZE) in bytes(self.clear):
            found.append("the export size")
        if MARKER in bytes(self.clear) or MARKER in bytes(self.after):
            found.append("export data")
        if self.after_ack and self.after and \
           self.after[0] not in TLS_RECORD_TYPES:
            found.append("non-TLS bytes after the STARTTLS ACK: %r" %
                         bytes(self.after[:24]))
        return found


CLIENT = r"""
import sys, nbd
policy, path, psk = sys.argv[1:4]
h = nbd.NBD()
h.set_tls(nbd.TLS_ALLOW if policy == "allow" else nbd.TLS_REQUIRE)
h.set_tls_psk_file(psk)
h.set_tls_username("alice")
try:
    h.connect_unix(path)
    data = h.pread(4096, 0)
except nbd.Error as e:
    print("refused: %s" % e)
    sys.exit(3)
print("tls=%s size=%d data=%r" % (h.get_tls_negotiated(), h.get_size(),
                                   data[:12]))
"""


def libnbd(policy, path):
    return ti.run([ti.PYTHON, "-c", CLIENT, policy, path, PSK])


def through(srv, mode, client):
    """Runs client(proxy_path) through a Mitm in mode; returns (proxy,
    exit status, output)."""
    m = Mitm(srv.sock_path, mode)
    rc, out = client(m.path)
    m.join()
    return m, rc, out


def refused_in_clear(srv, mode, client, what):
    start = len(srv.stderr())
    m, rc, out = through(srv, mode, client)
    check(rc != 0, "%s through %s: the client succeeded: %s", what, mode,
          out)
    leaks = m.leaks()
    check(not leaks, "%s through %s: the server leaked %s in clear text",
          what, mode, leaks)
    check(m.clear[:8] == b"NBDMAGIC", "%s: no greeting captured", what)
    for opt, rtype in m.replies:
        check(rtype in (nbdraw.REP_ERR_TLS_REQD, nbdraw.REP_ACK) and
              (rtype != nbdraw.REP_ACK or opt == nbdraw.OPT_STARTTLS),
              "%s through %s: %s answered %s before TLS", what, mode,
              nbdraw.opt_name(opt), nbdraw.rep_name(rtype))
    log = srv.stderr()[start:]
    check("transmission on export" not in log,
          "%s through %s: a session reached transmission:\n%s", what, mode,
          log)
    return m, log


def serves_tls(srv):
    """After each case: the server is alive and serves a TLS client."""
    srv.check_alive()
    rc, out = libnbd("require", srv.sock_path)
    check(rc == 0 and "tls=True" in out, "direct TLS client: %s", out)


def case_strip(srv):
    refused_in_clear(srv, "strip", lambda p: libnbd("require", p),
                     "libnbd TLS_REQUIRE")
    # A TLS_ALLOW client really does carry on in clear text: its next
    # options reach the server, and get TLS_REQD.
    m, _ = refused_in_clear(srv, "strip", lambda p: libnbd("allow", p),
                            "libnbd TLS_ALLOW")
    check(any(r == nbdraw.REP_ERR_TLS_REQD for _, r in m.replies),
          "strip: the downgraded client's options got no TLS_REQD: %s",
          m.replies)
    refused_in_clear(srv, "strip", lambda p: ti.nbdinfo(
        "nbds+unix://alice@/?socket=%s&tls-psk-file=%s" % (p, PSK)),
        "nbdinfo")
    refused_in_clear(srv, "strip", lambda p: ti.run(
        ["qemu-img", "info", "--object",
         "tls-creds-psk,id=t,dir=%s,username=alice,endpoint=client" % QPSK,
         "--image-opts", "driver=nbd,server.type=unix,server.path=%s,"
         "tls-creds=t" % p]), "qemu-img")


def case_replace(srv):
    for policy in ("allow", "require"):
        m, _ = refused_in_clear(srv, "replace",
                                lambda p: libnbd(policy, p),
                                "libnbd TLS_%s" % policy.upper())
        check((nbdraw.OPT_GO, nbdraw.REP_ERR_TLS_REQD) in m.replies,
              "replace: the injected NBD_OPT_GO got %s", m.replies)


def case_rewrite(srv):
    for policy in ("allow", "require"):
        start = len(srv.stderr())
        m, _ = refused_in_clear(srv, "rewrite", lambda p: libnbd(policy, p),
                                "libnbd TLS_%s" % policy.upper())
        expect_eq("server's real answer to STARTTLS",
                  [(nbdraw.OPT_STARTTLS, nbdraw.REP_ACK)], m.replies)
        # Whatever the client sent after the ACK (the downgraded one: its
        # next options in clear) was read as TLS and failed the handshake.
        ti.wait_log(srv, "rewrite with TLS_%s" % policy.upper(),
                    "TLS handshake failed", start)


def case_pass(srv):
    """Control: the proxy itself does not break a real TLS session."""
    m, rc, out = through(srv, "pass", lambda p: libnbd("require", p))
    check(rc == 0 and "tls=True" in out and repr(MARKER)[1:-1] in out,
          "TLS through the proxy failed (%d): %s", rc, out)
    check(not m.leaks(), "TLS session leaked: %s", m.leaks())
    check(len(m.after) > 4096 and m.after[0] == 22,
          "no TLS handshake captured after the ACK")


def case_detector_sees_a_leak(_):
    """SELECTIVETLS with a plain export: the downgraded client reads the
    data in clear text, and the same checks must notice."""
    with Server("file:" + DISK, args=["--tls=on", "--tls-psk", PSK]) as s:
        m, rc, out = through(s, "strip", lambda p: libnbd("allow", p))
        check(rc == 0 and "tls=False" in out,
              "downgrade against SELECTIVETLS failed (%d): %s", rc, out)
        leaks = m.leaks()
        check("export data" in leaks and "the export size" in leaks and
              any("REP_INFO" in x for x in leaks),
              "the leak detector missed a clear-text session: %s", leaks)


if __name__ == "__main__":
    for tool in ("psktool", "nbdinfo", "qemu-img"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ["PATH"].split(os.pathsep)):
            nbdraw.skip("%s is not installed" % tool)
    ti.tls_sh("make_psk", PSK, "alice")
    os.mkdir(QPSK)
    with open(PSK) as f, open(os.path.join(QPSK, "keys.psk"), "w") as g:
        g.write(f.read())
    with open(DISK, "wb") as f:
        f.write((MARKER * (SIZE // len(MARKER) + 1))[:SIZE])
    cases = nbdraw.cases_of(globals())
    with Server("file:" + DISK, args=["--tls=require", "--tls-psk", PSK]) \
            as server:
        failed = nbdraw.run_cases(cases, server, after=serves_tls)
    if failed:
        sys.exit(1)
    nbdraw.log("all cases passed")
