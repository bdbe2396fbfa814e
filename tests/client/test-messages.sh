#!/usr/bin/env bash
# Messages an operator or a user can act on (docs/architecture.md
# "Messages"): each is produced for real and grepped.
#   server   start lines (listener, TLS mode, each export with backend and
#            size, the default one as "(default)"); errors in the
#            configuration say what and where, never an internal
#            function's name; a misspelled option is one line and a
#            pointer to --help; a PSK key under 128 bits is refused;
#   client   snbd-info says "the server requires a client certificate",
#            "the server does not know PSK user", "certificate name
#            mismatch: connected to X, the certificate is for Y" instead
#            of "Protocol error" / "Internal error";
#   copy     snbd-copy --progress prints bytes, rate and time left; a
#            failed copy removes the destination it created, and says it
#            left one that was there before.
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/lib/tls.sh"
require certtool psktool
require_server

# Helpers the commands run by `serve` need too (they run in a new shell).
cat >helpers.sh <<'HELPERS'
has() {   # has WHAT FILE TEXT: FILE contains TEXT (fixed string)
  grep -qF -- "$3" "$2" || fail "$1: no \"$3\" in: $(cat "$2")"
}
info_fails() {   # info_fails WHAT WANT URI: snbd-info fails, saying WANT
  if "$SNBD_INFO" --size "$3" >info.out 2>&1; then
    fail "$1: snbd-info connected: $(cat info.out)"
  fi
  has "$1" info.out "$2"
  if grep -qE "Protocol error|Internal error\$" info.out; then
    fail "$1: the message does not say what happened: $(cat info.out)"
  fi
}
HELPERS
. ./helpers.sh
# Internal function names that used to leak into messages.
no_internal_names() {
  if grep -E '(^|: )(parse_size|need_file|export_set_key|backend_open|backend_[a-z_]*_open|config_load|config_set|export_table_open|export_open_one|tls_creds_load_server|load_psk_server|psk_load_file):' "$2"; then
    fail "$1: an internal function name in: $(cat "$2")"
  fi
}

# -- server: start lines --
serve -p 0 memory:3M disk=memory:2G,readonly -- 'true' 2>start.log
has "start" start.log "listening on 127.0.0.1:"
has "start" start.log ", clear text (TLS off)"
has "start" start.log "listening on unix:"
has "start" start.log "export (default): memory:3M, 3 MiB (3145728 bytes), read-write"
has "start" start.log 'export "disk": memory:2G, 2 GiB (2147483648 bytes), read-only'

# -- server: configuration errors --
srv_fails() {   # srv_fails WHAT WANT ARGS...
  local what=$1 want=$2
  shift 2
  if "$SNBD_SERVER" "$@" >err.log 2>&1; then fail "$what: the server started"; fi
  has "$what" err.log "$want"
  no_internal_names "$what" err.log
}
srv_fails "negative size" 'error: export "disk": size "-5" is not a size (use e.g. 512M, 1G)' --check-config disk=memory:-5
srv_fails "missing file" "error: export (default): file:$TMPDIR/none: No such file or directory" \
  --check-config "file:$TMPDIR/none"
srv_fails "unknown export key" 'export "x": unknown key "bogus"' --check-config x=memory:1M,bogus
printf '[server]\nprot = 1\n[export]\nbackend = memory:1M\n' >bad.conf
srv_fails "unknown config key" "bad.conf: [server] prot: unknown option \"prot\" (snbd-server --help lists them)" \
  --check-config -c bad.conf
srv_fails "misspelled option" "snbd-server: unknown option '--prot'; snbd-server --help lists the options" \
  --prot 1 memory:1M
expect_eq "a misspelled option is one line" 1 "$(wc -l <err.log)"
srv_fails "option without its value" "no value after '--port'" --port
expect_eq "a missing value is one line" 1 "$(wc -l <err.log)"

# -- server: short PSK keys --
printf 'alice:00112233445566778899aabbccddeeff\nbob:0011223344556677\n' >short.psk
srv_fails "short PSK key" 'short.psk line 2: user "bob": the key has 64 bits; at least 128 are needed' \
  --check-config --tls-psk short.psk memory:1M
grep -q 0011223344556677 err.log && fail "the key is in the message: $(cat err.log)"

# -- client: TLS failures explained --
make_x509 pki
make_client_dir pki nocert
make_psk keys.psk alice
make_psk other.psk bob
serve --tls-certificates pki --tls-verify-peer memory:1M -- '. ./helpers.sh
  info_fails "no client certificate" "the server requires a client certificate" \
    "nbds+unix:///?socket=$unixsocket&tls-certificates=nocert&tls-hostname=localhost"' 2>server.log
serve --tls-psk keys.psk memory:1M -- '. ./helpers.sh
  info_fails "unknown PSK user" "the server does not know PSK user \"bob\"" \
    "nbds+unix://bob@/?socket=$unixsocket&tls-psk-file=other.psk"' 2>server.log
serve --tls-certificates pki memory:1M -- '. ./helpers.sh
  info_fails "name mismatch" "certificate name mismatch: connected to server.example.com, the certificate is for localhost, 127.0.0.1, ::1" \
    "nbds+unix:///?socket=$unixsocket&tls-certificates=nocert&tls-hostname=server.example.com"' 2>server.log

# -- snbd-copy --
head -c $((24 << 20)) /dev/urandom >src.img
"$SNBD_COPY" --progress src.img copy.img 2>progress.log
cmp src.img copy.img || fail "the copy differs"
grep -E '^snbd-copy: 100% \(24\.0 MiB of 24\.0 MiB, [0-9.]+ [KMGT]?i?B(ytes)?/s, 0:[0-9]{2} left\)$' progress.log >/dev/null ||
  fail "--progress lacks bytes, rate or time left: $(cat progress.log)"
export src=$PWD/src.img
# Every read fails: the copy fails on its first request.
serve "error:1:EIO:file:$src,readonly" -- '. ./helpers.sh
  if "$SNBD_COPY" "$uri" new.img 2>copy.err; then fail "the copy succeeded"; fi
  has "failed copy" copy.err "removed new.img, which the failed copy had created"
  [ ! -e new.img ] || fail "new.img is still there"
  echo old >old.img
  if "$SNBD_COPY" "$uri" old.img 2>copy.err; then fail "the copy succeeded"; fi
  has "failed copy" copy.err "old.img was there before the copy, so it is left as it is"
  [ -e old.img ] || fail "old.img was removed"' 2>server.log
echo "all messages as expected"
