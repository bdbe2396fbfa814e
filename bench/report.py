#!/usr/bin/python3
"""Turn bench/run.sh's raw figures into bench/RESULTS.md.

    report.py RESULTS.tsv OUT.md

RESULTS.tsv has one line per measurement: server, transport, metric,
value (tab separated).  "na:METRIC" lines say why a figure is missing,
"meta:KEY" lines (server and transport "-") describe the run, and
"limit:NAME" lines hold the physical ceilings from bench/limits.sh.
Every figure shown is the median of its runs.  The main table and the
snbd-copy table are also printed on stdout.
"""
import math
import statistics
import sys
from collections import defaultdict

ANCHORS = ["nbdkit-memory", "nbdkit-file", "qemu-nbd", "nbd-server"]
CEILING = "nbdkit-null"
SNBD_ROWS = ["snbd", "snbd-memory"]
PREV = "snbd-prev"                      # an earlier snbd build (BENCH_PREV)
WORSE = 0.05                            # what "worse than before" allows
# snbd with --metrics on (and scraped every second), a row when asked for.
METRICS_ROW = "snbd-metrics"
ORDER = SNBD_ROWS + [PREV, METRICS_ROW] + ANCHORS + [CEILING]
TRANSPORT_NAMES = {"tcp": "TCP", "unix": "Unix", "x509": "TLS X.509",
                   "psk": "TLS PSK", "rbd": "Ceph RBD (Unix)"}

# (metric, header, "hi" if higher is better else "lo", format)
COLUMNS = [
    ("seq_write_mibs", "write MiB/s", "hi", "{:.0f}"),
    ("seq_read_mibs", "read MiB/s", "hi", "{:.0f}"),
    ("randread_iops", "4K rand read IOPS", "hi", "{:.0f}"),
    ("randwrite_iops", "4K rand write IOPS", "hi", "{:.0f}"),
    ("handshakes_per_s", "handshakes/s", "hi", "{:.0f}"),
    ("srv_ms_per_hs", "server CPU ms/handshake ↓", "lo", "{:.2f}"),
    ("srv_cpu_per_gib", "server CPU s/GiB ↓", "lo", "{:.3f}"),
    ("cli_cpu_per_gib", "client CPU s/GiB ↓", "lo", "{:.3f}"),
    ("srv_us_per_req", "server CPU µs/req ↓", "lo", "{:.2f}"),
    ("rss_idle_kib", "RSS idle KiB ↓", "lo", "{:.0f}"),
    ("rss_copy_kib", "RSS copy KiB ↓", "lo", "{:.0f}"),
    ("conn_kib", "KiB/idle conn ↓", "lo", "{:.1f}"),
]
# The reconnect loop (TLS only), in a table of its own.
RECONNECT_COLUMNS = [
    ("reconnects_per_s", "reconnects/s", "hi", "{:.0f}"),
    ("srv_ms_per_reconnect", "server CPU ms/reconnect ↓", "lo", "{:.2f}"),
    ("cli_ms_per_reconnect", "client CPU ms/reconnect ↓", "lo", "{:.2f}"),
]
# MANY_CLIENTS clients at once over X.509, in a table of its own.
MANY_COLUMNS = [
    ("many_read_mibs", "16 clients read MiB/s", "hi", "{:.0f}"),
    ("many_write_mibs", "16 clients write MiB/s", "hi", "{:.0f}"),
    ("many_srv_cpu_per_gib", "server CPU s/GiB ↓", "lo", "{:.3f}"),
]
# Which columns a missing workload leaves empty.
NA_COVERS = {
    "seq": ["seq_write_mibs", "seq_read_mibs", "srv_cpu_per_gib",
            "cli_cpu_per_gib", "rss_copy_kib"],
    "randread": ["randread_iops", "srv_us_per_req"],
    "randwrite": ["randwrite_iops", "srv_us_per_req"],
    "handshakes": ["handshakes_per_s", "srv_ms_per_hs", "cli_ms_per_hs"],
    "reconnect": [c[0] for c in RECONNECT_COLUMNS],
    "many": [c[0] for c in MANY_COLUMNS],
    "conn_kib": ["conn_kib"],
    "snbd_copy": ["sc_write_mibs", "sc_read_mibs"],
    "scale": ["scale_conns", "scale_kib_per_conn", "scale_rss_kib",
              "scale_threads", "scale_copy_mibs"],
    "scale_copy": ["scale_copy_mibs"],
}


