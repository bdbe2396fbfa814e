#!/usr/bin/env bash
# Real clients over TLS against snbd-server in require mode (FORCEDTLS),
# with X.509 and PSK credentials made here, over a Unix socket and TCP:
#  - nbdinfo with nbds+unix:// and nbds:// URIs (tls-certificates= and
#    tls-psk-file=, the PSK user as the URI's user part);
#  - nbdcopy of a 64 MiB random image in through one and out through
#    another, checksums equal;
#  - nbdsh (libnbd's Python) writing and reading back, asserting that TLS
#    was negotiated and with which PSK user;
#  - qemu-img convert both ways and qemu-io pattern checks with
#    --object tls-creds-x509 / tls-creds-psk.
# The server log must name each client's identity (cn= / psk:).
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/lib/tls.sh"
require nbdinfo nbdcopy qemu-img qemu-io certtool psktool b2sum
require_server

make_x509 "$PWD/pki" || fail "certtool failed"
make_psk "$PWD/keys.psk" alice || fail "psktool failed"
mkdir qpsk && cp keys.psk qpsk/keys.psk     # QEMU wants DIR/keys.psk
make_random_image src.img 64
make_random_image src2.img 64
export PKI=$PWD/pki PSK=$PWD/keys.psk QPSK=$PWD/qpsk
export want want2
want=$(sum_file src.img)
want2=$(sum_file src2.img)

# shellcheck disable=SC2016   # expanded by serve's shell
serve -v -p 0 -i 127.0.0.1 --tls-certificates "$PKI" --tls-psk "$PSK" \
      memory:64M -- '
  ux="nbds+unix:///?socket=$unixsocket&tls-certificates=$PKI"
  up="nbds+unix://alice@/?socket=$unixsocket&tls-psk-file=$PSK"
  tx="nbds://localhost:$port/?tls-certificates=$PKI"
  tp="nbds://alice@localhost:$port/?tls-psk-file=$PSK"

  # nbdinfo: every URI form sees the export, and says TLS is on.
  for u in "$ux" "$up" "$tx" "$tp"; do
    nbdinfo "$u" >info.txt || fail "nbdinfo $u failed"
    grep -q "^protocol: newstyle-fixed with TLS" info.txt ||
      fail "nbdinfo $u: no TLS in: $(head -n1 info.txt)"
    grep -q "export-size: 67108864 " info.txt ||
      fail "nbdinfo $u: wrong size: $(cat info.txt)"
  done
  echo "nbdinfo: 4 URI forms ok"

  # nbdcopy: in over X.509 + Unix, out over PSK + TCP, and out again over
  # X.509 + TCP with 4 connections.
  nbdcopy src.img "$ux"
  nbdcopy "$tp" out1.img
  expect_eq "nbdcopy in (x509 unix), out (psk tcp)" "$want" "$(sum_file out1.img)"
  nbdcopy --connections=4 "$tx" out2.img
  expect_eq "nbdcopy out (x509 tcp, 4 conns)" "$want" "$(sum_file out2.img)"
  nbdcopy "$up" - | b2sum | cut -d" " -f1 >sum3
  expect_eq "nbdcopy out (psk unix)" "$want" "$(cat sum3)"
  echo "nbdcopy: ok"

  # nbdsh: TLS really negotiated, PSK identity as given, data round-trip.
  for u in "$up" "$tx"; do
    U="$u" nbdsh -c "
import os
h.set_uri_allow_local_file(True)
h.connect_uri(os.environ[\"U\"])
assert h.get_tls_negotiated(), \"TLS not negotiated\"
if \"alice@\" in os.environ[\"U\"]:
    assert h.get_tls_username() == \"alice\", h.get_tls_username()
buf = os.urandom(65536)
h.pwrite(buf, 1 << 20)
h.flush()
assert h.pread(65536, 1 << 20) == buf, \"read back differs\"
h.shutdown()
" || fail "nbdsh on $u failed"
  done
  echo "nbdsh: ok"

  # qemu-img / qemu-io with tls-creds objects.
  ox=(--object "tls-creds-x509,id=tls0,dir=$PKI,endpoint=client")
  op=(--object "tls-creds-psk,id=tls0,dir=$QPSK,username=alice,endpoint=client")
  qtcp="driver=nbd,server.type=inet,server.host=localhost,server.port=$port,tls-creds=tls0"
  qunix="driver=nbd,server.type=unix,server.path=$unixsocket,tls-creds=tls0,tls-hostname=localhost"
  qemu-img convert -n "${op[@]}" -f raw src2.img --target-image-opts "$qtcp"
  qemu-img convert "${ox[@]}" --image-opts "$qunix" -O raw back.img
  expect_eq "qemu-img in (psk tcp), out (x509 unix)" "$want2" "$(sum_file back.img)"
  qemu-img compare "${ox[@]}" --image-opts \
    "driver=file,filename=src2.img" "$qtcp" ||
    fail "qemu-img compare (x509 tcp) reports a difference"
  rm -f back.img
  qemu-img convert "${op[@]}" --image-opts "$qunix" -O raw back.img
  expect_eq "qemu-img out (psk unix)" "$want2" "$(sum_file back.img)"
  qemu-io "${ox[@]}" --image-opts "$qtcp" -c "write -P 0xa5 3M 128k" \
    >qio1.out 2>&1 || fail "qemu-io write: $(cat qio1.out)"
  qemu-io "${op[@]}" --image-opts "$qunix" -c "read -P 0xa5 3M 128k" \
    >qio2.out 2>&1 || fail "qemu-io read: $(cat qio2.out)"
  grep -q "Pattern verification failed" qio2.out &&
    fail "qemu-io: pattern written over X.509 not read back over PSK"
  grep -q "^read 131072/131072 bytes" qio2.out ||
    fail "qemu-io read: $(cat qio2.out)"
  echo "qemu-img / qemu-io: ok"
' 2>server.log ||
  { tail -n 30 server.log >&2; fail "a client failed (server log above)"; }

# Each identity the clients used is in the server log (-v).
grep -q "TLS1\.[23] .* cn=client1" server.log ||
  { tail -n 30 server.log >&2; fail "server log has no X.509 client cn=client1"; }
grep -q "TLS1\.[23] .* psk:alice" server.log ||
  { tail -n 30 server.log >&2; fail "server log has no PSK user alice"; }
echo "all TLS client checks passed"
