#!/usr/bin/env bash
# fio's nbd ioengine (libnbd, many requests in flight) against snbd-server:
# random writes of mixed sizes, then every block read back and verified
# with crc32c, on a memory export and on a file export.
. "$SNBD_SRC/tests/lib/common.sh"
require fio
require_server

# fio_verify URI JSON BS: write 64 MiB at random offsets, then verify all.
fio_verify() {
  fio --name=verify --ioengine=nbd --uri="$1" --rw=randwrite \
      --bsrange="$3" --size=64M --iodepth=32 \
      --verify=crc32c --do_verify=1 --verify_fatal=1 \
      --output-format=json --output="$2" ||
    fail "fio failed on $1: $(cat "$2")"
}
# check_fio JSON: fio ran with no error and moved all 64 MiB both ways.
check_fio() {
  "$PYTHON" - "$1" <<'EOF'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
assert job["error"] == 0, "fio error %d" % job["error"]
w, r = job["write"]["io_bytes"], job["read"]["io_bytes"]
assert w == 64 << 20, "wrote %d bytes" % w
assert r == 64 << 20, "verified %d bytes" % r
print("fio: wrote and verified %d bytes in %d + %d requests"
      % (w, job["write"]["total_ios"], job["read"]["total_ios"]))
EOF
}

serve memory:64M -- "$(declare -f fio_verify); fio_verify \"\$uri\" mem.json 4k-128k"
check_fio mem.json

truncate -s 64M disk.img
serve "file:$PWD/disk.img" -- "$(declare -f fio_verify); fio_verify \"\$uri\" file.json 4k-4k"
check_fio file.json
echo "fio: all checks passed"
