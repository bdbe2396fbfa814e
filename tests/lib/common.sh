# shellcheck shell=bash
# Shell helpers for snbd's script tests.  Source it first thing:
#
#   . "$SNBD_SRC/tests/lib/common.sh"
#   require nbdinfo
#   serve memory:1M -- 'nbdinfo "$uri" >info.txt'
#
# tests/lib/run-one.sh (behind both tests/run.sh and `meson test`) exports
# SNBD_SRC, SNBD_BUILD, SNBD_SERVER, PYTHON and runs each test in a fresh
# $TMPDIR (also the cwd).  Exit 77 means "skipped".
#
# Helpers:
#   fail MSG...             print MSG and exit 1
#   skip MSG...             print MSG and exit 77
#   require CMD...          skip unless every CMD is on PATH
#   nbdsh ARGS...           nbdsh, run with $PYTHON
#   require_server          fail unless $SNBD_SERVER is executable
#   serve ARGS... -- CMD    run "$SNBD_SERVER -U - ARGS --run ..." (captive
#                           mode) with CMD as a bash script that has these
#                           helpers and $uri/$unixsocket exported; checks that
#                           CMD really ran and that the server exited with
#                           CMD's status; returns that status
#   uri_for NAME            nbd+unix URI of export NAME on $unixsocket
#   make_random_image FILE SIZE_MIB   random data (from /dev/urandom)
#   make_sparse_image FILE SIZE_MIB   holes with a few data runs (see below)
#   sum_file FILE           BLAKE2b checksum of FILE
#   sum_export URI          BLAKE2b checksum of an export's contents (via nbdcopy)
#   expect_eq WHAT EXPECTED GOT      fail with both values if they differ
#   expect_fail CMD...      fail unless CMD exits non-zero
#   wait_for SECONDS CMD... poll CMD every 0.1 s until it succeeds or the
#                           time is up (then fail)

set -euo pipefail

: "${SNBD_SRC:?run tests through tests/run.sh or meson test}"
: "${SNBD_SERVER:?run tests through tests/run.sh or meson test}"
: "${TMPDIR:?run tests through tests/run.sh or meson test}"
PYTHON=${PYTHON:-/usr/bin/python3}
# Importing tests/interop/nbdcheck.py must not litter the source tree.
export PYTHON PYTHONDONTWRITEBYTECODE=1

# nbdsh runs whichever python3 is first on PATH, which may lack the libnbd
# module; Debian's python ($PYTHON) has it.
nbdsh() { "$PYTHON" -m nbd "$@"; }

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

require() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"
  done
}

require_server() {
  [ -x "$SNBD_SERVER" ] || fail "server binary $SNBD_SERVER missing (make build)"
}

expect_eq() {
  [ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
}

expect_fail() {
  if "$@"; then fail "expected failure, but it succeeded: $*"; fi
}

# serve ARGS... -- CMD
# Captive server on a private Unix socket.  CMD runs as a bash script (not
# sh) so it can use these helpers; it runs in the caller's directory with
# `set -euo pipefail`.  The server sets $uri/$unixsocket in CMD's shell;
# they are exported here so Python children see them.  A marker file
# proves CMD ran at all: a server that exits 0 without running it must not
# make a test pass.
serve() {
  local args=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do args+=("$1"); shift; done
  [ $# -eq 2 ] || fail "usage: serve ARGS... -- CMD"
  local cmd=$2
  local script marker
  script=$(mktemp "$TMPDIR/serve.XXXXXX")
  marker=$script.status
  {
    echo '. "$SNBD_SRC/tests/lib/common.sh"'
    printf 'cd %q\n' "$PWD"
    echo 'set +e'
    echo '( set -euo pipefail'
    printf '%s\n' "$cmd"
    echo ')'
    echo 'st=$?'
    printf 'echo "$st" >%q\n' "$marker"
    echo 'exit "$st"'
  } >"$script"
  local run
  run=$(printf 'export uri unixsocket; exec bash %q' "$script")
  local rc=0
  timeout -k 5 "${SNBD_SERVE_TIMEOUT:-150}" \
    "$SNBD_SERVER" -U - "${args[@]}" --run "$run" || rc=$?
  [ -f "$marker" ] ||
    fail "server (rc=$rc) never ran the --run command: $SNBD_SERVER -U - ${args[*]}"
  local st
  st=$(cat "$marker")
  [ "$rc" = "$st" ] ||
    fail "server exited $rc but its --run command exited $st"
  rm -f "$script" "$marker"
  return "$st"
}

# URI of a named export on the captive server's socket (doc/uri.md: the
# path is "/" followed by the export name).
uri_for() {
  : "${unixsocket:?uri_for is only meaningful inside serve}"
  printf 'nbd+unix:///%s?socket=%s' "$1" "$unixsocket"
}

make_random_image() {
  head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$1"
  [ "$(stat -c %s "$1")" -eq $(($2 * 1024 * 1024)) ] ||
    fail "could not make $1"
}

# A sparse image: SIZE_MIB of holes with random 1 MiB runs at MiB 0, 5, 6
# and SIZE_MIB-1 (SIZE_MIB >= 8).  Tests rely on this layout.
make_sparse_image() {
  local f=$1 n=$2 m
  [ "$n" -ge 8 ] || fail "make_sparse_image: size must be at least 8 MiB"
  rm -f "$f"
  truncate -s "${n}M" "$f"
  for m in 0 5 6 $((n - 1)); do
    dd if=/dev/urandom of="$f" bs=1M seek="$m" count=1 conv=notrunc \
       status=none
  done
}

sum_file() { b2sum <"$1" | cut -d" " -f1; }

sum_export() {
  local s
  s=$(nbdcopy -- "$1" - | b2sum) || fail "reading $1 failed"
  echo "${s%% *}"
}

wait_for() {
  local secs=$1; shift
  local i tries=$((secs * 10))
  for ((i = 0; i < tries; i++)); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  fail "timed out after ${secs}s waiting for: $*"
}