class Results:
    def __init__(self, path):
        self.values = defaultdict(lambda: defaultdict(list))
        self.na = defaultdict(dict)
        self.text = defaultdict(dict)
        self.meta = {}
        self.limits = defaultdict(list)
        self.transports, self.servers = [], []
        with open(path, encoding="utf-8") as f:
            for line in f:
                self._add(line.rstrip("\n").split("\t", 3))

    def _add(self, parts):
        if len(parts) != 4:
            return
        server, transport, metric, value = parts
        if metric.startswith("meta:"):
            self.meta[metric[5:]] = value
            return
        if metric.startswith("limit:"):
            self.limits[metric[6:]].append(float(value))
            return
        if transport not in self.transports:
            self.transports.append(transport)
        if server not in self.servers:
            self.servers.append(server)
        key = (server, transport)
        if metric.startswith("na:"):
            what = metric[3:]
            for m in NA_COVERS.get(what, [c[0] for c in COLUMNS]
                                   if what == "all" else [what]):
                self.na[key].setdefault(m, value)
        elif metric in ("cmd", "uri"):
            self.text[key][metric] = value
        else:
            self.values[key][metric].append(float(value))

    def median(self, server, transport, metric):
        v = self.values[(server, transport)].get(metric)
        return statistics.median(v) if v else None

    def limit(self, name):
        v = self.limits.get(name)
        return statistics.median(v) if v else None

    def rows(self):
        known = [s for s in ORDER if s in self.servers]
        return known + [s for s in self.servers if s not in known]

    def snbd_row(self):
        return next((s for s in SNBD_ROWS if s in self.servers), None)


class Notes:
    """Footnotes for n/a cells: one number per distinct reason."""

    def __init__(self):
        self.reasons = []

    def mark(self, reason):
        if reason not in self.reasons:
            self.reasons.append(reason)
        return "n/a[{}]".format(self.reasons.index(reason) + 1)

    def lines(self):
        return ["[{}] {}".format(i + 1, r) for i, r in enumerate(self.reasons)]


def fmt(value, pattern):
    return "" if value is None else pattern.format(value)


def best_anchor(res, transport, metric, better):
    cands = [(res.median(a, transport, metric), a) for a in ANCHORS]
    cands = [c for c in cands if c[0] is not None and c[0] > 0]
    if not cands:
        return None, None
    return (max if better == "hi" else min)(cands)


def ratio_row(res, transport, snbd):
    cells = []
    for metric, _, better, _ in COLUMNS:
        mine = res.median(snbd, transport, metric)
        best, name = best_anchor(res, transport, metric, better)
        if mine is None or best is None:
            cells.append("")
        else:
            cells.append("{:.2f}× {}".format(mine / best, name))
    return cells


def ceiling_row(res, transport, snbd):
    cells = []
    for metric, _, better, _ in COLUMNS:
        mine = res.median(snbd, transport, metric)
        top = res.median(CEILING, transport, metric)
        # Data columns only: a null server is no ceiling for handshakes.
        ok = (better == "hi" and metric != "handshakes_per_s"
              and mine is not None and top)
        cells.append("{:.0%}".format(mine / top) if ok else "")
    return cells


def limit_for(res, transport):
    """(label, MiB/s) of the physical ceiling for sequential copies."""
    if transport == "tcp":
        return "one TCP stream", res.limit("tcp")
    if transport == "unix":
        return "memcpy", res.limit("memcpy")
    if transport == "rbd":         # the cluster is the limit: no ceiling
        return "", None
    negotiated = res.meta.get("cipher_" + transport, "")
    cipher = negotiated.split()[-1] if negotiated else "AES-256-GCM"
    figures = [res.limit(cipher), res.limit("cli-" + cipher)]
    figures = [f for f in figures if f]
    return cipher, (max(figures) if figures else None)


def limit_row(res, transport, snbd):
    label, ceiling = limit_for(res, transport)
    cells = [""] * len(COLUMNS)
    for i, (metric, _, _, _) in enumerate(COLUMNS[:2]):
        mine = res.median(snbd, transport, metric)
        if mine is not None and ceiling:
            cells[i] = "{:.0%} of {} {:.0f}".format(mine / ceiling, label,
                                                    ceiling)
    return cells


