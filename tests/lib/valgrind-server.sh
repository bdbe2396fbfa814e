#!/bin/sh
# Runs snbd-server under valgrind: `make check-valgrind` sets
# SNBD_SERVER_WRAPPER to this script, and tests/lib/run-one.sh then exports
# SNBD_SERVER=<this script> and SNBD_SERVER_REAL=<the real binary>.  Tests
# call $SNBD_SERVER with the server's arguments as usual.
#
# Any memory error (invalid read or write, use of uninitialised memory,
# bad free) or definite leak makes the server exit 99, which fails the
# test that started it.  exec keeps the PID, so tests can still signal the
# server and read its /proc entries (those of valgrind running it).
server=${SNBD_SERVER_REAL:?SNBD_SERVER_REAL is not set (run via tests/run.sh or meson test)}
exec valgrind --quiet --error-exitcode=99 --leak-check=full \
  --errors-for-leak-kinds=definite --show-leak-kinds=definite \
  --track-origins=yes --num-callers=30 \
  "$server" "$@"
