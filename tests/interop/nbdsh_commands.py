"""Transmission-phase commands through libnbd, checked byte by byte and
error by error (spec: "Request types", "Error values").

Run by test-nbdsh-commands.sh inside a captive server with exports
  mem=memory:64M             (also the default export)
  disk=file:disk.img         (64 MiB sparse file)
  ro=memory:16M,readonly
Offsets used per export: 0-4M FUA, 8-12M trim, 16-24M zero, 28M DF,
40-48M sparse reads, 48-52M in-flight, 56M cache, 60M multi-conn.
"""

import errno

import nbd

from nbdcheck import (M, connect, expect_error, extents, flags_over,
                      pattern, read_chunks, run)

HOLE, ZERO = nbd.STATE_HOLE, nbd.STATE_ZERO
EXPORTS = ("mem", "disk")
SIZE = 64 * M


def rw(name):
    return connect(name, contexts=("base:allocation",))


def check_flags_advertised():
    for name in EXPORTS:
        h = rw(name)
        assert h.get_size() == SIZE, (name, h.get_size())
        for cap in ("can_flush", "can_fua", "can_trim", "can_zero",
                    "can_fast_zero", "can_cache", "can_df",
                    "can_multi_conn"):
            assert getattr(h, cap)(), "%s: %s is false" % (name, cap)
        assert h.can_meta_context("base:allocation")
        assert not h.is_read_only()
        h.shutdown()


def check_fua_writes():
    """Writes, zeroes and trims with NBD_CMD_FLAG_FUA succeed and read
    back; then a FLUSH."""
    for name in EXPORTS:
        h = rw(name)
        data = pattern(1, M)
        h.pwrite(data, 0, nbd.CMD_FLAG_FUA)
        h.pwrite(pattern(2, 4096), M + 512, nbd.CMD_FLAG_FUA)
        h.zero(M, 2 * M, nbd.CMD_FLAG_FUA)
        h.trim(M, 3 * M, nbd.CMD_FLAG_FUA)
        h.flush()
        assert h.pread(M, 0) == data, name
        assert h.pread(4096, M + 512) == pattern(2, 4096), name
        assert h.pread(M, 2 * M) == bytes(M), name
        h.shutdown()


def check_trim_makes_hole():
    """After TRIM of written data, block status reports a hole that reads
    as zeroes (memory frees the range, file punches a hole)."""
    for name in EXPORTS:
        h = rw(name)
        h.pwrite(pattern(3, 4 * M), 8 * M)
        assert flags_over(h, 8 * M, 4 * M) == {0}, \
            (name, extents(h, 4 * M, 8 * M))
        h.trim(4 * M, 8 * M)
        assert flags_over(h, 8 * M, 4 * M) == {HOLE | ZERO}, \
            (name, extents(h, 4 * M, 8 * M))
        assert h.pread(4 * M, 8 * M) == bytes(4 * M), name
        # REQ_ONE: exactly one descriptor, no longer than asked.
        (ext,) = extents(h, 2 * M, 8 * M, nbd.CMD_FLAG_REQ_ONE)
        assert ext[0] == 8 * M and 0 < ext[1] <= 2 * M, (name, ext)
        assert ext[2] == HOLE | ZERO, (name, ext)
        h.shutdown()


