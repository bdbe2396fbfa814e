# shellcheck shell=bash
# Starting and stopping the servers under test, for bench/run.sh.
#
#   server_na NAME TRANSPORT     prints why NAME cannot serve TRANSPORT
#                                (and succeeds), or fails if it can
#   server_start NAME TRANSPORT  start NAME on TRANSPORT, wait until it
#                                listens; sets SRV_PID, SRV_URI, SRV_CMD
#                                (the command line, scrubbed); fails with
#                                the log's tail
#   server_stop                  stop it (by PID) and remove its socket
#   scrub TEXT                   TEXT with the work dir as $W and the
#                                port as $PORT, for the record
#
#   rbd_cluster_start / rbd_cluster_stop
#                                the Ceph cluster of the rbd transport
#                                (tests/lib/ceph-cluster.sh) in $W/ceph
#
# NAME: snbd (file backend; on rbd its rbd: backend), snbd-memory,
# snbd-prev (SNBD_PREV_SERVER, an earlier build, file backend),
# snbd-metrics (snbd with --metrics on a loopback port, scraped once a
# second as Prometheus would),
# nbdkit-memory, nbdkit-file, qemu-nbd (on rbd: QEMU's rbd driver),
# nbd-server, nbdkit-null (the do-nothing ceiling).
# TRANSPORT: tcp (loopback), unix, x509 (TLS with client certificates,
# peer verified), psk (TLS-PSK); TLS is over loopback TCP.  rbd: a Unix
# socket to a server whose export is an image in a Ceph cluster on this
# host (one OSD, memstore), each server its own image.
#
# Needs from the caller: W (work dir in /dev/shm), DISK (the image the
# file servers share), SIZE (bytes), PKI (make_x509 dir), PSK_DIR (holds
# keys.psk), PSK_USER, SNBD_SERVER, LOGDIR, PY, top (the source tree).

server_na() {
  case "$1:$2" in
    nbd-server:psk)
      echo "nbd-server 3.24 has no TLS-PSK support (X.509 only: certfile/keyfile/cacertfile)" ;;
    snbd:rbd|qemu-nbd:rbd) return 1 ;;
    *:rbd) echo "$1 cannot serve a Ceph RBD image" ;;
    *) return 1 ;;
  esac
}

rbd_cluster_start() {
  RBD_DIR=$W/ceph
  # memstore keeps every image in RAM: room for all of them, and a margin.
  CEPH_CLUSTER_MEMSTORE_BYTES=$(( SIZE * $(wc -w <<<"$SERVERS") * 3 / 2 + (1 << 30) )) \
    "$top/tests/lib/ceph-cluster.sh" start "$RBD_DIR" >"$LOGDIR/ceph.out" 2>&1 ||
    { tail -5 "$LOGDIR/ceph.out" >&2; return 1; }
  # shellcheck source=/dev/null
  . "$RBD_DIR/env"
}

rbd_cluster_stop() {
  [ -n "${RBD_DIR:-}" ] || return 0
  "$top/tests/lib/ceph-cluster.sh" stop "$RBD_DIR" >&2 || true
  RBD_DIR=""
}

_rbd() {
  timeout 120 rbd --id "$CEPH_SNBD_ID" --keyring "$CEPH_SNBD_KEYRING" "$@"
}

# The file servers all get a fresh sparse image, so each one pays for
# allocating the pages on its first write run, as the memory servers do;
# on rbd, a fresh image of the server's own.
_fresh_disk() {
  if [ "$_T" = rbd ]; then
    _rbd rm --no-progress "$CEPH_POOL/bench-$_name" >/dev/null 2>&1 || true
    _rbd create --size "$((SIZE >> 20))M" "$CEPH_POOL/bench-$_name" >&2
    return
  fi
  rm -f "$DISK"
  truncate -s "$SIZE" "$DISK"
}

