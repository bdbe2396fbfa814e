#!/usr/bin/python3
"""Writes the seed corpora under fuzz/corpus/<harness>/.

Seeds are built here, not by hand, so each one says what it is.  Run it
again after changing a harness's input format (it rewrites only the files
it owns, named seed-*; inputs the fuzzer found and that were added later
keep their own names).
    fuzz/gen_corpus.py [CORPUS_DIR]
"""
import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054
NBDMAGIC = 0x4E42444D41474943
REP_MAGIC = 0x0003E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
CHUNK_MAGIC = 0x668E33EF

OPT = dict(EXPORT_NAME=1, ABORT=2, LIST=3, PEEK_EXPORT=4, STARTTLS=5, INFO=6,
           GO=7, STRUCTURED_REPLY=8, LIST_META=9, SET_META=10,
           EXTENDED_HEADERS=11)
REP_ACK, REP_SERVER, REP_INFO, REP_META = 1, 2, 3, 4
ERR = 1 << 31
CMD = dict(READ=0, WRITE=1, DISC=2, FLUSH=3, TRIM=4, CACHE=5, ZEROES=6,
           STATUS=7)
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16
INFO_EXPORT, INFO_NAME, INFO_DESC, INFO_BS = 0, 1, 2, 3
C_FIXED, C_NOZ = 1, 2
DONE = 1
T_NONE, T_DATA, T_HOLE, T_STATUS = 0, 1, 2, 5
T_ERROR, T_ERROR_OFFSET = (1 << 15) | 1, (1 << 15) | 2


def u16(v): return struct.pack('>H', v)
def u32(v): return struct.pack('>I', v)
def u64(v): return struct.pack('>Q', v)
def nstr(s): return u32(len(s)) + s


# ---- client side (fuzz_handshake, fuzz_request) ----

def opt(o, payload=b'', length=None):
    return u64(IHAVEOPT) + u32(o) + u32(len(payload) if length is None
                                      else length) + payload


def go(name=b'', infos=(), o=OPT['GO']):
    return opt(o, nstr(name) + u16(len(infos)) + b''.join(u16(i) for i in infos))


def meta(o, name=b'', queries=()):
    return opt(o, nstr(name) + u32(len(queries)) +
               b''.join(nstr(q) for q in queries))


def req(cmd, off=0, length=0, flags=0, cookie=1, payload=b''):
    return (u32(REQ_MAGIC) + u16(flags) + u16(CMD[cmd]) + u64(cookie) +
            u64(off) + u32(length) + payload)


def disc(cookie=99):
    return req('DISC', cookie=cookie)


PAYLOAD_LEN = 1 << 5


def ereq(cmd, off=0, length=None, flags=0, cookie=1, payload=b''):
    """An extended request (32 bytes); a payload, when given, is flagged
    NBD_CMD_FLAG_PAYLOAD_LEN and its length is the header's (unless
    length is given)."""
    if payload:
        flags |= PAYLOAD_LEN
    if length is None:
        length = len(payload)
    return (u32(0x21E41C71) + u16(flags) + u16(CMD[cmd]) + u64(cookie) +
            u64(off) + u64(length) + payload)


def edisc(cookie=99):
    return ereq('DISC', cookie=cookie, length=0)


def bs_form(effect, ids):
    """BLOCK_STATUS's payload form: effect length, context ids."""
    return u64(effect) + b''.join(u32(i) for i in ids)


FLAGS = u32(C_FIXED | C_NOZ)


