#!/usr/bin/env bash
# snbd-server's TLS as a real, independent TLS client sees it: gnutls-cli,
# run through NBD_OPT_STARTTLS by tests/tls/starttls_proxy.py.
#  - TLS 1.0 and 1.1 are refused by default (docs/security.md 2: GnuTLS's NORMAL
#    on Debian 12 still allows them), TLS 1.2 and 1.3 work;
#  - a client with the PSK priority nbdkit and libnbd use (NORMAL order,
#    which puts CHACHA20 before AES-128-GCM) still gets AES-128-GCM: a
#    SHA-256 PSK cannot use AES-256-GCM, and the server's order must win;
#  - X.509 with the certificates from tests/lib/tls.sh: AES-128-GCM and
#    X25519 (the server's order) although NORMAL puts AES-256-GCM and
#    SECP256R1 first;
#  - clear text sent right after NBD_OPT_STARTTLS fails the handshake
#    (docs/security.md 1, CVE-2021-3716).
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/lib/tls.sh"
require gnutls-cli certtool psktool
require_server

make_psk "$PWD/keys.psk" alice || fail "psktool failed"
make_x509 "$PWD/pki" || fail "certtool failed"
export KEY PROXY="$SNBD_SRC/tests/tls/starttls_proxy.py" CA="$PWD/pki/ca-cert.pem"
KEY=$(sed -n 's/^alice://p' keys.psk)
PSK_PRIO="NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK"
export PSK_PRIO

# cli NAME [--inject TEXT] -- GNUTLS_CLI_ARGS...: one gnutls-cli run
# through the proxy against the captive server ($port).  The output and
# exit status go to NAME.out and NAME.rc, so a failure shows what happened.
# shellcheck disable=SC2016   # expanded by the shell serve starts
cli_fn='
  cli() {
    local name=$1; shift
    local pre=()
    while [ "$1" != -- ]; do pre+=("$1"); shift; done
    shift
    local rc=0
    "$PYTHON" "$PROXY" "${pre[@]}" 127.0.0.1 "$port" -- "$@" \
      >"$name.out" 2>&1 || rc=$?
    echo "$rc" >"$name.rc"
  }
'

# PSK.  (TLS 1.2 with a PSK is checked in test_tls_io: gnutls-cli 3.7.9
# crashes after such a handshake.)
# shellcheck disable=SC2016
serve -p 0 -i 127.0.0.1 --tls-psk "$PWD/keys.psk" memory:1M -- "$cli_fn"'
  psk=(--pskusername alice --pskkey "$KEY")
  cli anchors -- "${psk[@]}" --priority "$PSK_PRIO"
  cli tls11 -- "${psk[@]}" --priority "NORMAL:-VERS-ALL:+VERS-TLS1.1:+ECDHE-PSK:+DHE-PSK:+PSK"
  cli tls10 -- "${psk[@]}" --priority "NORMAL:-VERS-ALL:+VERS-TLS1.0:+ECDHE-PSK:+DHE-PSK:+PSK"
  cli inject --inject "IHAVEOPT in clear text" -- "${psk[@]}" --priority "$PSK_PRIO"
'

# X.509
# shellcheck disable=SC2016
serve -p 0 -i 127.0.0.1 --tls-certificates "$PWD/pki" memory:1M -- "$cli_fn"'
  cli x509 -- --x509cafile "$CA"
  cli x509_tls12 -- --x509cafile "$CA" --priority "NORMAL:-VERS-ALL:+VERS-TLS1.2"
  cli x509_tls11 -- --x509cafile "$CA" --priority "NORMAL:-VERS-ALL:+VERS-TLS1.1"
'

# expect NAME ok|fails [PATTERN...]: gnutls-cli's exit status and output.
expect() {
  local name=$1 want=$2 pat got; shift 2
  [ -f "$name.rc" ] || fail "$name: did not run"
  got=$(cat "$name.rc")
  if { [ "$want" = ok ] && [ "$got" != 0 ]; } ||
     { [ "$want" = fails ] && [ "$got" = 0 ]; }; then
    cat "$name.out" >&2
    fail "$name: gnutls-cli exit status $got, expected it to be $want"
  fi
  for pat in "$@"; do
    grep -qF -- "$pat" "$name.out" || { cat "$name.out" >&2;
      fail "$name: gnutls-cli output lacks '$pat'"; }
  done
}

expect anchors ok "- Description: (TLS1.3" "(AES-128-GCM)" "Connected as 'alice'"
expect tls11 fails "Error in protocol version"
expect tls10 fails "Error in protocol version"
# the server read the injected text as TLS and said so
expect inject fails "Received alert [10]: Unexpected message"
grep -q "Handshake was completed" inject.out &&
  fail "inject: the handshake completed despite injected clear text"
expect x509 ok "- Description: (TLS1.3" "(AES-128-GCM)" "(ECDHE-X25519)" "- Handshake was completed"
expect x509_tls12 ok "- Description: (TLS1.2" "(AES-128-GCM)"
expect x509_tls11 fails "Error in protocol version"
echo "all gnutls-cli cases behaved"
