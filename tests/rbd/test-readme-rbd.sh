#!/usr/bin/env bash
# README.md's "Trying it" block of "Serving Ceph RBD images" works as
# written: the shell block after the "tests/rbd/test-readme-rbd.sh"
# marker is run unchanged, with this build's snbd-server first on PATH,
# from a directory where tests/ is the source tree's (the block is run
# from the source directory; its cluster goes under $PWD/ceph, here the
# test's own directory).  The cluster script stops its daemons by pid,
# also when the block fails half way (the trap below).
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/rbd/rbdlib.sh"
rbd_require
require nbdinfo

awk '/tests\/rbd\/test-readme-rbd.sh runs this block/ { found = 1; next }
     found && /^```sh$/ { inblock = 1; next }
     inblock && /^```$/ { exit }
     inblock { print }' "$SNBD_SRC/README.md" >block.sh
[ -s block.sh ] || fail "no block after the marker in README.md"
cat block.sh
ln -s "$SNBD_SRC/tests" tests
trap '[ ! -d ceph ] || tests/lib/ceph-cluster.sh stop "$PWD/ceph" >/dev/null 2>&1 || true' EXIT
export PATH=$SNBD_BUILD/server:$PATH
bash -e block.sh >block.log 2>&1 || { cat block.log; fail "the README block failed"; }
cat block.log
grep -q 'export="vm1"' block.log || fail "nbdinfo did not list export vm1"
grep -q 'export-size: 1073741824' block.log || fail "nbdinfo did not show 1 GiB"
echo "README rbd walkthrough: works as written"
