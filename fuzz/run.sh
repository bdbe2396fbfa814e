#!/usr/bin/env bash
# Runs libFuzzer harnesses for a set time each, one after the other.
#   fuzz/run.sh BUILD_DIR [SECONDS] [HARNESS...]
# BUILD_DIR must hold libFuzzer binaries (make fuzz builds build-fuzz/ with
# clang -fsanitize=fuzzer-no-link,address,undefined).  Each harness starts
# from its committed seeds (fuzz/corpus/NAME, read only) plus what earlier
# runs found (BUILD_DIR/corpus/NAME, where new inputs go).  A crash, leak,
# sanitizer report or timeout (FUZZ_TIMEOUT s for one input, default 30)
# fails the run; the input that caused it is kept as
# BUILD_DIR/artifacts/NAME-crash-*, -leak-*, -timeout-*, and the log as
# BUILD_DIR/fuzz-logs/NAME.log.  Extra libFuzzer options: FUZZ_ARGS.
set -uo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: fuzz/run.sh BUILD_DIR [SECONDS] [HARNESS...]}
build=$(cd "$build" && pwd)
secs=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
harnesses=("$@")
if [ ${#harnesses[@]} -eq 0 ]; then
  for d in "$src"/fuzz/corpus/*/; do harnesses+=("$(basename "$d")"); done
fi

# Every sanitizer report is fatal; leaks are checked after each input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Largest input per harness: whole NBD sessions need room, a URI does not.
max_len() {
  case $1 in
    fuzz_uri) echo 4096 ;;
    fuzz_config) echo 16384 ;;
    *) echo 65536 ;;
  esac
}

mkdir -p "$build/artifacts" "$build/fuzz-logs"
failed=()
for h in "${harnesses[@]}"; do
  bin=$build/fuzz/$h
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin is not built" >&2
    failed+=("$h")
    continue
  fi
  # (Output captured first: grep -q exiting early would SIGPIPE the
  # binary and, with pipefail, fail the test.)
  usage=$("$bin" -help=1 2>&1)
  if ! grep -q '^Usage:' <<<"$usage"; then
    echo "fuzz: $bin is a replay build, not libFuzzer (use make fuzz)" >&2
    failed+=("$h")
    continue
  fi
  mkdir -p "$build/corpus/$h"
  log=$build/fuzz-logs/$h.log
  echo "fuzz: $h for ${secs}s (log: $log)"
  # -close_fd_mask=2: the server's log lines would cost more than the
  # fuzzing; libFuzzer and sanitizer reports still reach the log.
  # shellcheck disable=SC2086
  "$bin" "$build/corpus/$h" "$src/fuzz/corpus/$h" \
    -max_total_time="$secs" -max_len="$(max_len "$h")" \
    -timeout="${FUZZ_TIMEOUT:-30}" -rss_limit_mb=2048 -close_fd_mask=2 \
    -artifact_prefix="$build/artifacts/$h-" -print_final_stats=1 \
    ${FUZZ_ARGS:-} >"$log" 2>&1
  rc=$?
  stats=$(grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" |
          sed 's/^stat:://; s/: */=/' | tr '\n' ' ')
  cov=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  if [ $rc -ne 0 ]; then
    echo "fuzz: $h FAILED (exit $rc): $(grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -3 | tr '\n' ' ')"
    failed+=("$h")
  else
    echo "fuzz: $h ok: $cov $stats"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (inputs in $build/artifacts/)"
  exit 1
fi
echo "fuzz: all ${#harnesses[@]} harnesses ran ${secs}s without a finding"