def value_cells(res, notes, server, transport, columns):
    """One row's cells: each column's median, or the footnote of why it
    is missing, or empty."""
    cells = []
    for metric, _, _, pattern in columns:
        v = res.median(server, transport, metric)
        why = res.na[(server, transport)].get(metric)
        cells.append(fmt(v, pattern) if v is not None
                     else notes.mark(why) if why else "")
    return cells


def table_row(cells):
    return "| " + " | ".join(cells) + " |"


def main_table(res, notes):
    heads = ["transport", "server"] + [c[1] for c in COLUMNS]
    out = [table_row(heads),
           table_row(["---", "---"] + ["---:"] * len(COLUMNS))]
    snbd = res.snbd_row()
    for t in res.transports:
        tname = TRANSPORT_NAMES.get(t, t)
        for s in res.rows():
            out.append(table_row([tname, s]
                                 + value_cells(res, notes, s, t, COLUMNS)))
        if snbd:
            out.append(table_row([tname, "**snbd ÷ best anchor**"]
                                 + ratio_row(res, t, snbd)))
            out.append(table_row([tname, "**snbd ÷ null ceiling**"]
                                 + ceiling_row(res, t, snbd)))
            out.append(table_row([tname, "**snbd ÷ physical limit**"]
                                 + limit_row(res, t, snbd)))
    return out


def reconnect_table(res, notes):
    """connect + read 512 bytes + disconnect, each server with its own
    client library (libsnbd for snbd rows, libnbd for the others)."""
    ts = [t for t in res.transports if t in ("x509", "psk")]
    if not ts:
        return []
    heads = ["transport", "server"] + [c[1] for c in RECONNECT_COLUMNS]
    out = ["## TLS reconnects (connect, read 512 bytes, disconnect; snbd rows "
           "through libsnbd, which resumes sessions, the others through "
           "libnbd)", "", table_row(heads),
           table_row(["---", "---"] + ["---:"] * len(RECONNECT_COLUMNS))]
    for t in ts:
        for s in res.rows():
            if s == CEILING:
                continue
            out.append(table_row([TRANSPORT_NAMES.get(t, t), s]
                                 + value_cells(res, notes, s, t,
                                               RECONNECT_COLUMNS)))
    return out + [""]


def copy_gib(res, transport):
    """GiB per copy on transport (rbd copies BENCH_RBD_SIZE)."""
    key = "rbd_size" if transport == "rbd" else "size"
    return float(res.meta.get(key, 1 << 30)) / (1 << 30)


def many_table(res, notes):
    """16 libnbd clients at once over X.509, every server."""
    if "x509" not in res.transports:
        return []
    heads = ["server"] + [c[1] for c in MANY_COLUMNS]
    out = ["## 16 clients at once (TLS X.509; 256 KiB random reads, then "
           "writes, depth 4 each, libnbd)", "", table_row(heads),
           table_row(["---"] + ["---:"] * len(MANY_COLUMNS))]
    for s in res.rows():
        cells = value_cells(res, notes, s, "x509", MANY_COLUMNS)
        if any(cells):
            out.append(table_row([s] + cells))
    return out + [""]


def copy_table(res, notes):
    heads = ["transport", "nbdcopy write MiB/s", "snbd-copy write MiB/s",
             "ratio", "nbdcopy read MiB/s", "snbd-copy read MiB/s", "ratio",
             "client CPU s/GiB nbdcopy w/r", "client CPU s/GiB snbd-copy w/r"]
    out = [table_row(heads), table_row(["---"] + ["---:"] * 8)]
    for t in res.transports:
        m = lambda k: res.median("snbd", t, k)
        gib = copy_gib(res, t)
        if m("sc_write_mibs") is None:
            why = res.na[("snbd", t)].get("sc_write_mibs")
            if why:
                out.append(table_row([TRANSPORT_NAMES.get(t, t), notes.mark(why)]
                                     + [""] * 7))
            continue
        def ratio(a, b):
            return "{:.2f}×".format(b / a) if a and b else ""
        def cpu(w, r):
            if w is None or r is None:
                return ""
            return "{:.3f} / {:.3f}".format(w / gib, r / gib)
        out.append(table_row([
            TRANSPORT_NAMES.get(t, t),
            fmt(m("seq_write_mibs"), "{:.0f}"), fmt(m("sc_write_mibs"), "{:.0f}"),
            ratio(m("seq_write_mibs"), m("sc_write_mibs")),
            fmt(m("seq_read_mibs"), "{:.0f}"),
            fmt(m("sc_read_mibs"), "{:.0f}"),
            ratio(m("seq_read_mibs"), m("sc_read_mibs")),
            cpu(m("nc_write_cli_cpu"), m("nc_read_cli_cpu")),
            cpu(m("sc_write_cli_cpu"), m("sc_read_cli_cpu"))]))
    return out


