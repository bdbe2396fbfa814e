#!/usr/bin/env bash
# snbd-copy: every direction (file, pipe, NBD, NBD to NBD), sparseness
# (zero requests with FAST_ZERO, and the fallback when it is not fast),
# multi-conn, request sizes within the server's limits, --flush, errors
# that must fail the copy, and Ctrl-C.  nbdkit's log filter shows what
# actually reached the server.
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/client/client-lib.sh"
require nbdkit

make_sparse_image img 16
want=$(sum_file img)
log_count() { grep -c "$1" "$2" || true; }

# File -> NBD -> file, pipe both ways, NBD -> NBD; zeroes as zero
# requests with FAST_ZERO, several connections, a flush at the end.
start_nbdkit a --filter=log memory 16M logfile="$PWD/a.log"
a="nbd+unix:///?socket=$sock"
start_nbdkit b --filter=log memory 16M logfile="$PWD/b.log"
b="nbd+unix:///?socket=$sock"
"$COPY" --flush img "$a"
grep -q ' Zero .* fast=1' a.log || fail "no FAST_ZERO request for the holes"
grep -q ' Flush ' a.log || fail "--flush sent no flush"
conns=$(grep -c ' Connect ' a.log)
[ "$conns" -eq 4 ] || fail "expected 4 connections (multi-conn), got $conns"
"$COPY" "$a" out.img
expect_eq "NBD -> file" "$want" "$(sum_file out.img)"
[ "$(du -k out.img | cut -f1)" -lt 8192 ] || fail "out.img is not sparse"
expect_eq "NBD -> pipe" "$want" "$("$COPY" "$a" - | b2sum | cut -d' ' -f1)"
"$COPY" "$a" "$b"
expect_eq "NBD -> NBD" "$want" "$("$COPY" "$b" - | b2sum | cut -d' ' -f1)"
make_sparse_image img2 16
cat img2 | "$COPY" - "$b"
expect_eq "pipe -> NBD" "$(sum_file img2)" "$("$COPY" "$b" - | b2sum | cut -d' ' -f1)"
"$COPY" "$b" - | "$COPY" - out2.img
expect_eq "pipe -> new file" "$(sum_file img2)" "$(sum_file out2.img)"

# null: reads the whole source over every connection and discards it; a
# read error still fails the copy; it cannot be a source.
: >a.log
"$COPY" --no-sparse "$a" null:
[ ! -e null: ] || fail "null: was taken for a file name"
reads=$(grep -c ' Read ' a.log)
[ "$reads" -eq 64 ] || fail "null: expected 64 reads of 256K, got $reads"
[ "$(grep -c ' Connect ' a.log)" -eq 4 ] || fail "null: not 4 connections"
start_nbdkit bad --filter=error memory 16M error-pread-rate=1 error-pread=EIO
expect_fail "$COPY" --no-sparse "nbd+unix:///?socket=$sock" null: 2>err.txt
grep -qi 'input/output\|EIO' err.txt || fail "null: read error: $(cat err.txt)"
stop_bg "$pid"
expect_fail "$COPY" null: out3.img 2>err.txt
grep -q 'only be a destination' err.txt || fail "$(cat err.txt)"

# --no-sparse writes every byte; --destination-is-zero writes no zeroes.
: >a.log
"$COPY" --no-sparse "$a" full.img
[ "$(du -k full.img | cut -f1)" -ge 16384 ] || fail "--no-sparse left holes"
expect_eq "--no-sparse" "$want" "$(sum_file full.img)"
start_nbdkit c --filter=log memory 16M logfile="$PWD/c.log"
"$COPY" --destination-is-zero img "nbd+unix:///?socket=$sock"
expect_eq "zero requests with --destination-is-zero" 0 "$(log_count ' Zero ' c.log)"
expect_eq "--destination-is-zero" "$want" \
  "$("$COPY" "nbd+unix:///?socket=$sock" - | b2sum | cut -d' ' -f1)"
stop_bg "$pid"

