#!/usr/bin/env bash
# nbdinfo against snbd-server: plain output, --json, --list, --map (memory
# and file exports), --can / --is on writable and read-only exports.
. "$SNBD_SRC/tests/lib/common.sh"
require nbdinfo nbdcopy
require_server

MiB=1048576

# Plain output and --json of a 64 MiB writable memory export.
serve memory:64M -- '
  nbdinfo "$uri" >plain.txt
  grep -q "export-size: 67108864" plain.txt ||
    fail "nbdinfo: no export-size 67108864 in: $(cat plain.txt)"
  grep -q "base:allocation" plain.txt ||
    fail "nbdinfo: base:allocation context missing: $(cat plain.txt)"
  nbdinfo --json "$uri" >info.json
'
"$PYTHON" - info.json <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["protocol"] == "newstyle-fixed", d["protocol"]
assert d["structured"] is True, "structured replies not negotiated"
assert d["TLS"] is False
(e,) = d["exports"]
assert e["export-name"] == "", e["export-name"]
assert e["export-size"] == 64 * 1048576, e["export-size"]
assert e["is_read_only"] is False
for cap in ("can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero",
            "can_cache", "can_df", "can_multi_conn"):
    assert e.get(cap) is True, f"{cap} = {e.get(cap)!r}"
assert "base:allocation" in e["contexts"], e["contexts"]
EOF

# --can / --is: exit 0 means true, 2 means false (nbdinfo(1)).
check_can() { # EXPECTED_RC FLAG... URI
  local want=$1 uri=${*: -1} rc
  shift
  rc=0; nbdinfo "${@:1:$#-1}" "$uri" || rc=$?
  expect_eq "nbdinfo ${*:1:$#-1}" "$want" "$rc"
}
serve memory:16M -- '
  '"$(declare -f check_can)"'
  for c in trim zero flush fua multi-conn cache fast-zero df; do
    check_can 0 --can "$c" "$uri"
  done
  check_can 0 --can write "$uri"
  check_can 2 --is readonly "$uri"
'
serve memory:16M,readonly -- '
  '"$(declare -f check_can)"'
  check_can 0 --is readonly "$uri"
  check_can 2 --can write "$uri"
  check_can 2 --can trim "$uri"
  check_can 2 --can zero "$uri"
'
serve -r memory:16M -- '
  '"$(declare -f check_can)"'
  check_can 0 --is readonly "$uri"
'

# --list: two named exports with descriptions and different sizes.
serve 'one=memory:1M,description=First disk' \
      'two=memory:2M,description=Second disk' -- '
  nbdinfo --list --json "$uri" >list.json
  nbdinfo --list "$uri" >list.txt
'
grep -q 'description: Second disk' list.txt ||
  fail "nbdinfo --list: description missing: $(cat list.txt)"
"$PYTHON" - list.json <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
got = {e["export-name"]: e for e in d["exports"]}
for name, desc, size in (("one", "First disk", 1 << 20),
                         ("two", "Second disk", 2 << 20)):
    assert name in got, f"export {name!r} not listed: {sorted(got)}"
    assert got[name].get("description") == desc, got[name]
    assert got[name]["export-size"] == size, got[name]
EOF

# --map of a memory export after writes: data where written, holes where
# not (checked far enough from writes that any chunking up to 4 MiB in
# the server still leaves a hole).  MAP_CHECK is "OFF LEN TYPE..." lines.
map_check() { # MAPJSON CHECKS
  "$PYTHON" - "$1" "$2" <<'EOF'
import json, sys
ext = json.load(open(sys.argv[1]))
pos = 0
for e in ext:
    assert e["offset"] == pos, f"extents not contiguous at {pos}: {e}"
    pos += e["length"]
for line in sys.argv[2].split(";"):
    off, length, want = (int(x) for x in line.split())
    for e in ext:
        lo, hi = max(off, e["offset"]), min(off + length, e["offset"] + e["length"])
        if lo < hi and e["type"] != want:
            sys.exit(f"[{off},{off + length}) should be type {want}, "
                     f"but [{lo},{hi}) is {e['type']} ({e['description']})")
print("map ok:", sys.argv[2])
EOF
}
serve memory:64M -- '
  nbdsh -u "$uri" -c "
h.pwrite(b\"A\" * 1048576, 0)
h.pwrite(b\"B\" * 1048576, 8 * 1048576)
h.pwrite(b\"C\" * 4096, 20 * 1048576 + 4096)
"
  nbdinfo --map --json "$uri" >map.json
  nbdinfo --map=base:allocation --totals "$uri" >totals.txt
'
cat map.json
map_check map.json "0 $MiB 0; $((8*MiB)) $MiB 0; $((20*MiB+4096)) 4096 0;
  $((4*MiB)) $((4*MiB)) 3; $((12*MiB)) $((8*MiB)) 3; $((24*MiB)) $((40*MiB)) 3"
size=$("$PYTHON" -c 'import json,sys; print(sum(e["length"] for e in json.load(open(sys.argv[1]))))' map.json)
expect_eq "sum of --map extent lengths" $((64*MiB)) "$size"

# --map of a sparse file export: SEEK_DATA/SEEK_HOLE must show through.
make_sparse_image sparse.img 16
serve "file:$PWD/sparse.img" -- '
  nbdinfo --map --json "$uri" >fmap.json
  nbdinfo --json "$uri" >finfo.json
'
cat fmap.json
map_check fmap.json "0 $MiB 0; $((5*MiB)) $((2*MiB)) 0; $((15*MiB)) $MiB 0;
  $((1*MiB)) $((4*MiB)) 3; $((7*MiB)) $((8*MiB)) 3"
"$PYTHON" -c '
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
assert e["export-size"] == 16 << 20, e["export-size"]' finfo.json
echo "nbdinfo: all checks passed"