def scale_lines(res, notes):
    """snbd holding BENCH_SCALE_CONNS idle connections while a copy runs."""
    want = int(res.meta.get("scale_conns", "0") or 0)
    if not want:
        return []
    t = "tcp"
    m = lambda k: res.median("snbd", t, k)
    why = res.na[("snbd", t)].get("scale_conns")
    out = ["## {:,} idle connections and a new client's copy (snbd, TCP)"
           .format(want), ""]
    if m("scale_conns") is None:
        return out + ["Not measured: {}".format(why or "no figure"), ""]
    copy = m("scale_copy_mibs")
    copy_why = res.na[("snbd", t)].get("scale_copy_mibs")
    out += [
        "| connections held | server RSS KiB | server threads | KiB/conn (Pss) "
        "| nbdcopy write MiB/s meanwhile | same copy, no other connections |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
        "| {:.0f} | {:.0f} | {:.0f} | {:.1f} | {} | {} |".format(
            m("scale_conns"), m("scale_rss_kib"), m("scale_threads"),
            m("scale_kib_per_conn"),
            fmt(copy, "{:.0f}") if copy is not None else notes.mark(copy_why),
            fmt(m("seq_write_mibs"), "{:.0f}")), ""]
    return out


def target_rows(res):
    """Each target of the benchmark issue: (target, transport, snbd figure,
    what it is compared with, the ratio, met?)."""
    snbd = res.snbd_row()
    rows = []

    def vs_anchor(label, t, metric, factor):
        _, _, better, pattern = next(
            c for c in COLUMNS + RECONNECT_COLUMNS + MANY_COLUMNS
            if c[0] == metric)
        mine = res.median(snbd, t, metric)
        best, name = best_anchor(res, t, metric, better)
        if mine is None or best is None:
            rows.append((label, t, fmt(mine, pattern), "", "", "not measured"))
            return
        r = mine / best
        ok = r >= factor if better == "hi" else r <= factor
        rows.append((label, t, pattern.format(mine),
                     "{} {}".format(pattern.format(best), name),
                     "{:.2f}×".format(r), "met" if ok else "**not met**"))

    def seq_plain(t, metric):
        mine = res.median(snbd, t, metric)
        best, name = best_anchor(res, t, metric, "hi")
        top = res.median(CEILING, t, metric)
        label = "{} ≥ 1.1× best anchor or ≥ 95% of null".format(metric)
        if mine is None or best is None:
            rows.append((label, t, fmt(mine, "{:.0f}"), "", "", "not measured"))
            return
        ok = mine >= 1.1 * best or (top and mine >= 0.95 * top)
        rows.append((label, t, "{:.0f}".format(mine),
                     "{:.0f} {}; null {}".format(best, name, fmt(top, "{:.0f}")),
                     "{:.2f}× / {}".format(mine / best,
                                          "{:.0%}".format(mine / top) if top else "?"),
                     "met" if ok else "**not met**"))

    def vs_null(t, metric):
        mine = res.median(snbd, t, metric)
        top = res.median(CEILING, t, metric)
        label = "{} ≥ 95% of null".format(metric)
        if mine is None or not top:
            rows.append((label, t, fmt(mine, "{:.0f}"), "", "", "not measured"))
            return
        rows.append((label, t, "{:.0f}".format(mine), "{:.0f} null".format(top),
                     "{:.0%}".format(mine / top),
                     "met" if mine >= 0.95 * top else "**not met**"))

    for metric in ("seq_write_mibs", "seq_read_mibs"):
        vs_anchor(metric + " ≥ 1.5× best anchor", "x509", metric, 1.5)
        vs_anchor(metric + " ≥ 3× best anchor", "psk", metric, 3.0)
        for t in ("tcp", "unix"):
            seq_plain(t, metric)
    for t in ("tcp", "unix", "x509", "psk"):
        for metric in ("randread_iops", "randwrite_iops"):
            vs_null(t, metric)
        vs_anchor("srv_us_per_req ≤ 0.5× best anchor", t, "srv_us_per_req", 0.5)
    vs_anchor("handshakes_per_s ≥ 3× best anchor", "x509", "handshakes_per_s", 3.0)
    vs_anchor("srv_ms_per_hs ≤ 0.5× best anchor", "x509", "srv_ms_per_hs", 0.5)
    vs_anchor("reconnects_per_s ≥ 3× best anchor (own client library)", "x509",
              "reconnects_per_s", 3.0)
    vs_anchor("handshakes_per_s ≥ 2× best anchor", "tcp", "handshakes_per_s", 2.0)
    vs_anchor("handshakes_per_s ≥ 1.3× best anchor", "unix", "handshakes_per_s", 1.3)
    for t in ("tcp", "unix", "x509", "psk"):
        mine = res.median(snbd, t, "rss_idle_kib")
        rows.append(("rss_idle_kib < 8192", t, fmt(mine, "{:.0f}"), "8192", "",
                     "not measured" if mine is None else
                     "met" if mine < 8192 else "**not met**"))
    for t in ("x509", "psk"):
        mine = res.median(snbd, t, "conn_kib")
        rows.append(("conn_kib (idle TLS) < 64", t, fmt(mine, "{:.1f}"), "64", "",
                     "not measured" if mine is None else
                     "met" if mine < 64 else "**not met**"))
    want = int(res.meta.get("scale_conns", "0") or 0)
    if want:
        held = res.median(snbd, "tcp", "scale_conns")
        copy = res.median(snbd, "tcp", "scale_copy_mibs")
        ok = held is not None and held >= want and copy is not None
        rows.append(("{:,} idle connections held, a new copy served".format(want),
                     "tcp", fmt(held, "{:.0f}"), fmt(copy, "copy {:.0f} MiB/s"),
                     "", "met" if ok else "**not met**"))
    for t in ("tcp", "unix", "x509", "psk"):
        vs_anchor("srv_cpu_per_gib ≤ 0.75× best anchor", t, "srv_cpu_per_gib", 0.75)
    # The RBD issue: against qemu-nbd's rbd driver on the same cluster.
    for metric in ("randread_iops", "randwrite_iops"):
        vs_anchor(metric + " ≥ 1.1× qemu-nbd", "rbd", metric, 1.1)
    vs_anchor("srv_us_per_req ≤ 0.8× qemu-nbd", "rbd", "srv_us_per_req", 0.8)
    # The TLS performance issue.
    vs_anchor("srv_cpu_per_gib ≤ 0.5× best anchor", "x509", "srv_cpu_per_gib", 0.5)

    def pair(label, t, mine_key, other_row, other_key, factor):
        """snbd-copy (on snbd) against nbdcopy on other_row."""
        mine = res.median(snbd, t, mine_key)
        other = res.median(other_row, t, other_key)
        if mine is None or not other:
            rows.append((label, t, fmt(mine, "{:.0f}"), "", "", "not measured"))
            return
        rows.append((label, t, "{:.0f}".format(mine),
                     "{:.0f} nbdcopy on {}".format(other, other_row),
                     "{:.2f}×".format(mine / other),
                     "met" if mine >= factor * other else "**not met**"))
    for way in ("write", "read"):
        pair("system pair {}: snbd-copy + snbd ≥ 1.5× nbdcopy + nbdkit-memory"
             .format(way), "x509", "sc_%s_mibs" % way, "nbdkit-memory",
             "seq_%s_mibs" % way, 1.5)
        pair("snbd-copy {} ≥ 1.2× nbdcopy on snbd".format(way), "x509",
             "sc_%s_mibs" % way, snbd, "seq_%s_mibs" % way, 1.2)
    return rows


