"""SIGHUP re-reads the configuration file (and the command line): exports
added, removed and changed reach new connections, while connections
already in transmission keep the export they opened, a libnbd client
included, until they disconnect; a configuration that does not parse, or
an export that cannot open, changes nothing and the log says why.
--check-config validates a file without serving; --tcp-timeout arms TCP
keepalive on established connections.

  reload       keep (unchanged: its RAM disk keeps its data), gone
               (removed while a libnbd handle and a raw client use it),
               change (new description), new (added), an option that
               needs a restart (logged as such);
  broken       a syntax error, then an export whose file does not exist:
               the table stays as it was, the log says why;
  check        --check-config: exit 0 and the export lines on a good file,
               exit 1 and the reason on a bad one, nothing listens;
  keepalive    --tcp-timeout 9: the server's end of a TCP connection has
               the keepalive timer running (ss); --tcp-timeout 0: not.
"""
import os
import signal
import struct
import subprocess
import sys

import nbd

sys.path.insert(0, os.path.join(os.environ["SNBD_SRC"], "tests", "lib"))
import nbdraw                                             # noqa: E402
from nbdraw import check, expect_eq, Server               # noqa: E402

TMP = os.environ["TMPDIR"]
CONF = os.path.join(TMP, "snbd.conf")
SERVER = os.environ["SNBD_SERVER"]

FIRST = """
[export keep]
backend = memory:8M
[export gone]
backend = memory:8M
[export change]
backend = memory:8M
description = old text
"""

SECOND = """
[server]
handshake-timeout = 20
[export keep]
backend = memory:8M
[export change]
backend = memory:8M
description = new text
[export new]
backend = memory:4M
"""


def write_conf(text):
    tmp = CONF + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, CONF)


def listed(srv):
    """{name: description} from NBD_OPT_LIST on a new connection."""
    out = {}
    with srv.connect() as c:
        c.handshake()
        for r in c.option(nbdraw.OPT_LIST)[:-1]:
            n = struct.unpack(">I", r.data[:4])[0]
            out[r.data[4:4 + n].decode()] = r.data[4 + n:].decode()
        c.send_option(nbdraw.OPT_ABORT)
    return out


def go_refused(srv, name):
    with srv.connect() as c:
        c.handshake()
        final, _ = c.info(name, opt=nbdraw.OPT_GO)
        check(final.is_error, "GO %r after its removal: %s", name,
              nbdraw.rep_name(final.type))
        c.send_option(nbdraw.OPT_ABORT)


def hup(srv, want):
    start = len(srv.stderr())
    os.kill(srv.pid, signal.SIGHUP)
    return srv.wait_log("the reload", want, start, 15)


def case_reload(_):
    write_conf(FIRST)
    with Server("cli=memory:1M", args=["-c", CONF]) as srv:
        expect_eq("exports before", {"cli": "", "keep": "", "gone": "",
                                     "change": "old text"}, listed(srv))
        keep = srv.client("keep")
        keep.write(4096, b"K" * 4096)
        raw = srv.client("gone")
        raw.write(0, b"R" * 512)
        h = nbd.NBD()
        h.set_export_name("gone")
        h.connect_unix(srv.sock_path)
        h.pwrite(b"L" * 4096, 1 << 20)

        write_conf(SECOND)
        text = hup(srv, "reload: export \"new\" added")
        for line in ('reload: export "change" changed: memory:8M (kept open)',
                     'reload: export "gone" removed',
                     "reload: handshake-timeout changed; it takes effect at "
                     "the next start"):
            check(line in text, "no %r in the log:\n%s", line, text)
        check('export "keep"' not in text, "keep reported as changed:\n%s",
              text)

        expect_eq("exports after", {"cli": "", "keep": "", "change":
                                    "new text", "new": ""}, listed(srv))
        go_refused(srv, "gone")
        with srv.client("new") as c:
            expect_eq("size of the new export", 4 << 20, c.size)
            c.disconnect()
        with srv.client("keep") as c:     # the same RAM disk as before
            expect_eq("keep's data after the reload", b"K" * 4096,
                      c.read(4096, 4096))
            c.disconnect()
        # The connections on the removed export go on.
        expect_eq("libnbd on gone: read", b"L" * 4096,
                  h.pread(4096, 1 << 20))
        h.pwrite(b"M" * 512, 0)
        h.flush()
        expect_eq("libnbd on gone: its new write", b"M" * 512, h.pread(512, 0))
        expect_eq("raw client on gone", b"M" * 512, raw.read(0, 512))
        expect_eq("keep, held across the reload", b"K" * 4096,
                  keep.read(4096, 4096))
        h.shutdown()
        del h
        raw.disconnect()
        keep.disconnect()