_free_port() {
  "$PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

_listen_args() { # TCP_ARGS... -- UNIX_ARGS...: pick by $_T
  local tcp=() unix=() a
  while [ "$1" != -- ]; do tcp+=("$1"); shift; done
  shift
  unix=("$@")
  if [ "$_T" = unix ] || [ "$_T" = rbd ]; then cmd+=("${unix[@]}")
  else cmd+=("${tcp[@]}"); fi
}

_cmd_snbd() {
  cmd=("$SNBD_SERVER")
  [ "$1" != snbd-prev ] || cmd=("$SNBD_PREV_SERVER")
  # The memory figures open 1,000 (and 10,000) connections at once from
  # 127.0.0.1; the per-address negotiation limit (16) is for floods from
  # afar.  Earlier trees (snbd-prev, or an old tree benched as snbd) lack
  # the option.
  if "${cmd[0]}" --help 2>&1 | grep -q -- --max-negotiating-per-source; then
    cmd+=(--max-negotiating-per-source 0)
  fi
  _listen_args -i 127.0.0.1 -p "$_port" -- -U "$_sock"
  case $_T in
    x509) cmd+=(--tls-certificates "$PKI" --tls-verify-peer) ;;
    psk) cmd+=(--tls-psk "$PSK_DIR/keys.psk") ;;
  esac
  if [ "$1" = snbd-metrics ]; then
    _mport=$(_free_port)
    cmd+=(--metrics "127.0.0.1:$_mport")
  fi
  if [ "$_T" = rbd ]; then
    cmd+=("rbd:$CEPH_POOL/bench-$1,ceph-conf=$CEPH_CONF,ceph-id=$CEPH_SNBD_ID,ceph-keyring=$CEPH_SNBD_KEYRING")
  elif [ "$1" = snbd-memory ]; then cmd+=("memory:$SIZE")
  else cmd+=("file:$DISK"); fi
}

# snbd-metrics: one scrape a second while the server runs, as a
# Prometheus server would make (its CPU counts in the server's figures).
_start_scraper() {
  local pid=$SRV_PID url="http://127.0.0.1:$_mport/metrics"
  ( while alive "$pid"; do
      curl -s -o /dev/null --max-time 5 "$url" || true
      sleep 1
    done ) &
  track $!
}

_cmd_nbdkit() {
  cmd=(nbdkit -f --exit-with-parent)
  _listen_args -i 127.0.0.1 -p "$_port" -- -U "$_sock"
  case $_T in
    x509) cmd+=(--tls=require "--tls-certificates=$PKI" --tls-verify-peer) ;;
    psk) cmd+=(--tls=require "--tls-psk=$PSK_DIR/keys.psk") ;;
  esac
  case $1 in
    nbdkit-memory) cmd+=(memory "size=$SIZE") ;;
    nbdkit-file) cmd+=(file "file=$DISK") ;;
    # noextents: otherwise the null plugin reports one big hole and
    # nbdcopy would read nothing at all.
    nbdkit-null) cmd+=(--filter=noextents null "size=$SIZE") ;;
  esac
}

_cmd_qemu() {
  # --shared=0: any number of clients (the default, 1, would refuse
  # nbdcopy's extra connections and the idle-connection test).
  cmd=(qemu-nbd -f raw -t --shared=0)
  _listen_args -b 127.0.0.1 -p "$_port" -- -k "$_sock"
  case $_T in
    x509) cmd+=(--object "tls-creds-x509,id=tls0,dir=$PKI,endpoint=server,verify-peer=on"
                --tls-creds=tls0) ;;
    psk) cmd+=(--object "tls-creds-psk,id=tls0,dir=$PSK_DIR,endpoint=server"
               --tls-creds=tls0) ;;
  esac
  if [ "$_T" = rbd ]; then
    cmd+=("rbd:$CEPH_POOL/bench-qemu-nbd:conf=$CEPH_CONF:id=$CEPH_SNBD_ID:keyring=$CEPH_SNBD_KEYRING")
  else
    cmd+=("$DISK")
  fi
}

# nbd-server daemonizes (its -d mode serves one client and exits), so it
# writes its PID to a file of ours and is stopped by that PID.
_cmd_nbd_server() {
  local conf=$W/nbd-server-$_T.conf
  {
    echo "[generic]"
    if [ "$_T" = unix ]; then
      echo "unixsock = $_sock"
    else
      echo "port = $_port"
      echo "listenaddr = 127.0.0.1"
    fi
    if [ "$_T" = x509 ]; then
      echo "certfile = $PKI/server-cert.pem"
      echo "keyfile = $PKI/server-key.pem"
      echo "cacertfile = $PKI/ca-cert.pem"
      echo "force_tls = true"
    fi
    echo "[disk]"
    echo "exportname = $DISK"
  } >"$conf"
  cmd=(nbd-server -C "$conf" -p "$W/nbd-server.pid")
  _conf_text="$conf: $(paste -sd'|' "$conf" | sed 's/|/; /g')"
}

