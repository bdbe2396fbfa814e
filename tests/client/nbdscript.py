"""Scripted NBD peers for the client tests: a server that follows a
script (and breaks the protocol where the script says so), and a way to
run libsnbd's client-driver against it.  Only loopback Unix sockets, every
wait bounded.

    with ScriptedServer(handler) as srv:
        rc, out = run_driver(srv.uri, "read:0:4096")

handler(conn) runs in a thread with the accepted connection; the helpers
below speak the protocol (doc/proto.md of the NBD project).
"""
import os
import socket
import struct
import subprocess
import tempfile
import threading

NBD_MAGIC = 0x4E42444D41474943
OPTS_MAGIC = 0x49484156454F5054
OLDSTYLE_MAGIC = 0x0000420281861253
REP_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCTURED_MAGIC = 0x668E33EF
EXT_REQUEST_MAGIC = 0x21E41C71       # extended headers
EXT_REPLY_MAGIC = 0x6E8A278C

FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES = 1, 2
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS = 1, 2, 3, 5
OPT_INFO, OPT_GO, OPT_STRUCTURED_REPLY = 6, 7, 8
OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT = 9, 10
OPT_EXTENDED_HEADERS = 11
REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
ERR = 1 << 31
REP_ERR_UNSUP, REP_ERR_POLICY, REP_ERR_INVALID = ERR | 1, ERR | 2, ERR | 3
REP_ERR_PLATFORM, REP_ERR_TLS_REQD = ERR | 4, ERR | 5
INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 0, 1, 2, 3
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 4, 5, 6, 7
CMD_FLAG_PAYLOAD_LEN = 1 << 5
REPLY_FLAG_DONE = 1
T_NONE, T_DATA, T_HOLE, T_BLOCK_STATUS, T_BLOCK_STATUS_EXT = 0, 1, 2, 5, 6
T_ERROR, T_ERROR_OFFSET = 0x8001, 0x8002
# Transmission flags: has-flags, send-flush, send-fua, send-trim,
# send-write-zeroes, send-df.
DEFAULT_EFLAGS = 0x1 | 0x4 | 0x8 | 0x20 | 0x40 | 0x80
SIZE = 1 << 20
CONTEXT_ID = 7


class Closed(Exception):
    """The client went away."""


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(15)
        self.eh = False               # extended headers acknowledged
        self.offsets = {}             # cookie -> request offset (eh echo)
        self.options = []             # options the client sent

    def recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise Closed()
            buf += chunk
        return buf

    def send(self, data):
        self.sock.sendall(data)

    def drain(self):
        """Reads until the client closes (bounded by the socket timeout)."""
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass


# ---- Handshake ----