def handshake_seeds():
    s = {}
    s['go-default-io'] = (FLAGS + go(b'', (INFO_NAME, INFO_DESC)) +
                          req('READ', 0, 4096, cookie=1) +
                          req('WRITE', 0, 512, cookie=2, payload=b'\xab' * 512) +
                          req('FLUSH', cookie=3) + disc())
    s['list-abort'] = FLAGS + opt(OPT['LIST']) + opt(OPT['ABORT'])
    s['info-ro-unknown'] = (FLAGS + go(b'ro', (INFO_NAME, INFO_DESC, INFO_BS),
                                       OPT['INFO']) +
                            go(b'nope', (), OPT['INFO']) + opt(OPT['ABORT']))
    s['export-name-zeroes'] = (u32(C_FIXED) + opt(OPT['EXPORT_NAME'], b'ro') +
                               req('READ', 0, 512) + disc())
    s['nonfixed-export-name'] = (u32(0) + opt(OPT['EXPORT_NAME'], b'') +
                                 req('READ', 4096, 4096) + disc())
    s['structured-meta-go'] = (
        FLAGS + opt(OPT['STRUCTURED_REPLY']) +
        meta(OPT['LIST_META'], b'') +
        meta(OPT['LIST_META'], b'', (b'base:',)) +
        meta(OPT['SET_META'], b'', (b'base:allocation',)) +
        go(b'') +
        req('STATUS', 0, 65536, cookie=1) +
        req('READ', 0, 4096, cookie=2) +
        req('READ', 0, 4096, flags=DF, cookie=3) + disc())
    s['starttls-refused'] = (FLAGS + opt(OPT['STARTTLS']) +
                             opt(OPT['STARTTLS'], b'junk') + go(b'big'))
    # Extended headers, then 32-byte requests (and mistakes with them).
    s['extended'] = (FLAGS + opt(OPT['EXTENDED_HEADERS']) +
                     opt(OPT['STRUCTURED_REPLY']) +
                     meta(OPT['SET_META'], b'big',
                          [b'base:allocation']) + go(b'big') +
                     ereq('STATUS', 0, 1 << 40, cookie=1) +
                     ereq('WRITE', 1 << 39, cookie=2, payload=b'\x01' * 512) +
                     ereq('TRIM', 0, 1 << 40, cookie=3) +
                     ereq('STATUS', 4096, cookie=4, payload=bs_form(8192, [1])) +
                     ereq('READ', 0, 4096, cookie=5, payload=b'x' * 7) +
                     ereq('WRITE', 0, 512, cookie=6) +
                     req('READ', 0, 512, cookie=7))
    s['extended-options'] = (FLAGS + opt(OPT['EXTENDED_HEADERS'], b'data') +
                             opt(OPT['EXTENDED_HEADERS']) +
                             opt(OPT['STRUCTURED_REPLY']) +
                             opt(OPT['EXPORT_NAME'], b'big'))
    s['unknown-options'] = (FLAGS + opt(0x1234, b'0123456789') +
                            opt(OPT['EXTENDED_HEADERS']) +
                            opt(OPT['PEEK_EXPORT'], b'xx') +
                            opt(OPT['LIST'], b'x') + go(b'big') +
                            req('STATUS', 0, 4096) + disc())
    s['bad-client-flags'] = u32(C_FIXED | 4) + opt(OPT['LIST'])
    s['malformed-lengths'] = (
        FLAGS + opt(OPT['GO'], u32(0xffffffff) + b'abc') +
        opt(OPT['INFO'], nstr(b'') + u16(1000)) +
        opt(OPT['INFO'], nstr(b'a\0b') + u16(0)) +
        meta(OPT['SET_META'], b'', (b'base:allocation',)) +
        opt(OPT['SET_META'], nstr(b'') + u32(0x40000000)) +
        opt(OPT['LIST_META'], u32(5000) + b'x' * 5000 + u32(0)) +
        opt(OPT['ABORT']))
    s['meta-ro-go-big'] = (FLAGS + opt(OPT['STRUCTURED_REPLY']) +
                           meta(OPT['SET_META'], b'ro', (b'base:allocation',)) +
                           go(b'big') + req('STATUS', 0, 4096) + disc())
    s['option-huge-length'] = FLAGS + opt(0x99, b'', length=0xffffffff)
    s['bad-option-magic'] = FLAGS + b'\0' * 16
    s['option-flood'] = FLAGS + opt(0x77) * 1100 + go(b'')
    return s


