#!/usr/bin/env bash
# A full Ceph cluster gives NBD_ENOSPC, at once: a private cluster whose
# OSD has a small memstore (256 MiB), a 2 GiB image written 4 MiB at a
# time with a flush after each write.  The OSD finds itself full in its
# heartbeat (here every 0.5-1.5 s), so a fast client writes well past the
# size before that (ENOSPC after 556-672 MiB in four runs here; with
# Ceph's default interval one CI machine wrote the whole image).  Past
# twice the size the writes are paced, 20 a second at most, so a
# heartbeat always comes before the end of the image.  librados alone
# would hold the writes back until ceph-timeout and fail them with
# ETIMEDOUT (EIO); the backend's pool full_try makes the OSD refuse them
# with ENOSPC.  The client gets ENOSPC long before ceph-timeout (600 s
# here, so the test's own timeout would fire first), the log has Ceph's
# error, and the server still reads what was written and serves its other
# export.
. "$SNBD_SRC/tests/lib/common.sh"
. "$SNBD_SRC/tests/rbd/rbdlib.sh"
rbd_require

export CEPH_CLUSTER_MEMSTORE_BYTES=$((256 << 20)) CEPH_CLUSTER_OSD_HEARTBEAT=1
rbd_cluster_start
R create "$CEPH_POOL/full" --size 2G || fail "rbd create"
cat >fill.py <<'PY'
import nbd, os, sys, time
h = nbd.NBD()
h.connect_uri(os.environ["FULL"])
buf = os.urandom(4 << 20)
with open("first.bin", "wb") as f:
    f.write(buf)
for i in range(h.get_size() // len(buf)):
    try:
        h.pwrite(buf, i * len(buf))
        h.flush()
        if i * len(buf) > 2 * int(os.environ["CEPH_CLUSTER_MEMSTORE_BYTES"]):
            time.sleep(0.05)
    except nbd.Error as e:
        print("after %d MiB: %s" % (4 * i, e))
        assert "ENOSPC" in str(e), e
        assert i > 0, "the first write failed"
        sys.exit(0)
sys.exit("the whole image was written: the cluster never filled")
PY
serve "full=rbd:$CEPH_POOL/full,$KEYS,ceph-timeout=600" mem=memory:1M -- '
  FULL=$(uri_for full) "$PYTHON" fill.py
  nbdsh -u "$(uri_for full)" -c "assert h.pread(4 << 20, 0) == open(\"first.bin\", \"rb\").read()"
  nbdsh -u "$(uri_for mem)" -c "h.pwrite(b\"m\" * 512, 0); assert h.pread(512, 0) == b\"m\" * 512"
' 2>server.log || fail "full cluster: $(tail -5 server.log)"
grep -q "ceph: No space left on device" server.log ||
  fail "the Ceph error is not in the log: $(tail -5 server.log)"
