#!/usr/bin/env bash
# Installs every Debian package snbd's build, tests and benchmarks need.
# Idempotent and quick when everything is there: it asks dpkg first and
# runs apt-get only for what is missing.  Debian 12, as root (or via sudo).
set -euo pipefail

PKGS=(
  # build
  build-essential meson ninja-build pkg-config
  libgnutls28-dev liburiparser-dev libinih-dev libcmocka-dev
  libmicrohttpd-dev
  # sanitizers and fuzzing (clang, libFuzzer, ASan/UBSan runtimes)
  clang libclang-rt-14-dev llvm valgrind
  # real peers and tools used by the tests
  gnutls-bin libnbd-bin libnbd-dev python3-libnbd nbdkit qemu-utils nbd-server fio
  python3 procps iproute2 coreutils util-linux xxd bc strace
  # --metrics: a real Prometheus server and promtool scrape it in the tests
  prometheus curl
  # Ceph RBD backend: librbd/librados headers, and a single-node test
  # cluster (tests/lib/ceph-cluster.sh); qemu-nbd's rbd driver for the bench
  librbd-dev librados-dev ceph-mon ceph-osd ceph-common qemu-block-extra
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "deps.sh: installing: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# prometheus only for its binaries (the tests run their own server): not
# its recommended exporters, which would start services of their own.
lean=() rest=()
for p in "${missing[@]}"; do
  case $p in prometheus) lean+=("$p") ;; *) rest+=("$p") ;; esac
done
if [ "${#rest[@]}" -gt 0 ]; then
  $SUDO apt-get install -y -qq "${rest[@]}" >&2
fi
if [ "${#lean[@]}" -gt 0 ]; then
  $SUDO apt-get install -y -qq --no-install-recommends "${lean[@]}" >&2
fi
