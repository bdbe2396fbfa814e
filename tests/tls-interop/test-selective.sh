#!/usr/bin/env bash
# SELECTIVETLS (--tls=on) with real clients: a plain export and a tls-only
# one (proto.md "TLS support", SELECTIVETLS; docs/security.md 8).
#  - in clear text: the plain export works (nbdinfo, nbdcopy, qemu-img),
#    the tls-only one is refused with "TLS required" and is not in --list;
#  - with TLS (PSK, and X.509 over TCP): both work and both are listed;
#  - the same server in require mode refuses the plain export in clear
#    text, so the clear-text successes above are SELECTIVE's doing.
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/lib/tls.sh"
require nbdinfo nbdcopy qemu-img certtool psktool
require_server

make_x509 "$PWD/pki" || fail "certtool failed"
make_psk "$PWD/keys.psk" alice || fail "psktool failed"
make_random_image data.img 4
export PKI=$PWD/pki PSK=$PWD/keys.psk want
want=$(sum_file data.img)

# listed URI: the export names nbdinfo --list reports, sorted, |-separated.
listed() {
  nbdinfo --list --json "$1" >list.json || return 1
  "$PYTHON" -c 'import json
exports = json.load(open("list.json"))["exports"]
print("|".join(sorted(e["export-name"] for e in exports)))'
}
fns=$(declare -f listed)

# shellcheck disable=SC2016   # expanded by serve's shell
serve -v --tls=on -p 0 -i 127.0.0.1 --tls-certificates "$PKI" --tls-psk "$PSK" \
      memory:4M secret=memory:8M,tls-only -- "$fns"'
  plain="nbd+unix:///?socket=$unixsocket"
  plain_secret="nbd+unix:///secret?socket=$unixsocket"
  psk_u="nbds+unix://alice@/EXPORT?socket=$unixsocket&tls-psk-file=$PSK"
  x509_t="nbds://localhost:$port/EXPORT?tls-certificates=$PKI"
  expect_eq "mode in \$uri" "nbd+unix" "${uri%%:*}"

  # Clear text: the plain export works with every client.
  expect_eq "plain size" 4194304 "$(nbdinfo --size "$plain")"
  nbdinfo "$plain" | grep -q "^protocol: newstyle-fixed without TLS" ||
    fail "nbdinfo on the plain export did not run in clear text"
  nbdcopy data.img "$plain"
  expect_eq "plain export after nbdcopy" "$want" "$(sum_export "$plain")"
  qemu-img compare -f raw -F raw data.img "nbd://localhost:$port/" ||
    fail "qemu-img (clear text, tcp) sees different data"

  # Clear text: the tls-only export is refused and not listed.
  if nbdinfo --size "$plain_secret" >out 2>&1; then
    fail "plain nbdinfo opened the tls-only export: $(cat out)"
  fi
  grep -q "requires TLS" out || fail "expected a TLS-required error: $(cat out)"
  if qemu-img info "nbd://localhost:$port/secret" >out 2>&1; then
    fail "plain qemu-img opened the tls-only export: $(cat out)"
  fi
  expect_eq "clear-text --list" "" "$(listed "$plain")"
  # (the empty name is the plain export: the list holds exactly it)
  expect_eq "clear-text --list count" 1 \
    "$("$PYTHON" -c "import json; print(len(json.load(open(\"list.json\"))[\"exports\"]))")"

  # TLS: both exports work and both are listed.
  for u in "$psk_u" "$x509_t"; do
    expect_eq "size over TLS" 4194304 "$(nbdinfo --size "${u/EXPORT/}")"
    expect_eq "tls-only size over TLS" 8388608 \
      "$(nbdinfo --size "${u/EXPORT/secret}")"
    expect_eq "--list over TLS" "|secret" "$(listed "${u/EXPORT/}")"
  done
  nbdcopy data.img "${psk_u/EXPORT/secret}"
  rm -f out.img
  nbdcopy "${x509_t/EXPORT/secret}" out.img
  cmp -n 4194304 data.img out.img ||
    fail "tls-only export: data written over PSK differs when read over X.509"
  grep -q "unix#[0-9]*: NBD_OPT_GO: NBD_REP_ERR_TLS_REQD" server.log ||
    fail "server log has no TLS_REQD for the clear-text tls-only attempt"
' 2>server.log || { tail -n 30 server.log >&2; fail "SELECTIVE checks failed"; }

# Control: in require mode the plain export is not served in clear text.
# shellcheck disable=SC2016
serve --tls=require --tls-psk "$PSK" memory:4M -- '
  if nbdinfo --size "nbd+unix:///?socket=$unixsocket" >out 2>&1; then
    fail "require mode served clear text: $(cat out)"
  fi
  grep -q "requires TLS" out || fail "expected a TLS-required error: $(cat out)"
' 2>server.log || { tail -n 30 server.log >&2; fail "require-mode control failed"; }
echo "SELECTIVE mode checks passed"