# ---- fuzz_request: mode byte, then requests after the harness's GO ----

def ext_request_seeds(s):
    """Mode bit 7: extended headers (32-byte requests, 64-bit lengths,
    NBD_CMD_FLAG_PAYLOAD_LEN, the payload form of BLOCK_STATUS)."""
    s['ext-every-command'] = bytes([0x83]) + (
        ereq('READ', 0, 4096, cookie=1) +
        ereq('WRITE', 4096, cookie=2, payload=b'\x11' * 1024) +
        ereq('READ', 4096, 1024, cookie=3) +
        ereq('FLUSH', 0, 0, cookie=4) + ereq('TRIM', 0, 8192, cookie=5) +
        ereq('ZEROES', 8192, 8192, NO_HOLE, cookie=6) +
        ereq('CACHE', 0, 1 << 20, cookie=7) +
        ereq('STATUS', 0, 1 << 20, cookie=8) +
        ereq('STATUS', 0, 1 << 20, REQ_ONE, cookie=9) +
        ereq('READ', 0, 4096, DF, cookie=10) +
        ereq('WRITE', 0, 512, cookie=11) +              # no PAYLOAD_LEN
        ereq('TRIM', 0, cookie=12, payload=b'\x22' * 100) +
        ereq('STATUS', 512, cookie=13, payload=bs_form(65536, [1])) +
        ereq('STATUS', 512, cookie=14, payload=bs_form(65536, [1, 1])) +
        ereq('STATUS', 512, cookie=15, payload=bs_form(65536, [9])) +
        ereq('STATUS', 512, cookie=16, payload=b'\0' * 5) +
        ereq('STATUS', 0, cookie=17, payload=bs_form(0, [1])) +
        ereq('READ', 0, (64 << 20) + 1, cookie=18) + edisc())
    s['ext-big-sparse'] = bytes([0x8a]) + (
        ereq('WRITE', 1 << 39, cookie=1, payload=b'\x44' * 4096) +
        ereq('STATUS', 0, 1 << 40, cookie=2) +
        ereq('CACHE', 0, 1 << 40, cookie=3) +
        ereq('ZEROES', 0, 1 << 40, cookie=4) +
        ereq('READ', 1 << 39, 8192, cookie=5) +
        ereq('WRITE', 1 << 39, cookie=6, payload=b'\x45' * 4096) +
        ereq('TRIM', 0, 1 << 40, cookie=7) +
        ereq('STATUS', 0, (1 << 40) + 1, cookie=8) +
        ereq('TRIM', (1 << 64) - 4096, 8192, cookie=9) +
        ereq('STATUS', 4096, cookie=10,
             payload=bs_form((1 << 40) - 4096, [1])) + edisc())
    s['ext-payload-too-big'] = bytes([0x80]) + (
        ereq('READ', 0, 4096, cookie=1) +
        ereq('WRITE', 0, (64 << 20) + 1, PAYLOAD_LEN, cookie=2) +
        b'\x55' * 64)
    s['ext-compact-magic'] = bytes([0x81]) + (
        ereq('READ', 0, 4096, cookie=1) + req('READ', 0, 4096, cookie=2) +
        b'\0' * 4)
    rw = (ereq('WRITE', 4095, cookie=1, payload=b'\x77' * 20000) +
          ereq('READ', 0, 1 << 20, cookie=2) +
          ereq('TRIM', 65536, 131072, cookie=3) +
          ereq('READ', 0, 1 << 20, cookie=4) +
          ereq('STATUS', 0, 1 << 20, cookie=5) +
          ereq('READ', 0, 1 << 20, DF, cookie=6))
    s['ext-file'] = bytes([0x8e]) + rw + edisc()
    s['ext-workers'] = bytes([0xa2]) + rw + edisc()
    s['ext-async'] = bytes([0xc3]) + rw + edisc()


