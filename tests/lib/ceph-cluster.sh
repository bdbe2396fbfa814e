#!/usr/bin/env bash
# A private single-node Ceph cluster (one monitor, one OSD) for the RBD
# tests, everything under one directory, reachable on 127.0.0.1 only.
#
#   ceph-cluster.sh start DIR      make and start the cluster; prints the
#                                  variables below (also in DIR/env)
#   ceph-cluster.sh stop DIR [--keep]
#                                  stop both daemons, wait until they are
#                                  gone, remove DIR (--keep: leave it)
#   ceph-cluster.sh stop-osd DIR   stop the OSD only; its data is kept
#   ceph-cluster.sh start-osd DIR  start it again; returns once it serves
#
# In a test (tests/rbd/test-ceph-cluster.sh is the example):
#
#   cluster=$SNBD_SRC/tests/lib/ceph-cluster.sh
#   trap '"$cluster" stop "$PWD/ceph"' EXIT
#   "$cluster" start "$PWD/ceph" >/dev/null || fail "no cluster"
#   . "$PWD/ceph/env"
#   rbd --id "$CEPH_SNBD_ID" --keyring "$CEPH_SNBD_KEYRING" create ...
#
# By hand: `tests/lib/ceph-cluster.sh start /tmp/c && . /tmp/c/env`, then
# `ceph -s`, `rbd ls "$CEPH_POOL"` (as client.admin, whose keyring
# ceph.conf names); `tests/lib/ceph-cluster.sh stop /tmp/c` when done.
#
# Variables in DIR/env (all exported):
#   CEPH_CONF           DIR/ceph.conf; librados and the ceph tools read it
#   CEPH_POOL           the RBD pool (rbd): size 1, `rbd pool init` done
#   CEPH_SNBD_ID        snbd: the cephx user made for snbd, with caps
#                       mon 'profile rbd' osd 'profile rbd pool=rbd'
#   CEPH_SNBD_KEYRING   its keyring.  ceph.conf does NOT name it, so a
#                       client acting as client.snbd must be given it
#                       (that is what tests of ceph-id/ceph-keyring need)
#   CEPH_ADMIN_ID       admin
#   CEPH_ADMIN_KEYRING  client.admin's keyring (also named in ceph.conf)
#   CEPH_MON_ADDR       127.0.0.1:PORT, the monitor (messenger v2 only)
#
# Choices, and why:
#  - Loopback only: every address is 127.0.0.1.  The monitor's port is a
#    free one picked at start, and the OSD's ports come from a free range
#    of 16 picked at start (ms_bind_port_min/max), so a real Ceph on this
#    host (3300, 6789, 6800-7300) and a second test cluster do not collide.
#    Only messenger v2 is bound: librbd 16.2 speaks it, and it halves the
#    ports.
#  - No manager daemon: RBD I/O does not need one, and starting its Python
#    modules costs seconds of CPU.  `ceph -s` therefore reports HEALTH_WARN
#    (no mgr) and PG states as unknown; nothing here relies on them.
#  - The OSD uses memstore (osd data in memory, memstore_device_bytes 3 GiB,
#    far above what the tests write: on a full OSD, writes wait until
#    rados_osd_op_timeout and then fail with ETIMEDOUT, never ENOSPC;
#    measured with 256 MiB, full after 293 MiB).  CEPH_CLUSTER_MEMSTORE_BYTES
#    overrides the size, for a test of a full cluster.  The OSD notices it
#    is full in its heartbeat, every 0.5 s + up to osd_heartbeat_interval
#    (Ceph's default 6 s): a fast client writes gigabytes past the size in
#    that time (one CI run wrote a whole 2 GiB image into 256 MiB).
#    CEPH_CLUSTER_OSD_HEARTBEAT sets the interval (seconds) for such a test.
#  - Memstore writes its whole content to files in its data directory when
#    the store is unmounted and reads it back on mount, so a clean stop
#    keeps the data.  Ceph 16.2's default osd_fast_shutdown=true skips that
#    unmount (the OSD exits at once), so it is turned off here.  Measured
#    on this 2-core machine (shared, load 2-8): start takes 18-25 s,
#    stop-osd 1-5 s, start-osd 5-13 s, and an image written before stop-osd
#    reads back identical after start-osd (tests/rbd/test-ceph-cluster.sh
#    checks it every run).  Bluestore on a sparse file or SIGSTOP were not
#    needed.  A SIGKILLed OSD (after the stop bound) would lose its data;
#    stop-osd fails loudly in that case.
#  - The daemons run in the foreground (-f) as children started here, so
#    their pids are known at once and written to DIR/pids/; stopping goes
#    by those pids only (checked against /proc/PID/cmdline, which names
#    DIR/ceph.conf, so a recycled pid is never signalled), never by name.
#  - Every wait is bounded: start fails after CEPH_CLUSTER_TIMEOUT seconds
#    (60 by default) with the tail of the daemon logs; each ceph/rbd
#    command runs under `timeout`; stop sends SIGTERM, then SIGKILL after
#    20 s, and returns only when the processes are gone.
set -euo pipefail

