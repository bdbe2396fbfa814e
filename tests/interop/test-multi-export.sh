#!/usr/bin/env bash
# Several exports on one server: the default export is the first one,
# named exports are separate disks, a read-only file export refuses writes
# and keeps its file intact, descriptions reach nbdinfo, unknown names are
# refused, and -r makes every export read-only.
. "$SNBD_SRC/tests/lib/common.sh"
require nbdinfo nbdcopy qemu-img qemu-io
require_server

make_random_image golden.img 8
golden=$(sum_file golden.img)

serve 'first=memory:16M,description=The first' \
      'second=memory:32M,description=Second one' \
      "ro=file:$PWD/golden.img,readonly,description=Golden image" -- '
  # Sizes tell the exports apart; "" is the first export.
  for e in ":16777216" "first:16777216" "second:33554432" "ro:8388608"; do
    n=${e%%:*} want=${e#*:}
    got=$(nbdinfo --size "$(uri_for "$n")")
    expect_eq "size of export \"$n\"" "$want" "$got"
  done
  nbdinfo "$(uri_for second)" >second.txt
  grep -q "description: Second one" second.txt ||
    fail "description of second not shown: $(cat second.txt)"
  nbdinfo "$(uri_for ro)" | grep -q "description: Golden image" ||
    fail "description of ro not shown"

  # Writing through the default name is writing to "first", not "second".
  qemu-io -f raw -c "write -P 0x61 0 1M" "$(uri_for "")" >/dev/null
  qemu-io -f raw -c "read -P 0x61 0 1M" "$(uri_for first)" >q1.out ||
    fail "default export is not \"first\": $(cat q1.out)"
  qemu-io -f raw -c "read -P 0 0 1M" "$(uri_for second)" >q2.out ||
    fail "write to \"first\" showed up in \"second\": $(cat q2.out)"

  # Read-only export: reads are the file, writes fail.
  nbdinfo --is readonly "$(uri_for ro)" || fail "ro is not read-only"
  nbdinfo --can write "$(uri_for first)" || fail "first is read-only"
  qemu-img compare -f raw -F raw golden.img "$(uri_for ro)" ||
    fail "ro export differs from its file"
  if qemu-io -f raw -c "write -P 0x62 0 4k" "$(uri_for ro)" >q3.out 2>&1 &&
     ! grep -q "failed" q3.out; then
    fail "write to read-only export succeeded: $(cat q3.out)"
  fi

  # Export to export: ro into the bigger second, the rest stays zero.
  nbdcopy "$(uri_for ro)" "$(uri_for second)"
  qemu-img compare -f raw -F raw golden.img "$(uri_for second)" ||
    fail "nbdcopy ro -> second: contents differ"

  # An unknown name is refused.
  if nbdinfo "$(uri_for nope)" >nope.out 2>&1; then
    fail "nbdinfo on an unknown export succeeded: $(cat nope.out)"
  fi
'
expect_eq "checksum of the read-only export's file" "$golden" \
  "$(sum_file golden.img)"

# -r: every export is read-only, whatever its own keys say.
serve -r a=memory:1M "b=file:$PWD/golden.img" -- '
  for n in a b; do
    nbdinfo --is readonly "$(uri_for $n)" || fail "-r: $n is writable"
  done
'
echo "multi-export: all checks passed"
