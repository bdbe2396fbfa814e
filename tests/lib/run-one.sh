#!/usr/bin/env bash
# Runs one test the way every runner must: `meson test` (tests/meson.build
# registers each test as this script plus its arguments) and tests/run.sh
# (which runs the commands Meson registered) both come through here, so the
# two cannot give a test a different environment.
#   tests/lib/run-one.sh BUILD_DIR TEST
# TEST is a cmocka executable, a tests/*/test-*.sh or test-*.py script, or
# fuzz/regress.sh.  It runs with the environment below, in a fresh temporary
# directory that is both its cwd and $TMPDIR (removed afterwards), with
# stdin from /dev/null and a timeout of $SNBD_TEST_TIMEOUT seconds (default
# 300).  The exit status is the test's: 0 passed, 77 skipped, 124 timed out,
# anything else failed.
set -uo pipefail

build=$(cd "${1:?usage: run-one.sh BUILD_DIR TEST}" && pwd)
test=${2:?usage: run-one.sh BUILD_DIR TEST}
src=$(cd "$(dirname "$0")/../.." && pwd)
timeout_s=${SNBD_TEST_TIMEOUT:-300}

export SNBD_SRC=$src SNBD_BUILD=$build
export SNBD_SERVER=$build/server/snbd-server
# SNBD_SERVER_WRAPPER (e.g. tests/lib/valgrind-server.sh) runs the server
# under a tool: tests start the wrapper as $SNBD_SERVER, and it finds the
# real binary in $SNBD_SERVER_REAL.
if [ -n "${SNBD_SERVER_WRAPPER:-}" ]; then
  export SNBD_SERVER_REAL=$SNBD_SERVER
  export SNBD_SERVER=$SNBD_SERVER_WRAPPER
fi
export SNBD_INFO=$build/tools/snbd-info
export SNBD_COPY=$build/tools/snbd-copy
export LD_LIBRARY_PATH=$build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Debian's python3 has python3-libnbd; another python3 may be first on PATH.
export PYTHON=/usr/bin/python3
export PYTHONPATH=$src/tests/lib
# Sanitizer builds: fail loudly on any report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

case $test in
  *.py) cmd=("$PYTHON" "$test") ;;
  */fuzz/regress.sh) cmd=(bash "$test" "$build") ;;
  *.sh) cmd=(bash "$test") ;;
  *)    cmd=("$test") ;;
esac

tmp=$(mktemp -d /tmp/snbd-test.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 143' TERM INT
(cd "$tmp" && TMPDIR=$tmp exec timeout -k 10 "$timeout_s" "${cmd[@]}") \
  </dev/null
rc=$?
[ $rc -eq 124 ] && echo "TIMEOUT after ${timeout_s}s"
exit $rc