def targets_table(res):
    out = ["| target | transport | snbd | compared with | ratio | |",
           "| --- | --- | ---: | ---: | ---: | --- |"]
    for label, t, mine, other, ratio, verdict in target_rows(res):
        if t not in res.transports:
            continue
        out.append(table_row([label, TRANSPORT_NAMES.get(t, t), mine, other,
                              ratio, verdict]))
    return out


def limits_table(res):
    out = ["| ceiling (one core) | MiB/s |", "|---|---:|"]
    for name in sorted(res.limits):
        label = name.replace("cli-", "") + (" (gnutls-cli)"
                                             if name.startswith("cli-") else "")
        out.append("| {} | {:.0f} |".format(label, res.limit(name)))
    return out


COLUMN_HELP = """\
What each column measures (every figure is the median of the runs; ↓ marks
columns where lower is better):

- **write / read MiB/s**: `nbdcopy` copies BENCH_SIZE of pseudo-random data
  (no zero runs, so nothing becomes a hole) from a file in /dev/shm into the
  export, then from the export to `null:`; bytes ÷ wall time of the client.
- **4K rand read / write IOPS**: 4 KiB requests at random aligned offsets,
  32 in flight on one connection, for BENCH_SECONDS: `fio --ioengine=nbd` in
  clear text, `build/bench/randio` (libnbd, same pattern) over TLS, since
  fio's nbd engine cannot be given TLS credential files.
- **handshakes/s**: `build/bench/handshakes` connects, negotiates (STARTTLS
  and the TLS handshake on TLS rows, with a client certificate on X.509
  rows), sends NBD_CMD_DISC and closes, one connection at a time, for
  BENCH_HS_SECONDS.
- **server CPU ms/handshake**: the server's CPU time over the handshake
  loop ÷ handshakes (the client's own cost per handshake, which bounds the
  rate of a one-at-a-time loop, is in the targets table notes).
- **server CPU s/GiB**: the server's utime+stime (from /proc/PID/stat, with
  its reaped children and live descendants) over the write and the read
  copy, ÷ GiB moved.  **client CPU s/GiB**: nbdcopy's user+system time over
  the same copies.
- **server CPU µs/req**: the server's CPU time over the random read and
  write runs ÷ requests completed.
- **RSS idle**: VmRSS of the server (its whole process tree) right after it
  starts listening.  **RSS copy**: peak tree VmRSS sampled every 0.2 s
  during each copy (memory-backed servers hold the export's data there;
  file-backed ones keep it in the page cache of /dev/shm instead).
- **KiB/idle conn**: growth of the server tree's proportional set size
  (Pss, so a forking server's per-connection processes count their private
  pages plus their share of common ones) with BENCH_CONNS idle, fully
  negotiated connections held by `build/bench/holdconns`, ÷ BENCH_CONNS.
  Measured once per row on a fresh server (a second round would reuse the
  first round's freed heap).
- **Ceph RBD (Unix)** rows: the same clients over a Unix socket, each
  server exporting an RBD image of BENCH_RBD_SIZE in a one-monitor,
  one-OSD cluster on this host (memstore, `tests/lib/ceph-cluster.sh`):
  snbd's `rbd:` backend against `qemu-nbd -f raw rbd:POOL/IMAGE:conf=...`
  (QEMU's rbd driver), both through librbd 16.2.  The OSD shares the
  CPUs, so server CPU per request matters twice here.  Server CPU counts
  the librbd threads in the server process, not the OSD's.
- **snbd ÷ best anchor**: snbd's figure ÷ the best of nbdkit-memory,
  nbdkit-file, qemu-nbd and nbd-server for that column (highest, or lowest
  for ↓ columns, where below 1 means snbd uses less), naming that anchor.
- **snbd ÷ null ceiling**: ÷ `nbdkit null` (with the noextents filter so the
  copies really move data): the same clients against a server that does no
  work, i.e. what the client and the machine allow.  Over TLS it runs
  whatever cipher nbdkit negotiates (CHACHA20-POLY1305 with PSK, where snbd
  picks AES-GCM), so there it bounds the anchors' choice, not snbd's.
- **snbd ÷ physical limit**: sequential figures ÷ one loopback TCP stream
  (TCP), memcpy bandwidth (Unix), or one core's GnuTLS throughput for the
  cipher snbd negotiated (TLS); see the limits below.
"""