def request_seeds():
    s = {}
    s['simple-every-command'] = bytes([0x00]) + (
        req('READ', 0, 4096, cookie=1) +
        req('WRITE', 4096, 1024, FUA, cookie=2, payload=b'\x11' * 1024) +
        req('READ', 4096, 1024, cookie=3) +
        req('FLUSH', cookie=4) + req('TRIM', 0, 8192, cookie=5) +
        req('ZEROES', 8192, 8192, NO_HOLE, cookie=6) +
        req('ZEROES', 8192, 8192, FAST_ZERO, cookie=7) +
        req('CACHE', 0, 65536, cookie=8) +
        req('STATUS', 0, 4096, cookie=9) +          # not negotiated: EINVAL
        req('READ', 0, 4096, DF, cookie=10) +       # DF without SR: EINVAL
        u32(REQ_MAGIC) + u16(0) + u16(9) + u64(11) + u64(0) + u32(0) +
        disc())
    s['structured-meta'] = bytes([0x03]) + (
        req('READ', 0, 65536, cookie=1) +
        req('WRITE', 4096, 4096, cookie=2, payload=b'\x22' * 4096) +
        req('READ', 0, 65536, cookie=3) +
        req('READ', 0, 65536, DF, cookie=4) +
        req('STATUS', 0, 1 << 20, cookie=5) +
        req('STATUS', 0, 1 << 20, REQ_ONE, cookie=6) +
        req('ZEROES', 4096, 512, FAST_ZERO, cookie=7) +
        req('TRIM', 0, 4096, FUA, cookie=8) +
        req('STATUS', 0, 0, cookie=9) + disc())
    s['readonly'] = bytes([0x04]) + (
        req('WRITE', 0, 512, cookie=1, payload=b'\x33' * 512) +
        req('TRIM', 0, 512, cookie=2) + req('ZEROES', 0, 512, cookie=3) +
        req('READ', 65536 - 512, 1024, cookie=4) +
        req('READ', 65536, 0, cookie=5) + disc())
    s['big-sparse'] = bytes([0x0b]) + (
        req('STATUS', 0, 0xffffffff, cookie=1) +
        req('STATUS', (1 << 40) - 4096, 4096, cookie=2) +
        req('READ', (1 << 40) - 4096, 4096, cookie=3) +
        req('WRITE', 1 << 39, 4096, cookie=4, payload=b'\x44' * 4096) +
        req('STATUS', (1 << 39) - 8192, 65536, cookie=5) +
        req('READ', 0xffffffffffffffff, 1, cookie=6) +
        req('TRIM', 0xfffffffffffff000, 0x2000, cookie=7) +
        req('ZEROES', 1 << 40, 1, cookie=8) + disc())
    s['export-name'] = bytes([0x10]) + (req('READ', 0, 4096) +
                                        req('STATUS', 0, 4096, cookie=2) +
                                        disc())
    s['write-too-long'] = bytes([0x01]) + (
        req('WRITE', 0, 64 * 1024 * 1024 + 1, cookie=1) + b'\x55' * 64)
    s['write-past-end'] = bytes([0x00]) + (
        req('WRITE', (1 << 20) - 16, 32, cookie=1, payload=b'\x66' * 32) +
        req('READ', 0, 16, cookie=2) + disc())
    s['zero-length'] = bytes([0x03]) + b''.join(
        req(c, 0, 0, cookie=i + 1) for i, c in
        enumerate(['READ', 'WRITE', 'TRIM', 'CACHE', 'ZEROES', 'STATUS'])) + \
        disc()
    s['bad-magic'] = bytes([0x00]) + b'\0' * 28
    # One byte every 128 KiB of the sparse export: a 32 MiB structured READ
    # then alternates 256 data and 256 hole chunks (more iovecs than one
    # sendmsg takes), and BLOCK_STATUS has 512 extents to describe.
    frag = b''.join(req('WRITE', i << 17, 1, cookie=i + 1, payload=bytes([i % 255 + 1]))
                    for i in range(300))
    s['fragmented-big'] = bytes([0x0b]) + frag + (
        req('READ', 0, 32 << 20, cookie=1000) +
        req('READ', 0, 1 << 20, DF, cookie=1001) +
        req('STATUS', 0, 32 << 20, cookie=1002) +
        req('STATUS', 65536, 32 << 20, REQ_ONE, cookie=1003) +
        req('TRIM', 0, 1 << 20, cookie=1004) +
        req('READ', 0, 2 << 20, cookie=1005) + disc())
    # The file export (in RAM): 1 MiB reads go out with sendfile, writes
    # are received into a mapping of the file (partly from read-ahead).
    # Read data overlapping a later write is not checked (check_replies.c),
    # so later writes stay clear of most of the first one.
    rw = (req('WRITE', 4095, 20000, cookie=1, payload=b'\x77' * 20000) +
          req('READ', 0, 1 << 20, cookie=2) +
          req('READ', 3, (1 << 20) - 3, cookie=3) +
          req('TRIM', 4096, 8192, cookie=4) +
          req('READ', 0, 256 << 10, cookie=5) +
          req('WRITE', (1 << 20) - 7, 7, FUA, cookie=6, payload=b'\x88' * 7) +
          req('READ', 512 << 10, 512 << 10, cookie=7) +
          req('ZEROES', 600 << 10, 100 << 10, cookie=8) +
          req('READ', 0, 1 << 20, cookie=9))
    s['file-simple'] = bytes([0x0c]) + rw + disc()
    ext_request_seeds(s)
    s['file-structured'] = bytes([0x0f]) + rw + (
        req('STATUS', 0, 1 << 20, cookie=10) +
        req('READ', 0, 1 << 20, DF, cookie=11)) + disc()
    return s


