# shellcheck shell=bash
# The workloads of bench/run.sh, run against the server that server_start
# left in SRV_PID / SRV_URI.  Each records figures with
#   rec METRIC VALUE          one line "server transport metric value"
#   rec_na METRIC REASON      why a figure is missing
# into $RESULTS (tab separated, one line per run; report.py takes the
# median).  wl_seq, wl_rand, wl_handshakes, wl_reconnect and wl_snbd_copy do one run
# each: bench/run.sh calls them in rounds across the servers.  Every
# client runs under `timeout`; every background process is tracked and
# stopped by PID.
#
# Needs: SERVER TRANSPORT SRV_PID SRV_URI (current server), SIZE,
# RAND_SECONDS, HS_SECONDS, CONNS, COPY_TIMEOUT, HOLD_TIMEOUT, SCALE_CONNS,
# SCALE_TIMEOUT, BIN (bench programs), SRC (the data file), W, PY,
# RESULTS, SNBD_COPY.

rec() { printf '%s\t%s\t%s\t%s\n' "$SERVER" "$TRANSPORT" "$1" "$2" >>"$RESULTS"; }

rec_na() {
  local why=${2//$'\t'/ }
  why=${why//$'\n'/ }
  why=${why//$W/\$W}
  printf '%s\t%s\tna:%s\t%s\n' "$SERVER" "$TRANSPORT" "$1" "${why:0:200}" >>"$RESULTS"
  echo "bench:   $SERVER/$TRANSPORT $1: n/a: ${why:0:200}" >&2
}

# calc EXPR VAR=VALUE...: floating point arithmetic through awk.
calc() {
  local expr=$1; shift
  local args=() kv
  for kv in "$@"; do args+=(-v "$kv"); done
  awk "${args[@]}" "BEGIN { printf \"%.6g\n\", $expr }"
}

# timed TIMEOUT OUT CMD...: run CMD (stdout to OUT, stderr to OUT.err)
# under timeout; sets T_REAL, T_CPU (the client's user+system seconds).
timed() {
  local to=$1 out=$2 rc=0 tf=$2.time r u s
  shift 2
  { TIMEFORMAT='%3R %3U %3S'
    time timeout -k 5 "$to" "$@" >"$out" 2>"$out.err"; } 2>"$tf" || rc=$?
  read -r r u s <"$tf" || true
  T_REAL=$r
  T_CPU=$(calc 'u + s' "u=$u" "s=$s")
  return "$rc"
}

# Why the last client failed, in one line.
_why() { { head -c 300 "$1.err"; echo; } | grep -m1 . || echo "exit status $2"; }

# Server CPU seconds since the last mark (after a forking server has
# reaped the connection's child).
cpu_mark() {
  wait_no_children "$SRV_PID" 5 || true
  CPU_MARK=$(cpu_seconds "$SRV_PID")
}
cpu_since_mark() {
  local before=$CPU_MARK
  cpu_mark
  calc 'a - b' "a=$CPU_MARK" "b=$before"
}

# copy_once WHAT CMD...: one timed copy of SIZE bytes; sets C_MIBS,
# C_SRV (server CPU s), C_CLI (client CPU s), C_RSS (peak tree RSS KiB).
copy_once() {
  local what=$1 out=$W/copy.out peak=$W/peak.rss sampler rc=0
  shift
  rm -f "$peak"
  cpu_mark
  mem_sampler "$SRV_PID" "$peak" &
  sampler=$!
  track "$sampler"
  timed "$COPY_TIMEOUT" "$out" "$@" || rc=$?
  stop_pid "$sampler"
  if [ "$rc" -ne 0 ]; then
    C_WHY="$what failed: $(_why "$out" "$rc")"
    return 1
  fi
  C_SRV=$(cpu_since_mark)
  C_CLI=$T_CPU
  C_MIBS=$(calc 'size / 1048576 / t' "size=$SIZE" "t=$T_REAL")
  C_RSS=$(cat "$peak" 2>/dev/null || tree_rss_kib "$SRV_PID")
}

# The unrecorded first write on a fresh server: it allocates the export
# (tmpfs pages of an image, a memory server's arrays), which on this kind
# of VM also means the host backing memory the guest had not touched, and
# ran at a quarter of the later rounds' speed.  The rounds then measure
# every server in the same, steady state.
wl_warm() {
  local out=$W/warm.out rc=0
  timed "$COPY_TIMEOUT" "$out" nbdcopy -- "$SRC" "$SRV_URI" || rc=$?
  [ "$rc" -eq 0 ] || { rec_na seq "warm-up write failed: $(_why "$out" "$rc")"; return 1; }
}

# One round of nbdcopy: SIZE bytes in (from the random file) and back out
# to null:; MiB/s each way, CPU per GiB (both ways together), peak RSS.
wl_seq() {
  local w_srv w_cli gib
  gib=$(calc 's / 1073741824' "s=$SIZE")
  if ! copy_once "nbdcopy write" nbdcopy -- "$SRC" "$SRV_URI"; then
    rec_na seq "$C_WHY"; return 1
  fi
  rec seq_write_mibs "$C_MIBS"; rec rss_copy_kib "$C_RSS"
  rec nc_write_cli_cpu "$C_CLI"
  w_srv=$C_SRV w_cli=$C_CLI
  if ! copy_once "nbdcopy read" nbdcopy -- "$SRV_URI" null:; then
    rec_na seq "$C_WHY"; return 1
  fi
  rec seq_read_mibs "$C_MIBS"; rec rss_copy_kib "$C_RSS"
  rec nc_read_cli_cpu "$C_CLI"
  rec srv_cpu_per_gib "$(calc '(a + b) / (2 * g)' "a=$w_srv" "b=$C_SRV" "g=$gib")"
  rec cli_cpu_per_gib "$(calc '(a + b) / (2 * g)' "a=$w_cli" "b=$C_CLI" "g=$gib")"
}

# One random-I/O run: fio's nbd engine in clear text, bench/randio over
# TLS (fio cannot be given TLS files); sets R_IOPS, R_OPS or R_WHY.
#   _rand_once MODE [OUT]   OUT: the client's output file ($W/rand.out)
# The client runs under RAND_PIN (a command prefix, e.g. taskset) if set.
_rand_once() {
  local mode=$1 out=${2:-$W/rand.out} rc=0 to=$((${RAND_SECONDS%.*} + 60))
  local pin=("${RAND_PIN[@]}")
  if [ "$TRANSPORT" = tcp ] || [ "$TRANSPORT" = unix ] ||
     [ "$TRANSPORT" = rbd ]; then
    timed "$to" "$out" "${pin[@]}" fio --name=rand --ioengine=nbd "--uri=$SRV_URI" \
      "--rw=rand$mode" --bs=4k --iodepth=32 --numjobs=1 --time_based \
      "--runtime=$(calc 'int(s * 1000)' "s=$RAND_SECONDS")ms" --output-format=json || rc=$?
    [ "$rc" -eq 0 ] || { R_WHY="fio: $(_why "$out" "$rc")"; return 1; }
    # fio's nbd engine prints "fio: connected to NBD server" before the JSON.
    read -r R_IOPS R_OPS < <("$PY" -c 'import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])["jobs"][0][sys.argv[2]]
print(j["iops"], j["total_ios"])' "$out" "$mode") ||
      { R_WHY="fio: unreadable JSON"; return 1; }
  else
    local w=()
    [ "$mode" = write ] && w=(-w)
    timed "$to" "$out" "${pin[@]}" "$BIN/randio" "${w[@]}" -d 32 -b 4096 \
      -t "$RAND_SECONDS" "$SRV_URI" || rc=$?
    [ "$rc" -eq 0 ] || { R_WHY="randio: $(_why "$out" "$rc")"; return 1; }
    R_OPS=$(sed -n 's/^ops=\([0-9]*\) .*/\1/p' "$out")
    R_IOPS=$(sed -n 's/.* iops=\([0-9.]*\).*/\1/p' "$out")
  fi
  [ "${R_OPS:-0}" -gt 0 ] || { R_WHY="no request completed"; return 1; }
}

# One round of 4 KiB random read and write at depth 32; IOPS, and server
# CPU per request (both modes together).
wl_rand() {
  local mode cpu=0 ops=0
  for mode in read write; do
    cpu_mark
    if ! _rand_once "$mode"; then rec_na "rand$mode" "$R_WHY"; return 1; fi
    cpu=$(calc 'a + b' "a=$cpu" "b=$(cpu_since_mark)")
    ops=$((ops + ${R_OPS%.*}))
    rec "rand${mode}_iops" "$R_IOPS"
  done
  rec srv_us_per_req "$(calc 'c * 1e6 / n' "c=$cpu" "n=$ops")"
}

# _conn_loop NA RATE SRV_MS CLI_MS CLIENT [ARGS...]: one run of a
# connection loop program (bench/handshakes.c) on the current server,
# recording connections per second and server and client CPU ms per
# connection under the given metric names (NA names a failure).
_conn_loop() {
  local na=$1 rate=$2 srv_ms=$3 cli_ms=$4 out=$W/loop.out rc=0 n srv
  shift 4
  cpu_mark
  timed $((${HS_SECONDS%.*} + 60)) "$out" "$@" -t "$HS_SECONDS" "$SRV_URI" ||
    rc=$?
  if [ "$rc" -ne 0 ]; then rec_na "$na" "$(_why "$out" "$rc")"; return 1; fi
  srv=$(cpu_since_mark)
  n=$(sed -n 's/^handshakes=\([0-9]*\).*/\1/p' "$out")
  [ "${n:-0}" -gt 0 ] || { rec_na "$na" "no connection completed"; return 1; }
  rec "$rate" "$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' "$out")"
  rec "$srv_ms" "$(calc 'c * 1000 / n' "c=$srv" "n=$n")"
  rec "$cli_ms" "$(calc 'c * 1000 / n' "c=$T_CPU" "n=$n")"
}

# One handshake loop: handshakes per second, and the CPU each side spent
# per handshake (the client's own cost bounds the rate: the loop runs one
# at a time).
wl_handshakes() {
  _conn_loop handshakes handshakes_per_s srv_ms_per_hs cli_ms_per_hs \
    "$BIN/handshakes"
}

# Many clients at once over TLS X.509, since servers serve many:
# MANY_CLIENTS randio processes (libnbd for every server), 256 KiB random
# reads then writes at depth 4 for RAND_SECONDS each; the aggregate MiB/s
# of each direction and the server's CPU per GiB moved (both together).
MANY_CLIENTS=16
MANY_BS=262144
_many_once() {
  local mode=$1 i p rc=0 w=() pids=()
  [ "$mode" = write ] && w=(-w)
  for ((i = 0; i < MANY_CLIENTS; i++)); do
    timeout -k 5 $((${RAND_SECONDS%.*} + 60)) "$BIN/randio" "${w[@]}" -d 4 \
      -b "$MANY_BS" -t "$RAND_SECONDS" "$SRV_URI" >"$W/many.$i" 2>&1 &
    pids+=("$!")
    track "$!"
  done
  for p in "${pids[@]}"; do
    wait "$p" || rc=$?
    untrack "$p"
  done
  [ "$rc" -eq 0 ] || { R_WHY="randio: $(_why "$W/many.0" "$rc")"; return 1; }
  R_OPS=$(cat "$W"/many.* | sed -n 's/^ops=\([0-9]*\) .*/\1/p' |
          awk '{ n += $1 } END { print n + 0 }')
  R_MIBS=$(cat "$W"/many.* | sed -n 's/.* iops=\([0-9.]*\).*/\1/p' |
           awk -v bs="$MANY_BS" '{ n += $1 } END { print n * bs / 1048576 }')
  [ "${R_OPS:-0}" -gt 0 ] || { R_WHY="no request completed"; return 1; }
}

wl_many() {
  local mode cpu=0 ops=0
  [ "$TRANSPORT" = x509 ] || return 0
  for mode in read write; do
    cpu_mark
    if ! _many_once "$mode"; then rec_na many "$R_WHY"; return 1; fi
    cpu=$(calc 'a + b' "a=$cpu" "b=$(cpu_since_mark)")
    ops=$((ops + R_OPS))
    rec "many_${mode}_mibs" "$R_MIBS"
  done
  rec many_srv_cpu_per_gib "$(calc 'c / (n * b / 1073741824)' "c=$cpu" \
    "n=$ops" "b=$MANY_BS")"
}

# The reconnect loop (TLS transports only): connect, read 512 bytes,
# disconnect, one connection at a time, each server with its own client
# library (snbd: libsnbd's snbd-handshakes, which resumes TLS sessions;
# the anchors: libnbd's handshakes, which does not).  What a client that
# reconnects often (a backup tool, a health check) pays per connection.
wl_reconnect() {
  local client=$BIN/handshakes
  case $TRANSPORT in x509|psk) ;; *) return 0 ;; esac
  case $SERVER in snbd*) client=$BIN/snbd-handshakes ;; esac
  _conn_loop reconnect reconnects_per_s srv_ms_per_reconnect \
    cli_ms_per_reconnect "$client" -r 512
}

# Idle RSS, then CONNS idle connections held open: memory per connection
# from the growth of the server's proportional set size (which counts a
# forking server's per-connection children fairly).  Measured once, on a
# fresh server: a second round would reuse the first round's freed heap.
# hold N TIMEOUT OUT: starts holdconns with N connections in the
# background (HOLD_PID) and waits until it says they are all open; on
# failure sets HOLD_WHY and returns 1.
hold() {
  local n=$1 timeout=$2 out=$3 i
  : >"$out"
  "$BIN/holdconns" -n "$n" -t "$timeout" "$SRV_URI" >"$out" 2>"$out.err" &
  HOLD_PID=$!
  track "$HOLD_PID"
  for ((i = 0; i < timeout * 10; i++)); do
    grep -q '^ready' "$out" && return 0
    alive "$HOLD_PID" || break
    sleep 0.1
  done
  grep -q '^ready' "$out" && return 0
  stop_pid "$HOLD_PID"
  HOLD_WHY="holdconns: $(_why "$out" "not ready")"
  return 1
}

wl_memory() {
  local out=$W/hold.out pss0 pss1
  rec rss_idle_kib "$(tree_rss_kib "$SRV_PID")"
  pss0=$(tree_pss_kib "$SRV_PID")
  hold "$CONNS" "$HOLD_TIMEOUT" "$out" || { rec_na conn_kib "$HOLD_WHY"; return 1; }
  pss1=$(tree_pss_kib "$SRV_PID")
  stop_pid "$HOLD_PID"
  rec conn_kib "$(calc '(b - a) / n' "a=$pss0" "b=$pss1" "n=$CONNS")"
  wait_no_children "$SRV_PID" 30 || true
}

# Scale: SCALE_CONNS idle, fully negotiated connections held open, then a
# new client copies SIZE bytes in while they stay open (it must not be
# refused or starved).  Records how many were held, the copy's MiB/s, the
# server's RSS and threads with them open, and Pss growth per connection.
wl_scale() {
  local out=$W/scale.out pss0 pss1
  pss0=$(tree_pss_kib "$SRV_PID")
  hold "$SCALE_CONNS" "$SCALE_TIMEOUT" "$out" || { rec_na scale "$HOLD_WHY"; return 1; }
  pss1=$(tree_pss_kib "$SRV_PID")
  rec scale_conns "$(sed -n 's/^ready \([0-9]*\).*/\1/p' "$out")"
  rec scale_kib_per_conn "$(calc '(b - a) / n' "a=$pss0" "b=$pss1" "n=$SCALE_CONNS")"
  rec scale_rss_kib "$(tree_rss_kib "$SRV_PID")"
  rec scale_threads "$(awk '/^Threads:/ { print $2 }' "/proc/$SRV_PID/status")"
  if copy_once "nbdcopy write with $SCALE_CONNS connections open" \
       nbdcopy -- "$SRC" "$SRV_URI"; then
    rec scale_copy_mibs "$C_MIBS"
  else
    rec_na scale_copy "$C_WHY"
  fi
  alive "$HOLD_PID" || rec_na scale_copy "holdconns exited during the copy"
  stop_pid "$HOLD_PID"
  wait_no_children "$SRV_PID" 30 || true
}

# One round of snbd-copy against nbdcopy on the same server, both
# directions: the nbdcopy figures are wl_seq's (a file in, out to null:),
# snbd-copy does the same (null: discards, as nbdcopy's does).
wl_snbd_copy() {
  if [ ! -x "$SNBD_COPY" ]; then
    rec_na snbd_copy "snbd-copy not built ($SNBD_COPY missing)"; return 1
  fi
  if ! copy_once "snbd-copy write" "$SNBD_COPY" "$SRC" "$SRV_URI"; then
    rec_na snbd_copy "$C_WHY"; return 1
  fi
  rec sc_write_mibs "$C_MIBS"; rec sc_write_cli_cpu "$C_CLI"
  if ! copy_once "snbd-copy read" "$SNBD_COPY" "$SRV_URI" null:; then
    rec_na snbd_copy "$C_WHY"; return 1
  fi
  rec sc_read_mibs "$C_MIBS"; rec sc_read_cli_cpu "$C_CLI"
}

# Metrics on against off: 4 KiB IOPS of snbd with --metrics (scraped every
# second) within 2% of snbd without.  Measured one after the other, two
# servers' IOPS swing 15% from one second to the next on this shared
# machine (a CPU-bound loop's speed alone moves 25%), far more than 2%.
# So two fresh servers, snbd and snbd --metrics, each on its own image
# (BENCH_SIZE, at most 256 MiB: random I/O, and a quick write fills it)
# filled by one write, run at the same time, each with its own client,
# and both servers and both clients are pinned to one CPU: they share it
# fairly, so each server's IOPS follows its CPU per request, and what the
# host does falls on both alike.  That is also the worst case for the
# metrics: with a CPU to spare, their cost would not show in IOPS at all.
# A pair of server processes can keep an edge of one over the other for
# their lifetime (two runs of this comparison on the same code, minutes
# apart, gave 0.981 and 1.001 for TCP writes, each within ±0.5%: where
# the images and heaps landed, presumably), so the pairs are made by two
# sets of servers, started in turn in the other order, on new images.  Each
# set runs half of METRICS_PAIRS pairs of METRICS_SECONDS runs per mode,
# after one pair not recorded; report.py pairs the runs in order (on ÷
# off per pair) and takes the median.  Run after the transport's other
# servers have stopped; records as snbd.
wl_metrics_pairs() {
  local set n SIZE=$((SIZE < (256 << 20) ? SIZE : 256 << 20))
  local SRC=$W/src-pairs.img
  SERVER=snbd
  mkdir -p "$W/metrics-pairs"
  [ -e "$SRC" ] || head -c "$SIZE" "$W/src.img" >"$SRC"
  for set in 1 2; do
    n=$((METRICS_PAIRS / 2))
    [ "$set" = 2 ] || n=$((n + METRICS_PAIRS % 2))
    _pair_set "$set" "$n" || return 1
  done
}

# _pair_set SET N: one set of servers, N recorded pairs per mode.
_pair_set() {
  local names=(snbd snbd-metrics) name uri=() pid=() sock=() mode i p1 p2
  local rc off on
  local cpu=$(($(nproc) - 1)) dir=$W/metrics-pairs
  [ "$1" = 1 ] || names=(snbd-metrics snbd)
  declare -A at
  for name in "${names[@]}"; do
    DISK=$W/disk-pair-$name.img
    if ! server_start "$name" "$TRANSPORT"; then
      rec_na metrics_pairs "$name did not start"; _pairs_stop; return 1
    fi
    at[$name]=${#pid[@]}
    pid+=("$SRV_PID") uri+=("$SRV_URI") sock+=("$_sock")
    [ "$name" = snbd ] || meta "cmd_metrics_on_$TRANSPORT" "$SRV_CMD"
    rc=0
    timed "$COPY_TIMEOUT" "$dir/warm.out" nbdcopy -- "$SRC" "$SRV_URI" || rc=$?
    if [ "$rc" -ne 0 ]; then
      rec_na metrics_pairs "$name: warm-up write: $(_why "$dir/warm.out" "$rc")"
      _pairs_stop; return 1
    fi
  done
  local off_uri=${uri[${at[snbd]}]} on_uri=${uri[${at[snbd-metrics]}]}
  _pin "${pid[0]}" "$cpu"
  _pin "${pid[1]}" "$cpu"
  for mode in read write; do
    for ((i = 0; i <= $2; i++)); do
      rm -f "$dir/off" "$dir/on"
      if ((i % 2)); then          # which client starts first, in turn
        _pair_side "$mode" "$off_uri" "$dir/off" "$cpu" & p1=$!
        _pair_side "$mode" "$on_uri" "$dir/on" "$cpu" & p2=$!
      else
        _pair_side "$mode" "$on_uri" "$dir/on" "$cpu" & p1=$!
        _pair_side "$mode" "$off_uri" "$dir/off" "$cpu" & p2=$!
      fi
      wait "$p1" "$p2" || true
      read -r off <"$dir/off" || off="na no result"
      read -r on <"$dir/on" || on="na no result"
      case "$off $on" in
        na*|*" na"*) rec_na metrics_pairs "${off#na } / ${on#na }"
                     _pairs_stop; return 1 ;;
      esac
      [ "$i" -gt 0 ] || continue
      rec "metrics_off_rand${mode}_iops" "$off"
      rec "metrics_on_rand${mode}_iops" "$on"
    done
  done
  _pairs_stop
}

# The set's servers (those _pair_set started, in its pid and sock),
# stopped by PID, with their sockets and images.
_pairs_stop() {
  local p
  for p in "${pid[@]}"; do stop_pid "$p"; done
  rm -f "$W"/disk-pair-*.img "${sock[@]}"
}

# _pin PID CPU: every thread of PID on CPU (threads made later inherit it).
_pin() {
  local t
  for t in /proc/"$1"/task/*; do
    taskset -pc "$2" "${t##*/}" >/dev/null 2>&1 || true
  done
}

# _pair_side MODE URI FILE CPU: one random-I/O run of METRICS_SECONDS on
# URI, its client pinned to CPU; writes its IOPS, or "na WHY", to FILE.
_pair_side() {
  local SRV_URI=$2 RAND_SECONDS=$METRICS_SECONDS RAND_PIN=(taskset -c "$4")
  if _rand_once "$1" "$3.out"; then echo "$R_IOPS" >"$3"
  else echo "na $R_WHY" >"$3"; fi
}
