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
