#!/usr/bin/env bash
# The rbd: backend when Ceph misbehaves (one private cluster,
# tests/lib/ceph-cluster.sh):
#  - refusals at start, one line each and never a hang: the cluster down
#    (ceph-timeout bounds the wait), a wrong key, no keyring, a missing
#    pool, image, snapshot or namespace;
#  - the OSD stopped while a client writes: the client gets errors (EIO,
#    librados's ETIMEDOUT after ceph-timeout) instead of hanging, the
#    server keeps serving its other export meanwhile and serves the image
#    again once the OSD is back;
#  - requests while the image is resized: a connection made before a
#    shrink gets errors past the new end, never bytes librbd clipped, and
#    new connections see each new size (librbd's update watch);
#  - SIGTERM with the OSD down: the server still exits; with a flush in
#    flight that the cluster will not answer before the shutdown's bound
#    (ceph-timeout 60 s), it exits after 10 + 5 s, names the connection
#    and its unflushed export, and exits 1, not 0.
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/rbd/rbdlib.sh"
rbd_require
require nbdinfo nbdcopy

# refuse WHAT PATTERN ARGS...: snbd-server ARGS must exit non-zero before
# serving, with exactly one error line, which contains PATTERN.
refuse() {
  local what=$1 pattern=$2; shift 2
  rm -f ran
  if timeout 120 "$SNBD_SERVER" -U - "$@" --run 'touch ran' 2>refuse.err
  then fail "$what: the server started"; fi
  [ ! -e ran ] || fail "$what: the server served"
  grep 'snbd-server: error:' refuse.err >refuse.lines || true
  expect_eq "$what: error lines" 1 "$(wc -l <refuse.lines)"
  grep -qF -- "$pattern" refuse.lines ||
    fail "$what: expected \"$pattern\", got: $(cat refuse.err)"
}

# The cluster down: nothing listens where ceph.conf says the monitor is.
port=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ceph-authtool --create-keyring down.keyring --gen-key -n client.admin \
  >/dev/null || fail "ceph-authtool"
printf '[global]\nmon_host = v2:127.0.0.1:%s\nkeyring = %s\n' \
  "$port" "$PWD/down.keyring" >down.conf
refuse "cluster down" "no Ceph monitor answered within 3 s" \
  "rbd:rbd/img,ceph-conf=$PWD/down.conf,ceph-timeout=3"

rbd_cluster_start
R create "$CEPH_POOL/img" --size 32M || fail "rbd create"
printf '[client.%s]\n\tkey = %s\n' "$CEPH_SNBD_ID" \
  "$(ceph-authtool --gen-print-key)" >wrong.keyring
refuse "wrong key" "the cluster refused client.snbd's key" \
  "rbd:$CEPH_POOL/img,ceph-id=snbd,ceph-keyring=$PWD/wrong.keyring"
refuse "no keyring" "no keyring for client.snbd" \
  "rbd:$CEPH_POOL/img,ceph-id=snbd"
refuse "missing pool" 'no pool "nosuch"' "rbd:nosuch/img,$KEYS"
refuse "missing image" "no image $CEPH_POOL/nosuch" \
  "rbd:$CEPH_POOL/nosuch,$KEYS"
refuse "missing snapshot" "no snapshot $CEPH_POOL/img@nosuch" \
  "rbd:$CEPH_POOL/img@nosuch,$KEYS"
refuse "missing namespace" "no image $CEPH_POOL/ns/img" \
  "rbd:$CEPH_POOL/ns/img,$KEYS"
refuse "bad timeout" "ceph-timeout" "rbd:$CEPH_POOL/img,$KEYS,ceph-timeout=0"
refuse "one connection, two timeouts" "must agree" \
  "a=rbd:$CEPH_POOL/img,$KEYS,ceph-timeout=5" "b=rbd:$CEPH_POOL/img,$KEYS"
