# snbd test helpers: TLS credentials made at test time with certtool and
# psktool.  Source this file from bash, then call:
#
#   make_x509 DIR              a fresh ECDSA P-256 CA, a server certificate
#                              (CN=localhost; SAN dns localhost, ip 127.0.0.1,
#                              ip ::1) and a client certificate (CN=client1,
#                              O=snbd), plus an empty CRL, under the names
#                              nbdkit, qemu and libnbd use.  Calling it on a
#                              second DIR gives an independent ("wrong") CA.
#   make_client_dir DIR OUT    OUT holds DIR's ca-cert.pem only (a client
#                              that trusts the CA but has no certificate).
#   make_client_expired DIR OUT
#                              OUT = ca-cert.pem + a client certificate signed
#                              by DIR's CA that expired in 2020.
#   make_client_revoked DIR OUT
#                              OUT = ca-cert.pem + a client certificate signed
#                              by DIR's CA; DIR/ca-crl.pem is re-issued to
#                              list it as revoked.
#   make_psk FILE USER         adds USER with a fresh random key to FILE
#                              (psktool format "user:hexkey").
#
# Files in DIR: ca-cert.pem, ca-key.pem (kept to sign more certificates),
# server-cert.pem, server-key.pem, client-cert.pem, client-key.pem,
# ca-crl.pem.  Private keys are mode 0600.  Every function returns non-zero
# (with certtool's output on stderr) if anything fails.

# certtool is chatty on success; keep its output only for failures.
_tls_certtool() {
  local out
  if ! out=$(certtool "$@" 2>&1); then
    printf 'certtool %s failed:\n%s\n' "$*" "$out" >&2
    return 1
  fi
}

_tls_privkey() {
  ( umask 077 && _tls_certtool --generate-privkey --key-type=ecdsa \
      --curve=secp256r1 --outfile "$1" )
}

_tls_ca() {
  local dir=$1
  cat >"$dir/ca.tmpl" <<'EOF'
cn = "snbd test CA"
organization = "snbd"
serial = 1
expiration_days = 3650
ca
cert_signing_key
crl_signing_key
EOF
  _tls_privkey "$dir/ca-key.pem" &&
  _tls_certtool --generate-self-signed --load-privkey "$dir/ca-key.pem" \
    --template "$dir/ca.tmpl" --outfile "$dir/ca-cert.pem"
}

# _tls_sign DIR KEY CERT TEMPLATE: a certificate for KEY signed by DIR's CA.
_tls_sign() {
  _tls_privkey "$2" &&
  _tls_certtool --generate-certificate --load-privkey "$2" \
    --load-ca-certificate "$1/ca-cert.pem" \
    --load-ca-privkey "$1/ca-key.pem" \
    --template "$4" --outfile "$3"
}

# _tls_crl DIR [REVOKED_CERT]: (re)issue DIR/ca-crl.pem.
_tls_crl() {
  local dir=$1 revoked=${2:-}
  printf 'crl_next_update = 365\ncrl_number = %s\n' "$(date +%s)" \
    >"$dir/crl.tmpl"
  _tls_certtool --generate-crl --load-ca-privkey "$dir/ca-key.pem" \
    --load-ca-certificate "$dir/ca-cert.pem" \
    ${revoked:+--load-certificate "$revoked"} \
    --template "$dir/crl.tmpl" --outfile "$dir/ca-crl.pem"
}

_tls_client_tmpl() {
  cat >"$1" <<EOF
cn = "${2:-client1}"
organization = "snbd"
tls_www_client
signing_key
EOF
}