# ---- fuzz_reply: mode byte, then what the server sends ----

def rep(o, t, payload=b''):
    return u64(REP_MAGIC) + u32(o) + u32(t) + u32(len(payload)) + payload


def simple(cookie, err=0, data=b''):
    return u32(SIMPLE_MAGIC) + u32(err) + u64(cookie) + data


def chunk(cookie, t, payload=b'', flags=DONE):
    return (u32(CHUNK_MAGIC) + u16(flags) + u16(t) + u64(cookie) +
            u32(len(payload)) + payload)


def ext_chunk(cookie, t, off, payload=b'', flags=DONE, magic=0x6E8A278C):
    """An extended reply chunk (proto.md "Extended reply chunk message")."""
    return (u32(magic) + u16(flags) + u16(t) + u64(cookie) + u64(off) +
            u64(len(payload)) + payload)


def ext_reply_seeds(s):
    """Mode 0x12: extended headers + base:allocation; the same cookies as
    mode 7 (1 READ, 2 READ DF @ 8192, 3 WRITE, 4 FLUSH, 5 TRIM, 6 ZERO @
    4096, 7 ZERO FAST, 8 STATUS, 9 STATUS REQ_ONE, 10 CACHE, 11 READ 16384
    @ 65536).  One good stream, then one broken rule each."""
    none = lambda c, off: ext_chunk(c, 0, off)
    bs = u32(1) + u32(2) + u64(4096) + u64(0) + u64(61440) + u64(3)
    good = [ext_chunk(1, T_DATA, 0, u64(0) + b'\x05' * 4096),
            ext_chunk(2, T_HOLE, 8192, u64(8192) + u32(4096)),
            none(3, 0), none(4, 0), none(5, 0), none(6, 4096), none(7, 0),
            ext_chunk(8, 6, 0, bs),
            ext_chunk(9, 6, 0, u32(1) + u32(1) + u64(65536) + u64(3)),
            none(10, 0),
            ext_chunk(11, T_DATA, 65536, u64(65536) + b'\x06' * 16384)]
    s['ext-all'] = bytes([0x12]) + b''.join(good)
    bad = {
        'ext-offset-not-echoed': ext_chunk(1, T_DATA, 4096,
                                           u64(0) + b'\x05' * 4096),
        'ext-simple-reply': simple(1, data=b'\x01' * 4096),
        'ext-structured-magic': chunk(1, T_HOLE, u64(0) + u32(4096)),
        'ext-length-huge': ext_chunk(1, T_DATA, 0, u64(0))[:24] +
                           u64(1 << 40),
        'ext-status-type5': ext_chunk(8, T_STATUS, 0,
                                      u32(1) + u32(65536) + u32(0)),
        'ext-count-mismatch': ext_chunk(8, 6, 0, bs[:4] + u32(3) + bs[8:]),
        'ext-zero-extent': ext_chunk(8, 6, 0, u32(1) + u32(1) + u64(0) +
                                     u64(0)),
    }
    for name, first in bad.items():
        s[name] = bytes([0x12]) + first + b''.join(good[1:])
    # Handshake mode, extended headers asked for: refused (fallback to
    # structured replies), then acknowledged.
    hs = u64(0x4e42444d41474943) + u64(0x49484156454f5054) + u16(3)
    info = rep(OPT['GO'], 3, u16(0) + u64(1 << 20) + u16(1))
    s['hs-ext-unsup'] = bytes([0x91]) + hs + \
        rep(OPT['EXTENDED_HEADERS'], (1 << 31) | 1) + \
        rep(OPT['STRUCTURED_REPLY'], 1) + info + rep(OPT['GO'], 1)
    s['hs-ext-ack'] = bytes([0x91]) + hs + \
        rep(OPT['EXTENDED_HEADERS'], 1) + info + rep(OPT['GO'], 1)
    s['hs-ext-go-unsup'] = bytes([0x91]) + hs + \
        rep(OPT['EXTENDED_HEADERS'], 1) + rep(OPT['GO'], (1 << 31) | 1)


