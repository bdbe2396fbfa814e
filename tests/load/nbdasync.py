"""nbdasync: just enough NBD, over asyncio streams, to hold many
connections from one Python thread (tests/load).

Layouts from doc/proto.md of NetworkBlockDevice/nbd: "Newstyle
negotiation" (greeting, client flags, options and replies), NBD_OPT_GO,
NBD_OPT_STARTTLS, "Transmission" (simple replies: no structured replies
are negotiated here).

    c = await Client.open(sock_path, tls=ctx)   # greeting .. GO
    data = await c.read(offset, length)
    await c.disconnect()
"""

import asyncio
import os
import ssl
import struct
import subprocess

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x0003E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698

FLAG_C_FIXED_NEWSTYLE = 1 << 0
FLAG_C_NO_ZEROES = 1 << 1
OPT_STARTTLS = 5
OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
REP_ERR_BIT = 1 << 31
INFO_EXPORT = 0
CMD_READ = 0
CMD_DISC = 2

TIMEOUT = 30.0          # any single step; a hang fails instead


class ProtocolError(Exception):
    pass


def option_bytes(opt, payload=b""):
    return struct.pack(">QII", IHAVEOPT, opt, len(payload)) + payload


def go_payload(name=""):
    b = name.encode()
    return struct.pack(">I", len(b)) + b + struct.pack(">H", 0)


async def _step(coro):
    return await asyncio.wait_for(coro, TIMEOUT)


class Client:
    def __init__(self, reader, writer):
        self.r, self.w = reader, writer
        self.size = self.eflags = None
        self.cookie = 0

    @classmethod
    async def open(cls, path, tls=None, name=""):
        r, w = await _step(asyncio.open_unix_connection(path))
        c = cls(r, w)
        try:
            await c.handshake(tls, name)
        except BaseException:
            c.abort()
            raise
        return c

    async def handshake(self, tls, name):
        magic, opts, _ = struct.unpack(">QQH", await self.recv(18))
        if magic != NBDMAGIC or opts != IHAVEOPT:
            raise ProtocolError("bad greeting")
        self.w.write(struct.pack(">I", FLAG_C_FIXED_NEWSTYLE |
                                 FLAG_C_NO_ZEROES))
        if tls is not None:
            self.w.write(option_bytes(OPT_STARTTLS))
            rtype, _ = await self.option_reply(OPT_STARTTLS)
            if rtype != REP_ACK:
                raise ProtocolError("STARTTLS refused: 0x%x" % rtype)
            await _step(self.w.start_tls(tls, server_hostname="localhost"))
        self.w.write(option_bytes(OPT_GO, go_payload(name)))
        for _ in range(64):
            rtype, data = await self.option_reply(OPT_GO)
            if rtype == REP_INFO and data[:2] == b"\0\0":
                self.size, self.eflags = struct.unpack(">QH", data[2:12])
            elif rtype == REP_ACK:
                if self.size is None:
                    raise ProtocolError("GO acknowledged without the size")
                return
            elif rtype & REP_ERR_BIT:
                raise ProtocolError("GO refused: 0x%x %r" % (rtype, data))
        raise ProtocolError("endless replies to GO")

    async def recv(self, n):
        return await _step(self.r.readexactly(n))

    async def option_reply(self, opt):
        magic, o, rtype, n = struct.unpack(">QIII", await self.recv(20))
        if magic != REP_MAGIC or o != opt or n > 65536:
            raise ProtocolError("bad option reply %x/%d/%d" % (magic, o, n))
        return rtype, await self.recv(n)

    async def read(self, offset, length):
        self.cookie += 1
        self.w.write(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ,
                                 self.cookie, offset, length))
        magic, err, cookie = struct.unpack(">IIQ", await self.recv(16))
        if magic != SIMPLE_MAGIC or cookie != self.cookie or err:
            raise ProtocolError("READ reply %x err %d cookie %d" %
                                (magic, err, cookie))
        return await self.recv(length)

    async def disconnect(self):
        self.w.write(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC, 0,
                                 0, 0))
        try:
            await _step(self.w.drain())
            self.w.close()
            await _step(self.w.wait_closed())
        except (ConnectionError, ssl.SSLError):
            pass

    def abort(self):
        self.w.transport.abort()


def x509_context(src, cert_dir):
    """Credentials from tests/lib/tls.sh make_x509, and a client context
    that trusts their CA."""
    subprocess.run(["bash", "-c", '. "$0/tests/lib/tls.sh" && make_x509 "$1"',
                    src, cert_dir], check=True)
    ctx = ssl.create_default_context(cafile=os.path.join(cert_dir,
                                                         "ca-cert.pem"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