def check_write_zeroes():
    """WRITE_ZEROES plain (may punch a hole), with NO_HOLE, with FAST_ZERO
    (spec: succeed, or fail fast with ENOTSUP leaving data alone)."""
    for name in EXPORTS:
        h = rw(name)
        h.pwrite(pattern(4, 8 * M), 16 * M)
        h.zero(4 * M, 16 * M)
        assert h.pread(4 * M, 16 * M) == bytes(4 * M), name
        if name == "mem":  # sparse RAM reports zeroed ranges as zero
            assert flags_over(h, 16 * M, 4 * M) <= {ZERO, HOLE | ZERO}, \
                (name, extents(h, 4 * M, 16 * M))
        h.zero(M, 20 * M, nbd.CMD_FLAG_NO_HOLE)
        assert h.pread(M, 20 * M) == bytes(M), name
        assert h.pread(M, 21 * M) == pattern(4, 8 * M)[5 * M:6 * M], name
        for fl in (nbd.CMD_FLAG_FAST_ZERO,
                   nbd.CMD_FLAG_FAST_ZERO | nbd.CMD_FLAG_NO_HOLE):
            before = h.pread(M, 22 * M)
            try:
                h.zero(M, 22 * M, fl)
                assert h.pread(M, 22 * M) == bytes(M), (name, fl)
            except nbd.Error as e:
                assert e.errnum == errno.ENOTSUP, (name, fl, e.string)
                assert h.pread(M, 22 * M) == before, (name, fl)
            h.pwrite(pattern(5, M), 22 * M)
        # Unaligned zeroing touches exactly its bytes.
        h.zero(1000, 22 * M + 100)
        got = h.pread(2000, 22 * M)
        want = pattern(5, M)[:100] + bytes(1000) + pattern(5, M)[1100:2000]
        assert got == want, name
        h.shutdown()


def check_df_reads():
    """NBD_CMD_FLAG_DF: the read comes back as a single chunk."""
    for name in EXPORTS:
        h = rw(name)
        h.pwrite(pattern(6, 64 * 1024), 28 * M)
        for off in (28 * M, 30 * M):  # data, then never written
            data, chunks = read_chunks(h, 64 * 1024, off, nbd.CMD_FLAG_DF)
            assert len(chunks) == 1, (name, off, chunks)
            assert chunks[0][:2] == (off, 64 * 1024), (name, chunks)
            want = pattern(6, 64 * 1024) if off == 28 * M else bytes(64 * 1024)
            assert data == want, (name, off)
        h.shutdown()


def check_sparse_reads():
    """Structured reads of a sparse memory export answer holes with
    NBD_REPLY_TYPE_OFFSET_HOLE; chunks never overlap and cover the range."""
    h = rw("mem")
    h.pwrite(pattern(7, 64 * 1024), 44 * M)
    for off, want_hole in ((40 * M, True), (44 * M, False)):
        data, chunks = read_chunks(h, 2 * M, off)
        covered = sorted((o, o + n) for o, n, _ in chunks)
        pos = off
        for lo, hi in covered:
            assert lo == pos, ("gap or overlap", off, covered)
            pos = hi
        assert pos == off + 2 * M, ("short", off, covered)
        statuses = {s for _, _, s in chunks}
        assert nbd.READ_ERROR not in statuses, chunks
        if want_hole:
            assert statuses == {nbd.READ_HOLE}, ("no OFFSET_HOLE", chunks)
            assert data == bytes(2 * M)
        else:
            assert nbd.READ_DATA in statuses, chunks
            assert data == pattern(7, 64 * 1024) + bytes(2 * M - 64 * 1024)
    h.shutdown()


def check_out_of_range():
    """Requests past the end: EINVAL for READ/TRIM/BLOCK_STATUS, ENOSPC for
    WRITE/WRITE_ZEROES (spec: "Error values"), also where offset+length
    wraps around 2^64; the connection stays usable."""
    for name in EXPORTS:
        h = connect(name, strict=False, contexts=("base:allocation",))
        for off, n in ((SIZE - 512, 1024), (SIZE, 512), (SIZE + M, 512),
                       (2 ** 64 - 512, 1024), (2 ** 63, 512)):
            what = "%s [%d+%d]" % (name, off, n)
            expect_error(errno.EINVAL, "read " + what, h.pread, n, off)
            expect_error(errno.ENOSPC, "write " + what, h.pwrite,
                         b"\1" * n, off)
            expect_error(errno.EINVAL, "trim " + what, h.trim, n, off)
            expect_error(errno.ENOSPC, "zero " + what, h.zero, n, off)
            expect_error(errno.EINVAL, "block status " + what,
                         h.block_status, n, off, lambda *a: 0)
            expect_error(None, "cache " + what, h.cache, n, off)
        # The last byte is still in range, and nothing past it was written.
        h.pwrite(b"\x42", SIZE - 1)
        assert h.pread(512, SIZE - 512)[-1:] == b"\x42", name
        h.shutdown()