# A command line to show and re-run: quotes only where needed.
_printable() {
  local a out=()
  for a in "$@"; do
    if [[ $a =~ ^[][A-Za-z0-9_./:=,@%+-]+$ ]]; then out+=("$a")
    else out+=("$(printf '%q' "$a")"); fi
  done
  echo "${out[*]}"
}

# The work dir as $W, this run's port as $PORT, paths in the source tree
# relative to it.
scrub() {
  local a=$1
  a=${a//"$W"/\$W}
  a=${a//"-p $_port"/-p \$PORT}
  a=${a//":$_port"/:\$PORT}
  [ -z "${_mport:-}" ] || a=${a//":$_mport"/:\$MPORT}
  a=${a//"port = $_port"/port = \$PORT}
  echo "${a//"$top"\//}"
}

# shellcheck disable=SC2034 # SRV_URI is the caller's
_uri() {
  local exp=$1
  case $_T in
    tcp) SRV_URI="nbd://127.0.0.1:$_port/$exp" ;;
    unix|rbd) SRV_URI="nbd+unix:///$exp?socket=$_sock" ;;
    x509) SRV_URI="nbds://127.0.0.1:$_port/$exp?tls-certificates=$PKI" ;;
    psk) SRV_URI="nbds://$PSK_USER@127.0.0.1:$_port/$exp?tls-psk-file=$PSK_DIR/keys.psk" ;;
  esac
}

_listening() {
  if [ "$_T" = unix ] || [ "$_T" = rbd ]; then
    ss -Hlxn 2>/dev/null | grep -qF " $_sock "
  else
    ss -Hltn "sport = :$_port" 2>/dev/null | grep -q .
  fi
}

# Start and wait (bounded) until it listens; 1 if it died or never did.
_launch() {
  local log=$1 i
  if [ "$_name" = nbd-server ]; then
    rm -f "$W/nbd-server.pid"
    timeout 30 "${cmd[@]}" >"$log" 2>&1 </dev/null || return 1
    for ((i = 0; i < 100; i++)); do
      [ -s "$W/nbd-server.pid" ] && break
      sleep 0.1
    done
    SRV_PID=$(cat "$W/nbd-server.pid" 2>/dev/null) || return 1
  else
    "${cmd[@]}" >"$log" 2>&1 </dev/null &
    SRV_PID=$!
  fi
  track "$SRV_PID"
  for ((i = 0; i < 150; i++)); do
    alive "$SRV_PID" || return 1
    _listening && return 0
    sleep 0.1
  done
  return 1
}

server_start() {
  _name=$1 _T=$2
  local try log exp=""
  _fresh_disk || return 1
  for try in 1 2 3; do
    _port=$(_free_port)
    _sock=$W/$_name-$_T.sock
    rm -f "$_sock"
    _conf_text="" _mport=""
    case $_name in
      snbd|snbd-memory|snbd-prev|snbd-metrics) _cmd_snbd "$_name" ;;
      nbdkit-*) _cmd_nbdkit "$_name" ;;
      qemu-nbd) _cmd_qemu ;;
      nbd-server) _cmd_nbd_server; exp=disk ;;
      *) echo "unknown server $_name" >&2; return 1 ;;
    esac
    log=$LOGDIR/$_name-$_T.log
    if _launch "$log"; then
      [ "$_name" != snbd-metrics ] || _start_scraper
      _uri "$exp"
      SRV_CMD=$(_printable "${cmd[@]}")
      [ -z "$_conf_text" ] || SRV_CMD="$SRV_CMD  # $_conf_text"
      SRV_CMD=$(scrub "$SRV_CMD")
      return 0
    fi
    # Most likely someone took the port between our probe and its bind.
    stop_pid "$SRV_PID"
    echo "bench: $_name over $_T did not start (try $try):" >&2
    tail -5 "$log" >&2
  done
  return 1
}

server_stop() {
  stop_pid "$SRV_PID"
  rm -f "$_sock"
  SRV_PID=""
}
