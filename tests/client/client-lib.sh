# shellcheck shell=bash
# Helpers for the client tests (libsnbd, snbd-info, snbd-copy) against
# real servers.  Source after tests/lib/common.sh:
#
#   bg CMD...                 start CMD in the background; stopped at exit
#   stop_bg PID               stop one background process now
#   wait_socket PATH          wait (bounded) until PATH is a socket that
#                             accepts connections
#   start_nbdkit NAME ARGS... nbdkit -f -U $PWD/NAME.sock ARGS in the
#                             background; sets $sock and $pid
#   client_battery URI IMG [check-with-nbdcopy]
#                             libsnbd I/O test, snbd-info, then snbd-copy
#                             IMG -> URI -> file, URI -> pipe, pipe -> URI;
#                             checksums must match IMG.  The export must
#                             be writable and as large as IMG (>= 64 MiB).

. "$SNBD_SRC/tests/lib/tls.sh"

INFO=${SNBD_INFO:?}
COPY=${SNBD_COPY:?}
IO=$SNBD_BUILD/tests/unit/test_client_io
[ -x "$INFO" ] && [ -x "$COPY" ] && [ -x "$IO" ] ||
  fail "client programs missing (make build)"

_bg_pids=()
bg() {
  "$@" &
  _bg_pids+=("$!")
}

# Still running (not yet exited: a zombie has exited).
_alive() { grep -q '^State:[[:space:]]*[^Z]' "/proc/$1/status" 2>/dev/null; }

stop_bg() {
  kill "$1" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do
    _alive "$1" || break
    sleep 0.05
  done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

_client_cleanup() {
  local p
  for p in "${_bg_pids[@]+"${_bg_pids[@]}"}"; do stop_bg "$p"; done
}
trap _client_cleanup EXIT

# A server binds its socket before it listens: in between, the file is
# there and a connection is refused (seen with nbdkit on a loaded
# machine), so wait until one connects.
_accepts() {
  /usr/bin/python3 -c 'import socket, sys
socket.socket(socket.AF_UNIX).connect(sys.argv[1])' "$1" 2>/dev/null
}
wait_socket() { wait_for 20 _accepts "$1"; }

start_nbdkit() {
  sock=$PWD/$1.sock
  shift
  rm -f "$sock"
  bg nbdkit -f -U "$sock" "$@"
  pid=${_bg_pids[-1]}
  wait_socket "$sock"
}

# Checks a copy: the export's contents read by snbd-copy, and optionally
# by nbdcopy (libnbd, an independent reader), equal IMG's.
_check_export() {
  local uri=$1 img=$2 what=$3 independent=$4 want got
  want=$(head -c "$(stat -c %s "$img")" "$img" | b2sum | cut -d' ' -f1)
  got=$("$COPY" "$uri" - | head -c "$(stat -c %s "$img")" | b2sum |
        cut -d' ' -f1)
  expect_eq "$what (read back by snbd-copy)" "$want" "$got"
  if [ "$independent" = check-with-nbdcopy ]; then
    got=$(nbdcopy -- "$uri" - | head -c "$(stat -c %s "$img")" | b2sum |
          cut -d' ' -f1)
    expect_eq "$what (read back by nbdcopy)" "$want" "$got"
  fi
}

client_battery() {
  local uri=$1 img=$2 independent=${3:-}
  "$IO" "$uri"
  "$INFO" "$uri" >info.txt
  grep -q '^protocol: newstyle-fixed' info.txt || fail "snbd-info: $(cat info.txt)"
  "$INFO" --json "$uri" | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
e = d["exports"][0]
assert e["export-size"] >= 64 * 1024 * 1024, e
assert e["block_size_minimum"] >= 1, e' || fail "snbd-info --json"
  "$INFO" --can connect "$uri" || fail "snbd-info --can connect"

  # File -> export -> file: every byte where it belongs.
  "$COPY" "$img" "$uri"
  _check_export "$uri" "$img" "file -> $uri" "$independent"
  "$COPY" "$uri" out.img
  expect_eq "export -> file" "$(sum_file "$img")" \
    "$(head -c "$(stat -c %s "$img")" out.img | b2sum | cut -d' ' -f1)"
  # Pipe -> export, with other contents (so the write is seen).
  [ -f "$img.2" ] || make_sparse_image "$img.2" $(($(stat -c %s "$img") >> 20))
  cat "$img.2" | "$COPY" - "$uri"
  _check_export "$uri" "$img.2" "pipe -> $uri" "$independent"
  rm -f out.img info.txt
}
