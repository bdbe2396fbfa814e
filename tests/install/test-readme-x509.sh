#!/usr/bin/env bash
# README.md's X.509 walkthrough works end to end as written: the shell
# block after the "tests/install/test-readme-x509.sh" marker is run
# unchanged, from an empty directory, with this build's snbd-server and
# snbd-info first on PATH (a new user who ran `make install`).  It uses
# the default port, 10809, so it runs in a network namespace of its own
# (unshare -rn, loopback up), where nothing else on the machine can hold
# that port.  Any command of the block that fails, fails the test.
. "$SNBD_SRC/tests/lib/common.sh"
require certtool unshare ip
require_server

awk '/tests\/install\/test-readme-x509.sh runs this block/ { found = 1; next }
     found && /^```sh$/ { inblock = 1; next }
     inblock && /^```$/ { exit }
     inblock { print }' "$SNBD_SRC/README.md" >walkthrough.sh
[ -s walkthrough.sh ] || fail "no walkthrough block after the marker in README.md"
grep -q "dns_name = localhost" walkthrough.sh ||
  fail "the walkthrough's server certificate is not for localhost"
echo "the walkthrough, $(wc -l <walkthrough.sh) lines:"
cat walkthrough.sh

unshare -rn true 2>/dev/null || skip "cannot make a network namespace (unshare -rn)"
mkdir walk
export PATH=$SNBD_BUILD/server:$SNBD_BUILD/tools:$PATH
unshare -rn bash -c 'ip link set lo up && cd walk && bash -ex ../walkthrough.sh' \
  >walk.log 2>&1 || { cat walk.log; fail "the README walkthrough failed"; }
cat walk.log
# snbd-info printed the export: its size, and TLS with the client's
# certificate (the server required one).
grep -q "1073741824" walk.log || fail "snbd-info did not print the 1 GiB export"
grep -qi "tls" walk.log || fail "snbd-info did not report TLS"
for f in server/ca-cert.pem server/server-cert.pem server/server-key.pem \
         client/ca-cert.pem client/client-cert.pem client/client-key.pem; do
  [ -s "walk/$f" ] || fail "the walkthrough did not make $f"
done
echo "README X.509 walkthrough: works as written"
