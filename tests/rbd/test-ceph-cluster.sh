#!/usr/bin/env bash
# tests/lib/ceph-cluster.sh works end to end, as the RBD tests will use it:
#  - start gives a cluster where client.snbd, with only its own keyring
#    (not named in ceph.conf), creates an image, writes it (rbd import)
#    and reads it back (rbd export) identical;
#  - client.snbd without the keyring is refused (cephx is on);
#  - every daemon listens on 127.0.0.1 only;
#  - stop-osd / start-osd keep the data (the OSD's memstore is saved on a
#    clean stop) and the same image reads back identical afterwards;
#  - stop leaves none of the cluster's daemons running and removes DIR.
. "$SNBD_SRC/tests/lib/common.sh"
require ceph ceph-mon ceph-osd rbd ceph-authtool monmaptool

cluster=$SNBD_SRC/tests/lib/ceph-cluster.sh
dir=$PWD/ceph
trap '"$cluster" stop "$dir" || true' EXIT

"$cluster" start "$dir" >start.out || fail "cluster did not start"
# shellcheck source=/dev/null
. "$dir/env"
mapfile -t pids < <(cat "$dir"/pids/*)
expect_eq "daemons started" 2 "${#pids[@]}"

snbd_rbd() {
  timeout 30 rbd --id "$CEPH_SNBD_ID" --keyring "$CEPH_SNBD_KEYRING" \
    --no-progress "$@"
}

# Only loopback: no listening socket of the cluster's daemons elsewhere.
for pid in "${pids[@]}"; do
  ss -Htlnp | grep "pid=$pid," >listen.txt || fail "pid $pid listens nowhere"
  if grep -v ' 127\.0\.0\.1:' listen.txt; then
    fail "a daemon listens beyond 127.0.0.1"
  fi
done

make_random_image data.img 12
snbd_rbd import data.img "$CEPH_POOL/disk" || fail "rbd import failed"
snbd_rbd export "$CEPH_POOL/disk" back.img || fail "rbd export failed"
expect_eq "data read back" "$(sum_file data.img)" "$(sum_file back.img)"

# cephx: the same user without its keyring must not get in.
expect_fail timeout 30 rbd --id "$CEPH_SNBD_ID" --keyring /dev/null \
  ls "$CEPH_POOL"

"$cluster" stop-osd "$dir" || fail "stop-osd failed"
[ ! -e "$dir/pids/osd" ] || fail "stop-osd left the OSD's pid file"
"$cluster" start-osd "$dir" || fail "start-osd failed"
rm -f back.img
snbd_rbd export "$CEPH_POOL/disk" back.img || fail "export after restart"
expect_eq "data after an OSD restart" "$(sum_file data.img)" \
  "$(sum_file back.img)"

mapfile -t pids < <(cat "$dir"/pids/*)
"$cluster" stop "$dir" || fail "stop failed"
for pid in "${pids[@]}"; do
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir"; then
    fail "daemon $pid still runs after stop"
  fi
done
[ ! -e "$dir" ] || fail "stop left $dir behind"
