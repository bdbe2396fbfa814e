# shellcheck shell=bash
# Helpers for the RBD tests (tests/rbd/test-rbd-*.sh), after common.sh:
#
#   rbd_require             skip unless the Ceph tools are there and
#                           snbd-server was built with the rbd: backend
#   rbd_cluster_start       start the private cluster in $PWD/ceph
#                           (tests/lib/ceph-cluster.sh), stopped at exit,
#                           and export its variables (CEPH_CONF, ...)
#   RBD_PIDS+=(PID)         a background server to stop at exit, before
#                           the cluster (SIGTERM, then SIGKILL after 60 s)
#   gone PID                true once PID has exited (or is a zombie)
#   R ARGS...               rbd as client.snbd (the user the server uses)
#   KEYS                    the export keys for client.snbd
#   data_ranges             stdin: `nbdinfo --map` or `rbd diff` output;
#                           stdout: its data ranges "OFFSET LENGTH", one a
#                           line, adjacent ones merged
rbd_require() {
  require ceph ceph-mon ceph-osd rbd ceph-authtool monmaptool
  require_server
  "$SNBD_SERVER" --help | grep -q ' rbd:POOL' ||
    skip "snbd-server was built without librbd (no rbd: backend)"
}

RBD_PIDS=()

gone() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 0
  [[ $st == Z* ]]
}

# At exit: the servers first, while the cluster still answers their
# final flush and close, then the cluster.
rbd_cleanup() {
  local p i
  for p in "${RBD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${RBD_PIDS[@]}"; do
    for ((i = 0; i < 600; i++)); do gone "$p" && break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  "$SNBD_SRC/tests/lib/ceph-cluster.sh" stop "$RBD_DIR" || true
}

rbd_cluster_start() {
  local cluster=$SNBD_SRC/tests/lib/ceph-cluster.sh
  RBD_DIR=$PWD/ceph
  trap rbd_cleanup EXIT
  "$cluster" start "$PWD/ceph" >cluster.out || fail "the cluster did not start"
  # shellcheck source=/dev/null
  . "$PWD/ceph/env"
  KEYS="ceph-id=$CEPH_SNBD_ID,ceph-keyring=$CEPH_SNBD_KEYRING"
  export KEYS
}

R() {
  timeout 60 rbd --id "$CEPH_SNBD_ID" --keyring "$CEPH_SNBD_KEYRING" "$@"
}

data_ranges() {
  awk '
    /^ *[0-9]/ {
      data = ($3 == "data" || ($3 == 0 && NF >= 3))
      if (!data) next
      off = $1 + 0; len = $2 + 0
      if (n && off == end) { end += len; next }
      if (n) print start, end - start
      start = off; end = off + len; n = 1
    }
    END { if (n) print start, end - start }'
}
