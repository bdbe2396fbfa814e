#!/usr/bin/env bash
# make bench: snbd-server side by side with nbdkit (memory, file), qemu-nbd,
# nbd-server and the do-nothing ceiling (nbdkit null), on the same data in
# /dev/shm, over loopback TCP, a Unix socket, TLS X.509 (client
# certificates, peer verified) and TLS-PSK, driven by the same clients.
# Prints one Markdown table and writes it, with the machine, versions and
# exact command lines, to bench/RESULTS.md (see bench/README.md).
#
#   bench/run.sh [BUILD_DIR]
#
# Settings (environment):
#   BENCH_RUNS=3          runs per figure (the table shows the median)
#   BENCH_SIZE=2G         bytes per sequential copy (K/M/G suffixes)
#   BENCH_SECONDS=2       seconds per random-I/O run
#   BENCH_HS_SECONDS=2    seconds per handshake loop
#   BENCH_CONNS=1000      idle connections held for the memory figure
#   BENCH_SCALE_CONNS=10000  idle connections snbd holds (TCP) while a new
#                         client copies BENCH_SIZE in (0: skip)
#   BENCH_SERVERS="snbd nbdkit-memory nbdkit-file qemu-nbd nbd-server nbdkit-null"
#                         (snbd-memory: snbd's memory backend, also known)
#   BENCH_TRANSPORTS="tcp unix x509 psk rbd"
#                         (rbd: snbd's rbd: backend and qemu-nbd's rbd
#                         driver on images in a Ceph cluster started here)
#   BENCH_RBD_SIZE=512M   bytes per sequential copy on rbd (the cluster
#                         keeps every image in RAM)
#   BENCH_OUT=bench/RESULTS.md  (and every raw figure in bench/RESULTS.tsv)
#   BENCH_METRICS_PAIRS=10  pairs of runs of snbd with --metrics against
#                         snbd, at the same time on one CPU (0: skip)
#   BENCH_METRICS_SECONDS=1 seconds per run of such a pair
#   BENCH_QUICK=1         smoke test: 64M copies, 1 run, 1 s loops,
#                         50 connections, short limits (figures meaningless)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$top/$build ;; esac

quick=${BENCH_QUICK:-0}
if [ "$quick" = 1 ]; then
  RUNS=${BENCH_RUNS:-1} SIZE_ARG=${BENCH_SIZE:-64M}
  RAND_SECONDS=${BENCH_SECONDS:-1} HS_SECONDS=${BENCH_HS_SECONDS:-1}
  CONNS=${BENCH_CONNS:-50} SCALE_CONNS=${BENCH_SCALE_CONNS:-200}
  METRICS_PAIRS=${BENCH_METRICS_PAIRS:-2}
else
  RUNS=${BENCH_RUNS:-3} SIZE_ARG=${BENCH_SIZE:-2G}
  RAND_SECONDS=${BENCH_SECONDS:-2} HS_SECONDS=${BENCH_HS_SECONDS:-2}
  CONNS=${BENCH_CONNS:-1000} SCALE_CONNS=${BENCH_SCALE_CONNS:-10000}
  METRICS_PAIRS=${BENCH_METRICS_PAIRS:-10}
fi
METRICS_SECONDS=${BENCH_METRICS_SECONDS:-1}
RAND_PIN=()   # a command prefix for the random-I/O client (workloads.sh)
SERVERS=${BENCH_SERVERS:-snbd nbdkit-memory nbdkit-file qemu-nbd nbd-server nbdkit-null}
TRANSPORTS=${BENCH_TRANSPORTS:-tcp unix x509 psk rbd}
RBD_SIZE_ARG=${BENCH_RBD_SIZE:-$([ "$quick" = 1 ] && echo 64M || echo 512M)}
OUT=${BENCH_OUT:-$top/bench/RESULTS.md}
SIZE=$(numfmt --from=iec "$SIZE_ARG") || { echo "bad BENCH_SIZE" >&2; exit 2; }
RBD_SIZE=$(numfmt --from=iec "$RBD_SIZE_ARG") || { echo "bad BENCH_RBD_SIZE" >&2; exit 2; }
[ "$RBD_SIZE" -ge 1048576 ] && [ $((RBD_SIZE % 1048576)) = 0 ] ||
  { echo "BENCH_RBD_SIZE must be a multiple of 1M" >&2; exit 2; }
[ "$SIZE" -ge 1048576 ] || { echo "BENCH_SIZE must be at least 1M" >&2; exit 2; }
if ! [ "$RUNS" -ge 1 ] || ! [ "$CONNS" -ge 1 ] || ! [ "$SCALE_CONNS" -ge 0 ] ||
   ! [ "$METRICS_PAIRS" -ge 0 ]; then
  echo "BENCH_RUNS and BENCH_CONNS must be positive integers" >&2; exit 2
