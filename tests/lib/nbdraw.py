"""nbdraw: NBD spoken byte by byte, for hostile-client tests.

A client that says exactly what a test tells it to, malformed or not, and
a captive snbd-server to say it to.  Layouts and rules are from doc/proto.md
of NetworkBlockDevice/nbd ("Newstyle negotiation", "Option types",
"Transmission", "Structured reply types").

    with Server("memory:16M") as srv:          # starts $SNBD_SERVER
        c = srv.connect()                       # a Conn on its Unix socket
        c.handshake()                           # greeting + client flags
        rep = c.option(OPT_INFO, info_payload(""))
        ...
        srv.check_serves()                      # a fresh client still works
    # leaving the block sends SIGTERM and checks exit status 0 and that
    # stderr has no sanitizer report

Every wait is bounded (socket timeouts, counted poll loops); a test that
would hang fails instead.  Failures raise TestFailure (an AssertionError).
"""

import fcntl
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import termios
import time

# ---- wire constants (include/snbd/protocol.h mirrors the same spec) ----
NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCTURED_MAGIC = 0x668E33EF
EXT_REQUEST_MAGIC = 0x21E41C71        # extended headers
EXT_REPLY_MAGIC = 0x6E8A278C

FLAG_FIXED_NEWSTYLE = 1 << 0          # handshake flags
FLAG_NO_ZEROES = 1 << 1
FLAG_C_FIXED_NEWSTYLE = 1 << 0        # client flags
FLAG_C_NO_ZEROES = 1 << 1

(OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_PEEK_EXPORT, OPT_STARTTLS, OPT_INFO,
 OPT_GO, OPT_STRUCTURED_REPLY, OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT,
 OPT_EXTENDED_HEADERS) = range(1, 12)

REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = range(1, 5)
REP_ERR_BIT = 1 << 31
(REP_ERR_UNSUP, REP_ERR_POLICY, REP_ERR_INVALID, REP_ERR_PLATFORM,
 REP_ERR_TLS_REQD, REP_ERR_UNKNOWN, REP_ERR_SHUTDOWN, REP_ERR_BLOCK_SIZE_REQD,
 REP_ERR_TOO_BIG, REP_ERR_EXT_HEADER_REQD) = (REP_ERR_BIT | i
                                          for i in range(1, 11))

INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = range(4)

TF_HAS_FLAGS = 1 << 0                 # transmission flags
TF_READ_ONLY = 1 << 1
TF_SEND_FLUSH = 1 << 2
TF_SEND_FUA = 1 << 3
TF_SEND_TRIM = 1 << 5
TF_SEND_WRITE_ZEROES = 1 << 6
TF_SEND_DF = 1 << 7
TF_CAN_MULTI_CONN = 1 << 8
TF_SEND_CACHE = 1 << 10
TF_SEND_FAST_ZERO = 1 << 11
TF_BLOCK_STATUS_PAYLOAD = 1 << 12

(CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE,
 CMD_WRITE_ZEROES, CMD_BLOCK_STATUS, CMD_RESIZE) = range(9)

(CMD_FLAG_FUA, CMD_FLAG_NO_HOLE, CMD_FLAG_DF, CMD_FLAG_REQ_ONE,
 CMD_FLAG_FAST_ZERO, CMD_FLAG_PAYLOAD_LEN) = (1 << i for i in range(6))

REPLY_FLAG_DONE = 1 << 0
RT_NONE = 0
RT_OFFSET_DATA = 1
RT_OFFSET_HOLE = 2
RT_BLOCK_STATUS = 5
RT_BLOCK_STATUS_EXT = 6
RT_ERROR = (1 << 15) | 1
RT_ERROR_OFFSET = (1 << 15) | 2

EPERM = 1
EIO = 5
ENOMEM = 12
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95
ESHUTDOWN = 108

STATE_HOLE = 1 << 0
STATE_ZERO = 1 << 1

MAX_STRING = 4096
MAX_PAYLOAD = 64 << 20                # the server's advertised maximum
MiB = 1 << 20

_NAMES = {}
for _k, _v in list(globals().items()):
    if _k.startswith(("OPT_", "REP_")) and isinstance(_v, int):
        _NAMES.setdefault(("rep" if _k.startswith("REP_") else "opt", _v),
                          _k)


def rep_name(t):
    return _NAMES.get(("rep", t), "reply type 0x%x" % t)


def opt_name(o):
    return _NAMES.get(("opt", o), "option %d" % o)


class TestFailure(AssertionError):
    pass


class SkipCase(Exception):
    """A case (or a file's TLS part) cannot run here; not a failure."""


class Closed(Exception):
    """The server closed the connection (EOF or reset)."""

    def __init__(self, what, got=b""):
        super().__init__("%s: connection closed after %d bytes" %
                         (what, len(got)))
        self.got = got


