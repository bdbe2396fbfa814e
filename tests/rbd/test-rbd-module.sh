#!/usr/bin/env bash
# The rbd: backend is a module (server/backends/module.c), loaded the
# first time an rbd: export opens; no Ceph cluster is needed here:
#  - a server with no rbd: export maps neither librbd nor librados (linked
#    in, they cost every server 30 shared libraries and 19 MB resident);
#  - an rbd: export loads the module into the real snbd-server: the
#    refusal for an unreadable ceph-conf comes from rbd.c in the module,
#    so the program exports every function the module calls
#    (module.syms; the load is RTLD_NOW and would fail otherwise);
#  - a mistyped spec or key is refused without loading the module.
# tests/install/test-install.sh checks the installed module and the
# message when it is missing.
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/rbd/rbdlib.sh"
require_server
"$SNBD_SERVER" --help | grep -q ' rbd:POOL' ||
  skip "snbd-server was built without librbd (no rbd: backend)"

# The --run command's parent is the server.
serve memory:1M -- '
  [ "$(readlink /proc/$PPID/exe)" = "$(readlink -f "$SNBD_SERVER")" ] ||
    fail "the --run command is not a child of snbd-server"
  cp /proc/$PPID/maps maps.txt
  nbdinfo --size "$uri" >size.txt'
expect_eq "size through the server" 1048576 "$(cat size.txt)"
grep -E 'lib(rbd|rados)\.so' maps.txt &&
  fail "a server without rbd: exports mapped librbd or librados"
grep -qE '/snbd-server$' maps.txt || fail "maps.txt is not the server's"

# refuse WHAT PATTERN ARGS...: one error line containing PATTERN.
refuse() {
  local what=$1 pattern=$2; shift 2
  if timeout 60 "$SNBD_SERVER" -U - "$@" --run true 2>refuse.err
  then fail "$what: the server started"; fi
  grep 'snbd-server: error:' refuse.err >refuse.lines || true
  expect_eq "$what: error lines" 1 "$(wc -l <refuse.lines)"
  grep -qF -- "$pattern" refuse.lines ||
    fail "$what: expected \"$pattern\", got: $(cat refuse.err)"
}
refuse "conf unreadable (from the module)" \
  "cannot read $PWD/nope.conf: No such file or directory" \
  "rbd:pool/image,ceph-conf=$PWD/nope.conf"

# Refused before the module: strace shows no open of rbd.so.
require strace
strace -f -e trace=openat -o trace.txt \
  "$SNBD_SERVER" -U - 'rbd:pool,ceph-conf=/x' --run true 2>bad.err &&
  fail "a spec without an image was accepted"
grep -q 'POOL/' bad.err || fail "bad spec: $(cat bad.err)"
grep -q 'rbd\.so' trace.txt && fail "a bad spec loaded the module"
strace -f -e trace=openat -o trace.txt \
  "$SNBD_SERVER" -U - "rbd:pool/image,ceph-conf=$PWD/nope.conf" \
  --run true 2>/dev/null && fail "started"
grep -q '/server/backends/rbd\.so' trace.txt ||
  fail "the module was not loaded from the build tree"
echo "ok"
