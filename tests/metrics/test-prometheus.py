#!/usr/bin/python3
"""A real Prometheus server (Debian's /usr/bin/prometheus) scrapes
snbd-server --metrics on loopback, and after a copy into the export its
HTTP API answers snbd_requests_total with the count the server itself
reports: the endpoint speaks HTTP and the text format as Prometheus wants
them, end to end.

Prometheus runs from a configuration written here, with its storage in
this test's temporary directory, on a free loopback port, scraping every
second; it is stopped by its pid.  Every wait is for a condition, and
bounded.  Skipped (77) only when prometheus is not installed.
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nbdraw                                             # noqa: E402
from nbdraw import check, log, Server, TestFailure        # noqa: E402
import metricslib as ml                                   # noqa: E402

TMP = os.environ["TMPDIR"]
COPY_BYTES = 4 * 1024 * 1024


class Prometheus:
    def __init__(self, target):
        self.port = ml.free_port()
        self.dir = os.path.join(TMP, "prometheus")
        os.makedirs(os.path.join(self.dir, "data"))
        self.conf = os.path.join(self.dir, "prometheus.yml")
        with open(self.conf, "w") as f:
            f.write("global:\n"
                    "  scrape_interval: 1s\n"
                    "  scrape_timeout: 1s\n"
                    "scrape_configs:\n"
                    "  - job_name: snbd\n"
                    "    static_configs:\n"
                    "      - targets: ['%s']\n" % target)
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen(
            ["/usr/bin/prometheus", "--config.file=" + self.conf,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()

    def tail(self):
        with open(os.path.join(self.dir, "log"), "rb") as f:
            return f.read()[-3000:].decode("utf-8", "replace")

    def get(self, path):
        url = "http://127.0.0.1:%d%s" % (self.port, path)
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()

    def wait(self, what, cond, timeout=120):
        """Polls cond() (False or exceptions: not yet) until true."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            check(self.proc.poll() is None, "prometheus exited (%s):\n%s",
                  self.proc.returncode, self.tail())
            try:
                v = cond()
                if v:
                    return v
            except OSError as e:       # not listening yet
                last = e
            time.sleep(0.1)
        raise TestFailure("timed out waiting for %s (%s); prometheus "
                          "log:\n%s" % (what, last, self.tail()))

    def query(self, expr):
        """The API's vector result for expr: [(labels, float value)]."""
        status, body = self.get("/api/v1/query?query=" +
                                urllib.parse.quote(expr))
        r = json.loads(body)
        check(status == 200 and r["status"] == "success",
              "query %s: %s", expr, body)
        return [(s["metric"], float(s["value"][1]))
                for s in r["data"]["result"]]


def copy_in(srv):
    src = os.path.join(TMP, "src.img")
    with open(src, "wb") as f:
        f.write(nbdraw.pattern(7, COPY_BYTES))
    uri = "nbd+unix:///disk?socket=" + srv.sock_path
    r = subprocess.run(["nbdcopy", src, uri], capture_output=True,
                       text=True, timeout=120)
    check(r.returncode == 0, "nbdcopy: %s", r.stderr)


def main():
    ml.need("prometheus")
    maddr = "127.0.0.1:%d" % ml.free_port()
    with Server("disk=memory:64M", args=["--metrics", maddr]) as srv:
        prom = Prometheus(maddr)
        try:
            prom.wait("prometheus ready",
                      lambda: prom.get("/-/ready")[0] == 200)
            # The target is up: Prometheus parsed a scrape of ours.
            prom.wait("snbd target up", lambda: any(
                v == 1 for _, v in prom.query('up{job="snbd"}')))
            copy_in(srv)
            want = ml.Scrape(maddr).value("snbd_requests_total",
                                          export="disk", op="write")
            check(want >= 1, "the copy made no writes")
            log("server says %d writes; waiting for prometheus", want)
            expr = 'snbd_requests_total{export="disk",op="write"}'
            prom.wait("prometheus to see %d writes" % want, lambda: any(
                v == want for _, v in prom.query(expr)))
            got = prom.query('sum(snbd_request_bytes_total{op="write"})')
            check(got and got[0][1] == COPY_BYTES,
                  "bytes written according to prometheus: %s", got)
            # Its own view of our endpoint: no sample was rejected.
            status, body = prom.get("/api/v1/targets")
            targets = json.loads(body)["data"]["activeTargets"]
            check(targets and targets[0]["health"] == "up" and
                  not targets[0]["lastError"], "target: %s", targets)
        finally:
            prom.stop()
    log("prometheus scraped snbd-server and saw the copy")


if __name__ == "__main__":
    main()
