#!/usr/bin/env bash
# libsnbd, snbd-info and snbd-copy against qemu-nbd (raw file): plain,
# TLS with X.509 and with PSK.  The file qemu-nbd serves must end up
# holding exactly what was copied.
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/client/client-lib.sh"
require qemu-nbd nbdcopy certtool psktool

make_sparse_image img 64

# start_qemu NAME ARGS...: qemu-nbd serving disk.img on $PWD/NAME.sock.
start_qemu() {
  sock=$PWD/$1.sock
  shift
  rm -f "$sock"
  bg qemu-nbd -t -k "$sock" "$@" -f raw disk.img
  pid=${_bg_pids[-1]}
  wait_socket "$sock"
}

truncate -s 64M disk.img
start_qemu plain
client_battery "nbd+unix:///?socket=$sock" img check-with-nbdcopy
"$INFO" --map "nbd+unix:///?socket=$sock" >map.txt
grep -q ' data$' map.txt && grep -q 'hole,zero$' map.txt ||
  fail "--map should show data and holes: $(cat map.txt)"
stop_bg "$pid"
expect_eq "disk.img after plain copies" "$(sum_file img.2)" "$(sum_file disk.img)"

make_x509 pki
rm -f disk.img && truncate -s 64M disk.img
start_qemu x509 --object \
  "tls-creds-x509,id=tls0,dir=$PWD/pki,endpoint=server,verify-peer=on" \
  --tls-creds tls0
u="nbds+unix:///?socket=$sock&tls-certificates=$PWD/pki&tls-hostname=localhost"
client_battery "$u" img check-with-nbdcopy
"$INFO" "$u" | grep -Eq '^tls: TLS1\.[23] ' || fail "TLS not reported"
# qemu-nbd refuses clients that do not start TLS.
expect_fail "$INFO" "nbd+unix:///?socket=$sock" 2>err.txt
grep -q 'requires TLS' err.txt || fail "no hint about TLS: $(cat err.txt)"
stop_bg "$pid"
expect_eq "disk.img after X.509 copies" "$(sum_file img.2)" "$(sum_file disk.img)"

mkdir psk && make_psk psk/keys.psk alice
rm -f disk.img && truncate -s 64M disk.img
start_qemu psk --object "tls-creds-psk,id=tls0,dir=$PWD/psk,endpoint=server" \
  --tls-creds tls0
u="nbds+unix:///?socket=$sock&tls-psk-file=$PWD/psk/keys.psk&tls-username=alice"
client_battery "$u" img
"$INFO" "$u" | grep -Eq '^tls: .* peer: alice$' || fail "PSK peer not reported"
stop_bg "$pid"
expect_eq "disk.img after PSK copies" "$(sum_file img.2)" "$(sum_file disk.img)"
echo "qemu-nbd: all checks passed"