def check_bad_flags():
    """A flag not valid for the command, or unknown, gets EINVAL and the
    stream stays in step (spec: "Error values")."""
    h = connect("mem", strict=False, contexts=("base:allocation",))
    expect_error(errno.EINVAL, "WRITE with REQ_ONE", h.pwrite,
                 b"\1" * 512, 0, nbd.CMD_FLAG_REQ_ONE)
    expect_error(errno.EINVAL, "READ with unknown flag 1<<10", h.pread,
                 512, 0, 1 << 10)
    expect_error(errno.EINVAL, "TRIM with NO_HOLE", h.trim, 512, 0,
                 nbd.CMD_FLAG_NO_HOLE)
    h.pwrite(b"\7" * 512, 0)
    assert h.pread(512, 0) == b"\7" * 512
    h.shutdown()


def check_read_only():
    """Writes, trims and zeroes on a read-only export get EPERM; reads
    work."""
    h = connect("ro", strict=False)
    assert h.is_read_only()
    assert h.get_size() == 16 * M
    expect_error(errno.EPERM, "write on ro", h.pwrite, b"\1" * 512, 0)
    expect_error(errno.EPERM, "FUA write on ro", h.pwrite, b"\1" * 512, 0,
                 nbd.CMD_FLAG_FUA)
    expect_error(errno.EPERM, "trim on ro", h.trim, 512, 0)
    expect_error(errno.EPERM, "zero on ro", h.zero, 512, 0)
    assert h.pread(4096, 0) == bytes(4096)
    h.flush()
    h.shutdown()


def check_cache():
    """CACHE succeeds and changes nothing."""
    for name in EXPORTS:
        h = rw(name)
        h.pwrite(pattern(8, M), 56 * M)
        h.cache(2 * M, 56 * M)
        assert h.pread(M, 56 * M) == pattern(8, M), name
        assert h.pread(M, 57 * M) == bytes(M), name
        h.shutdown()


def check_in_flight():
    """64 writes then 64 reads in flight at once on one connection (the
    server may run and answer them out of order); every byte lands."""
    for name in EXPORTS:
        h = rw(name)
        n, sz = 64, 64 * 1024
        cookies = [h.aio_pwrite(nbd.Buffer.from_bytearray(
            bytearray(pattern(i, sz))), 48 * M + i * sz) for i in range(n)]
        wait_all(h, cookies)
        bufs = [nbd.Buffer(sz) for _ in range(n)]
        cookies = [h.aio_pread(bufs[i], 48 * M + i * sz) for i in range(n)]
        wait_all(h, cookies)
        for i in range(n):
            assert bufs[i].to_bytearray() == pattern(i, sz), (name, i)
        h.shutdown()


def wait_all(h, cookies):
    for _ in range(100000):
        if h.aio_in_flight() == 0:
            break
        h.poll(1000)
    else:
        raise AssertionError("requests still in flight")
    for c in cookies:
        assert h.aio_command_completed(c), c


def check_multi_conn():
    """CAN_MULTI_CONN: a write flushed on one connection is seen on
    another."""
    for name in EXPORTS:
        a, b = rw(name), rw(name)
        a.pwrite(pattern(9, M), 60 * M)
        a.flush()
        assert b.pread(M, 60 * M) == pattern(9, M), name
        a.shutdown()
        b.shutdown()


def check_zero_length():
    """Zero-length requests: any reply, but no disconnect (spec: "SHOULD
    NOT disconnect")."""
    h = connect("mem", strict=False)
    for fn, args in ((h.pread, (0, 0)), (h.pwrite, (b"", 0)),
                     (h.trim, (0, 0)), (h.zero, (0, 0)), (h.cache, (0, 0))):
        try:
            fn(*args)
        except nbd.Error:
            pass
    h.pwrite(b"\3" * 512, 0)
    assert h.pread(512, 0) == b"\3" * 512
    h.shutdown()


run([check_flags_advertised, check_fua_writes, check_trim_makes_hole,
     check_write_zeroes, check_df_reads, check_sparse_reads,
     check_out_of_range, check_bad_flags, check_read_only, check_cache,
     check_in_flight, check_multi_conn, check_zero_length])
