#!/usr/bin/env bash
# Runs every test registered with Meson (tests/meson.build): the cmocka
# unit tests, the scripts tests/*/test-*.sh and tests/*/test-*.py, and the
# fuzz corpus regression (fuzz/regress.sh), one at a time, each through the
# command Meson registered (tests/lib/run-one.sh: its environment, its own
# temporary directory, a timeout).  Exit 77 means skipped.  Each test prints
# PASS, SKIP or FAIL (with the last lines of its log); the last line is
# "N passed, N failed" (", N skipped" when some were).
#   tests/run.sh BUILD_DIR[,BUILD_DIR...] [PATTERN]
# Several build dirs (e.g. build,build-san) run the whole suite once per
# build; PATTERN filters test names ("BUILD:NAME", NAME as in
# `meson test --list`).
set -uo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
pattern=${2:-}
pass=0 fail=0 skip=0
failed=()

# registered_tests BUILD: one line per registered test, tab-separated: its
# name, then `env`, the test's environment (VAR=VALUE...) and its command.
# Unit tests first, the corpus regression last, by name in between.
registered_tests() {
  /usr/bin/python3 - "$1/meson-info/intro-tests.json" <<'PY'
import json, sys
tests = json.load(open(sys.argv[1]))
def order(t):
    suites = [s.split(":")[-1] for s in t["suite"]]
    return ("unit" not in suites) + ("fuzz-regress" in suites), t["name"]
for t in sorted(tests, key=order):
    env = [f"{k}={v}" for k, v in sorted(t["env"].items())]
    print("\t".join([t["name"], "env"] + env + t["cmd"]))
PY
}

run_suite() {
  local build tag logdir name log start rc secs line n=0
  build=$(cd "$1" && pwd)
  tag=$(basename "$build")
  logdir=$build/test-logs
  mkdir -p "$logdir"
  while IFS=$'\t' read -r -a line; do
    n=$((n + 1))
    name=$tag:${line[0]}
    if [ -n "$pattern" ] && [[ "$name" != *$pattern* ]]; then continue; fi
    log=$logdir/$(echo "${line[0]}" | tr '/' '_').log
    start=$(date +%s.%N)
    (cd "$build" && exec "${line[@]:1}") >"$log" 2>&1 </dev/null
    rc=$?
    secs=$(printf '%.1f' "$(echo "$(date +%s.%N) - $start" | bc)")
    if [ $rc -eq 0 ]; then
      pass=$((pass + 1)); echo "PASS $name (${secs}s)"
    elif [ $rc -eq 77 ]; then
      skip=$((skip + 1)); echo "SKIP $name: $(tail -n 1 "$log")"
    else
      fail=$((fail + 1)); failed+=("$name")
      echo "FAIL $name (rc=$rc, ${secs}s); last lines of $log:"
      tail -n 25 "$log" | sed 's/^/    /'
    fi
  done < <(registered_tests "$build")
  # A build configured before tests/meson.build existed registers nothing.
  if [ $n -eq 0 ]; then
    fail=$((fail + 1)); failed+=("$tag")
    echo "FAIL $tag: no test registered with Meson (ninja -C $1 reconfigures)"
  fi
}

IFS=, read -r -a builds <<<"${1:-build}"
for b in "${builds[@]}"; do
  if [ ! -f "$b/meson-info/intro-tests.json" ]; then
    fail=$((fail + 1)); failed+=("$b")
    echo "FAIL $b: not a configured Meson build directory (make build)"
    continue
  fi
  run_suite "$b"
done

for f in "${failed[@]+"${failed[@]}"}"; do echo "failed: $f"; done
if [ $skip -gt 0 ]; then
  echo "$pass passed, $fail failed, $skip skipped"
else
  echo "$pass passed, $fail failed"
fi
[ $fail -eq 0 ]