fi
# Bounds on every client: a copy slower than 10 MiB/s is a failure.
COPY_TIMEOUT=$((60 + SIZE / 10485760))
HOLD_TIMEOUT=$((60 + CONNS / 20))
SCALE_TIMEOUT=$((60 + SCALE_CONNS / 20 + COPY_TIMEOUT))

SNBD_SERVER=$build/server/snbd-server
# BENCH_PREV=BUILD_DIR: the build directory of an earlier snbd tree, served
# as the row snbd-prev beside snbd (file backend, same options), so that a
# change is measured against the tree before it in one interleaved run.
SNBD_PREV_SERVER=""
if [ -n "${BENCH_PREV:-}" ]; then
  SNBD_PREV_SERVER=$(cd "$BENCH_PREV" && pwd)/server/snbd-server
  [ -x "$SNBD_PREV_SERVER" ] || { echo "bench: no $SNBD_PREV_SERVER" >&2; exit 2; }
  case " $SERVERS " in
    *" snbd-prev "*) ;;
    *) SERVERS="$SERVERS snbd-prev" ;;
  esac
fi
SNBD_COPY=$build/tools/snbd-copy
BIN=$build/bench
PY=/usr/bin/python3 # Debian's (the one on PATH may lack modules)
PSK_USER=bench

. "$top/tests/lib/tls.sh"
. "$top/bench/lib/proc.sh"
. "$top/bench/lib/servers.sh"
. "$top/bench/lib/workloads.sh"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

[ -x "$SNBD_SERVER" ] || { echo "no $SNBD_SERVER: make build first" >&2; exit 1; }
for c in nbdcopy fio certtool psktool ss numfmt "$PY"; do
  command -v "$c" >/dev/null || { echo "bench: $c is missing (make deps)" >&2; exit 1; }
done
make -s -C "$top/bench" "O=$BIN" "SNBD_BUILD=$build" >&2

# 1,000 (and 10,000) connections need descriptors on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

W=$(mktemp -d /dev/shm/snbd-bench.XXXXXX)
on_exit() {
  bench_cleanup
  rbd_cluster_stop
  rm -rf "$W"
}
trap on_exit EXIT
trap 'exit 130' INT TERM
LOGDIR=$W/logs PKI=$W/pki PSK_DIR=$W/psk DISK=$W/disk.img SRC=$W/src.img
RESULTS=$W/results.tsv
mkdir -p "$LOGDIR" "$PSK_DIR"
# The source and one image per server are in /dev/shm at once (at least
# two: the metrics pairs, wl_metrics_pairs, run two servers).
nimg=$(wc -w <<<"$SERVERS")
[ "$nimg" -ge 2 ] || nimg=2
need=$(( SIZE * (nimg + 1) ))
have=$(df --output=avail -B1 /dev/shm | tail -1)
if [ "$need" -gt "$have" ]; then
  echo "bench: /dev/shm has $(numfmt --to=iec "$have") free, the run needs $(numfmt --to=iec "$need") (BENCH_SIZE x (servers + 1))" >&2
  exit 1
fi
: >"$RESULTS"
started=$(date +%s)

meta() { printf -- '-\t-\tmeta:%s\t%s\n' "$1" "$2" >>"$RESULTS"; }

log "work dir $W; settings: runs=$RUNS size=$SIZE_ARG rand=${RAND_SECONDS}s handshakes=${HS_SECONDS}s conns=$CONNS"
"$BIN/mkdata" "$SRC" "$SIZE"
make_x509 "$PKI"
make_psk "$PSK_DIR/keys.psk" "$PSK_USER"

log "physical limits (bench/limits.sh)"
BENCH_RUNS=$RUNS "$top/bench/limits.sh" "$build" "$RESULTS" >&2

