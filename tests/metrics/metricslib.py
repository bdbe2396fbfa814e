"""Helpers for tests/metrics/test-*.py: a scrape of snbd-server's
--metrics endpoint (TCP or a Unix socket), parsed from the Prometheus text
format, and free loopback ports.  Every wait is bounded."""

import http.client
import os
import re
import socket
import subprocess
import time

from nbdraw import TestFailure, check

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def free_port():
    """A loopback TCP port nobody listens on now (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def http_get(addr, path="/metrics", method="GET", timeout=10):
    """(status, content type, body) from addr: HOST:PORT or unix:PATH."""
    if addr.startswith("unix:"):
        conn = _UnixConnection(addr[5:], timeout)
    else:
        host, _, port = addr.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type"), r.read().decode()
    finally:
        conn.close()


def _unescape(v):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n"
                  else m.group(1), v)


def parse(text):
    """{(name, frozenset of (label, value)): value} of a text exposition;
    every line must be a comment or a sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        check(m, "not a sample line: %r", line)
        labels = []
        rest = m.group(2) or ""
        pos = 0
        while pos < len(rest):
            lm = _LABEL.match(rest, pos)
            check(lm, "bad labels in %r", line)
            labels.append((lm.group(1), _unescape(lm.group(2))))
            pos = lm.end()
        out[(m.group(1), frozenset(labels))] = float(m.group(3))
    return out


class Scrape:
    """One scrape: scrape.get(name, label=value, ...) is the sample's value
    (None if absent)."""

    def __init__(self, addr):
        status, ctype, self.text = http_get(addr)
        check(status == 200, "GET /metrics: status %d", status)
        check(ctype.startswith("text/plain; version=0.0.4"),
              "content type %r", ctype)
        self.samples = parse(self.text)

    def get(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, **labels):
        v = self.get(name, **labels)
        check(v is not None, "no sample %s%s in:\n%s", name, labels,
              self.text[-3000:])
        return v


def wait_value(addr, what, name, cond, timeout=60, **labels):
    """Scrapes until cond(value of name{labels}) holds; returns the
    scrape."""
    deadline = time.monotonic() + timeout
    while True:
        s = Scrape(addr)
        v = s.get(name, **labels)
        if v is not None and cond(v):
            return s
        if time.monotonic() > deadline:
            raise TestFailure("timed out after %d s waiting for %s: %s%s "
                              "is %s" % (timeout, what, name, labels, v))
        time.sleep(0.05)


def promtool_check(text):
    """promtool check metrics accepts text (lint included)."""
    r = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=60)
    check(r.returncode == 0, "promtool check metrics: %s%s", r.stdout,
          r.stderr)


def need(*programs):
    """The paths of programs, or a skip (exit 77) naming the missing."""
    missing = [p for p in programs
               if not any(os.access(os.path.join(d, p), os.X_OK)
                          for d in os.environ["PATH"].split(":") + ["/usr/bin"])]
    if missing:
        print("SKIP: %s not installed (scripts/deps.sh installs the "
              "prometheus package)" % ", ".join(missing), flush=True)
        raise SystemExit(77)