def prev_table(res):
    """snbd ÷ snbd-prev per column: the change against the tree before it,
    measured in the same run.  A figure more than WORSE worse is marked."""
    snbd = res.snbd_row()
    if PREV not in res.servers or not snbd:
        return []
    out = ["## snbd against an earlier snbd (`snbd-prev`, BENCH_PREV)", "",
           "snbd tree {}, snbd-prev tree {}.  Each cell is snbd ÷ snbd-prev; "
           "**worse** marks a figure more than {:.0f}% worse (lower where "
           "higher is better, higher where ↓).".format(
               res.meta.get("git"), res.meta.get("git_prev"), WORSE * 100),
           "", table_row(["transport"] + [c[1] for c in COLUMNS]),
           table_row(["---"] + ["---:"] * len(COLUMNS))]
    worse = 0
    for t in res.transports:
        cells = []
        for metric, _, better, _ in COLUMNS:
            mine, prev = res.median(snbd, t, metric), res.median(PREV, t, metric)
            if mine is None or prev is None or mine <= 0 or prev <= 0:
                cells.append("")
                continue
            r = mine / prev
            bad = r < 1 - WORSE if better == "hi" else r > 1 + WORSE
            worse += bad
            cells.append("{:.2f}×{}".format(r, " **worse**" if bad else ""))
        out.append(table_row([TRANSPORT_NAMES.get(t, t)] + cells))
    out += ["", "{} figure(s) more than {:.0f}% worse than snbd-prev.".format(
        worse, WORSE * 100), ""]
    return out


