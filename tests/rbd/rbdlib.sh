# shellcheck shell=bash
# Helpers for the RBD tests (tests/rbd/test-rbd-*.sh), after common.sh:
#
#   rbd_require             skip unless the Ceph tools are there and
#                           snbd-server was built with the rbd: backend
#   rbd_cluster_start       start the private cluster in $PWD/ceph
#                           (tests/lib/ceph-cluster.sh), stopped at exit,
#                           and export its variables (CEPH_CONF, ...)
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

rbd_cluster_start() {
  local cluster=$SNBD_SRC/tests/lib/ceph-cluster.sh
  # shellcheck disable=SC2064
  trap "\"$cluster\" stop \"$PWD/ceph\" || true" EXIT
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