refuse "a later export fails" "no image" \
  "mem=memory:1M" "bad=rbd:$CEPH_POOL/nosuch,$KEYS"

# A server for the rest: the image (ceph-timeout 5) and a memory export.
"$SNBD_SERVER" -U "$PWD/s.sock" -P "$PWD/s.pid" \
  "img=rbd:$CEPH_POOL/img,$KEYS,ceph-timeout=5" mem=memory:16M \
  "ro=rbd:$CEPH_POOL/img,$KEYS,ceph-timeout=5,readonly" 2>server.log &
server=$!
RBD_PIDS+=("$server")
wait_for 60 test -S s.sock -a -s s.pid
img="nbd+unix:///img?socket=$PWD/s.sock"
mem="nbd+unix:///mem?socket=$PWD/s.sock"
export img mem

# The OSD stops while a client writes and flushes 1 MiB at a time.
cat >writer.py <<'PY'
import nbd, os, sys, time
h = nbd.NBD()
h.connect_uri(os.environ["img"])
buf, size, off, n = os.urandom(1 << 20), h.get_size(), 0, 0
deadline = time.monotonic() + 240
while time.monotonic() < deadline:
    try:
        h.pwrite(buf, off)
        h.flush()
    except nbd.Error as e:
        print("error after %d writes: %s" % (n, e))
        sys.exit(0)
    n += 1
    off = (off + len(buf)) % size
    with open("progress", "w") as f:
        f.write(str(n))
print("no error in 240 s")
sys.exit(1)
PY
"$PYTHON" writer.py >writer.out 2>&1 &
writer=$!
wait_for 60 test -s progress
"$SNBD_SRC/tests/lib/ceph-cluster.sh" stop-osd "$PWD/ceph" || fail "stop-osd"
nbdsh -u "$mem" -c 'h.pwrite(b"m" * 4096, 0); assert h.pread(4096, 0) == b"m" * 4096' ||
  fail "the memory export failed while the OSD was down"
wait "$writer" || fail "writer: $(cat writer.out)"
grep -q "error after" writer.out || fail "writer: $(cat writer.out)"
grep -q "Input/output error" writer.out || fail "writer: $(cat writer.out)"
grep -q "ceph: Connection timed out" server.log ||
  fail "the Ceph error is not in the log: $(tail -5 server.log)"
"$SNBD_SRC/tests/lib/ceph-cluster.sh" start-osd "$PWD/ceph" || fail "start-osd"
make_random_image back.img 4
copy_back() {
  nbdcopy back.img "$img" 2>/dev/null && nbdcopy "$img" again.img 2>/dev/null
}
wait_for 120 copy_back
expect_eq "served again after the OSD came back" "$(sum_file back.img)" \
  "$(head -c 4M again.img | b2sum | cut -d' ' -f1)"