me=$(basename "$0")
deadline_s=${CEPH_CLUSTER_TIMEOUT:-60}
osd_port_count=16

die() { echo "$me: $*" >&2; exit 1; }

usage() {
  echo "usage: $me start DIR | stop DIR [--keep] | stop-osd DIR | start-osd DIR" >&2
  exit 2
}

# Pick the monitor port and the base of the OSD's port range: ports free
# on 127.0.0.1 now (a bind test; a bounded number of tries).
pick_ports() {
  python3 - "$osd_port_count" <<'EOF'
import random, socket, sys
count = int(sys.argv[1])
def free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()
def pick(n):
    for _ in range(200):
        base = random.randrange(20000, 30000 - n)
        if all(free(p) for p in range(base, base + n)):
            return base
    sys.exit("no free port range on 127.0.0.1")
mon = pick(1)
osd = pick(count)
while mon in range(osd, osd + count):
    osd = pick(count)
print(mon, osd)
EOF
}

write_conf() {
  local dir=$1 fsid=$2 mon_port=$3 osd_base=$4
  cat >"$dir/ceph.conf" <<EOF
# Written by tests/lib/ceph-cluster.sh; see its header.
[global]
fsid = $fsid
mon_host = [v2:127.0.0.1:$mon_port]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_msgr2 = true
ms_bind_ipv6 = false
ms_bind_port_min = $osd_base
ms_bind_port_max = $((osd_base + osd_port_count - 1))
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
log_file = $dir/log/\$name.log
admin_socket = $dir/run/\$name.asok
run_dir = $dir/run
crash_dir = $dir/crash
pid_file =
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 2
mon_data_avail_crit = 1
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0

[mon]
mon_data = $dir/mon
keyring = $dir/mon/keyring

[osd]
osd_data = $dir/osd
keyring = $dir/osd/keyring
osd_objectstore = memstore
memstore_device_bytes = ${CEPH_CLUSTER_MEMSTORE_BYTES:-$((3 << 30))}
osd_heartbeat_interval = ${CEPH_CLUSTER_OSD_HEARTBEAT:-6}
osd_fast_shutdown = false

[client.admin]
keyring = $dir/ceph.client.admin.keyring
EOF
}

# ceph CMD...: the ceph tool as client.admin, bounded in time.
ceph_admin() {
  timeout 20 ceph -c "$dir/ceph.conf" --connect-timeout 15 "$@"
}

# as_snbd TOOL ARGS...: an rbd/rados tool as client.snbd, bounded in time.
as_snbd() {
  local tool=$1; shift
  timeout 20 "$tool" -c "$dir/ceph.conf" --id snbd \
    --keyring "$dir/ceph.client.snbd.keyring" "$@"
}

# spawn NAME CMD...: start a daemon in the foreground of a background
# child, its output in DIR/log/NAME.out, its pid in DIR/pids/NAME.
spawn() {
  local name=$1; shift
  "$@" -f -c "$dir/ceph.conf" </dev/null >>"$dir/log/$name.out" 2>&1 &
  echo $! >"$dir/pids/$name"
}

