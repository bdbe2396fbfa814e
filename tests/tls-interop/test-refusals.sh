#!/usr/bin/env bash
# TLS refusals with real clients (docs/security.md 28, and 8 for part B:
# exports an identity may not use are not listed), each checked on both
# sides: the client fails, and the server log names the peer and the
# reason.  Every refusal has a matching success with the right credentials
# in the same run, so a server that refuses everything fails too.
#  A. --tls-verify-peer: expired, revoked (CRL), foreign-CA and missing
#     client certificates are refused in the TLS handshake; a wrong PSK key
#     and an unknown PSK user likewise; a plain-text client against
#     `require` gets NBD_REP_ERR_TLS_REQD and no export.
#  B. allow= in its three forms (cn=NAME, a subject DN as `certtool -i`
#     prints it, psk:USER): the right identity works, every other one gets
#     the NBD_REP_ERR_UNKNOWN a name that does not exist gets (the server
#     logs the policy refusal) and does not see the export in --list; a revoked
#     or expired certificate never lends its CN.  A client trusting another
#     CA refuses the server (over TCP; libnbd 1.14 does not check server
#     certificates on Unix sockets, qemu does with tls-hostname).
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/lib/tls.sh"
require nbdinfo qemu-img certtool psktool
require_server

export D=$PWD
{
  make_x509 "$D/pki" && make_x509 "$D/foreign" &&
  make_client_dir "$D/foreign" "$D/wrongca" &&
  make_client_dir "$D/pki" "$D/fcert" &&
  cp "$D/foreign/client-cert.pem" "$D/foreign/client-key.pem" "$D/fcert/" &&
  make_client_expired "$D/pki" "$D/expired" &&
  make_client_revoked "$D/pki" "$D/revoked" &&
  make_client_dir "$D/pki" "$D/nocert" &&
  make_client_cn "$D/pki" "$D/c2" client2 &&
  make_psk "$D/keys.psk" alice && make_psk "$D/keys.psk" carol &&
  make_psk "$D/wrong.psk" alice && make_psk "$D/bob.psk" bob
} || fail "making credentials failed"
# The DN exactly as GnuTLS's certtool shows it ("CN=client2,O=snbd").
DN2=$(certtool -i --infile "$D/c2/client-cert.pem" |
      sed -n 's/^[[:space:]]*Subject: //p')
[ -n "$DN2" ] || fail "no Subject in certtool -i output"
export DN2

# refused WHAT LOGPATTERN CMD...: CMD must fail, a new server log line
# "PEER: ...LOGPATTERN" must appear (the log is ./server.log; lines are
# counted before, so a line from an earlier case does not count), and no
# session may have reached transmission meanwhile (-v logs each one).
refused() {
  local what=$1 pat="^snbd-server: (debug: )?(127\.0\.0\.1:[0-9]+|unix#[0-9]+)( \([^)]*\))?: .*$2"
  shift 2
  local n t
  n=$(grep -cE -- "$pat" server.log || true)
  t=$(grep -c "transmission on export" server.log || true)
  if "$@" >client.out 2>&1; then
    fail "$what: the client succeeded: $(cat client.out)"
  fi
  local i
  log_grew() { [ "$(grep -cE -- "$pat" server.log || true)" -gt "$n" ]; }
  for ((i = 0; i < 50; i++)); do log_grew && break; sleep 0.1; done
  log_grew || fail "$what: no server log line matching '$pat' within 5 s"
  expect_eq "$what: sessions that reached transmission" "$t" \
    "$(grep -c "transmission on export" server.log || true)"
  echo "refused as expected: $what"
}
accepted() {
  local what=$1; shift
  "$@" >client.out 2>&1 || fail "$what: failed: $(cat client.out)"
  echo "accepted as expected: $what"
}
size_is() {   # size_is WANT URI
  local got
  got=$(nbdinfo --size "$2") || return 1
  [ "$got" = "$1" ] || { echo "size $got, expected $1"; return 1; }
}
# listed URI: the export names nbdinfo --list reports, sorted, |-separated.
listed() {
  nbdinfo --list --json "$1" >list.json || return 1
  "$PYTHON" -c 'import json
exports = json.load(open("list.json"))["exports"]
print("|".join(sorted(e["export-name"] for e in exports)))'
}
fns=$(declare -f refused accepted size_is listed)

