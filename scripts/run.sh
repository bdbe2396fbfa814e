#!/usr/bin/env bash
# make run: serve a 1 GiB in-memory export on 127.0.0.1:10809 (and ::1)
# with TLS required, using a PSK generated on first run and kept in
# .state/tls/keys.psk (the file name QEMU's tls-creds-psk expects).
set -euo pipefail
build=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
state=$top/.state/tls
user=snbd
psk=$state/keys.psk
port=${SNBD_PORT:-10809}

mkdir -p "$state"
chmod 700 "$top/.state" "$state"
if [ ! -s "$psk" ]; then
  psktool -u "$user" -p "$psk" >/dev/null
  chmod 600 "$psk"
  echo "Generated a new pre-shared key in $psk"
fi

cat <<EOT

snbd-server: serving a 1 GiB in-memory export on localhost:$port, TLS required
(PSK user "$user", key in $psk). Press Ctrl-C to stop.

Connect with:
  $top/$build/tools/snbd-info 'nbds://$user@localhost:$port/?tls-psk-file=$psk'
  nbdinfo 'nbds://$user@localhost:$port/?tls-psk-file=$psk'
  nbdcopy --progress some-image.raw 'nbds://$user@localhost:$port/?tls-psk-file=$psk'
  qemu-img info --object tls-creds-psk,id=tls0,endpoint=client,dir=$state,username=$user \\
      --image-opts driver=nbd,host=localhost,port=$port,tls-creds=tls0

EOT
exec "$top/$build/server/snbd-server" --port "$port" --tls=require \
  --tls-psk "$psk" "memory:1G,description=snbd in-memory demo disk"