def meta_lines(res):
    m = res.meta.get
    out = []
    if "BENCH_QUICK=1" in m("settings", ""):
        out += ["**BENCH_QUICK=1: a smoke test with tiny sizes and single "
                "runs; these figures are not meaningful.**", ""]
    out += [
        "- Machine: {} CPUs, {} (AES instructions: {}), {} RAM, Linux {}"
        .format(m("nproc"), m("cpu"), m("aes"), m("memory"), m("kernel")),
        "- Run: {}, load average {} at the start and {} at the end, took {};"
        " snbd tree {}".format(m("date"), m("loadavg"), m("loadavg_end"),
                               m("elapsed"), m("git")),
        "- Settings: `{}`".format(m("settings")),
        "- Versions: {}; {}; {}; nbd-server {}; {}; {}; {}; {}".format(
            m("v_snbd"), m("v_nbdkit"), m("v_qemu"), m("v_nbd_server"),
            m("v_libnbd"), m("v_fio"), m("v_gnutls"), m("v_ceph")),
        "- TLS negotiated by snbd with libnbd: X.509 {}; PSK {}".format(
            m("cipher_x509") or "?", m("cipher_psk") or "?"),
    ]
    return out


def command_lines(res):
    m = res.meta.get
    out = ["Re-run: `make bench` (or `bench/run.sh build` with the settings "
           "above; `bench/limits.sh` alone for the ceilings).  `$W` is the "
           "work directory in /dev/shm, `$PORT` a free loopback port.", "",
           "Clients (`$URI` from the server list below):", ""]
    for key in ("write", "read", "fio", "randio", "handshakes", "holdconns",
                "snbd_copy", "metrics_pairs", "rbd"):
        if m("cmd_" + key):
            out.append("- `{}`".format(m("cmd_" + key)))
    out += ["", "Servers:", ""]
    for t in res.transports:
        for s in res.rows():
            text = res.text[(s, t)]
            if "cmd" in text:
                out.append("- {} / {}: `{}`  \n  URI `{}`".format(
                    TRANSPORT_NAMES.get(t, t), s, text["cmd"], text["uri"]))
        on = m("cmd_metrics_on_" + t)
        if on:
            out.append("- {} / snbd --metrics beside snbd (metrics on "
                       "against off): `{}`".format(TRANSPORT_NAMES.get(t, t),
                                                   on))
    return out


def snbd_present(res):
    return res.snbd_row() is not None


def client_hs_lines(res):
    """The client's CPU per handshake: what bounds handshakes/s here."""
    parts = []
    for t in res.transports:
        for s in res.rows():
            c = res.median(s, t, "cli_ms_per_hs")
            if c is not None and s in (res.snbd_row(), CEILING):
                parts.append("{} {} {:.2f}".format(TRANSPORT_NAMES.get(t, t),
                                                    s, c))
    if not parts:
        return []
    return ["Client (libnbd) CPU ms per handshake, which bounds a "
            "one-at-a-time loop at 1 ÷ (client + server) no matter how "
            "cheap the server is: " + "; ".join(parts) + "."]