# ---- A: --tls-verify-peer, PSK, plain text ----
# shellcheck disable=SC2016   # expanded by serve's shell
serve -v -p 0 -i 127.0.0.1 --tls-certificates "$D/pki" --tls-psk "$D/keys.psk" \
      --tls-verify-peer memory:1M -- "$fns"'
  x() { echo "nbds://localhost:$port/?tls-certificates=$D/$1"; }
  p() { echo "nbds://$1@localhost:$port/?tls-psk-file=$D/$2"; }
  accepted "valid client certificate (tcp)" size_is 1048576 "$(x pki)"
  accepted "valid client certificate (unix)" size_is 1048576 \
    "nbds+unix:///?socket=$unixsocket&tls-certificates=$D/pki"
  accepted "PSK user alice" size_is 1048576 "$(p alice keys.psk)"
  accepted "PSK user carol" size_is 1048576 "$(p carol keys.psk)"
  refused "expired client certificate" "TLS handshake failed: .*expired" \
    nbdinfo --size "$(x expired)"
  refused "revoked client certificate" "TLS handshake failed: .*revoked" \
    nbdinfo --size "$(x revoked)"
  refused "client certificate from another CA" \
    "TLS handshake failed: .*(issuer is unknown|not trusted)" \
    nbdinfo --size "$(x fcert)"
  refused "no client certificate" "TLS handshake failed: .*no certificate" \
    nbdinfo --size "$(x nocert)"
  refused "no client certificate (qemu)" "TLS handshake failed: .*no certificate" \
    qemu-img info --object "tls-creds-x509,id=t,dir=$D/nocert,endpoint=client" \
    --image-opts "driver=nbd,server.type=inet,server.host=localhost,server.port=$port,tls-creds=t"
  refused "wrong PSK key" "TLS handshake failed" \
    nbdinfo --size "$(p alice wrong.psk)"
  refused "unknown PSK user" "TLS handshake failed: .*unknown PSK user" \
    nbdinfo --size "$(p bob bob.psk)"
  refused "plain client (unix)" "NBD_REP_ERR_TLS_REQD" \
    nbdinfo --size "nbd+unix:///?socket=$unixsocket"
  grep -q "requires TLS" client.out ||
    fail "plain nbdinfo: expected a TLS-required error: $(cat client.out)"
  refused "plain --list (tcp)" "NBD_OPT_LIST: NBD_REP_ERR_TLS_REQD" \
    nbdinfo --list "nbd://localhost:$port/"
  refused "plain qemu-img" "NBD_REP_ERR_TLS_REQD" \
    qemu-img info "nbd://localhost:$port/"
' 2>server.log || { tail -n 40 server.log >&2; fail "part A failed"; }