def check(cond, msg, *args):
    if not cond:
        raise TestFailure(msg % args if args else msg)


def expect_eq(what, want, got):
    if want != got:
        raise TestFailure("%s: expected %r, got %r" % (what, want, got))


def log(msg, *args):
    print(msg % args if args else msg, flush=True)


def skip(msg):
    print("SKIP: %s" % msg, flush=True)
    sys.exit(77)


# ---- payload builders ----

def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


def u64(v):
    return struct.pack(">Q", v)


def string(s):
    """A length-prefixed string (32-bit length, then the bytes)."""
    b = s.encode() if isinstance(s, str) else s
    return u32(len(b)) + b


def info_payload(name, reqs=()):
    """NBD_OPT_INFO / NBD_OPT_GO data: name, count, information requests."""
    return string(name) + u16(len(reqs)) + b"".join(u16(r) for r in reqs)


def meta_payload(name, queries=()):
    """NBD_OPT_{LIST,SET}_META_CONTEXT data."""
    return (string(name) + u32(len(queries)) +
            b"".join(string(q) for q in queries))


def option_bytes(opt, payload=b"", length=None, magic=IHAVEOPT):
    """One option as sent: magic, option, length (default: the payload's)."""
    n = len(payload) if length is None else length
    return struct.pack(">QII", magic, opt, n) + payload


def request_bytes(cmd, offset=0, length=0, flags=0, cookie=0, data=b""):
    return struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, cookie, offset,
                       length) + data


def ext_request_bytes(cmd, offset=0, length=0, flags=0, cookie=0, data=b""):
    """A 32-byte extended request (proto.md "Request message")."""
    return struct.pack(">IHHQQQ", EXT_REQUEST_MAGIC, flags, cmd, cookie,
                       offset, length) + data


