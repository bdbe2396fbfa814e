#!/usr/bin/env bash
# Corpus regression: runs every harness once over each of its committed
# inputs (fuzz/corpus/NAME/*), no fuzzing.  Works on libFuzzer binaries
# (clang builds) and on replay binaries (any other compiler, fuzz/replay.c)
# alike; sanitizer builds fail on any report.
#   fuzz/regress.sh BUILD_DIR
# Exit 0 all passed, 1 a harness failed, 77 no harness is built.
set -uo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: fuzz/regress.sh BUILD_DIR}
build=$(cd "$build" && pwd)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

ran=0 failed=()
for dir in "$src"/fuzz/corpus/*/; do
  h=$(basename "$dir")
  bin=$build/fuzz/$h
  if [ ! -x "$bin" ]; then
    echo "skip $h: $bin not built"
    continue
  fi
  inputs=("$dir"*)
  # One process for the whole corpus: libFuzzer runs each file named once
  # (-timeout per input); replay.c does the same without libFuzzer.
  if "$bin" -timeout=60 -rss_limit_mb=2048 "${inputs[@]}" >"$build/regress-$h.log" 2>&1; then
    echo "ok   $h (${#inputs[@]} inputs)"
  else
    echo "FAIL $h (log: $build/regress-$h.log)"
    tail -30 "$build/regress-$h.log" | sed 's/^/  | /'
    failed+=("$h")
  fi
  ran=$((ran + 1))
done
if [ $ran -eq 0 ]; then
  echo "no fuzz harness built in $build"
  exit 77
fi
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
echo "all $ran harnesses passed their corpus"
