# shellcheck shell=bash
# Process bookkeeping and /proc sampling for bench/run.sh.
#
#   track PID               remember PID; bench_cleanup stops it
#   stop_pid PID            TERM PID and its descendants, wait up to 5 s,
#                           then KILL whatever is left (all by PID), and
#                           forget PID
#   bench_cleanup           stop every tracked PID, newest first
#   descendants PID         PIDs of PID's descendants, one a line
#   alive PID               true while PID runs (a zombie counts as gone)
#   cpu_seconds PID         utime+stime of PID, its reaped children and its
#                           live descendants, in seconds
#   tree_rss_kib PID        sum of VmRSS over PID and its descendants
#   tree_pss_kib PID        sum of Pss (proportional set size: shared pages
#                           split between the processes sharing them)
#   wait_no_children PID S  poll until PID has no child processes (a
#                           forking server has reaped its per-connection
#                           children, so their CPU time is in cutime/cstime)
#   mem_sampler PID FILE    loop: write the peak tree RSS seen to FILE,
#                           every 0.2 s, until killed (run it with &)

BENCH_PIDS=()
CLK_TCK=$(getconf CLK_TCK)

track() { BENCH_PIDS+=("$1"); }

# Forget a stopped PID at once: the kernel may hand the number to some
# other process later, which bench_cleanup must never signal.
untrack() {
  local keep=() p
  for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
}

alive() {
  local st
  st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
  # A comm with spaces would shift the fields; ours have none, and a
  # wrong guess only makes stop_pid wait its bounded 5 s.
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

descendants() {
  ps -e -o pid= -o ppid= | awk -v root="$1" '
    { kids[$2] = kids[$2] " " $1 }
    END {
      n = split(kids[root], q, " ")
      for (i = 1; i <= n; i++) {
        print q[i]
        m = split(kids[q[i]], more, " ")
        for (j = 1; j <= m; j++) q[++n] = more[j]
      }
    }'
}

stop_pid() {
  local pid=$1 i kids
  [ -n "$pid" ] || return 0
  if alive "$pid"; then
    kids=$(descendants "$pid")
    # shellcheck disable=SC2086
    kill -TERM "$pid" $kids 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      echo "bench: PID $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) ignored SIGTERM for 5 s; killing it" >&2
    fi
    kids="$kids $(descendants "$pid")"
    # shellcheck disable=SC2086
    kill -KILL "$pid" $kids 2>/dev/null || true
  fi
  # Reap it when it is our child (quietly: it may be a daemon's PID).
  wait "$pid" 2>/dev/null || true
  untrack "$pid"
}

bench_cleanup() {
  local pids=("${BENCH_PIDS[@]}") i
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    stop_pid "${pids[$i]}"
  done
  BENCH_PIDS=()
}

# Fields after "(comm) ": 3=state ... 14=utime 15=stime 16=cutime
# 17=cstime, i.e. positions 12..15 of what follows the comm.
_stat_ticks() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo "$(( ${12} + ${13} ))" "$(( ${14} + ${15} ))"
}

cpu_seconds() {
  local pid=$1 own reaped d t total
  read -r own reaped < <(_stat_ticks "$pid")
  total=$((own + reaped))
  for d in $(descendants "$pid"); do
    read -r t _ < <(_stat_ticks "$d")
    total=$((total + t))
  done
  awk -v t="$total" -v hz="$CLK_TCK" 'BEGIN { printf "%.3f\n", t / hz }'
}

_tree_sum() {
  local pid=$1 file=$2 key=$3 p files=()
  for p in "$pid" $(descendants "$pid"); do files+=("/proc/$p/$file"); done
  cat "${files[@]}" 2>/dev/null |
    awk -v k="$key" '$1 == k { s += $2 } END { print s + 0 }'
}

tree_rss_kib() { _tree_sum "$1" status VmRSS:; }
tree_pss_kib() { _tree_sum "$1" smaps_rollup Pss:; }

wait_no_children() {
  local pid=$1 tries=$(($2 * 10)) i
  for ((i = 0; i < tries; i++)); do
    [ -z "$(pgrep -P "$pid" || true)" ] && return 0
    sleep 0.1
  done
  return 1
}

mem_sampler() {
  local pid=$1 out=$2 max=0 v
  while alive "$pid"; do
    v=$(tree_rss_kib "$pid")
    if [ "$v" -gt "$max" ]; then
      max=$v
      echo "$max" >"$out"
    fi
    sleep 0.2
  done
}
