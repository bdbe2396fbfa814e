#!/usr/bin/env bash
# qemu-img (info, convert both ways, compare, map) and qemu-io (write,
# read, discard, write -z, FUA, all with -P pattern checks) against
# snbd-server's memory and file exports.  qemu's NBD URL for a Unix socket
# is nbd+unix:///EXPORT?socket=PATH.
. "$SNBD_SRC/tests/lib/common.sh"
require qemu-img qemu-io
require_server

make_random_image src.img 64

# qio URL CMD...: qemu-io on URL, one -c per command; qemu-io exits
# non-zero when a command (including a -P verification) fails.
qio() {
  local u=$1 c args=(); shift
  for c in "$@"; do args+=(-c "$c"); done
  qemu-io -f raw "${args[@]}" "$u" >qio.out 2>&1 ||
    fail "qemu-io $* on $u: $(cat qio.out)"
  if grep -q 'Pattern verification failed\|failed:' qio.out; then
    fail "qemu-io $*: $(cat qio.out)"
  fi
}
# The same, where the command must fail.
qio_fails() {
  local u=$1; shift
  if qemu-io -f raw -c "$1" "$u" >qio.out 2>&1 &&
     ! grep -q 'Pattern verification failed\|failed:' qio.out; then
    fail "qemu-io -c '$1' should have failed: $(cat qio.out)"
  fi
}
fns="$(declare -f qio qio_fails)"

# qemu-img info / convert / compare on a memory export.
serve memory:64M -- "$fns"'
  u="nbd+unix:///?socket=$unixsocket"
  qemu-img info --output=json "$u" >info.json
  "$PYTHON" -c "import json,sys; s=json.load(open(\"info.json\"))[\"virtual-size\"]; sys.exit(s != 64 << 20 and f\"virtual-size {s}\")"

  qemu-img convert -n -f raw -O raw src.img "$u"
  qemu-img compare -f raw -F raw src.img "$u" ||
    fail "qemu-img compare: export differs from src.img after convert"
  rm -f back.img
  qemu-img convert -f raw -O raw "$u" back.img
  cmp src.img back.img || fail "convert out: back.img differs from src.img"

  # One changed sector must make compare fail, at the right offset.
  qio "$u" "write -P 0x5a 3M 4k"
  rc=0; qemu-img compare -f raw -F raw src.img "$u" >cmp.out 2>&1 || rc=$?
  expect_eq "qemu-img compare exit status after a change" 1 "$rc"
  grep -q "mismatch at offset 3145728" cmp.out ||
    fail "qemu-img compare: wrong mismatch report: $(cat cmp.out)"
'
echo "qemu-img info/convert/compare: ok"

# qemu-io pattern checks, on a memory export and on a file export.
qio_suite() { # URL memory|file
  local u=$1
  qio "$u" "write -P 0xab 0 1M" "read -P 0xab 0 1M"
  # The request must land at its offset, and not spill over.
  qio "$u" "write -P 0x11 1M 64k" "read -P 0xab 0 1M" "read -P 0x11 1M 64k" \
           "read -P 0 1088k 64k"
  # FUA write.
  qio "$u" "write -f -P 0x22 2M 128k" "read -P 0x22 2M 128k"
  # write -z (WRITE_ZEROES) inside written data, also unaligned.
  qio "$u" "write -P 0xcd 4M 1M" "write -z 4M 512k" "read -P 0 4M 512k" \
           "read -P 0xcd 4608k 512k"
  qio "$u" "write -z 4718692 1000" "read -P 0xcd 4718592 100" \
           "read -P 0 4718692 1000" "read -P 0xcd 4719692 3000"
  # write -z -u (may punch a hole) still reads back zeroes.
  qio "$u" "write -P 0xee 6M 1M" "write -z -u 6M 1M" "read -P 0 6M 1M"
  # discard: snbd's memory and file backends free the range (they
  # advertise TRIM and report holes), so it reads back as zeroes; the data
  # around it stays.
  qio "$u" "write -P 0x77 8M 3M" "discard 9M 1M" "read -P 0x77 8M 1M" \
           "read -P 0 9M 1M" "read -P 0x77 10M 1M"
  # Out of range must fail, not wrap around.
  qio_fails "$u" "read 64M 512"
  qio_fails "$u" "write -P 1 64M 512"
  # qemu-img map sees the discarded and zeroed ranges as zero.
  qemu-img map -f raw --output=json "$u" >map.json
  "$PYTHON" - map.json "$2" <<'EOF'
import json, sys
M = 1 << 20
m = json.load(open(sys.argv[1]))
def at(off):
    return next(e for e in m if e["start"] <= off < e["start"] + e["length"])
for off in (0, 1 * M, 2 * M, 4 * M + 512 * 1024, 8 * M, 10 * M):
    assert at(off)["data"] and not at(off)["zero"], f"{off}: {at(off)}"
# Discarded (9M) and never written (32M) ranges are holes.  A range
# zeroed by "write -z -u" (6M) is one too on sparse RAM; a file backend
# may use FALLOC_FL_ZERO_RANGE, which the file system can report as data.
zeroed = (9 * M, 6 * M, 32 * M) if sys.argv[2] == "memory" else (9 * M, 32 * M)
for off in zeroed:
    assert at(off)["zero"], f"{off} should read as zero: {at(off)}"
EOF
}
fns="$fns; $(declare -f qio_suite)"
serve memory:64M -- "$fns"'; qio_suite "nbd+unix:///?socket=$unixsocket" memory'
echo "qemu-io on memory export: ok"

truncate -s 64M disk.img
serve "disk=file:$PWD/disk.img" -- "$fns"'
  qio_suite "nbd+unix:///disk?socket=$unixsocket" file
  # The --image-opts spelling, with the export name.
  qemu-io --image-opts -c "read -P 0x22 2M 128k" \
    "driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=$unixsocket,file.export=disk" \
    >opts.out 2>&1 || fail "qemu-io --image-opts: $(cat opts.out)"
'
# The backing file holds what was written through the export.
qemu-io -f raw -c 'read -P 0xab 0 1M' -c 'read -P 0x22 2M 128k' \
  -c 'read -P 0 9M 1M' -c 'read -P 0x77 10M 1M' disk.img >file.out 2>&1 ||
  fail "backing file content: $(cat file.out)"
grep -q 'Pattern verification failed' file.out && fail "$(cat file.out)"
echo "qemu: all checks passed"
