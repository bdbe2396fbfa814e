#!/usr/bin/env bash
# Files the server writes cannot be turned against another file
# (docs/security.md 36): with -P FILE, a symlink planted at FILE.tmp or at
# FILE pointing at a victim file leaves the victim untouched; the PID file
# is a regular file of mode 0644 (whatever the umask) holding the server's
# PID, and a stale FILE.tmp does not stop the server.
. "$SNBD_SRC/tests/lib/common.sh"
require_server

check_pid_file() {   # WHAT: the server ran --run's check and left the victim
  grep -qx "pid ok 644 regular" run.out ||
    fail "$1: the PID file is not the server's: $(cat run.out)"
  expect_eq "$1: victim file" "precious" "$(cat victim)"
  [ ! -e pid.tmp ] || fail "$1: pid.tmp left behind"
}
run_server() {
  ( umask 077 && "$SNBD_SERVER" -U - -P "$PWD/pid" memory:1M --run '
      p=$(cat "'"$PWD"'/pid")
      [ "$p" = "$PPID" ] && echo -n "pid ok " || echo -n "pid $p not $PPID "
      stat -c "%a %F" "'"$PWD"'/pid" | sed "s/regular file/regular/"' ) \
    >run.out 2>server.err || fail "server failed: $(cat server.err run.out)"
}

echo precious >victim
ln -s "$PWD/victim" pid.tmp
run_server
check_pid_file "symlink planted at pid.tmp"

rm -f pid
ln -s "$PWD/victim" pid
run_server
check_pid_file "symlink planted at pid"
[ ! -L pid ] || fail "pid is still the planted symlink"

echo stale >pid.tmp
run_server
check_pid_file "stale pid.tmp"
echo ok
