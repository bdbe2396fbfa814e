#!/usr/bin/env bash
# Handshake options driven one by one with libnbd's option mode (LIST,
# INFO/GO on known and unknown exports, LIST/SET_META_CONTEXT, ABORT,
# simple replies); the checks are in nbdsh_options.py.
. "$SNBD_SRC/tests/lib/common.sh"
require_server
"$PYTHON" -c 'import nbd' 2>/dev/null || skip "python3-libnbd is not installed"

serve 'mem=memory:64M,description=Scratch' \
      'ro=memory:16M,readonly,description=Read only' -- '
  "$PYTHON" "$SNBD_SRC/tests/interop/nbdsh_options.py"
'
