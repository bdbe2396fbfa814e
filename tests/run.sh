#!/usr/bin/env bash
# Runs every test: cmocka unit tests (executables named test_* in the build
# tree), then the scripts tests/*/test-*.sh and tests/*/test-*.py, then the
# fuzz corpus regression (fuzz/regress.sh).  Each test runs with a timeout
# in its own temporary directory; exit 77 means skipped.  The last line is
# "N passed, N failed".
#   tests/run.sh BUILD_DIR[,BUILD_DIR...] [PATTERN]
# Several build dirs (e.g. build,build-san) run the whole suite once per
# build; PATTERN filters test names.
set -uo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
pattern=${2:-}
timeout_s=${SNBD_TEST_TIMEOUT:-300}
pass=0 fail=0 skip=0
failed=()

run_suite() {
build=$(cd "$1" && pwd)
tag=$(basename "$build")

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

tests=()
while IFS= read -r t; do tests+=("$t"); done < <(
  find "$build" -type f -perm -u+x -name 'test_*' ! -name '*.p' | sort
  find "$src/tests" -mindepth 2 -maxdepth 2 -type f \
       \( -name 'test-*.sh' -o -name 'test-*.py' \) | sort
  [ -f "$src/fuzz/regress.sh" ] && echo "$src/fuzz/regress.sh")

logdir=$build/test-logs
mkdir -p "$logdir"
for t in "${tests[@]}"; do
  name=${t#"$src/"}; name=$tag:${name#"$build/"}
  if [ -n "$pattern" ] && [[ "$name" != *$pattern* ]]; then continue; fi
  log=$logdir/$(echo "${name#*:}" | tr '/' '_').log
  tmp=$(mktemp -d /tmp/snbd-test.XXXXXX)
  start=$(date +%s.%N)
  case $t in
    *.py) cmd=("$PYTHON" "$t") ;;
    */fuzz/regress.sh) cmd=(bash "$t" "$build") ;;
    *.sh) cmd=(bash "$t") ;;
    *)    cmd=("$t") ;;
  esac
  (cd "$tmp" && TMPDIR=$tmp exec timeout -k 10 "$timeout_s" "${cmd[@]}") \
    >"$log" 2>&1 </dev/null
  rc=$?
  secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
  rm -rf "$tmp"
  if [ $rc -eq 0 ]; then
    pass=$((pass + 1)); echo "PASS $name (${secs}s)"
  elif [ $rc -eq 77 ]; then
    skip=$((skip + 1)); echo "SKIP $name: $(tail -n 1 "$log")"
  else
    fail=$((fail + 1)); failed+=("$name")
    [ $rc -eq 124 ] && echo "TIMEOUT after ${timeout_s}s" >>"$log"
    echo "FAIL $name (rc=$rc, ${secs}s); last lines of $log:"
    tail -n 25 "$log" | sed 's/^/    /'
  fi
done

}

IFS=, read -r -a builds <<<"${1:-build}"
for b in "${builds[@]}"; do run_suite "$b"; done

for f in "${failed[@]+"${failed[@]}"}"; do echo "failed: $f"; done
if [ $skip -gt 0 ]; then
  echo "$pass passed, $fail failed, $skip skipped"
else
  echo "$pass passed, $fail failed"
fi
[ $fail -eq 0 ]
