#!/usr/bin/env bash
# The server is verified by default (docs/security.md 22, libnbd CVE-2024-7383):
# against the given CA or the system CA, by host name, also over a Unix
# socket (through tls-hostname); turning verification off must be
# explicit.  Plus TLS "allow" against servers with and without TLS, and
# "require" against a server without it.
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/client/client-lib.sh"
require nbdkit certtool

make_x509 pki
make_x509 other          # an independent CA: its certificates mean nothing
start_nbdkit x509 --tls=require --tls-certificates="$PWD/pki" memory 1M
s="socket=$sock"

# expect_refused WHY QUERY: connecting with QUERY fails, mentioning WHY.
expect_refused() {
  if "$INFO" --size "nbds+unix:///?$s&$2" >out.txt 2>err.txt; then
    fail "connected although $1: $(cat out.txt)"
  fi
  grep -q "$1" err.txt || fail "expected '$1' in: $(cat err.txt)"
}

# Good: right CA and name.
expect_eq size 1048576 \
  "$("$INFO" --size "nbds+unix:///?$s&tls-certificates=$PWD/pki&tls-hostname=localhost")"
# No name to check the certificate against over a Unix socket.
expect_refused "without a host name" "tls-certificates=$PWD/pki"
# Wrong name.
expect_refused "certificate name mismatch: connected to evil.example, the certificate is for localhost" "tls-certificates=$PWD/pki&tls-hostname=evil.example"
# Wrong CA.
expect_refused "issuer is unknown" "tls-certificates=$PWD/other&tls-hostname=localhost"
# No CA given: the system CA is used, and it does not know our test CA.
expect_refused "issuer is unknown" "tls-hostname=localhost"
# Verification off is an explicit choice, and then the wrong CA is fine.
expect_eq "size, verification off" 1048576 \
  "$("$INFO" --size "nbds+unix:///?$s&tls-certificates=$PWD/other&tls-verify-peer=0")"
# TLS not asked for: the server's refusal names TLS as the reason.
expect_fail "$INFO" --size "nbd+unix:///?$s" 2>err.txt
grep -q 'requires TLS' err.txt || fail "no TLS hint: $(cat err.txt)"
# TLS allowed: used when the server has it ...
"$INFO" --tls=allow --is tls \
  "nbd+unix:///?$s&tls-certificates=$PWD/pki&tls-hostname=localhost" ||
  fail "TLS allow did not use TLS"
# ... and still verified.
expect_fail "$INFO" --tls=allow --size \
  "nbd+unix:///?$s&tls-certificates=$PWD/other&tls-hostname=localhost"
stop_bg "$pid"

start_nbdkit plain memory 1M
# Allowed but not offered: plain text.
rc=0; "$INFO" --tls=allow --is tls "nbd+unix:///?socket=$sock" || rc=$?
expect_eq "--is tls against a plain server" 2 "$rc"
# Required but not offered: refused, naming the server's answer.
expect_fail "$INFO" --size "nbds+unix:///?socket=$sock&tls-certificates=$PWD/pki&tls-hostname=localhost" 2>err.txt
grep -q 'refused NBD_OPT_STARTTLS' err.txt || fail "$(cat err.txt)"
stop_bg "$pid"
echo "tls-verify: all checks passed"