def greeting(c, gflags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
    c.send(struct.pack(">QQH", NBD_MAGIC, OPTS_MAGIC, gflags))
    (cflags,) = struct.unpack(">I", c.recv_exact(4))
    return cflags


def read_option(c):
    magic, opt, length = struct.unpack(">QII", c.recv_exact(16))
    assert magic == OPTS_MAGIC, hex(magic)
    return opt, c.recv_exact(length) if length else b""


def reply(c, opt, rtype, data=b"", length=None):
    if length is None:
        length = len(data)
    c.send(struct.pack(">QIII", REP_MAGIC, opt, rtype, length) + data)


def info_export(size=SIZE, eflags=DEFAULT_EFLAGS):
    return struct.pack(">HQH", INFO_EXPORT, size, eflags)


def info_block_size(minimum, preferred, maximum):
    return struct.pack(">HIII", INFO_BLOCK_SIZE, minimum, preferred, maximum)


def parse_queries(data):
    """(export name, [queries]) from SET/LIST_META_CONTEXT data."""
    (n,) = struct.unpack(">I", data[:4])
    name, rest = data[4:4 + n], data[4 + n:]
    (count,) = struct.unpack(">I", rest[:4])
    rest, queries = rest[4:], []
    for _ in range(count):
        (q,) = struct.unpack(">I", rest[:4])
        queries.append(rest[4:4 + q].decode())
        rest = rest[4 + q:]
    return name, queries


def handshake(c, sr=True, go_infos=None, meta=True, on_option=None,
              eh=False):
    """A well-behaved fixed-newstyle handshake up to NBD_OPT_GO.
    go_infos: the NBD_REP_INFO payloads sent for GO (default: export info).
    eh: acknowledge NBD_OPT_EXTENDED_HEADERS (else it is unsupported).
    on_option(c, opt, data) may answer an option itself (return True), or
    end the handshake (return "done")."""
    greeting(c)
    if go_infos is None:
        go_infos = [info_export()]
    for _ in range(20):
        opt, data = read_option(c)
        c.options.append(opt)
        answered = on_option(c, opt, data) if on_option else False
        if answered == "done":
            return
        if answered:
            continue
        if opt == OPT_STRUCTURED_REPLY:
            reply(c, opt, REP_ACK if sr else REP_ERR_UNSUP)
        elif opt == OPT_EXTENDED_HEADERS:
            reply(c, opt, REP_ACK if eh else REP_ERR_UNSUP)
            c.eh = eh
        elif opt == OPT_SET_META_CONTEXT:
            _, queries = parse_queries(data)
            if meta and "base:allocation" in queries:
                reply(c, opt, REP_META_CONTEXT,
                      struct.pack(">I", CONTEXT_ID) + b"base:allocation")
            reply(c, opt, REP_ACK)
        elif opt == OPT_GO:
            for info in go_infos:
                reply(c, opt, REP_INFO, info)
            reply(c, opt, REP_ACK)
            return
        elif opt == OPT_ABORT:
            reply(c, opt, REP_ACK)
            raise Closed()
        else:
            reply(c, opt, REP_ERR_UNSUP)
    raise AssertionError("too many options")


# ---- Transmission ----

def read_request(c):
    """(flags, type, cookie, offset, length, payload), compact or
    extended as negotiated."""
    if c.eh:
        magic, flags, typ, cookie, off, length = struct.unpack(
            ">IHHQQQ", c.recv_exact(32))
        assert magic == EXT_REQUEST_MAGIC, hex(magic)
        assert typ != CMD_WRITE or flags & CMD_FLAG_PAYLOAD_LEN, \
            "WRITE without NBD_CMD_FLAG_PAYLOAD_LEN"
        payload = (c.recv_exact(length) if flags & CMD_FLAG_PAYLOAD_LEN
                   else b"")
    else:
        magic, flags, typ, cookie, off, length = struct.unpack(
            ">IHHQQI", c.recv_exact(28))
        assert magic == REQUEST_MAGIC, hex(magic)
        payload = c.recv_exact(length) if typ == CMD_WRITE else b""
    c.offsets[cookie] = off
    return flags, typ, cookie, off, length, payload


def simple_reply(c, cookie, error=0, data=b""):
    c.send(struct.pack(">IIQ", SIMPLE_MAGIC, error, cookie) + data)


def chunk(c, cookie, ctype, payload=b"", flags=REPLY_FLAG_DONE, length=None,
          compact=False):
    """A structured chunk, or under extended headers (unless compact) an
    extended one echoing the request's offset."""
    if length is None:
        length = len(payload)
    if c.eh and not compact:
        ext_chunk(c, cookie, ctype, c.offsets.get(cookie, 0), payload, flags,
                  length)
        return
    c.send(struct.pack(">IHHQI", STRUCTURED_MAGIC, flags, ctype, cookie,
                       length) + payload)


def ext_chunk(c, cookie, ctype, off, payload=b"", flags=REPLY_FLAG_DONE,
              length=None):
    """An extended reply chunk (proto.md "Extended reply chunk
    message"), its offset field as given."""
    if length is None:
        length = len(payload)
    c.send(struct.pack(">IHHQQQ", EXT_REPLY_MAGIC, flags, ctype, cookie, off,
                       length) + payload)


def error_payload(err, msg=b"", extra=b""):
    return struct.pack(">IH", err, len(msg)) + msg + extra


# ---- Running the client against a script ----

class ScriptedServer:
    """Accepts one connection on a private Unix socket and runs handler."""

    def __init__(self, handler, path=None):
        self.dir = tempfile.mkdtemp(prefix="nbdscript.", dir=os.environ.get("TMPDIR"))
        self.path = path or os.path.join(self.dir, "sock")
        self.handler = handler
        self.error = None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(1)
        self.listener.settimeout(15)
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def uri(self):
        return "nbd+unix:///?socket=" + self.path

    def _run(self):
        try:
            sock, _ = self.listener.accept()
        except OSError as e:
            self.error = e
            return
        c = Conn(sock)
        try:
            self.handler(c)
            c.drain()
        except (Closed, ConnectionError, socket.timeout):
            pass
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            sock.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.listener.close()
        self.thread.join(20)
        assert not self.thread.is_alive(), "scripted server did not finish"
        for name in os.listdir(self.dir):
            os.unlink(os.path.join(self.dir, name))
        os.rmdir(self.dir)
        return False


def driver_path():
    return os.path.join(os.environ["SNBD_BUILD"], "tests", "unit",
                        "client-driver")


def run_driver(uri, *ops, args=(), timeout=30):
    """Runs client-driver; returns (exit status, stdout+stderr)."""
    p = subprocess.run([driver_path(), *args, uri, *ops],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")