# ---- machine, versions, settings ----
record_meta() {
  meta nproc "$(nproc)"
  meta cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
  meta aes "$(grep -qw aes /proc/cpuinfo && echo yes || echo no)"
  meta memory "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  meta kernel "$(uname -r)"
  meta loadavg "$(cut -d' ' -f1-3 /proc/loadavg)"
  meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
  meta v_snbd "$("$SNBD_SERVER" --version 2>&1 | head -1)"
  meta v_nbdkit "$(nbdkit --version 2>&1 | head -1)"
  meta v_qemu "$(qemu-nbd --version 2>&1 | head -1)"
  meta v_nbd_server "$(nbd-server -V 2>&1 | grep -m1 -o 'version [0-9.]*')"
  meta v_libnbd "$(nbdcopy --version 2>&1 | head -2 | tr '\n' ' ')"
  meta v_fio "$(fio --version 2>&1)"
  meta v_gnutls "$(gnutls-cli --version 2>&1 | head -1)"
  meta v_ceph "$(ceph --version 2>&1 | cut -d' ' -f1-3)"
  meta settings "BENCH_RUNS=$RUNS BENCH_SIZE=$SIZE_ARG BENCH_RBD_SIZE=$RBD_SIZE_ARG BENCH_SECONDS=$RAND_SECONDS BENCH_HS_SECONDS=$HS_SECONDS BENCH_CONNS=$CONNS BENCH_SCALE_CONNS=$SCALE_CONNS BENCH_METRICS_PAIRS=$METRICS_PAIRS BENCH_METRICS_SECONDS=$METRICS_SECONDS BENCH_QUICK=$quick"
  meta size "$SIZE"
  meta rbd_size "$RBD_SIZE"
  meta conns "$CONNS"
  meta scale_conns "$SCALE_CONNS"
  # The trees the servers were built from (a build directory given to
  # run.sh may be another tree's than this bench's).
  meta git "$(tree_of "$build")"
  [ -z "$SNBD_PREV_SERVER" ] || meta git_prev "$(tree_of "$BENCH_PREV")"
}

# The git commit of the source tree a Meson build directory was made from.
tree_of() {
  local src
  src=$("$PY" -c 'import json, sys
print(json.load(open(sys.argv[1]))["directories"]["source"])' \
    "$1/meson-info/meson-info.json" 2>/dev/null)
  git -C "${src:-/nonexistent}" describe --always --dirty 2>/dev/null || echo unknown
}
record_meta

# The cipher snbd negotiates with libnbd on each TLS transport (from its
# debug log on one short captive run), to pick the right ceiling.
probe_cipher() {
  local t=$1 args uri log=$LOGDIR/cipher-$1.log
  case $t in
    x509) args=(--tls-certificates "$PKI" --tls-verify-peer)
          uri="nbds://127.0.0.1:\$port/?tls-certificates=$PKI" ;;
    psk) args=(--tls-psk "$PSK_DIR/keys.psk")
         uri="nbds://$PSK_USER@127.0.0.1:\$port/?tls-psk-file=$PSK_DIR/keys.psk" ;;
  esac
  timeout -k 5 30 "$SNBD_SERVER" -v -p 0 -i 127.0.0.1 "${args[@]}" memory:1M \
    --run "nbdinfo --size \"$uri\" >/dev/null" >"$log" 2>&1 || true
  sed -n 's/.*: TLS \(TLS[0-9.]*\) \([A-Z0-9-]*\).*/\1 \2/p' "$log" | head -1
}
for t in x509 psk; do
  case " $TRANSPORTS " in *" $t "*) meta "cipher_$t" "$(probe_cipher "$t")" ;; esac
done

# ---- the client command lines, as run (URI per transport below) ----
meta cmd_write "nbdcopy -- \$W/src.img \$URI"
meta cmd_read "nbdcopy -- \$URI null:"
meta cmd_rbd "the rbd transport: the same clients over a Unix socket; each server's export is an RBD image of BENCH_RBD_SIZE (rbd create) in a one-OSD memstore cluster started by tests/lib/ceph-cluster.sh"
meta cmd_fio "fio --name=rand --ioengine=nbd --uri=\$URI --rw=randread|randwrite --bs=4k --iodepth=32 --numjobs=1 --time_based --runtime=${RAND_SECONDS}s --output-format=json"
meta cmd_randio "build/bench/randio [-w] -d 32 -b 4096 -t $RAND_SECONDS \$URI"
meta cmd_handshakes "build/bench/handshakes -t $HS_SECONDS \$URI"
meta cmd_holdconns "build/bench/holdconns -n $CONNS -t $HOLD_TIMEOUT \$URI"
meta cmd_scale "build/bench/holdconns -n $SCALE_CONNS -t $SCALE_TIMEOUT \$URI & nbdcopy -- \$W/src.img \$URI"
meta cmd_snbd_copy "snbd-copy \$W/src.img \$URI; snbd-copy \$URI null:"
meta cmd_metrics_pairs "taskset -c $(($(nproc) - 1)) on every thread of snbd and of snbd --metrics 127.0.0.1:\$MPORT; then $METRICS_PAIRS + 1 times each mode, at once: taskset -c $(($(nproc) - 1)) fio (or randio) as above on each, for ${METRICS_SECONDS}s"

# All servers of a transport run at once, each on its own image, so the
# runs can go in rounds: round r does one run of each workload on every
# server before round r + 1 starts, and a slow spell of this shared
# machine falls on all servers alike instead of on one server's runs.
# Memory is measured first, on each fresh server, then an unrecorded
# write fills its export (wl_warm); the 10,000-connection test comes last.
declare -A S_PID S_URI S_SOCK FAILED
use_server() {
  SERVER=$1 SRV_PID=${S_PID[$1]} SRV_URI=${S_URI[$1]} _sock=${S_SOCK[$1]}
}

