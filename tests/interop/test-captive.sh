#!/usr/bin/env bash
# How tests and users start snbd-server: captive --run (variables, exit
# status), -s on stdin/stdout, systemd socket activation, and a Unix socket
# in the background with a pid file, stopped by SIGTERM (exit status 0).
. "$SNBD_SRC/tests/lib/common.sh"
require nbdinfo
require_server

# --run: $uri and $unixsocket are set and usable; the command's exit
# status becomes the server's (serve checks both agree).
serve memory:1M -- '
  [ -S "$unixsocket" ] || fail "\$unixsocket=$unixsocket is not a socket"
  case $uri in
    nbd+unix://*socket=*) ;;
    *) fail "unexpected \$uri: $uri" ;;
  esac
  expect_eq "size via \$uri" 1048576 "$(nbdinfo --size "$uri")"
'
rc=0; serve memory:1M -- 'exit 3' || rc=$?
expect_eq "exit status of captive server whose command exits 3" 3 "$rc"

# -s: one client on stdin/stdout (libnbd's connect_command).
size=$("$PYTHON" -c '
import nbd, sys
h = nbd.NBD()
h.connect_command([sys.argv[1], "-s", "memory:2M"])
h.pwrite(b"x" * 512, 4096)
assert h.pread(512, 4096) == b"x" * 512
print(h.get_size())
h.shutdown()' "$SNBD_SERVER")
expect_eq "size via -s" 2097152 "$size"

# systemd socket activation (LISTEN_PID/LISTEN_FDS): nbdinfo's [ CMD ] form.
size=$(nbdinfo --size -- [ "$SNBD_SERVER" memory:5M ])
expect_eq "size via socket activation" 5242880 "$size"

# -U PATH -P FILE in the background; SIGTERM stops it cleanly.
"$SNBD_SERVER" -U "$PWD/sock" -P "$PWD/pid" memory:3M &
spid=$!
trap 'kill "$spid" 2>/dev/null || true' EXIT
wait_for 10 test -S "$PWD/sock" -a -s "$PWD/pid"
expect_eq "pid file" "$spid" "$(cat pid)"
expect_eq "size via -U" 3145728 \
  "$(nbdinfo --size "nbd+unix:///?socket=$PWD/sock")"
kill -TERM "$spid"
rc=0; wait "$spid" || rc=$?
trap - EXIT
expect_eq "exit status after SIGTERM" 0 "$rc"
echo "captive: all checks passed"