# Fast zero refused (ENOTSUP): the copy carries on without the flag.
# No zero command at all: zeroes are written as data.
"$COPY" img2 "$a"              # something to overwrite
for mode in "zeromode=plugin fastzeromode=slow" "zeromode=none"; do
  : >a.log
  start_nbdkit z --filter=log --filter=nozero --filter=nocache \
    nbd socket="${a#*socket=}" $mode logfile="$PWD/z.log"
  "$COPY" img "nbd+unix:///?socket=$sock"
  expect_eq "copy through nozero $mode" "$want" \
    "$("$COPY" "$a" - | b2sum | cut -d' ' -f1)"
  stop_bg "$pid"
  if [ "$mode" = zeromode=none ]; then
    expect_eq "zero requests without zero support" 0 "$(log_count ' Zero ' z.log)"
  else
    grep -q ' Zero .* fast=1' z.log || fail "FAST_ZERO was not tried"
    grep -q ' Zero .* fast=0' z.log ||
      fail "no zero without FAST_ZERO after ENOTSUP"
  fi
  rm -f z.log
done

# No multi-conn: one connection.  Small maximum block size: every request
# within it (the server fails any that is not).
start_nbdkit one --filter=log --filter=multi-conn --filter=blocksize-policy \
  memory 16M multi-conn-mode=disable blocksize-maximum=64K \
  blocksize-error-policy=error logfile="$PWD/one.log"
"$COPY" -C 8 --request-size 4M img "nbd+unix:///?socket=$sock"
expect_eq "connections without multi-conn" 1 "$(log_count ' Connect ' one.log)"
expect_eq "one connection, 64K requests" "$want" \
  "$("$COPY" "nbd+unix:///?socket=$sock" - | b2sum | cut -d' ' -f1)"
stop_bg "$pid"

# Errors: a destination too small is refused before any write; a missing
# source, a read-only destination, a short pipe into a larger export are
# handled; --progress reports the end.
start_nbdkit small --filter=log memory 1M logfile="$PWD/small.log"
expect_fail "$COPY" img "nbd+unix:///?socket=$sock" 2>err.txt
grep -q 'is smaller than' err.txt || fail "$(cat err.txt)"
expect_eq "writes to a too small export" 0 "$(log_count ' Write ' small.log)"
rc=0; cat img | "$COPY" - "nbd+unix:///?socket=$sock" 2>err.txt || rc=$?
[ "$rc" -ne 0 ] || fail "a pipe larger than the export was accepted"
grep -q 'larger than the destination' err.txt || fail "$(cat err.txt)"
stop_bg "$pid"
expect_fail "$COPY" no-such-file out.img
start_nbdkit ro --readonly memory 16M
expect_fail "$COPY" img "nbd+unix:///?socket=$sock" 2>err.txt
grep -q 'read-only' err.txt || fail "$(cat err.txt)"
stop_bg "$pid"
"$COPY" --progress img out3.img 2>progress.txt
grep -q '100%' progress.txt || fail "no progress: $(cat progress.txt)"

# Ctrl-C: stops issuing requests, waits for those in flight, disconnects
# cleanly, exits 130.
head -c 16M /dev/urandom >random.img
start_nbdkit slow --filter=log --filter=delay memory 16M wdelay=50ms \
  logfile="$PWD/slow.log"
"$COPY" -R 2 random.img "nbd+unix:///?socket=$sock" 2>int.txt &
cpid=$!
wait_for 20 grep -q ' Write ' slow.log
kill -INT "$cpid"
rc=0
for ((i = 0; i < 100; i++)); do _alive "$cpid" || break; sleep 0.1; done
wait "$cpid" || rc=$?
expect_eq "exit status after Ctrl-C" 130 "$rc"
grep -q 'interrupted' int.txt || fail "$(cat int.txt)"
writes=$(log_count ' Write ' slow.log)
[ "$writes" -lt 100 ] || fail "copy ran to the end ($writes writes) despite Ctrl-C"
wait_for 10 grep -q ' Disconnect ' slow.log
stop_bg "$pid"
echo "copy: all checks passed"
