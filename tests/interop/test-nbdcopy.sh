#!/usr/bin/env bash
# nbdcopy into and out of snbd-server with checksums: a 256 MiB random
# image through memory and file exports, with 1 and 4 connections (many
# requests in flight), and a sparse image whose holes must survive.
. "$SNBD_SRC/tests/lib/common.sh"
require nbdcopy nbdinfo b2sum
require_server

MiB=1048576
make_random_image rand.img 256
want=$(sum_file rand.img)

# copy_both_ways CONNS: file -> export -> file, each checked by checksum.
# Runs inside serve; nbdcopy only uses several connections when the server
# advertises multi-conn, so that is asserted first.
copy_both_ways() {
  local conns=$1
  nbdinfo --can multi-conn "$uri" || fail "multi-conn not advertised"
  nbdcopy --connections="$conns" --requests=16 --request-size=262144 \
    rand.img "$uri"
  rm -f "out$conns.img"
  nbdcopy --connections="$conns" --requests=16 "$uri" "out$conns.img"
  expect_eq "checksum of copy out ($conns conn)" \
    "$want" "$(sum_file "out$conns.img")"
}
fn=$(declare -f copy_both_ways)

for conns in 1 4; do
  serve memory:256M -- "want=$want; $fn; copy_both_ways $conns"
  echo "memory export, $conns connection(s): ok"
done

# File export: the backing file itself must hold the data afterwards.
for conns in 1 4; do
  rm -f disk.img; truncate -s 256M disk.img
  serve "file:$PWD/disk.img" -- "want=$want; $fn; copy_both_ways $conns"
  expect_eq "checksum of backing file ($conns conn)" "$want" "$(sum_file disk.img)"
  echo "file export, $conns connection(s): ok"
done
rm -f out*.img disk.img

# Sparse image (data at MiB 0, 5, 6, 63): after nbdcopy the memory export
# must read back identically and report the untouched ranges as holes, and
# a copy out must come back equal (and sparse, since the holes are seen
# through base:allocation).
make_sparse_image sparse.img 64
swant=$(sum_file sparse.img)
serve memory:64M -- '
  nbdcopy --connections=4 sparse.img "$uri"
  nbdinfo --map --json "$uri" >map.json
  expect_eq "checksum of sparse export" '"$swant"' "$(sum_export "$uri")"
  rm -f sparse-out.img
  nbdcopy "$uri" sparse-out.img
'
expect_eq "checksum of sparse copy out" "$swant" "$(sum_file sparse-out.img)"
"$PYTHON" - map.json <<'EOF'
import json, sys
M = 1 << 20
ext = json.load(open(sys.argv[1]))
def types(lo, hi):
    return {e["type"] for e in ext
            if max(lo, e["offset"]) < min(hi, e["offset"] + e["length"])}
for lo, hi in ((0, M), (5 * M, 7 * M), (63 * M, 64 * M)):
    assert types(lo, hi) == {0}, f"data [{lo},{hi}) reported as {types(lo, hi)}"
for lo, hi in ((1 * M, 5 * M), (7 * M, 63 * M)):
    # nbdcopy skips or zeroes holes; either way a sparse RAM export must
    # not have allocated them (allow chunking up to 4 MiB at the edges).
    lo4, hi4 = (lo + 4 * M - 1) // (4 * M) * 4 * M, hi // (4 * M) * 4 * M
    if lo4 < hi4:
        assert types(lo4, hi4) == {3}, \
            f"hole [{lo4},{hi4}) reported as {types(lo4, hi4)}: {ext}"
print("sparse map ok")
EOF
alloc=$(( $(stat -c %b sparse-out.img) * $(stat -c %B sparse-out.img) ))
[ "$alloc" -lt $((32 * MiB)) ] ||
  fail "copy out of a sparse export is not sparse: $alloc bytes allocated"
echo "nbdcopy: all checks passed"
