#!/usr/bin/env bash
# Real clients through snbd-server's rbd: backend against a real
# single-node Ceph cluster (tests/lib/ceph-cluster.sh), one cluster for
# every case here:
#  - TLS X.509: nbdcopy in and out with multi-conn (4 connections), the
#    bytes checked against `rbd export` (they are really in Ceph);
#  - TLS PSK: snbd-copy in and out, checked the same way;
#  - qemu-img convert in and out;
#  - nbdinfo --map agrees with `rbd diff` (`--whole-object` with the
#    object map) after writes, zeroes and discards; one BLOCK_STATUS
#    covers at most 64 objects without the object map;
#  - a snapshot export serves the snapshot's bytes after the image changed,
#    is read-only and refuses writes;
#  - two snbd-server processes on one image: one writes and flushes, the
#    other then reads the new bytes;
#  - the keys from a config file's [server] section and --ceph-* options.
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/lib/tls.sh"
. "$SNBD_SRC/tests/rbd/rbdlib.sh"
rbd_require
require nbdcopy nbdinfo qemu-img certtool psktool b2sum

rbd_cluster_start
make_x509 "$PWD/pki" || fail "certtool failed"
make_psk "$PWD/keys.psk" alice >/dev/null || fail "psktool failed"
export PKI=$PWD/pki PSK=$PWD/keys.psk
make_random_image data.img 24
make_random_image data2.img 24
R create "$CEPH_POOL/disk" --size 24M || fail "rbd create"

rbd_sum() {
  rm -f exported.img
  R export --no-progress "$1" exported.img >/dev/null || fail "rbd export $1"
  sum_file exported.img
}

# X.509, nbdcopy with 4 connections (the export offers multi-conn).
serve --tls-certificates "$PKI" "disk=rbd:$CEPH_POOL/disk,$KEYS" -- '
  u="nbds+unix:///disk?socket=$unixsocket&tls-certificates=$PKI"
  nbdinfo --can multi-conn "$u" || fail "no multi-conn"
  nbdcopy --connections=4 --requests=16 data.img "$u"
  nbdcopy --connections=4 "$u" out1.img
' || fail "nbdcopy over X.509 failed"
expect_eq "nbdcopy out" "$(sum_file data.img)" "$(sum_file out1.img)"
expect_eq "rbd export after nbdcopy" "$(sum_file data.img)" \
  "$(rbd_sum "$CEPH_POOL/disk")"

# PSK, snbd-copy (its own multi-conn), FUA-free writes then --flush.
serve --tls-psk "$PSK" "disk=rbd:$CEPH_POOL/disk,$KEYS" -- '
  u="nbds+unix://alice@/disk?socket=$unixsocket&tls-psk-file=$PSK"
  "$SNBD_COPY" --flush data2.img "$u"
  "$SNBD_COPY" "$u" out2.img
' || fail "snbd-copy over PSK failed"
expect_eq "snbd-copy out" "$(sum_file data2.img)" "$(sum_file out2.img)"
expect_eq "rbd export after snbd-copy" "$(sum_file data2.img)" \
  "$(rbd_sum "$CEPH_POOL/disk")"

# qemu-img, both ways.
serve "disk=rbd:$CEPH_POOL/disk,$KEYS" -- '
  u=$(uri_for disk)
  qemu-img convert -n -f raw -O raw data.img "$u"
  qemu-img convert -f raw -O raw "$u" out3.img
' || fail "qemu-img convert failed"
expect_eq "qemu-img out" "$(sum_file data.img)" "$(sum_file out3.img)"
expect_eq "rbd export after qemu-img" "$(sum_file data.img)" \
  "$(rbd_sum "$CEPH_POOL/disk")"

