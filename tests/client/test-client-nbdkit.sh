#!/usr/bin/env bash
# libsnbd, snbd-info and snbd-copy against nbdkit: memory and file
# plugins, plain, TLS with X.509 (and a client certificate the server
# checks) and PSK; faults (error filter) and slowness (delay filter);
# block-size limits (blocksize-policy filter).
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/client/client-lib.sh"
require nbdkit nbdcopy certtool psktool

make_sparse_image img 64

# Plain, memory plugin.
start_nbdkit mem memory 64M
client_battery "nbd+unix:///?socket=$sock" img check-with-nbdcopy
stop_bg "$pid"

# Plain, file plugin: the copy lands in the file nbdkit serves.
truncate -s 64M served.img
start_nbdkit file file served.img
client_battery "nbd+unix:///?socket=$sock" img
stop_bg "$pid"
expect_eq "file served by nbdkit" "$(sum_file img.2)" "$(sum_file served.img)"

# TLS with X.509: nbds+unix needs tls-hostname to verify the server over
# a Unix socket; the server also demands our client certificate.
make_x509 pki
start_nbdkit x509 --tls=require --tls-certificates="$PWD/pki" \
  --tls-verify-peer memory 64M
u="nbds+unix:///?socket=$sock&tls-certificates=$PWD/pki&tls-hostname=localhost"
client_battery "$u" img check-with-nbdcopy
"$INFO" "$u" >tls.txt
grep -Eq '^tls: TLS1\.[23] .*peer: .*CN=localhost' tls.txt ||
  fail "snbd-info did not show the TLS session: $(cat tls.txt)"
"$INFO" --is tls "$u" || fail "--is tls said no"
stop_bg "$pid"

# TLS with PSK.
make_psk keys.psk alice
start_nbdkit psk --tls=require --tls-psk="$PWD/keys.psk" memory 64M
u="nbds+unix:///?socket=$sock&tls-psk-file=$PWD/keys.psk&tls-username=alice"
client_battery "$u" img
"$INFO" "$u" >psk.txt
grep -Eq '^tls: TLS1\.[23] .*peer: alice$' psk.txt ||
  fail "snbd-info did not show the PSK identity: $(cat psk.txt)"
stop_bg "$pid"

# Faults: a failed read or write makes snbd-copy fail loudly, naming the
# server's error.  Every read (write) fails: the image has only 4 MiB of
# data, so at a lower rate a copy could go through untouched.
cp img faulty.img
start_nbdkit rerr --filter=error file faulty.img error-pread-rate=100% \
  error-pread=EIO
if "$COPY" "nbd+unix:///?socket=$sock" copy.img 2>err.txt; then
  fail "snbd-copy succeeded although every read fails"
fi
grep -q 'NBD_EIO' err.txt || fail "error does not name NBD_EIO: $(cat err.txt)"
stop_bg "$pid"
start_nbdkit werr --filter=error memory 64M error-pwrite-rate=100% \
  error-pwrite=ENOSPC
if "$COPY" img "nbd+unix:///?socket=$sock" 2>err.txt; then
  fail "snbd-copy succeeded although every write fails"
fi
grep -q 'NBD_ENOSPC' err.txt ||
  fail "error does not name NBD_ENOSPC: $(cat err.txt)"
stop_bg "$pid"

# Slowness: many requests in flight, still correct.
start_nbdkit slow --filter=delay memory 64M rdelay=2ms wdelay=2ms
client_battery "nbd+unix:///?socket=$sock" img
stop_bg "$pid"

# Block-size limits the server enforces (it errors on any violation):
# requests are split at the maximum and kept aligned.
start_nbdkit bs --filter=blocksize-policy memory 64M \
  blocksize-minimum=4096 blocksize-preferred=65536 blocksize-maximum=1M \
  blocksize-error-policy=error
client_battery "nbd+unix:///?socket=$sock" img
"$INFO" "nbd+unix:///?socket=$sock" >bs.txt
grep -q 'block sizes: minimum 4096, preferred 65536, maximum 1048576' bs.txt ||
  fail "block sizes not reported: $(cat bs.txt)"
stop_bg "$pid"
echo "nbdkit: all checks passed"