# ---- B: allow= per export ----
cat >exports.ini <<EOF
[export cn]
backend = memory:2M
allow = cn=client1
[export dn]
backend = memory:3M
allow = $DN2
[export psk]
backend = memory:4M
allow = psk:alice
[export rv]
backend = memory:5M
allow = cn=revoked1;cn=expired1
EOF
# identity -> URI template (EXPORT is replaced), and what it may use.
# shellcheck disable=SC2016
serve -v -p 0 -i 127.0.0.1 -c exports.ini --tls-certificates "$D/pki" \
      --tls-psk "$D/keys.psk" memory:64K -- "$fns"'
  declare -A uri=(
    [client1]="nbds://localhost:$port/EXPORT?tls-certificates=$D/pki"
    [client2]="nbds://localhost:$port/EXPORT?tls-certificates=$D/c2"
    [alice]="nbds://alice@localhost:$port/EXPORT?tls-psk-file=$D/keys.psk"
    [carol]="nbds://carol@localhost:$port/EXPORT?tls-psk-file=$D/keys.psk"
    [nocert]="nbds+unix:///EXPORT?socket=$unixsocket&tls-certificates=$D/nocert"
    [revoked]="nbds://localhost:$port/EXPORT?tls-certificates=$D/revoked"
    [expired]="nbds://localhost:$port/EXPORT?tls-certificates=$D/expired"
  )
  declare -A may=([client1]=cn [client2]=dn [alice]=psk)
  declare -A ident=([client1]="certificate CN=client1" [client2]="certificate CN=client2"
    [alice]="PSK user alice" [carol]="PSK user carol"
    [nocert]="TLS, no client certificate" [revoked]="TLS, no client certificate"
    [expired]="TLS, no client certificate")
  declare -A size=([cn]=2097152 [dn]=3145728 [psk]=4194304 [rv]=5242880)
  for id in "${!uri[@]}"; do
    u=${uri[$id]}
    accepted "$id on the default export" size_is 65536 "${u/EXPORT/}"
    for e in cn dn psk rv; do
      if [ "${may[$id]:-}" = "$e" ]; then
        accepted "$id on $e" size_is "${size[$e]}" "${u/EXPORT/$e}"
      else
        refused "$id on $e" "NBD_OPT_GO of export \"$e\" refused: the export.s allow= list does not name this client" \
          nbdinfo --size "${u/EXPORT/$e}"
        # The refusal names the TLS identity of the client.
        grep "of export \"$e\" refused" server.log | tail -1 |
          grep -qF "(${ident[$id]}" ||
          fail "$id on $e: the log does not name ${ident[$id]}: $(grep "of export \"$e\" refused" server.log | tail -1)"
        # Told exactly what a name that does not exist gets
        # (docs/security.md 34); the log above has the real reason.
        grep -q "server has no export named .$e." client.out ||
          fail "$id on $e: expected \"no export named\": $(cat client.out)"
      fi
    done
    # LIST shows the default export and only the one this identity may use.
    got=$(listed "${u/EXPORT/}") || fail "$id: nbdinfo --list failed"
    expect_eq "exports listed for $id (|-separated)" \
      "${may[$id]:+|${may[$id]}}" "$got"
  done

  # A client that trusts another CA refuses this server.
  q="driver=nbd,server.type=inet,server.host=localhost,server.port=$port,tls-creds=t"
  # The client refuses the server: in TLS 1.3 it may do so after the
  # server has finished its side, so the server sees a hang-up.
  hup="(TLS handshake failed|handshake: )"
  refused "client trusting another CA (nbdinfo, tcp)" "$hup" \
    nbdinfo --size "nbds://localhost:$port/?tls-certificates=$D/wrongca"
  grep -qi "certificate" client.out ||
    fail "wrong CA: expected a certificate error: $(cat client.out)"
  refused "client trusting another CA (qemu-img, tcp)" "$hup" \
    qemu-img info --object "tls-creds-x509,id=t,dir=$D/wrongca,endpoint=client" \
    --image-opts "$q"
  refused "client trusting another CA (qemu-img, unix)" "$hup" \
    qemu-img info --object "tls-creds-x509,id=t,dir=$D/wrongca,endpoint=client" \
    --image-opts "driver=nbd,server.type=unix,server.path=$unixsocket,tls-creds=t,tls-hostname=localhost"
  accepted "qemu-img with the right CA" qemu-img info \
    --object "tls-creds-x509,id=t,dir=$D/nocert,endpoint=client" --image-opts "$q"
' 2>server.log || { tail -n 40 server.log >&2; fail "part B failed"; }
echo "all refusal checks passed"
