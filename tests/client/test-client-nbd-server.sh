#!/usr/bin/env bash
# libsnbd, snbd-info and snbd-copy against the reference nbd-server 3.24
# (no structured replies, so simple replies only): plain, and TLS with
# X.509 in FORCEDTLS mode; listing exports; the served file must end up
# holding exactly what was copied.
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/client/client-lib.sh"
require nbd-server nbdcopy certtool

make_sparse_image img 64

# start_nbd_server NAME [GENERIC-LINES]: exports "disk" (disk.img) and
# "small" on $PWD/NAME.sock.  (With -d it would serve a single client, so
# it runs as a daemon with a pid file and is stopped by that pid.)
start_nbd_server() {
  sock=$PWD/$1.sock
  rm -f "$sock"
  cat >"$1.conf" <<CONF
[generic]
unixsock = $sock
allowlist = true
${2:-}
[disk]
exportname = $PWD/disk.img
flush = true
fua = true
trim = true
[small]
exportname = $PWD/small.img
readonly = true
CONF
  rm -f "$1.pid"
  nbd-server -C "$PWD/$1.conf" -p "$PWD/$1.pid" 2>"$1.log"
  wait_for 20 test -s "$1.pid"
  pid=$(cat "$1.pid")
  _bg_pids+=("$pid")
  wait_socket "$sock"
}

truncate -s 64M disk.img
truncate -s 1M small.img
start_nbd_server plain
u="nbd+unix:///disk?socket=$sock"
client_battery "$u" img check-with-nbdcopy
"$INFO" "$u" | grep -q 'structured replies: no' ||
  fail "nbd-server 3.24 was expected to refuse structured replies"
"$INFO" --list "nbd+unix:///?socket=$sock" >list.txt
grep -q '^export "disk":' list.txt && grep -q '^export "small":' list.txt ||
  fail "--list: $(cat list.txt)"
"$INFO" --is read-only "nbd+unix:///small?socket=$sock" ||
  fail "small should be read-only"
expect_fail "$COPY" img "nbd+unix:///small?socket=$sock"
stop_bg "$pid"
expect_eq "disk.img after plain copies" "$(sum_file img.2)" "$(sum_file disk.img)"

make_x509 pki
rm -f disk.img && truncate -s 64M disk.img
start_nbd_server tls "certfile = $PWD/pki/server-cert.pem
keyfile = $PWD/pki/server-key.pem
cacertfile = $PWD/pki/ca-cert.pem
force_tls = true"
u="nbds+unix:///disk?socket=$sock&tls-certificates=$PWD/pki&tls-hostname=localhost"
client_battery "$u" img check-with-nbdcopy
"$INFO" "$u" | grep -Eq '^tls: TLS1\.[23] .*CN=localhost' || fail "TLS not reported"
expect_fail "$INFO" "nbd+unix:///disk?socket=$sock"
stop_bg "$pid"
expect_eq "disk.img after TLS copies" "$(sum_file img.2)" "$(sum_file disk.img)"
echo "nbd-server: all checks passed"