# Resize while a connection reads near the end: a shrink, then a growth.
cat >resize.py <<'PY'
import nbd, os, subprocess, sys, time
h = nbd.NBD()
h.connect_uri(os.environ["img"])
assert h.get_size() == 32 << 20
h.pwrite(b"r" * 4096, 30 << 20)
rbd = os.environ["RBD"].split()
p = subprocess.Popen(rbd + ["resize", "--allow-shrink", "--size", "16M",
                            os.environ["CEPH_POOL"] + "/img"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ok = past = 0
deadline = time.monotonic() + 120
while past == 0:
    try:
        h.pread(4096, 30 << 20)
        ok += 1
    except nbd.Error as e:
        assert "Invalid argument" in str(e), e
        past += 1
    if time.monotonic() > deadline:
        sys.exit("no error past the new end in 120 s: %d reads" % ok)
assert p.wait(timeout=120) == 0
try:
    h.pwrite(b"w" * 4096, 20 << 20)
    sys.exit("a write past the new end succeeded")
except nbd.Error as e:
    assert "No space left" in str(e), e
h.pwrite(b"w" * 4096, 8 << 20)          # within the new size: fine
print("reads before the shrink took effect: %d, after: %d" % (ok, past))
PY
RBD="timeout 60 rbd --id $CEPH_SNBD_ID --keyring $CEPH_SNBD_KEYRING" \
  "$PYTHON" resize.py || fail "resize while reading"
size_is() { [ "$(nbdinfo --size "$img")" = "$1" ]; }
ro_size_is() { [ "$(nbdinfo --size "${img/\/img/\/ro}")" = "$1" ]; }
wait_for 30 size_is $((16 << 20))
wait_for 30 ro_size_is $((16 << 20))     # a read-only export follows too
R resize --size 48M "$CEPH_POOL/img" >/dev/null 2>&1 || fail "rbd resize"
wait_for 30 size_is $((48 << 20))
wait_for 30 ro_size_is $((48 << 20))
nbdsh -u "$img" -c 'h.pwrite(b"g" * 4096, 47 << 20); h.flush(); assert h.pread(4096, 47 << 20) == b"g" * 4096' ||
  fail "writing the grown part"

# A second server on the image whose ceph-timeout (60 s) outlasts the
# shutdown's bound (10 s, then 5 s after closing the connections).  A
# write through it and then one through the first server: the first
# holds the image's exclusive lock again (for the close below), and with
# the OSD down the second's next write waits for that lock, a flush
# behind it.
"$SNBD_SERVER" -U "$PWD/slow.sock" \
  "img=rbd:$CEPH_POOL/img,$KEYS,ceph-timeout=60" 2>slow.log &
slow=$!
RBD_PIDS+=("$slow")
wait_for 60 test -S slow.sock
slowuri="nbd+unix:///img?socket=$PWD/slow.sock"
export slowuri
nbdsh -u "$slowuri" -c 'h.pwrite(b"s" * 4096, 0); h.flush()' ||
  fail "the second server"
nbdsh -u "$img" -c 'h.pwrite(b"f" * 4096, 0); h.flush()' ||
  fail "the first server, after the second"
cat >stuck.py <<'PY'
import nbd, os
h = nbd.NBD()
h.connect_uri(os.environ["slowuri"])
# Both sent by the time the aio calls return.
h.aio_pwrite(b"t" * 4096, 4096)
cookie = h.aio_flush()
open("flushing", "w").close()
try:
    while not h.aio_command_completed(cookie):
        h.poll(-1)
    print("flush completed")
except nbd.Error as e:
    print("flush: %s" % e)
PY

# SIGTERM with the OSD down: the final flush and the image's close
# (its watch, the exclusive lock this server took by writing) cannot
# reach the cluster, and librbd's close would wait for ever; the server
# exits all the same.
"$SNBD_SRC/tests/lib/ceph-cluster.sh" stop-osd "$PWD/ceph" || fail "stop-osd"
# The second server, a write and a flush in flight: it exits within its
# bound, says which export it could not flush, and exits 1 (it exited 0
# before).
"$PYTHON" stuck.py >stuck.out 2>&1 &
stuck=$!
wait_for 60 test -e flushing
kill "$slow"
wait_for 40 gone "$slow"
rc=0
wait "$slow" || rc=$?
# Reaped: its PID may be reused, so the cleanup at exit must not kill it.
keep=()
for p in "${RBD_PIDS[@]}"; do [ "$p" = "$slow" ] || keep+=("$p"); done
RBD_PIDS=("${keep[@]}")
expect_eq "exit status with a flush in flight" 1 "$rc"
grep -q 'still busy 5 s after it was closed.*export "img" is not flushed' \
  slow.log || fail "no word of the unflushed export: $(tail -3 slow.log)"
grep -q "exiting without the final flush" slow.log ||
  fail "no word of the exit: $(tail -3 slow.log)"
wait "$stuck" || true
kill "$server"
wait_for 120 gone "$server"
grep -q "did not let the image close within 10 s; left open" server.log ||
  fail "no word of the abandoned close: $(tail -3 server.log)"