# Seconds left before the start deadline.
time_left() { echo $((deadline - SECONDS)); }

show_logs() {
  local f
  for f in "$dir"/log/*; do
    [ -f "$f" ] || continue
    echo "--- tail of $f" >&2
    tail -n 30 "$f" >&2
  done
}

start_failed() {
  echo "$me: $*" >&2
  show_logs
  stop_daemons || true
  exit 1
}

# retry_until WHAT CMD...: run CMD every half second until it succeeds;
# fail the start (with the logs) once the deadline has passed.
retry_until() {
  local what=$1; shift
  while ! "$@" >/dev/null 2>&1; do
    [ "$(time_left)" -gt 0 ] ||
      start_failed "$what not ready within ${deadline_s}s"
    daemon_alive mon || start_failed "ceph-mon exited"
    sleep 0.5
  done
}

make_keys() {
  ceph-authtool "$dir/ceph.client.admin.keyring" --create-keyring \
    --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
    --cap mgr 'allow *' >/dev/null
  ceph-authtool "$dir/mon.keyring" --create-keyring --gen-key -n mon. \
    --cap mon 'allow *' >/dev/null
  ceph-authtool "$dir/mon.keyring" \
    --import-keyring "$dir/ceph.client.admin.keyring" >/dev/null
}

make_mon() {
  local fsid=$1 mon_port=$2
  monmaptool --create --fsid "$fsid" \
    --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
  ceph-mon -c "$dir/ceph.conf" --mkfs -i a --monmap "$dir/monmap" \
    --keyring "$dir/mon.keyring" >"$dir/log/mkfs-mon.out" 2>&1 ||
    start_failed "ceph-mon --mkfs failed"
}

# Register osd.0 with the monitor under a fresh cephx key, then make its
# (memstore) data directory.
make_osd() {
  local uuid key
  uuid=$(cat /proc/sys/kernel/random/uuid)
  key=$(ceph-authtool --gen-print-key)
  printf '{"cephx_secret": "%s"}\n' "$key" >"$dir/osd-secret.json"
  local id
  id=$(ceph_admin osd new "$uuid" -i "$dir/osd-secret.json") ||
    start_failed "ceph osd new failed"
  rm -f "$dir/osd-secret.json"
  [ "$id" = 0 ] || start_failed "ceph osd new gave id '$id', expected 0"
  mkdir -p "$dir/osd"
  ceph-authtool "$dir/osd/keyring" --create-keyring -n osd.0 \
    --add-key "$key" >/dev/null
  ceph-osd -c "$dir/ceph.conf" -i 0 --mkfs --osd-uuid "$uuid" \
    >"$dir/log/mkfs-osd.out" 2>&1 || start_failed "ceph-osd --mkfs failed"
}

make_pool_and_user() {
  ceph_admin osd pool create rbd 8 8 >/dev/null 2>&1 ||
    start_failed "pool create failed"
  timeout 30 rbd -c "$dir/ceph.conf" pool init rbd ||
    start_failed "rbd pool init failed"
  ceph_admin auth get-or-create client.snbd mon 'profile rbd' \
    osd 'profile rbd pool=rbd' -o "$dir/ceph.client.snbd.keyring" ||
    start_failed "could not make client.snbd"
}

# The cluster serves RBD I/O when client.snbd can create and remove an
# image.
rbd_usable() {
  as_snbd rbd create --size 4M rbd/ceph-cluster-probe &&
    as_snbd rbd rm --no-progress rbd/ceph-cluster-probe
}

osd_is_up() {
  local n
  n=$(ceph_admin osd stat -f json | python3 -c \
    'import json,sys; print(json.load(sys.stdin)["num_up_osds"])') &&
    [ "$n" = 1 ]
}

write_env() {
  local mon_port=$1
  cat >"$dir/env" <<EOF
export CEPH_CONF=$dir/ceph.conf
export CEPH_POOL=rbd
export CEPH_SNBD_ID=snbd
export CEPH_SNBD_KEYRING=$dir/ceph.client.snbd.keyring
export CEPH_ADMIN_ID=admin
export CEPH_ADMIN_KEYRING=$dir/ceph.client.admin.keyring
export CEPH_MON_ADDR=127.0.0.1:$mon_port
EOF
}

cmd_start() {
  command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null &&
    command -v rbd >/dev/null || die "Ceph is not installed (scripts/deps.sh)"
  [ ! -e "$dir/ceph.conf" ] || die "$dir already holds a cluster"
  mkdir -p "$dir"/{log,run,pids,crash,mon}
  deadline=$((SECONDS + deadline_s))
  local ports mon_port osd_base fsid
  ports=$(pick_ports) || die "no free ports"
  read -r mon_port osd_base <<<"$ports"
  fsid=$(cat /proc/sys/kernel/random/uuid)
  write_conf "$dir" "$fsid" "$mon_port" "$osd_base"
  make_keys
  make_mon "$fsid" "$mon_port"
  spawn mon ceph-mon -i a
  retry_until "the monitor" ceph_admin mon stat
  make_osd
  spawn osd ceph-osd -i 0
  make_pool_and_user
  retry_until "RBD I/O" rbd_usable
  write_env "$mon_port"
  cat "$dir/env"
}

# daemon_pid NAME: the pid in DIR/pids/NAME if that process is still one of
# this cluster's daemons (its command line names DIR/ceph.conf).
daemon_pid() {
  local f=$dir/pids/$1 pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null |
    grep -qF -- "$dir/ceph.conf" || return 1
  echo "$pid"
}

daemon_alive() { daemon_pid "$1" >/dev/null; }

# stop_daemon NAME: SIGTERM, wait up to 20 s, then SIGKILL and wait up to
# 5 s more.  Returns 0 once the process is gone (2 if it took SIGKILL).
stop_daemon() {
  local name=$1 pid i rc=0
  pid=$(daemon_pid "$name") || { rm -f "$dir/pids/$name"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    daemon_alive "$name" || break
    sleep 0.1
  done
  if daemon_alive "$name"; then
    echo "$me: $name (pid $pid) ignored SIGTERM for 20 s; SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    rc=2
    for ((i = 0; i < 50; i++)); do
      daemon_alive "$name" || break
      sleep 0.1
    done
    daemon_alive "$name" && die "$name (pid $pid) survived SIGKILL"
  fi
  rm -f "$dir/pids/$name"
  return "$rc"
}

stop_daemons() {
  local rc=0
  stop_daemon osd || rc=$?
  stop_daemon mon || rc=$?
  return "$rc"
}

cmd_stop() {
  local keep=$1
  [ -d "$dir" ] || return 0
  stop_daemons || true
  if [ "$keep" = no ]; then
    rm -rf "$dir"
  fi
}

cmd_stop_osd() {
  [ -f "$dir/ceph.conf" ] || die "no cluster in $dir"
  daemon_alive osd || die "the OSD is not running"
  local rc=0
  stop_daemon osd || rc=$?
  [ "$rc" = 0 ] || die "the OSD needed SIGKILL: its memstore data is lost"
}

cmd_start_osd() {
  [ -f "$dir/ceph.conf" ] || die "no cluster in $dir"
  daemon_alive osd && die "the OSD is already running"
  daemon_alive mon || die "the monitor is not running"
  deadline=$((SECONDS + deadline_s))
  spawn osd ceph-osd -i 0
  retry_until "the OSD" osd_is_up
  retry_until "RBD I/O" as_snbd rbd ls rbd
}

[ $# -ge 2 ] || usage
action=$1
dir=$2
[[ "$dir" = /* ]] || dir=$PWD/$dir
deadline=0
case $action in
  start) cmd_start ;;
  stop)
    case ${3:-} in
      "") cmd_stop no ;;
      --keep) cmd_stop yes ;;
      *) usage ;;
    esac ;;
  stop-osd) cmd_stop_osd ;;
  start-osd) cmd_start_osd ;;
  *) usage ;;
esac