# The allocation map: writes, a zero that may punch, one that may not
# (NO_HOLE: thick), a discard; then nbdinfo --map against rbd diff: with
# the object map (fast-diff, the default) whole objects as `rbd diff
# --whole-object` shows them, without it the OSDs' extents.
map_check() {
  local name=$1 diffarg=$2; shift 2
  R create "$CEPH_POOL/$name" --size 64M "$@" || fail "rbd create $name"
  serve "$name=rbd:$CEPH_POOL/$name,$KEYS" -- '
    u=$(uri_for '"$name"')
    nbdsh -u "$u" -c "
h.pwrite(b\"a\" * 65536, 0)
h.pwrite(b\"b\" * 4096, 20 << 20)
h.pwrite(b\"c\" * (8 << 20), 30 << 20)
h.zero(4 << 20, 32 << 20)
h.zero(1 << 20, 50 << 20, nbd.CMD_FLAG_NO_HOLE)
h.trim(4 << 20, 36 << 20)
h.flush()
"
    nbdinfo --map "$u" >map.txt
  ' || fail "writing $name failed"
  R diff $diffarg "$CEPH_POOL/$name" >diff.txt || fail "rbd diff"
  data_ranges <map.txt >map.ranges
  data_ranges <diff.txt >diff.ranges
  [ -s diff.ranges ] || fail "rbd diff shows no data"
  awk -v a=$((50 << 20)) -v b=$((51 << 20)) '$1 <= a && $1 + $2 >= b' \
    map.ranges | grep -q . || fail "NO_HOLE zero left a hole: $(cat map.txt)"
  expect_eq "$name: nbdinfo --map vs rbd diff $diffarg" \
    "$(cat diff.ranges)" "$(cat map.ranges)"
}
map_check sparse --whole-object
map_check exact "" --image-feature layering,exclusive-lock

# One BLOCK_STATUS request over nearly 4 GiB of a 1 TiB image: without
# fast-diff it covers at most 64 objects (256 MiB), so one request never
# asks the OSDs about thousands of objects; with it, all 4 GiB at once.
R create "$CEPH_POOL/huge" --size 1T --image-feature layering ||
  fail "rbd create huge"
R create "$CEPH_POOL/hugefast" --size 1T || fail "rbd create hugefast"
serve "huge=rbd:$CEPH_POOL/huge,$KEYS" "hugefast=rbd:$CEPH_POOL/hugefast,$KEYS" -- '
  for e in huge hugefast; do
    nbdsh --base-allocation -u "$(uri_for $e)" -c "
total = []
def f(meta, off, ents, err):
    total.append(sum(ents[0::2]))
h.block_status((4 << 30) - 4096, 0, f)
print(sum(total))
" >"$e.covered"
  done
' || fail "block status on a 1 TiB image failed"
expect_eq "one BLOCK_STATUS without fast-diff" $((256 << 20)) \
  "$(cat huge.covered)"
expect_eq "one BLOCK_STATUS with fast-diff" $(((4 << 30) - 4096)) \
  "$(cat hugefast.covered)"

# A snapshot: its bytes after the image changed; read-only.
R snap create "$CEPH_POOL/disk@gold" || fail "rbd snap create"
serve "disk=rbd:$CEPH_POOL/disk,$KEYS" "gold=rbd:$CEPH_POOL/disk@gold,$KEYS" -- '
  nbdcopy data2.img "$(uri_for disk)"
  nbdcopy "$(uri_for gold)" gold.img
  nbdinfo --can read-only "$(uri_for gold)" || fail "snapshot not read-only"
  # not strict: the write reaches the server, which must refuse it
  if nbdsh -c "h.set_strict_mode(0)" -c "h.connect_uri(\"$(uri_for gold)\")" \
       -c "h.pwrite(b\"x\" * 512, 0)" 2>write.err
  then fail "a write to the snapshot succeeded"; fi
  grep -q "write: command failed: Operation not permitted" write.err ||
    fail "snapshot write: $(cat write.err)"
' || fail "snapshot export failed"
expect_eq "snapshot bytes" "$(sum_file data.img)" "$(sum_file gold.img)"
expect_eq "image after the snapshot" "$(sum_file data2.img)" \
  "$(rbd_sum "$CEPH_POOL/disk")"

# Two gateways on one image: B reads it, A writes and flushes, then B
# reads A's bytes (B's librbd has read the range before: nothing stale).
make_random_image data3.img 24
"$SNBD_SERVER" -U "$PWD/a.sock" -P "$PWD/a.pid" \
  "disk=rbd:$CEPH_POOL/disk,$KEYS" 2>a.log &
gw_a=$!
"$SNBD_SERVER" -U "$PWD/b.sock" -P "$PWD/b.pid" \
  "disk=rbd:$CEPH_POOL/disk,$KEYS" 2>b.log &
gw_b=$!
RBD_PIDS+=("$gw_a" "$gw_b")
stop_gateways() {
  kill "$gw_a" "$gw_b"
  wait "$gw_a" || fail "gateway A exit status $?: $(tail -3 a.log)"
  wait "$gw_b" || fail "gateway B exit status $?: $(tail -3 b.log)"
}
wait_for 60 test -S a.sock -a -S b.sock -a -s a.pid -a -s b.pid
nbdcopy "nbd+unix:///disk?socket=$PWD/b.sock" before4.img ||
  fail "gateway B: first read failed"
expect_eq "gateway B before" "$(sum_file data2.img)" "$(sum_file before4.img)"
"$SNBD_COPY" --flush data3.img "nbd+unix:///disk?socket=$PWD/a.sock" ||
  fail "gateway A: copy in failed"
nbdcopy "nbd+unix:///disk?socket=$PWD/b.sock" out4.img ||
  fail "gateway B: copy out failed"
stop_gateways
expect_eq "gateway B reads gateway A's writes" "$(sum_file data3.img)" \
  "$(sum_file out4.img)"

# The keys as [server] defaults in a config file, one export overriding
# ceph-timeout, and as --ceph-* options.
cat >snbd.conf <<CONF
[server]
ceph-id = $CEPH_SNBD_ID
ceph-keyring = $CEPH_SNBD_KEYRING
ceph-timeout = 20
[export disk]
backend = rbd:$CEPH_POOL/disk
ceph-timeout = 25
CONF
serve -c snbd.conf -- 'nbdcopy "$(uri_for disk)" out5.img' ||
  fail "config file keys"
expect_eq "via config file" "$(sum_file data3.img)" "$(sum_file out5.img)"
serve --ceph-id "$CEPH_SNBD_ID" --ceph-keyring "$CEPH_SNBD_KEYRING" \
  "rbd:$CEPH_POOL/disk" -- 'nbdinfo --size "$uri" >size.txt' ||
  fail "--ceph-* options"
expect_eq "size" $((24 << 20)) "$(cat size.txt)"
# An export's key on a backend that does not take it is refused.
expect_fail "$SNBD_SERVER" -U - "memory:1M,ceph-id=x" --run true 2>/dev/null