start_all() {
  local why
  STARTED=()
  for SERVER in $SERVERS; do
    if why=$(server_na "$SERVER" "$TRANSPORT"); then
      rec_na all "$why"; continue
    fi
    DISK=$W/disk-$SERVER.img
    if ! server_start "$SERVER" "$TRANSPORT"; then
      rec_na all "did not start: $(tail -1 "$LOGDIR/$SERVER-$TRANSPORT.log" 2>/dev/null)"
      rm -f "$DISK"
      continue
    fi
    S_PID[$SERVER]=$SRV_PID S_URI[$SERVER]=$SRV_URI S_SOCK[$SERVER]=$_sock
    STARTED+=("$SERVER")
    rec cmd "$SRV_CMD"
    rec uri "$(scrub "$SRV_URI")"
    if [ "$TRANSPORT" = rbd ]; then
      log "$TRANSPORT $SERVER: a warm-up write"   # memory: as on unix
    else
      log "$TRANSPORT $SERVER: memory, $CONNS idle connections; a warm-up write"
      wl_memory || true
    fi
    wl_warm || FAILED[$SERVER:$TRANSPORT:seq]=1
  done
}

stop_all() {
  for SERVER in "${STARTED[@]}"; do
    use_server "$SERVER"
    server_stop
    rm -f "$W/disk-$SERVER.img"
  done
}

run_transport() {
  local round step
  start_all
  for ((round = 1; round <= RUNS; round++)); do
    for step in seq rand handshakes reconnect many snbd_copy; do
      # rbd: handshakes are the unix transport's
      [ "$TRANSPORT" != rbd ] || [ "$step" != handshakes ] || continue
      log "$TRANSPORT round $round/$RUNS: $step"
      for SERVER in "${STARTED[@]}"; do
        [ "$step" != snbd_copy ] || [ "$SERVER" = snbd ] || continue
        [ -z "${FAILED[$SERVER:$TRANSPORT:$step]:-}" ] || continue
        use_server "$SERVER"
        "wl_$step" || FAILED[$SERVER:$TRANSPORT:$step]=1
      done
    done
  done
  if [ "$TRANSPORT" = tcp ] && [ "$SCALE_CONNS" -gt 0 ] && [ -n "${S_PID[snbd]:-}" ]; then
    use_server snbd
    log "$TRANSPORT snbd: $SCALE_CONNS idle connections and a copy"
    wl_scale || true
  fi
  stop_all
  if [ "$TRANSPORT" != rbd ] && [ "$METRICS_PAIRS" -gt 0 ]; then
    log "$TRANSPORT: snbd --metrics against snbd, $METRICS_PAIRS pairs a mode"
    wl_metrics_pairs || true
  fi
}

# rbd: a Ceph cluster for the transport's time only, and copies of
# BENCH_RBD_SIZE from a source of that size.
run_rbd() {
  local size=$SIZE src=$SRC timeout=$COPY_TIMEOUT
  for c in ceph ceph-mon ceph-osd rbd; do
    command -v "$c" >/dev/null || { log "rbd: $c is missing (make deps)"; return 1; }
  done
  log "rbd: starting a Ceph cluster"
  rbd_cluster_start || { log "rbd: the cluster did not start"; return 1; }
  SIZE=$RBD_SIZE SRC=$W/src-rbd.img COPY_TIMEOUT=$((60 + RBD_SIZE / 5242880))
  "$BIN/mkdata" "$SRC" "$SIZE"
  run_transport
  rm -f "$SRC"
  SIZE=$size SRC=$src COPY_TIMEOUT=$timeout
  rbd_cluster_stop
}

for TRANSPORT in $TRANSPORTS; do
  S_PID=() S_URI=() S_SOCK=()
  if [ "$TRANSPORT" = rbd ]; then run_rbd || true; else run_transport; fi
done

meta elapsed "$(( $(date +%s) - started )) s"
meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
log "done in $(( $(date +%s) - started )) s; writing $OUT"
"$PY" "$top/bench/report.py" "$RESULTS" "$OUT"
# Every run's raw figure, in the order measured, beside the report.
cp "$RESULTS" "${OUT%.md}.tsv"
# A failed snbd figure fails `make bench`; an anchor's is only reported.
if grep -Eq $'^snbd(-memory)?\t[^\t]*\tna:' "$RESULTS"; then
  echo "bench: some snbd figures are missing (see the notes in $OUT)" >&2
  exit 1
fi