def pattern(seed, n):
    """n bytes that differ for each seed and position (not random, cheap)."""
    block = bytes((seed * 131 + i * 7 + (i >> 8)) & 0xFF for i in range(4096))
    return (block * (n // 4096 + 1))[:n]


# ---- replies ----

class OptReply:
    def __init__(self, opt, rtype, data):
        self.opt, self.type, self.data = opt, rtype, data

    @property
    def is_error(self):
        return bool(self.type & REP_ERR_BIT)

    def __repr__(self):
        return "<%s to %s, %d bytes%s>" % (
            rep_name(self.type), opt_name(self.opt), len(self.data),
            ": %r" % self.data[:80] if self.is_error and self.data else "")


class Chunk:
    """A structured reply chunk, decoded by type."""

    def __init__(self, flags, ctype, cookie, payload, hdr_offset=None):
        self.flags, self.type, self.cookie = flags, ctype, cookie
        self.hdr_offset = hdr_offset     # extended headers: the echo
        self.payload = payload
        self.done = bool(flags & REPLY_FLAG_DONE)
        self.offset = self.length = self.error = None
        self.message = b""
        self.data = b""
        self.descs = []
        self.context = None
        self._decode()

    def _decode(self):
        p, t = self.payload, self.type
        if t == RT_NONE:
            check(len(p) == 0, "NONE chunk with %d bytes", len(p))
        elif t == RT_OFFSET_DATA:
            check(len(p) >= 9, "OFFSET_DATA chunk of %d bytes", len(p))
            self.offset = struct.unpack(">Q", p[:8])[0]
            self.data = p[8:]
            self.length = len(self.data)
        elif t == RT_OFFSET_HOLE:
            check(len(p) == 12, "OFFSET_HOLE chunk of %d bytes", len(p))
            self.offset, self.length = struct.unpack(">QI", p)
            check(self.length > 0, "OFFSET_HOLE of size 0")
        elif t == RT_BLOCK_STATUS:
            check(len(p) >= 12 and (len(p) - 4) % 8 == 0,
                  "BLOCK_STATUS chunk of %d bytes", len(p))
            self.context = struct.unpack(">I", p[:4])[0]
            self.descs = [struct.unpack(">II", p[i:i + 8])
                          for i in range(4, len(p), 8)]
        elif t == RT_BLOCK_STATUS_EXT:
            check(len(p) >= 24 and (len(p) - 8) % 16 == 0,
                  "BLOCK_STATUS_EXT chunk of %d bytes", len(p))
            self.context, count = struct.unpack(">II", p[:8])
            expect_eq("BLOCK_STATUS_EXT descriptor count", (len(p) - 8) // 16,
                      count)
            self.descs = [struct.unpack(">QQ", p[i:i + 16])
                          for i in range(8, len(p), 16)]
        elif t & 0x8000:
            check(len(p) >= 6, "error chunk of %d bytes", len(p))
            self.error, mlen = struct.unpack(">IH", p[:6])
            check(self.error != 0, "error chunk with error 0")
            check(6 + mlen <= len(p), "error message runs past the chunk")
            check(mlen <= MAX_STRING, "error message of %d bytes", mlen)
            self.message = p[6:6 + mlen]
            if t == RT_ERROR_OFFSET:
                check(len(p) == 6 + mlen + 8, "ERROR_OFFSET of %d bytes",
                      len(p))
                self.offset = struct.unpack(">Q", p[6 + mlen:])[0]
        else:
            raise TestFailure("unknown structured reply type %d" % t)


class Reply:
    """The whole reply to one request: simple, or every chunk to DONE."""

    def __init__(self, cookie, structured):
        self.cookie, self.structured = cookie, structured
        self.error = 0
        self.data = None              # READ: the bytes read, reassembled
        self.chunks = []

    @property
    def message(self):
        for c in self.chunks:
            if c.error:
                return c.message
        return b""

    def __repr__(self):
        return "<reply cookie=%d error=%d chunks=%s>" % (
            self.cookie, self.error, [c.type for c in self.chunks])


# ---- a client connection ----

class Conn:
    def __init__(self, sock, timeout=10.0):
        self.sock = sock
        self.timeout = timeout
        sock.settimeout(timeout)
        self.structured = False
        self.ext = False              # extended headers negotiated
        self.pending = {}             # cookie -> [(cmd, offset, length)]
        self.partial = {}             # cookie -> Reply being assembled
        self.done = []                # finished replies not yet taken
        self.next_cookie = 1
        self.eflags = None
        self.size = None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- bytes --
    def send(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed("send: %s" % e)

    def send_partial(self, data):
        """Send what the peer takes; True if all of it went (the server
        may close while we send: that is not an error here)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            return False

    def recv_exact(self, n, what="reply"):
        buf = bytearray()
        while len(buf) < n:
            try:
                b = self.sock.recv(min(n - len(buf), 4 * MiB))
            except socket.timeout:
                raise TestFailure("%s: no data from the server for %.0f s "
                                  "(wanted %d more bytes)" %
                                  (what, self.timeout, n - len(buf)))
            except ConnectionResetError:
                b = b""
            if not b:
                raise Closed(what, bytes(buf))
            buf += b
        return bytes(buf)

    def read_until_eof(self, timeout=5.0, limit=64 * MiB):
        """Everything the server sends until it closes (bounded)."""
        self.sock.settimeout(timeout)
        got = bytearray()
        try:
            while len(got) < limit:
                try:
                    b = self.sock.recv(1 << 20)
                except socket.timeout:
                    raise TestFailure("server did not close the connection "
                                      "within %.0f s (got %d bytes)" %
                                      (timeout, len(got)))
                except ConnectionResetError:
                    break
                except ssl.SSLError:
                    break
                if not b:
                    break
                got += b
        finally:
            self.sock.settimeout(self.timeout)
        return bytes(got)

    def expect_close(self, what, timeout=5.0):
        """The server must close without sending another byte."""
        got = self.read_until_eof(timeout)
        check(not got, "%s: expected a disconnect, got %d bytes: %r",
              what, len(got), got[:64])

    def expect_silence(self, seconds):
        """Nothing arrives for a while and the connection stays open."""
        self.sock.settimeout(seconds)
        try:
            b = self.sock.recv(1)
        except socket.timeout:
            return
        finally:
            self.sock.settimeout(self.timeout)
        raise TestFailure("expected silence, got %r" % b if b
                          else "expected silence, the server closed")

    # -- what the kernel holds, for synchronising without sleeps --
    def unread_bytes(self):
        """Bytes the server sent that we have not read (FIONREAD)."""
        return struct.unpack("i", fcntl.ioctl(
            self.sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]

    def wait_server_blocked(self):
        """Poll (bounded) until the server has filled our receive buffer
        and stopped: its sending threads are blocked on this socket."""
        last, stable = -1, 0
        for _ in range(250):
            n = self.unread_bytes()
            stable = stable + 1 if n == last and n > 0 else 0
            if stable >= 5:
                return
            last = n
            time.sleep(0.02)
        raise TestFailure("the server's replies never filled the socket")

    def server_unread(self):
        """Bytes we sent that the server has not read yet: Recv-Q of the
        server's end of this Unix socket, from ss(8).  None: no such end."""
        if not shutil.which("ss"):
            raise SkipCase("ss (iproute2) is not installed")
        ino = str(os.fstat(self.sock.fileno()).st_ino)
        out = subprocess.run(["ss", "-xn"], capture_output=True, text=True,
                             timeout=10).stdout
        for line in out.splitlines()[1:]:
            f = line.split()
            if len(f) >= 8 and f[-1] == ino:
                return int(f[2])
        return None

    def wait_server_read(self):
        """Poll (bounded) until the server has read all we sent."""
        for _ in range(250):
            n = self.server_unread()
            check(n is not None, "the server closed the connection")
            if n == 0:
                return
            time.sleep(0.02)
        raise TestFailure("the server does not read what was sent")

    # -- handshake --
    def greeting(self):
        g = self.recv_exact(18, "greeting")
        magic, opts, gflags = struct.unpack(">QQH", g)
        expect_eq("greeting magic", NBDMAGIC, magic)
        expect_eq("newstyle magic", IHAVEOPT, opts)
        return gflags

    def handshake(self, cflags=FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES):
        gflags = self.greeting()
        expect_eq("handshake flags", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES,
                  gflags)
        self.send(u32(cflags))
        return gflags

    def send_option(self, opt, payload=b"", length=None, magic=IHAVEOPT):
        self.send(option_bytes(opt, payload, length, magic))

    def read_option_reply(self, limit=1 * MiB):
        h = self.recv_exact(20, "option reply header")
        magic, opt, rtype, n = struct.unpack(">QIII", h)
        expect_eq("option reply magic", REP_MAGIC, magic)
        check(n <= limit, "option reply of %d bytes", n)
        return OptReply(opt, rtype, self.recv_exact(n, "option reply data"))

    def read_option_replies(self, opt):
        """Replies to one option up to its final one (ACK or an error)."""
        reps = []
        for _ in range(100000):
            r = self.read_option_reply()
            expect_eq("option in the reply", opt_name(opt), opt_name(r.opt))
            reps.append(r)
            if r.type == REP_ACK or r.is_error:
                return reps
            check(r.type in (REP_SERVER, REP_INFO, REP_META_CONTEXT),
                  "unexpected reply %s", rep_name(r.type))
        raise TestFailure("endless replies to %s" % opt_name(opt))

    def option(self, opt, payload=b"", length=None):
        self.send_option(opt, payload, length)
        reps = self.read_option_replies(opt)
        if opt == OPT_EXTENDED_HEADERS and reps[-1].type == REP_ACK:
            self.ext = True
        return reps

    def expect_option(self, want, opt, payload=b"", length=None,
                      what=None):
        """Send one option; its final reply must be `want`.  Returns all
        replies."""
        reps = self.option(opt, payload, length)
        expect_eq(what or opt_name(opt), rep_name(want),
                  rep_name(reps[-1].type))
        return reps

    def info(self, name, reqs=(), opt=OPT_INFO):
        """INFO or GO; returns (final reply, {info type: payload})."""
        reps = self.option(opt, info_payload(name, reqs))
        infos = {}
        for r in reps[:-1]:
            check(r.type == REP_INFO, "%s before the final reply",
                  rep_name(r.type))
            check(len(r.data) >= 2, "NBD_REP_INFO of %d bytes", len(r.data))
            t = struct.unpack(">H", r.data[:2])[0]
            check(t not in infos, "info %d sent twice", t)
            infos[t] = r.data[2:]
        final = reps[-1]
        if final.type == REP_ACK:
            check(INFO_EXPORT in infos, "ACK without NBD_INFO_EXPORT")
            expect_eq("NBD_INFO_EXPORT length", 10, len(infos[INFO_EXPORT]))
        return final, infos

    def go(self, name="", reqs=()):
        """NBD_OPT_GO that must succeed; returns (size, eflags)."""
        final, infos = self.info(name, reqs, OPT_GO)
        expect_eq("reply to NBD_OPT_GO %r" % name, rep_name(REP_ACK),
                  rep_name(final.type))
        self.size, self.eflags = struct.unpack(">QH", infos[INFO_EXPORT])
        check(self.eflags & TF_HAS_FLAGS, "NBD_FLAG_HAS_FLAGS clear")
        return self.size, self.eflags

    def export_name(self, name="", no_zeroes=True):
        """NBD_OPT_EXPORT_NAME; returns (size, eflags)."""
        self.send_option(OPT_EXPORT_NAME, name.encode()
                         if isinstance(name, str) else name)
        b = self.recv_exact(10 if no_zeroes else 134, "EXPORT_NAME reply")
        self.size, self.eflags = struct.unpack(">QH", b[:10])
        check(b[10:] == bytes(len(b) - 10), "EXPORT_NAME padding not zero")
        return self.size, self.eflags

    def structured_reply(self):
        self.expect_option(REP_ACK, OPT_STRUCTURED_REPLY)
        self.structured = True

    def extended_headers(self):
        self.expect_option(REP_ACK, OPT_EXTENDED_HEADERS)

    def set_meta(self, name="", queries=("base:allocation",)):
        reps = self.expect_option(REP_ACK, OPT_SET_META_CONTEXT,
                                  meta_payload(name, queries))
        return [(struct.unpack(">I", r.data[:4])[0], r.data[4:])
                for r in reps[:-1]]

    def open(self, name="", structured=True, meta=False, ext=False):
        """Handshake, optionally structured replies (or extended headers)
        and base:allocation, then GO: ready for requests."""
        self.handshake()
        if ext:
            self.extended_headers()
        elif structured:
            self.structured_reply()
        if meta:
            self.set_meta(name)
        return self.go(name)

    def starttls(self, ctx, hostname="localhost", session=None):
        """NBD_OPT_STARTTLS then the TLS handshake (offering session, an
        ssl.SSLSession, for resumption); ssl errors propagate."""
        self.expect_option(REP_ACK, OPT_STARTTLS)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=hostname,
                                    session=session)
        self.structured = self.ext = False

    # -- transmission --
    def request(self, cmd, offset=0, length=0, flags=0, data=b"",
                cookie=None, auto_payload=True):
        """Send one request; returns its cookie.  Under extended headers
        a WRITE gets NBD_CMD_FLAG_PAYLOAD_LEN unless auto_payload is
        false (the caller's flags are then sent as they are)."""
        if cookie is None:
            cookie = self.next_cookie
            self.next_cookie += 1
        self.pending.setdefault(cookie, []).append((cmd, offset, length))
        if self.ext:
            if auto_payload and cmd == CMD_WRITE:
                flags |= CMD_FLAG_PAYLOAD_LEN
            self.send(ext_request_bytes(cmd, offset, length, flags, cookie,
                                        data))
        else:
            self.send(request_bytes(cmd, offset, length, flags, cookie,
                                    data))
        return cookie

    def recv_message(self, simple_data_len=lambda cookie: 0):
        """One reply message with no bookkeeping: a Chunk, or a Reply for
        a simple reply (whose data length, when error is 0, is
        simple_data_len(cookie): simple replies are not self-describing)."""
        magic = struct.unpack(">I", self.recv_exact(4, "reply magic"))[0]
        if self.ext:
            # "If extended headers are negotiated, all server replies MUST
            # use an extended reply" (proto.md "Extended reply chunk
            # message").
            check(magic == EXT_REPLY_MAGIC, "reply magic 0x%08x under "
                  "extended headers", magic)
            flags, ctype, cookie, off, n = struct.unpack(
                ">HHQQQ", self.recv_exact(28))
            check(n <= MAX_PAYLOAD + 4096 or ctype == RT_BLOCK_STATUS_EXT and
                  n <= 8 + 16 * (1 << 20), "chunk of %d bytes", n)
            return Chunk(flags, ctype, cookie, self.recv_exact(n, "chunk"),
                         off)
        if magic == SIMPLE_MAGIC:
            err, cookie = struct.unpack(">IQ", self.recv_exact(12))
            r = Reply(cookie, False)
            r.error = err
            n = simple_data_len(cookie) if err == 0 else 0
            r.data = self.recv_exact(n, "read data") if n else b""
            return r
        check(magic == STRUCTURED_MAGIC, "bad reply magic 0x%08x", magic)
        check(self.structured, "structured reply not negotiated")
        flags, ctype, cookie, n = struct.unpack(">HHQI", self.recv_exact(16))
        check(n <= MAX_PAYLOAD + 4096 or ctype == RT_BLOCK_STATUS and
              n <= 4 + 8 * (1 << 20), "chunk of %d bytes", n)
        return Chunk(flags, ctype, cookie, self.recv_exact(n, "chunk"))

    def _simple_len(self, cookie):
        check(cookie in self.pending, "reply for cookie %d not in flight",
              cookie)
        cmd, off, length = self.pending[cookie][0]
        return length if cmd == CMD_READ else 0

    def _read_message(self):
        """Reads one message; a finished reply goes to self.done."""
        m = self.recv_message(self._simple_len)
        if isinstance(m, Reply):
            self._finish(m)
            return
        check(m.cookie in self.pending, "chunk for cookie %d not in flight",
              m.cookie)
        if m.hdr_offset is not None:
            # "The extended reply has an additional field offset which
            # MUST match the offset of the client's request".
            expect_eq("offset echoed in the extended reply",
                      self.pending[m.cookie][0][1], m.hdr_offset)
        r = self.partial.setdefault(m.cookie, Reply(m.cookie, True))
        r.chunks.append(m)
        if m.error and not r.error:
            r.error = m.error
        if m.done:
            del self.partial[m.cookie]
            self._finish(r)

    def _finish(self, r):
        cmd, off, length = self.pending[r.cookie].pop(0)
        if not self.pending[r.cookie]:
            del self.pending[r.cookie]
        r.cmd = cmd
        check(not ((self.structured or self.ext) and cmd == CMD_READ and
                   not r.structured),
              "simple reply to a READ with structured replies negotiated")
        if r.structured and cmd == CMD_READ:
            _assemble_read(r, off, length)
        self.done.append(r)

    def reply(self, cookie=None):
        """The next finished reply (for `cookie`, if given)."""
        for _ in range(1000000):
            for i, r in enumerate(self.done):
                if cookie is None or r.cookie == cookie:
                    return self.done.pop(i)
            self._read_message()
        raise TestFailure("no reply for cookie %r" % cookie)

    def cmd(self, cmd, offset=0, length=0, flags=0, data=b""):
        """One request and its whole reply."""
        return self.reply(self.request(cmd, offset, length, flags, data))

    def expect_cmd(self, want, what, cmd, offset=0, length=0, flags=0,
                   data=b""):
        r = self.cmd(cmd, offset, length, flags, data)
        expect_eq("%s: error" % what, want, r.error)
        if (self.structured or self.ext) and r.error:
            _check_error_reply(r, what)
        return r

    def read(self, offset, length, flags=0):
        r = self.cmd(CMD_READ, offset, length, flags)
        expect_eq("read %d+%d: error" % (offset, length), 0, r.error)
        return r.data

    def write(self, offset, data, flags=0):
        r = self.cmd(CMD_WRITE, offset, len(data), flags, data)
        expect_eq("write %d+%d: error" % (offset, len(data)), 0, r.error)

    def disconnect(self):
        """NBD_CMD_DISC, then the server must close."""
        self.send((ext_request_bytes if self.ext else request_bytes)(
            CMD_DISC, cookie=0))
        self.expect_close("after NBD_CMD_DISC")


def _check_error_reply(r, what):
    """With structured replies on, snbd sends every error as an
    NBD_REPLY_TYPE_ERROR chunk with a message (a MUST for READ)."""
    check(r.structured, "%s: simple error reply although structured "
          "replies were negotiated", what)
    errs = [c for c in r.chunks if c.error]
    check(errs, "%s: structured error without an error chunk", what)
    check(errs[0].message, "%s: error chunk without a message", what)
    check(r.chunks[-1].done, "%s: last chunk not DONE", what)


def _assemble_read(r, off, length):
    """Checks the content chunks of a structured READ (inside the request,
    no overlap, all covered on success) and joins them into r.data."""
    seen = []
    for c in r.chunks:
        if c.type in (RT_OFFSET_DATA, RT_OFFSET_HOLE):
            check(off <= c.offset and c.length <= off + length - c.offset,
                  "chunk %d+%d outside the request %d+%d",
                  c.offset, c.length, off, length)
            for a, n in seen:
                check(c.offset + c.length <= a or a + n <= c.offset,
                      "chunks %d+%d and %d+%d overlap", a, n, c.offset,
                      c.length)
            seen.append((c.offset, c.length))
        elif c.type == RT_NONE:
            check(c.done, "NONE chunk without DONE")
        elif not c.error:
            raise TestFailure("chunk type %d in a READ reply" % c.type)
    if r.error:
        return
    check(sum(n for _, n in seen) == length,
          "read %d+%d: chunks cover %d bytes", off, length,
          sum(n for _, n in seen))
    buf = bytearray(length)
    for c in r.chunks:
        if c.type == RT_OFFSET_DATA:
            buf[c.offset - off:c.offset - off + c.length] = c.data
    r.data = bytes(buf)


# ---- TLS (X.509 only: Python 3.11's ssl cannot do PSK) ----

def make_x509(directory):
    """Credentials from tests/lib/tls.sh (certtool, ECDSA P-256)."""
    if not shutil.which("certtool"):
        raise SkipCase("certtool is not installed")
    lib = os.path.join(os.environ["SNBD_SRC"], "tests", "lib", "tls.sh")
    r = subprocess.run(["bash", "-c", '. "$1" && make_x509 "$2"', "bash",
                        lib, directory], capture_output=True, text=True,
                       timeout=60)
    check(r.returncode == 0, "make_x509 failed: %s", r.stderr)
    return directory


def client_context(certdir, client_cert=True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(os.path.join(certdir, "ca-cert.pem"))
    if client_cert:
        ctx.load_cert_chain(os.path.join(certdir, "client-cert.pem"),
                            os.path.join(certdir, "client-key.pem"))
    return ctx


class TlsBio:
    """TLS driven through memory BIOs over a raw socket, so that a test
    can stop a TLS stream at any byte: client_hello() gives the first
    flight without sending it, records(data) the records for data."""

    def __init__(self, sock, ctx, hostname="localhost"):
        self.sock = sock
        self.inb, self.outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inb, self.outb, server_hostname=hostname)
        self.received = bytearray()   # every byte the peer sent, raw

    def client_hello(self):
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outb.read()

    def handshake(self):
        """The whole handshake (bounded by the socket's timeout)."""
        for _ in range(1000):
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                if not data:
                    raise Closed("TLS handshake")
                self.received += data
                self.inb.write(data)
        raise TestFailure("TLS handshake does not end")

    def _flush(self):
        out = self.outb.read()
        if out:
            self.sock.sendall(out)

    def records(self, data):
        self.obj.write(data)
        return self.outb.read()


class BioSock:
    """The socket calls Conn makes, over an established TlsBio."""

    def __init__(self, tlsbio):
        self.t = tlsbio

    def settimeout(self, seconds):
        self.t.sock.settimeout(seconds)

    def sendall(self, data):
        self.t.sock.sendall(self.t.records(data))

    def recv(self, n):
        for _ in range(100000):
            try:
                return self.t.obj.read(n)
            except ssl.SSLWantReadError:
                b = self.t.sock.recv(65536)
                if not b:
                    return b""
                self.t.received += b
                self.t.inb.write(b)
            except ssl.SSLZeroReturnError:
                return b""
        raise TestFailure("TLS records without data")

    def close(self):
        self.t.sock.close()


def closed_by_peer(socks):
    """For each socket, whether the peer has closed it (EOF or reset),
    without waiting (the sockets are left non-blocking)."""
    out = []
    for s in socks:
        s.settimeout(0)
        try:
            out.append(s.recv(1) == b"")
        except BlockingIOError:
            out.append(False)
        except OSError:
            out.append(True)
    return out


# ---- the captive server ----

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "ThreadSanitizer",
                   "runtime error:", "UndefinedBehaviorSanitizer")


def tcp_listen_port(pid):
    """The port process `pid` listens on over TCP, from /proc: the inodes
    of its socket fds matched against /proc/net/tcp (LISTEN)."""
    inodes = set()
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            m = re.match(r"socket:\[(\d+)\]",
                         os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                return int(fields[1].split(":")[1], 16)
    raise TestFailure("cannot find the server's TCP port")


class Server:
    """$SNBD_SERVER on a private Unix socket (and, with tcp=True, an
    ephemeral loopback port), run for one `with` block."""

    def __init__(self, *exports, args=(), tcp=False, verbose=True):
        self.exports = exports or ("memory:16M",)
        self.args = list(args)
        self.tcp = tcp
        self.verbose = verbose
        self.proc = None
        self.port = None
        self.stopped_rc = None

    # -- life cycle --
    def start(self):
        binary = os.environ.get("SNBD_SERVER")
        if not binary or not os.access(binary, os.X_OK):
            raise TestFailure("$SNBD_SERVER (%r) is not executable" % binary)
        self.dir = tempfile.mkdtemp(prefix="srv.", dir=os.environ.get(
            "TMPDIR"))
        self.sock_path = os.path.join(self.dir, "sock")
        self.pid_file = os.path.join(self.dir, "pid")
        self.err_path = os.path.join(self.dir, "stderr")
        cmd = [binary, "-U", self.sock_path, "-P", self.pid_file]
        if self.tcp:
            cmd += ["-i", "127.0.0.1", "-p", "0"]
        if self.verbose:
            cmd.append("-v")
        cmd += self.args + list(self.exports)
        self.cmd = cmd
        self.errf = open(self.err_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self.errf, stderr=self.errf)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure("server exited with %d at start: %s\n%s" %
                                  (self.proc.returncode, " ".join(cmd),
                                   self.stderr()[-2000:]))
            if os.path.exists(self.pid_file) and self.accepts():
                break
            time.sleep(0.02)
        else:
            self.kill()
            raise TestFailure("server not accepting after 15 s: %s" %
                              " ".join(cmd))
        if self.tcp:
            self.port = tcp_listen_port(self.pid)
        return self

    def accepts(self):
        """A connection to the Unix socket succeeds (then is closed)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(2)
            s.connect(self.sock_path)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, etype, exc, tb):
        if self.proc and self.proc.poll() is None and etype is None:
            self.stop()
        elif self.proc and self.stopped_rc is None:
            if etype is not None:
                log("server stderr (last lines):\n%s",
                    self.stderr()[-3000:])
            self.kill()
        if self.proc:
            self.errf.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout=15.0):
        """SIGTERM; the server must exit 0 in time with a clean stderr."""
        check(self.proc.poll() is None, "server died: exit status %s\n%s",
              self.proc.returncode, self.stderr()[-3000:])
        os.kill(self.pid, signal.SIGTERM)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout=15.0, want=0):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure("server still running %.0f s after SIGTERM" %
                              timeout)
        self.stopped_rc = rc
        self.check_stderr()
        expect_eq("server exit status", want, rc)
        return rc

    def stderr(self):
        self.errf.flush()
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr_bytes(self):
        with open(self.err_path, "rb") as f:
            return f.read()

    def check_stderr(self):
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            check(mark not in err, "server stderr has %r:\n%s", mark,
                  err[-4000:])

    def check_alive(self):
        check(self.proc.poll() is None, "server died: exit status %s\n%s",
              self.proc.returncode, self.stderr()[-3000:])
        self.check_stderr()

    # -- clients --
    def connect(self, timeout=10.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.sock_path)
        return Conn(s, timeout)

    def connect_tcp(self, timeout=10.0):
        check(self.port, "server started without tcp=True")
        s = socket.create_connection(("127.0.0.1", self.port), timeout)
        return Conn(s, timeout)

    def client(self, name="", structured=True, meta=False, ext=False):
        """A fresh connection already in transmission on `name`."""
        c = self.connect()
        c.open(name, structured, meta, ext)
        return c

    def check_serves(self, name=""):
        """The server is alive and a fresh client can GO and READ."""
        self.check_alive()
        with self.client(name, structured=False) as c:
            n = min(4096, c.size)
            r = c.cmd(CMD_READ, 0, n)
            expect_eq("fresh client's read: error", 0, r.error)
            expect_eq("fresh client's read: length", n, len(r.data))
            c.disconnect()

    # -- what the process uses --
    def _status(self, key):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        raise TestFailure("no %s in /proc/%d/status" % (key, self.pid))

    def rss_kib(self):
        return self._status("VmRSS")

    def reset_peak_rss(self):
        """Start a new VmHWM window (proc(5): clear_refs, value 5)."""
        with open("/proc/%d/clear_refs" % self.pid, "w") as f:
            f.write("5")

    def peak_rss_kib(self):
        return self._status("VmHWM")

    def check_memory_bounded(self, what, start_kib, limit_mib=16):
        """Peak RSS since reset_peak_rss() grew by less than limit_mib."""
        grown = (self.peak_rss_kib() - start_kib) // 1024
        check(grown < limit_mib, "%s: server peak RSS grew by %d MiB "
              "(limit %d MiB)", what, grown, limit_mib)
        return grown

    def threads(self):
        return self._status("Threads")

    def nfds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def cpu_seconds(self):
        with open("/proc/%d/stat" % self.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf(
            "SC_CLK_TCK")

    def busy_seconds(self):
        """Seconds the server's threads have been running or runnable
        (on a CPU, or waiting in a run queue for one: /proc schedstat).
        A thread that spins counts about one second per second however
        loaded the machine is; one blocked in poll counts nothing.  So
        "is it spinning?" needs no CPU-time threshold that a busy
        machine would break."""
        total = 0
        tasks = "/proc/%d/task" % self.pid
        for tid in os.listdir(tasks):
            try:
                with open("%s/%s/schedstat" % (tasks, tid)) as f:
                    run_ns, wait_ns = f.read().split()[:2]
            except (FileNotFoundError, ProcessLookupError):
                continue                  # the thread ended meanwhile
            total += int(run_ns) + int(wait_ns)
        return total / 1e9

    def wait_log(self, what, pattern, start=0, timeout=10.0):
        """Waits until stderr, from offset start, contains pattern;
        returns the text from start."""
        found = []

        def cond():
            text = self.stderr()[start:]
            if pattern in text:
                found.append(text)
                return True
            return False
        self.wait_for("%s (log line %r)" % (what, pattern), cond, timeout)
        return found[0]

    def wait_for(self, what, cond, timeout=10.0):
        """Poll cond() every 20 ms until true; fail after timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if cond():
                return
            if time.monotonic() > deadline:
                raise TestFailure("timed out after %.0f s waiting for %s" %
                                  (timeout, what))
            time.sleep(0.02)


# ---- running a file of cases ----

def run_cases(cases, srv=None, after=None):
    """Runs each (name, fn) in order; fn(srv) must raise on failure.  After
    each case the server must still serve a fresh client (after(srv), or
    srv.check_serves()).  Returns the number of failures.  A command-line
    argument selects cases whose name contains it."""
    only = sys.argv[1] if len(sys.argv) > 1 else None
    failed = 0
    for name, fn in cases:
        if only and only not in name:
            continue
        t = time.monotonic()
        try:
            fn(srv)
            if srv is not None:
                (after or Server.check_serves)(srv)
        except SkipCase as e:
            log("skip %s: %s", name, e)
            continue
        except Exception as e:            # report every case, then fail
            failed += 1
            log("FAIL %s: %s: %s", name, type(e).__name__, e)
            if srv is not None and srv.proc.poll() is not None:
                log("server is gone (status %s); stopping here",
                    srv.proc.returncode)
                return failed + 1
            continue
        log("ok   %s (%.2fs)", name, time.monotonic() - t)
    return failed


def cases_of(module_globals, prefix="case_"):
    """The module's case_* functions, in definition order."""
    return [(k[len(prefix):], v) for k, v in module_globals.items()
            if k.startswith(prefix) and callable(v)]


# `from nbdraw import *` gives tests the vocabulary above, not our imports
__all__ = [_n for _n, _v in list(globals().items())
           if not _n.startswith("_") and not isinstance(_v, type(os))]
