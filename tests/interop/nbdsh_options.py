"""Handshake options one by one, through libnbd's option mode.

Run by test-nbdsh-options.sh inside a captive server with exports
  mem=memory:64M,description=Scratch   (also the default export)
  ro=memory:16M,readonly,description=Read only
"""

import errno

import nbd

from nbdcheck import M, connect, expect_error, run


def check_list():
    """NBD_OPT_LIST: both exports, with their descriptions; the handle can
    still go on negotiating afterwards."""
    h = connect("mem", opt_mode=True)
    got = []
    n = h.opt_list(lambda name, desc: got.append((name, desc)) or 0)
    assert n == len(got), (n, got)
    assert ("mem", "Scratch") in got, got
    assert ("ro", "Read only") in got, got
    h.opt_go()
    assert h.get_size() == 64 * M, h.get_size()
    h.shutdown()


def check_info_unknown_export():
    """NBD_OPT_INFO and NBD_OPT_GO on an unknown name fail with
    NBD_REP_ERR_UNKNOWN (libnbd: ENOENT) and the session continues."""
    h = connect("nope", opt_mode=True)
    expect_error(errno.ENOENT, "INFO on unknown export", h.opt_info)
    expect_error(errno.ENOENT, "GO on unknown export", h.opt_go)
    assert h.aio_is_negotiating(), "session did not survive the errors"
    h.set_export_name("mem")
    h.opt_go()
    assert h.get_size() == 64 * M
    h.shutdown()


def check_info_then_go_elsewhere():
    """INFO describes one export (size, flags, name, description, block
    sizes); a GO on another export then gets that other export."""
    h = connect("mem", opt_mode=True, full_info=True)
    h.opt_info()
    assert h.get_size() == 64 * M, h.get_size()
    assert not h.is_read_only()
    assert h.get_canonical_export_name() == "mem", \
        h.get_canonical_export_name()
    assert h.get_export_description() == "Scratch", \
        h.get_export_description()
    check_block_sizes(h)
    h.set_export_name("ro")
    h.opt_go()
    assert h.get_size() == 16 * M, h.get_size()
    assert h.is_read_only(), "GO on ro after INFO on mem is not read-only"
    assert h.get_export_description() == "Read only"
    h.shutdown()


def check_block_sizes(h):
    """NBD_INFO_BLOCK_SIZE: sent, powers of two, min <= pref <= max
    (spec: "Block size constraints")."""
    mn = h.get_block_size(nbd.SIZE_MINIMUM)
    pref = h.get_block_size(nbd.SIZE_PREFERRED)
    mx = h.get_block_size(nbd.SIZE_MAXIMUM)
    assert mn > 0, "no NBD_INFO_BLOCK_SIZE"
    for v in (mn, pref):
        assert v & (v - 1) == 0, "not a power of two: %d" % v
    assert mn <= 64 * 1024 and pref >= mn, (mn, pref, mx)
    assert mx >= mn and (mx % mn == 0 or mx == 0xffffffff), (mn, pref, mx)


def check_default_export():
    """The empty name is the first export."""
    h = connect("", opt_mode=True, full_info=True)
    h.opt_info()
    assert h.get_size() == 64 * M, h.get_size()
    h.opt_go()
    h.shutdown()


def check_list_meta_context():
    """NBD_OPT_LIST_META_CONTEXT offers base:allocation, also for a query
    by the "base:" namespace."""
    for query in (None, "base:"):
        h = connect("mem", opt_mode=True)
        if query:
            h.add_meta_context(query)
        got = []
        n = h.opt_list_meta_context(lambda name: got.append(name) or 0)
        assert n == len(got), (n, got)
        assert "base:allocation" in got, (query, got)
        h.opt_abort()


def check_set_meta_context():
    """NBD_OPT_SET_META_CONTEXT (sent by GO): base:allocation is chosen,
    an unknown context is not, and block status then works."""
    h = connect("mem", opt_mode=True,
                contexts=("base:allocation", "snbd:no-such-context"))
    h.opt_go()
    assert h.can_meta_context("base:allocation")
    assert not h.can_meta_context("snbd:no-such-context")
    h.block_status(M, 0, lambda *a: 0)
    h.shutdown()


def check_without_structured_replies():
    """A client that does not ask for structured replies gets simple
    replies (and no meta context) and can still read and write."""
    h = connect("mem", structured=False, strict=False,
                contexts=("base:allocation",))
    assert not h.get_structured_replies_negotiated()
    assert not h.can_meta_context("base:allocation")
    assert not h.can_df(), "DF advertised without structured replies"
    h.pwrite(b"\x5a" * 4096, 60 * M)
    assert h.pread(4096, 60 * M) == b"\x5a" * 4096
    # Errors come as simple replies, with no payload after them, and a
    # refused write's payload is drained: the stream stays in step.
    expect_error(errno.EINVAL, "simple: read past end", h.pread,
                 1024, 64 * M - 512)
    expect_error(errno.ENOSPC, "simple: write past end", h.pwrite,
                 b"\1" * 8192, 64 * M - 4096)
    assert h.pread(4096, 60 * M) == b"\x5a" * 4096
    assert h.pread(4096, 64 * M - 4096) == bytes(4096), "wrote past a refusal"
    h.shutdown()


def check_abort():
    """NBD_OPT_ABORT ends the session cleanly."""
    h = connect("mem", opt_mode=True)
    h.opt_abort()
    assert h.aio_is_closed() or h.aio_is_dead()


run([check_list, check_info_unknown_export, check_info_then_go_elsewhere,
     check_default_export, check_list_meta_context, check_set_meta_context,
     check_without_structured_replies, check_abort])
