#!/usr/bin/env bash
# Secure by default (docs/architecture.md "The promise", docs/security.md
# 30): clear text beyond loopback must be asked for with --tls=off; TLS
# modes need credentials; credentials alone mean FORCEDTLS.  No test here
# listens beyond loopback: the refusals happen before anything is bound.
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
echo ok
