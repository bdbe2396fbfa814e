#!/usr/bin/env bash
# Secure by default (docs/architecture.md "The promise", docs/security.md
# 30): clear text beyond loopback must be asked for with an explicit --tls
# (for -s too, judged by the peer's address), and --tls=on names the
# exports it serves in clear text there; TLS modes need credentials;
# credentials alone mean FORCEDTLS.  Nothing here listens beyond the
# host: the refusals happen before anything is bound, and the rest runs
# in a private network namespace.
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/lib/tls.sh"
require_server
require nbdinfo psktool

refused() {   # ADDR: the server must refuse to start, saying why
  local out rc=0
  out=$(timeout 10 "$SNBD_SERVER" -i "$1" -p 0 memory:1M 2>&1) || rc=$?
  [ "$rc" -ne 0 ] || fail "-i $1 without TLS started (exit 0)"
  [ "$rc" -ne 124 ] || fail "-i $1 without TLS kept running"
  case $out in
    *"refusing to serve in clear text on $1"*) ;;
    *) fail "-i $1: no reason given: $out" ;;
  esac
}
refused 0.0.0.0
refused ::
refused 192.0.2.1

# Loopback addresses are fine in clear text, and $uri names the address.
got=$("$SNBD_SERVER" -i 127.0.0.2 -p 0 memory:1M --run 'echo "$uri"; nbdinfo --size "$uri"')
[[ $(head -n 1 <<<"$got") =~ ^nbd://127\.0\.0\.2:[0-9]+/$ ]] ||
  fail "uri on 127.0.0.2: $got"
expect_eq "size on 127.0.0.2" 1048576 "$(tail -n 1 <<<"$got")"

# A TLS mode without credentials is a configuration error.
expect_fail "$SNBD_SERVER" -U - --tls=on memory:1M --run true
expect_fail "$SNBD_SERVER" -U - --tls=require memory:1M --run true

# Credentials and no --tls: FORCEDTLS, even on a Unix socket.
make_psk keys.psk alice >/dev/null
"$SNBD_SERVER" -U - --tls-psk keys.psk memory:1M --run '
  case $uri in nbds+unix://*) ;; *) echo "uri is not nbds: $uri"; exit 1;; esac
  plain="nbd+unix:///?socket=$unixsocket"
  if nbdinfo --size "$plain" 2>/dev/null; then echo "clear text served"; exit 1; fi
  nbdinfo --size "nbds+unix://alice@/?socket=$unixsocket&tls-psk-file=$PWD/keys.psk"
' >out.txt || fail "FORCEDTLS default: $(cat out.txt)"
expect_eq "size over TLS" 1048576 "$(cat out.txt)"
# Beyond loopback without touching a network: a private network namespace
# whose lo also has 192.0.2.1 (TEST-NET-1), not a loopback address to the
# server.  There: --tls=on names the exports it serves in clear text; -s
# applies the same rule as -i to the peer of its socket (getpeername).
unshare -rn true 2>/dev/null || fail "unshare -rn (a private network namespace) is not available"
cat >single.py <<'PY'
# single.py ADDR ARGS...: a client from ADDR to a server listening on ADDR,
# the server's end given to `snbd-server -s ARGS` as stdin; prints the
# server's exit status and whether the client got the greeting.
import socket, subprocess, sys, os
addr = sys.argv[1]
ls = socket.socket(); ls.bind((addr, 0)); ls.listen(1)
c = socket.create_connection(ls.getsockname(), 10)
a, _ = ls.accept()
p = subprocess.Popen([os.environ["SNBD_SERVER"], "-s"] + sys.argv[2:],
                     stdin=a, stdout=a, stderr=subprocess.PIPE)
a.close()
c.settimeout(10)
try:
    greeting = c.recv(18)
except OSError:
    greeting = b""
c.close()
err = p.communicate(timeout=20)[1].decode()
print("greeting=%s status=%d" % (greeting[:8] == b"NBDMAGIC", p.returncode))
print(err)
PY
unshare -rn bash -c '
  set -e
  ip link set lo up && ip addr add 192.0.2.1/32 dev lo
  "$SNBD_SERVER" -i 192.0.2.1 -p 0 --tls=on --tls-psk keys.psk \
    plain=memory:1M secret=memory:1M,tls-only --run true 2>on.err
  "$SNBD_SERVER" -i 192.0.2.1 -p 0 --tls-psk keys.psk \
    plain=memory:1M --run true 2>require.err
  "$SNBD_SERVER" -i 127.0.0.1 -p 0 --tls=on --tls-psk keys.psk \
    plain=memory:1M --run true 2>loopback.err
  $PYTHON single.py 192.0.2.1 memory:1M >s-plain.out
  $PYTHON single.py 192.0.2.1 --tls=off memory:1M >s-off.out
  $PYTHON single.py 127.0.0.1 memory:1M >s-loopback.out
' || fail "the namespace part failed: $(cat ./*.err ./*.out 2>/dev/null)"
grep -q 'tls=on serves export(s) "plain" in clear text on 192.0.2.1:' on.err ||
  fail "--tls=on beyond loopback: no warning naming the export: $(cat on.err)"
! grep 'in clear text' on.err | grep -q secret ||
  fail "the tls-only export was named: $(cat on.err)"
! grep -q "clear text" require.err loopback.err ||
  fail "warned without clear text beyond loopback: $(cat require.err loopback.err)"
grep -q "greeting=False status=1" s-plain.out &&
  grep -q "refusing to serve in clear text on 192.0.2.1:" s-plain.out ||
  fail "-s with a peer beyond loopback served clear text: $(cat s-plain.out)"
grep -q "greeting=True status=0" s-off.out ||
  fail "-s --tls=off beyond loopback: $(cat s-off.out)"
grep -q "greeting=True status=0" s-loopback.out ||
  fail "-s from loopback: $(cat s-loopback.out)"
echo ok