def median_interval(sorted_values):
    """A 95% interval for the median of these values whatever their
    distribution: the k-th smallest and k-th largest, k the largest whose
    binomial tail stays within 2.5% on each side (n = 10: the 2nd and the
    9th, 97.9%).  None below 6 values."""
    n = len(sorted_values)
    tail, k = 0.0, 0
    while True:
        tail += math.comb(n, k) / 2 ** n
        if tail > 0.025:
            break
        k += 1
    if k == 0:
        return None
    return sorted_values[k - 1], sorted_values[n - k]


def metrics_lines(res):
    """4 KiB IOPS with metrics on within 2% of off (the live metrics
    issue's target), from the pairs of runs that snbd and snbd --metrics
    made at the same time on one CPU (workloads.sh wl_metrics_pairs)."""
    rows = []
    for t in res.transports:
        vals = res.values[("snbd", t)]
        for mode in ("randread", "randwrite"):
            on = vals.get("metrics_on_%s_iops" % mode)
            off = vals.get("metrics_off_%s_iops" % mode)
            if not on or not off or len(on) != len(off):
                continue
            ratios = sorted(a / b for a, b in zip(on, off))
            med = statistics.median(ratios)
            interval = median_interval(ratios)
            if interval is None:
                span, whole = "too few pairs", "-"
            else:
                span = "{:.3f} to {:.3f}".format(*interval)
                whole = "yes" if interval[0] >= 0.98 else "no"
            rows.append("| {} | {} | {} | {:.0f} | {:.0f} | {:.3f} | {} | {} "
                        "| {} |".format(
                            TRANSPORT_NAMES.get(t, t), mode, len(ratios),
                            statistics.median(off), statistics.median(on),
                            med, "met" if med >= 0.98 else "**missed**",
                            span, whole))
        why = res.na[("snbd", t)].get("metrics_pairs")
        if why:
            rows.append("| {} | n/a: {} | | | | | | | |".format(
                TRANSPORT_NAMES.get(t, t), why))
    if not rows:
        return []
    return ["## Metrics on against off (target: 4 KiB IOPS with --metrics "
            "within 2% of without)", "",
            "snbd and snbd --metrics (scraped every second) at the same "
            "time, each on its own copy of the data with its own client, "
            "servers and clients all pinned to one CPU, so the CPU is "
            "shared fairly and each server's IOPS follows its CPU per "
            "request while the host's changes of speed fall on both alike "
            "(`bench/lib/workloads.sh` wl_metrics_pairs).  IOPS are per "
            "server with the CPU shared, not comparable to the main table.  "
            "Per pair on ÷ off; the target is judged on the median of the "
            "pairs, as every other target here is on its median; the last "
            "columns say how sure that is: a 95% interval for the median, "
            "and whether all of it is at 0.98 or above.", "",
            "| transport | 4 KiB | pairs | IOPS off (median) | IOPS on "
            "(median) | on ÷ off (median) | target ≥ 0.98 | 95% interval "
            "| interval ≥ 0.98 |",
            "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |"] + rows + [""]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: report.py RESULTS.tsv OUT.md")
    res = Results(sys.argv[1])
    notes = Notes()
    table = main_table(res, notes)
    copies = copy_table(res, notes)
    doc = ["# snbd benchmark results", ""] + meta_lines(res) + [
        "", "## Servers side by side", ""] + table + [""]
    if snbd_present(res):
        doc += ["## Targets (from the benchmark issue)", ""] + targets_table(res)
        doc += [""] + client_hs_lines(res) + [""]
    doc += reconnect_table(res, notes)
    doc += many_table(res, notes)
    doc += prev_table(res)
    doc += metrics_lines(res)
    doc += scale_lines(res, notes)
    doc += ["## snbd-copy against nbdcopy (both on snbd-server: a file "
            "in, then out to `null:`)", ""] + copies
    doc += ["", "## Physical limits (`bench/limits.sh`)", ""]
    doc += limits_table(res) + ["", COLUMN_HELP]
    if notes.reasons:
        doc += ["## Notes on missing figures", ""]
        doc += ["- " + n for n in notes.lines()] + [""]
    doc += ["## Command lines", ""] + command_lines(res) + [""]
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write("\n".join(doc))
    targets = targets_table(res) if snbd_present(res) else []
    print("\n".join(meta_lines(res) + [""] + table + [""] + copies + [""]
                    + targets + [""] + prev_table(res)
                    + metrics_lines(res)))
    if notes.reasons:
        print("\n".join([""] + notes.lines()))
    print("\nwritten to " + sys.argv[2])


if __name__ == "__main__":
    main()
