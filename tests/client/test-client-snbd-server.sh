#!/usr/bin/env bash
# libsnbd, snbd-info and snbd-copy against snbd-server: memory and file
# backends, several exports, plain, TLS with X.509 (client certificate
# required) and PSK, over a Unix socket and over TCP.
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/client/client-lib.sh"
require nbdcopy certtool psktool
require_server

make_sparse_image img 64

# start_snbd NAME ARGS...: snbd-server -U $PWD/NAME.sock ARGS.
start_snbd() {
  sock=$PWD/$1.sock
  shift
  rm -f "$sock" "$sock.pid"
  bg "$SNBD_SERVER" -U "$sock" -P "$sock.pid" "$@"
  pid=${_bg_pids[-1]}
  wait_for 20 test -S "$sock" -a -s "$sock.pid"
}

truncate -s 64M disk.img
start_snbd plain mem=memory:64M disk=file:"$PWD/disk.img" \
  ro=memory:1M,readonly,description=small
client_battery "nbd+unix:///mem?socket=$sock" img check-with-nbdcopy
client_battery "nbd+unix:///disk?socket=$sock" img
"$INFO" --list --json "nbd+unix:///?socket=$sock" | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
names = sorted(e["export-name"] for e in d["exports"])
assert names == ["disk", "mem", "ro"], names
ro = [e for e in d["exports"] if e["export-name"] == "ro"][0]
assert ro["read-only"] and ro["description"] == "small", ro' ||
  fail "--list --json"
"$INFO" --map "nbd+unix:///mem?socket=$sock" | grep -q 'data$' ||
  fail "--map shows no data"
expect_fail "$COPY" img "nbd+unix:///ro?socket=$sock"
stop_bg "$pid"
expect_eq "disk.img" "$(sum_file img.2)" "$(sum_file disk.img)"

# Extended headers (libsnbd asks by default; snbd-server agrees): the same
# data whichever way it travels, checked against the header mode each side
# reports; whole-export holes as one request.
start_snbd ext mem=memory:64M huge=memory:16T huge2=memory:16T
m="nbd+unix:///mem?socket=$sock"
"$INFO" "$m" | grep -q 'structured replies: yes, extended headers: yes' ||
  fail "snbd-info: extended headers not reported: $("$INFO" "$m" | head -1)"
"$INFO" --no-extended-headers "$m" | grep -q 'extended headers: no' ||
  fail "--no-extended-headers still negotiated them"
"$INFO" --json "$m" | "$PYTHON" -c '
import json, sys
d = json.load(sys.stdin)
assert d["extended-headers"] is True and d["structured-replies"] is True, d' ||
  fail "snbd-info --json: extended-headers"
"$INFO" --can extended-headers "$m" || fail "--can extended-headers"
expect_fail "$INFO" --no-extended-headers --can extended-headers "$m"
want=$(sum_file img)
"$COPY" img "$m"
expect_eq "extended -> compact" "$want" \
  "$("$COPY" --no-extended-headers "$m" - | b2sum | cut -d' ' -f1)"
expect_eq "extended -> nbdcopy (compact)" "$want" \
  "$(nbdcopy -- "$m" - | b2sum | cut -d' ' -f1)"
"$COPY" --no-extended-headers img.2 "$m"
expect_eq "compact -> extended" "$(sum_file img.2)" \
  "$("$COPY" "$m" - | b2sum | cut -d' ' -f1)"
# A marker near the end of a 16 TiB sparse export, copied whole to
# another one in each mode: the holes go as zero requests, the marker
# lands where it was, and the maps agree.
h="nbd+unix:///huge?socket=$sock"
h2="nbd+unix:///huge2?socket=$sock"
nbdsh -u "$h" -c 'h.pwrite(b"marker" * 100, (15 << 40) + 12345)'
for flag in "" --no-extended-headers; do
  nbdsh -u "$h2" -c 'h.pwrite(b"\xff" * 65536, 1 << 40)'
  timeout 300 "$COPY" $flag "$h" "$h2" || fail "16 TiB copy $flag"
  expect_eq "16 TiB map $flag" "$("$INFO" --map "$h")" "$("$INFO" --map "$h2")"
  nbdsh -u "$h2" -c '
assert h.pread(600, (15 << 40) + 12345) == b"marker" * 100
assert h.pread(65536, 1 << 40) == bytes(65536)' || fail "16 TiB copy $flag"
done
stop_bg "$pid"

make_x509 pki
start_snbd x509 --tls-certificates "$PWD/pki" --tls-verify-peer memory:64M
u="nbds+unix:///?socket=$sock&tls-certificates=$PWD/pki&tls-hostname=localhost"
client_battery "$u" img check-with-nbdcopy
"$INFO" "$u" | grep -Eq '^tls: TLS1\.3 .*CN=localhost' || fail "TLS not reported"
expect_fail "$INFO" "nbd+unix:///?socket=$sock"
stop_bg "$pid"

make_psk keys.psk alice
start_snbd psk --tls-psk "$PWD/keys.psk" memory:64M
u="nbds+unix:///?socket=$sock&tls-psk-file=$PWD/keys.psk&tls-username=alice"
client_battery "$u" img
"$INFO" "$u" | grep -Eq '^tls: .* peer: alice$' || fail "PSK peer not reported"
stop_bg "$pid"

# TCP on an ephemeral port (the server reports it in $port via --run):
# the certificate is checked against the URI's host name.
serve --tls-certificates "$PWD/pki" -p 0 -i 127.0.0.1 memory:64M -- "
  u=\"nbds://localhost:\$port/?tls-certificates=$PWD/pki\"
  $IO \"\$u\"
  $COPY $PWD/img \"\$u\"
  expect_eq tcp \"\$(sum_file $PWD/img)\" \"\$($COPY \"\$u\" - | b2sum | cut -d' ' -f1)\"
  $INFO --size \"nbds://127.0.0.1:\$port/?tls-certificates=$PWD/pki\"
  expect_fail $INFO \"nbds://localhost:\$port/?tls-certificates=$PWD/pki&tls-hostname=other.example\" 2>err.txt
  grep -q 'certificate name mismatch: connected to other.example, the certificate is for localhost' err.txt || fail \"name mismatch: \$(cat err.txt)\"
"
echo "snbd-server: all checks passed"