def reply_seeds():
    s = {}
    ext_reply_seeds(s)
    # Mode 0: simple replies; the commands sent (cookies 1..9) are READ 4096,
    # WRITE, FLUSH, TRIM, ZERO, ZERO FAST_ZERO, CACHE, READ 16384 (DF and
    # BLOCK_STATUS are refused by the client without SR / a context).
    s['simple-all'] = bytes([0x00]) + (
        simple(1, data=b'\x01' * 4096) + simple(2) + simple(3) + simple(4) +
        simple(5, 5) + simple(6, 95) + simple(7) +
        simple(8, data=b'\x02' * 16384))
    # Mode 7: SR + both contexts: cookies 1 READ, 2 READ DF, 3 WRITE,
    # 4 FLUSH, 5 TRIM, 6 ZERO, 7 ZERO FAST, 8 STATUS, 9 STATUS REQ_ONE,
    # 10 CACHE, 11 READ 16384 @ 65536.
    status = u32(1) + u32(32768) + u32(3) + u32(32768) + u32(0)
    status2 = u32(2) + u32(65536) + u32(0)
    s['structured-all'] = bytes([0x07]) + (
        chunk(1, T_DATA, u64(0) + b'\x03' * 2048, 0) +
        chunk(1, T_HOLE, u64(2048) + u32(2048)) +
        chunk(2, T_DATA, u64(8192) + b'\x04' * 4096) +
        simple(3) + simple(4) + simple(5) + simple(6) +
        chunk(7, T_ERROR, u32(95) + nstr(b'no fast zero')[2:]) +
        chunk(8, T_STATUS, status, 0) + chunk(8, T_STATUS, status2) +
        chunk(9, T_STATUS, u32(1) + u32(4096) + u32(0), 0) +
        chunk(9, T_STATUS, u32(2) + u32(4096) + u32(1)) +
        simple(10) +
        chunk(11, T_ERROR_OFFSET, u32(5) + u16(3) + b'bad' + u64(70000), 0) +
        chunk(11, T_NONE))
    s['structured-errors'] = bytes([0x03]) + (
        chunk(1, T_ERROR, u32(5) + u16(5) + b'oops!') +
        chunk(2, T_HOLE, u64(8192) + u32(4096)) +
        chunk(3, T_ERROR, u32(0) + u16(0)) +
        chunk(99, T_NONE))
    s['structured-split'] = bytes([0x0b]) + b''.join(
        chunk(11 + i, T_DATA, u64(65536 + 4096 * i) + b'\x05' * 4096)
        for i in range(4))
    s['overlapping-data'] = bytes([0x01]) + (
        chunk(1, T_DATA, u64(0) + b'\x06' * 4096, 0) +
        chunk(1, T_DATA, u64(1024) + b'\x07' * 1024))
    s['unknown-magic'] = bytes([0x00]) + b'\xde\xad\xbe\xef' * 8
    # Handshake mode (bit 7): the whole server stream.
    greet = u64(NBDMAGIC) + u64(IHAVEOPT) + u16(3)
    info = (rep(OPT['GO'], REP_INFO, u16(INFO_EXPORT) + u64(1 << 20) + u16(0x4ff)) +
            rep(OPT['GO'], REP_INFO, u16(INFO_BS) + u32(512) + u32(4096) +
                u32(1 << 20)) +
            rep(OPT['GO'], REP_INFO, u16(INFO_NAME) + b'disk') +
            rep(OPT['GO'], REP_INFO, u16(INFO_DESC) + b'a disk'))
    s['hs-go'] = bytes([0x83]) + (
        greet + rep(OPT['STRUCTURED_REPLY'], REP_ACK) +
        rep(OPT['SET_META'], REP_META, u32(7) + b'base:allocation') +
        rep(OPT['SET_META'], REP_ACK) + info + rep(OPT['GO'], REP_ACK))
    s['hs-optmode'] = bytes([0xc1]) + (
        greet + rep(OPT['STRUCTURED_REPLY'], REP_ACK) +
        rep(OPT['LIST'], REP_SERVER, nstr(b'disk') + b'first') +
        rep(OPT['LIST'], REP_SERVER, nstr(b'')) + rep(OPT['LIST'], REP_ACK) +
        rep(OPT['LIST_META'], REP_META, u32(0) + b'base:allocation') +
        rep(OPT['LIST_META'], REP_ACK) +
        info.replace(u32(OPT['GO']), u32(OPT['INFO'])) +
        rep(OPT['INFO'], REP_ACK) + info + rep(OPT['GO'], REP_ACK))
    s['hs-go-unsup-fallback'] = bytes([0x80]) + (
        greet + rep(OPT['GO'], ERR | 1) + u64(1 << 30) + u16(1))
    s['hs-oldstyle'] = bytes([0x80]) + (u64(NBDMAGIC) + u64(0x420281861253) +
                                        u64(1 << 20) + u32(1) + b'\0' * 124)
    s['hs-nonfixed'] = bytes([0x80]) + (u64(NBDMAGIC) + u64(IHAVEOPT) + u16(0) +
                                        u64(4096) + u16(1) + b'\0' * 124)
    s['hs-tls-refused'] = bytes([0xa0]) + (
        greet + rep(OPT['STARTTLS'], ERR | 2, b'no TLS here'))
    s['hs-tls-ack'] = bytes([0xa0]) + greet + rep(OPT['STARTTLS'], REP_ACK)
    s['hs-go-error'] = bytes([0x80]) + (
        greet + rep(OPT['GO'], ERR | 6, b'no such export'))
    s['hs-bad-blocksize'] = bytes([0x80]) + greet + (
        rep(OPT['GO'], REP_INFO, u16(INFO_EXPORT) + u64(1 << 20) + u16(1)) +
        rep(OPT['GO'], REP_INFO, u16(INFO_BS) + u32(3) + u32(4096) + u32(7)) +
        rep(OPT['GO'], REP_ACK))
    return s