def case_broken(_):
    write_conf(FIRST)
    with Server("cli=memory:1M", args=["-c", CONF]) as srv:
        before = listed(srv)
        write_conf(FIRST + "[export oops\nbackend = memory:1M\n")
        text = hup(srv, "keeping the running configuration")
        check("line 9" in text, "the syntax error's line is not said:\n%s",
              text)
        expect_eq("exports after a syntax error", before, listed(srv))
        write_conf(SECOND + "[export missing]\nbackend = file:%s\n" %
                   os.path.join(TMP, "no-such-file"))
        text = hup(srv, "keeping the running configuration")
        check('export "missing"' in text and "no-such-file" in text,
              "the log does not say which export failed:\n%s", text)
        expect_eq("exports after an export failed to open", before,
                  listed(srv))
        srv.check_serves("keep")


def check_config(*args):
    r = subprocess.run([SERVER, "--check-config"] + list(args),
                       capture_output=True, text=True, timeout=60)
    nbdraw.log("--check-config %s: %d\n%s", " ".join(args), r.returncode,
               r.stderr)
    return r.returncode, r.stderr


def case_check(_):
    write_conf(SECOND)
    rc, err = check_config("-c", CONF, "-p", "0")
    expect_eq("--check-config on a good file", 0, rc)
    for want in ('export "keep" (default): memory:8M, 8 MiB',
                 'export "new": memory:4M, 4 MiB (4194304 bytes), '
                 'read-write', "configuration OK: 3 exports"):
        check(want in err, "no %r in:\n%s", want, err)
    write_conf(SECOND + "[export bad]\nbackend = memory:-5\n")
    rc, err = check_config("-c", CONF)
    expect_eq("--check-config on a bad size", 1, rc)
    check('export "bad"' in err and "-5" in err, "reason not given:\n%s", err)
    write_conf(SECOND + "[server]\nbogus = 1\n")
    rc, err = check_config("-c", CONF)
    expect_eq("--check-config on an unknown key", 1, rc)
    check("bogus" in err, "the unknown key is not named:\n%s", err)


def server_side(srv):
    """ss's line for the server's end of the one TCP connection, once
    everything sent is acknowledged (ss shows one timer: retransmission
    while data is in flight, keepalive only after)."""
    found = []

    def cond():
        r = subprocess.run(["ss", "-tnoH", "state", "established",
                            "( sport = :%d )" % srv.port],
                           capture_output=True, text=True, timeout=30)
        lines = r.stdout.splitlines()
        if len(lines) == 1 and lines[0].split()[1] == "0":
            found.append(lines[0])
            return True
        return False
    srv.wait_for("the connection's send queue to empty", cond, 30)
    nbdraw.log("ss: %s", found[0])
    return found[0]


def case_keepalive(_):
    for timeout, want in ((9, True), (0, False)):
        with Server("memory:1M", tcp=True,
                    args=["--tcp-timeout", str(timeout)]) as srv:
            c = srv.connect_tcp()
            c.open("")
            expect_eq("keepalive timer with --tcp-timeout %d" % timeout,
                      want, "timer:(keepalive" in server_side(srv))
            c.disconnect()


if __name__ == "__main__":
    failed = nbdraw.run_cases(nbdraw.cases_of(globals()))
    sys.exit(1 if failed else 0)
