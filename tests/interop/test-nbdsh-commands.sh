#!/usr/bin/env bash
# Transmission commands through libnbd on memory, file and read-only
# exports: FUA, TRIM -> hole in block status, WRITE_ZEROES with NO_HOLE and
# FAST_ZERO, DF, OFFSET_HOLE reads, CACHE, out-of-range and bad-flag
# errors, EPERM on read-only, requests in flight, multi-conn
# (docs/security.md 20).  The checks
# are in nbdsh_commands.py.
. "$SNBD_SRC/tests/lib/common.sh"
require_server
"$PYTHON" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"

truncate -s 64M disk.img
serve mem=memory:64M "disk=file:$PWD/disk.img" ro=memory:16M,readonly -- '
  "$PYTHON" "$SNBD_SRC/tests/interop/nbdsh_commands.py"
'