URIS = [
    'nbd://example.com:10809/export',
    'nbd+unix:///export?socket=nbd.sock',
    'nbd://example.com/disk',
    'nbd+unix:///disk?socket=sock',
    'nbd://example.com/',
    'nbd://example.com',
    'nbd://example.com//disk',
    'nbd://example.com/hello%20world',
    'nbd+unix:///?socket=%00/abstract',
    'nbds://alice@[::1]:10810/disk?tls-type=psk&tls-psk-file=keys.psk',
    'nbds://192.0.2.1/?tls-certificates=/etc/pki&tls-verify-peer=0'
    '&tls-hostname=server.example.com',
    'nbds+unix:///x?socket=/run/s.sock&tls-username=bob&tls-type=x509',
    'nbd://h/?x-experimental=1&x-other',
    'nbd://user:pass@h/',
    'nbd://h:0/', 'nbd://h:65536/', 'nbd://h:abc/',
    'nbd://h/#frag', 'http://h/', 'nbd:/relative', 'nbd://h/?socket=s',
    'nbd://h/?tls-verify-peer=0&tls-verify-peer=1', 'NBDS+UNIX:///?socket=a',
    'nbd://[v1.fe80::a+en1]/', 'nbd://%68%6f%73%74/%e2%82%ac?unknown=1',
]

