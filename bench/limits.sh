#!/usr/bin/env bash
# bench/limits.sh: the physical ceilings on this machine, one core each:
# memcpy bandwidth, one loopback TCP stream, and GnuTLS AES-128-GCM,
# AES-256-GCM and CHACHA20-POLY1305 sealing 16 KiB records (bench/limits.c),
# plus `gnutls-cli --benchmark-ciphers` for the ciphers it covers (it has
# no AES-256-GCM).  The ceiling for a cipher is the higher of the two.
#
#   bench/limits.sh [BUILD_DIR [OUT.tsv]]
#
# Prints a small table; with OUT.tsv, appends "-  -  limit:NAME  MiB/s"
# lines (one per run) for bench/report.py.  Settings: BENCH_RUNS (3),
# BENCH_LIMIT_SECONDS (1 per measurement), BENCH_QUICK=1 (one short run,
# no gnutls-cli, which takes ~15 s).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build=$top/$build ;; esac
out=${2:-}
bin=$build/bench
quick=${BENCH_QUICK:-0}
runs=${BENCH_RUNS:-3}
secs=${BENCH_LIMIT_SECONDS:-1}
if [ "$quick" = 1 ]; then
  runs=${BENCH_RUNS:-1}
  secs=${BENCH_LIMIT_SECONDS:-0.3}
fi

make -s -C "$top/bench" "O=$bin" >&2

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

emit() { # NAME MIBS
  printf -- '-\t-\tlimit:%s\t%s\n' "$1" "$2" >>"$tmp"
}

for ((r = 1; r <= runs; r++)); do
  for what in memcpy tcp aead; do
    timeout 120 "$bin/limits" "$what" "$secs" |
      while read -r name mibs; do emit "$name" "$mibs"; done
  done
done

# gnutls-cli runs each cipher for a fixed few seconds; stop reading (and
# so stop it, by SIGPIPE) after the AEAD section, or after 40 s (its
# later sections would take two minutes more).  GB/sec and MB/sec are
# decimal.
if [ "$quick" != 1 ] && command -v gnutls-cli >/dev/null; then
  { timeout 40 gnutls-cli --benchmark-ciphers 2>&1 || true; } | awk '
    /AES-128-GCM|CHACHA20-POLY1305/ {
      v = $2; if ($3 ~ /^GB/) v *= 1e9; else if ($3 ~ /^MB/) v *= 1e6
      printf "-\t-\tlimit:%s\t%.0f\n", "cli-" $1, v / 1048576
    }
    /CHACHA20-POLY1305/ { exit }' >>"$tmp"
fi

# A small table on stdout: the median of the runs for each ceiling.
awk -F'\t' '
  { v[$3] = v[$3] " " $4 }
  END {
    print "| ceiling (one core) | MiB/s |"
    print "|---|---:|"
    for (k in v) {
      n = split(v[k], a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
        if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      m = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      sub(/^limit:/, "", k)
      printf "| %s | %.0f |\n", k, m
    }
  }' "$tmp" | { read -r h; read -r s; echo "$h"; echo "$s"; sort; }

[ -z "$out" ] || cat "$tmp" >>"$out"