make_x509() {
  local dir=${1:?usage: make_x509 DIR}
  mkdir -p "$dir" || return 1
  _tls_ca "$dir" || return 1
  cat >"$dir/server.tmpl" <<'EOF'
cn = "localhost"
organization = "snbd"
dns_name = "localhost"
ip_address = "127.0.0.1"
ip_address = "::1"
expiration_days = 365
tls_www_server
signing_key
EOF
  _tls_sign "$dir" "$dir/server-key.pem" "$dir/server-cert.pem" \
    "$dir/server.tmpl" || return 1
  _tls_client_tmpl "$dir/client.tmpl" client1
  echo 'expiration_days = 365' >>"$dir/client.tmpl"
  _tls_sign "$dir" "$dir/client-key.pem" "$dir/client-cert.pem" \
    "$dir/client.tmpl" || return 1
  _tls_crl "$dir"
}

make_client_dir() {
  local dir=${1:?usage: make_client_dir DIR OUT} out=${2:?}
  mkdir -p "$out" && cp "$dir/ca-cert.pem" "$out/"
}

make_client_expired() {
  local dir=${1:?usage: make_client_expired DIR OUT} out=${2:?}
  make_client_dir "$dir" "$out" || return 1
  _tls_client_tmpl "$out/client.tmpl" expired1
  cat >>"$out/client.tmpl" <<'EOF'
activation_date = "2019-01-01 00:00:00 UTC"
expiration_date = "2020-01-01 00:00:00 UTC"
EOF
  _tls_sign "$dir" "$out/client-key.pem" "$out/client-cert.pem" \
    "$out/client.tmpl"
}

make_client_revoked() {
  local dir=${1:?usage: make_client_revoked DIR OUT} out=${2:?}
  make_client_dir "$dir" "$out" || return 1
  _tls_client_tmpl "$out/client.tmpl" revoked1
  echo 'expiration_days = 365' >>"$out/client.tmpl"
  _tls_sign "$dir" "$out/client-key.pem" "$out/client-cert.pem" \
    "$out/client.tmpl" &&
  _tls_crl "$dir" "$out/client-cert.pem"
}

make_psk() {
  local file=${1:?usage: make_psk FILE USER} user=${2:?}
  ( umask 077 && psktool -u "$user" -p "$file" >/dev/null )
}

#   make_client_cn DIR OUT CN  (added for tests/tls-interop)
#                              OUT = ca-cert.pem + a valid client certificate
#                              with CN=CN, O=snbd, signed by DIR's CA.
make_client_cn() {
  local dir=${1:?usage: make_client_cn DIR OUT CN} out=${2:?} cn=${3:?}
  make_client_dir "$dir" "$out" || return 1
  _tls_client_tmpl "$out/client.tmpl" "$cn"
  echo 'expiration_days = 365' >>"$out/client.tmpl"
  _tls_sign "$dir" "$out/client-key.pem" "$out/client-cert.pem" \
    "$out/client.tmpl"
}

#   revoke_cert DIR CERT       (added for tests/tls-interop)
#                              re-issues DIR/ca-crl.pem listing CERT (signed
#                              by DIR's CA) as revoked, and nothing else.
revoke_cert() {
  _tls_crl "${1:?usage: revoke_cert DIR CERT}" "${2:?}"
}

#   make_rsa_server DIR OUT    (added for tests/tls-interop)
#                              OUT = DIR's ca-cert.pem + an RSA server key and
#                              certificate for localhost allowing RSA key
#                              transport (encryption_key), signed by DIR's CA:
#                              what a TLS 1.2 RSA key exchange needs.
make_rsa_server() {
  local dir=${1:?usage: make_rsa_server DIR OUT} out=${2:?}
  mkdir -p "$out" && cp "$dir/ca-cert.pem" "$out/" || return 1
  sed 's/^signing_key$/signing_key\nencryption_key/' "$dir/server.tmpl" \
    >"$out/server.tmpl"
  ( umask 077 && _tls_certtool --generate-privkey --key-type=rsa \
      --bits=2048 --outfile "$out/server-key.pem" ) &&
  _tls_certtool --generate-certificate --load-privkey "$out/server-key.pem" \
    --load-ca-certificate "$dir/ca-cert.pem" \
    --load-ca-privkey "$dir/ca-key.pem" \
    --template "$out/server.tmpl" --outfile "$out/server-cert.pem"
}