CONFIGS = {
    'full': b'''; snbd-server config
[server]
port = 10809
bind = 127.0.0.1, ::1
threads = 4
handshake-timeout = 10
max-negotiating = 256
max-connections = 1000
tls = off
verbose = false
log = stderr

[export]
backend = memory:1G
description = the default export

[export disk]
backend = memory:64M
readonly = yes

[export secret]
backend = memory:1M
tls-only = true
allow = cn=client;psk:alice
''',
    'tls': b'''[server]
tls = require
tls-certificates = /etc/snbd/pki
tls-psk = /etc/snbd/keys.psk
tls-verify-peer = yes
tls-priority = NORMAL:-VERS-ALL:+VERS-TLS1.3
unix = /run/snbd.sock
pid-file = /run/snbd.pid
single = off
read-only = 1
''',
    'errors': b'''[server]
port = 99999
threads = 0
bogus = 1
[export x]
readonly = maybe
[nosuchsection]
a = b
''',
    'sizes': b'''[export a]
backend = memory:0
[export b]
backend = memory:8E
[export c]
backend = memory:16383P
[export d]
backend = memory:18446744073709551615
[export e]
backend = memory:1.5G
''',
    'duplicates': b'''[export a]
backend = memory:1M
backend = memory:2M
allow = x
description = one
description = two
[export a]
readonly
''',
    'syntax': b'''[server
port
= 1
[export \x01\xff]
backend=memory:1M
  continued line
''',
}


def write(dirname, name, data):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, 'seed-' + name), 'wb') as f:
        f.write(data)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else \
        os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus')
    for name, data in handshake_seeds().items():
        write(os.path.join(root, 'fuzz_handshake'), name, data)
    for name, data in request_seeds().items():
        write(os.path.join(root, 'fuzz_request'), name, data)
    for name, data in reply_seeds().items():
        write(os.path.join(root, 'fuzz_reply'), name, data)
    for i, uri in enumerate(URIS):
        write(os.path.join(root, 'fuzz_uri'), '%02d' % i, uri.encode())
    for name, data in CONFIGS.items():
        write(os.path.join(root, 'fuzz_config'), name, data)


if __name__ == '__main__':
    main()
