#!/usr/bin/python3
"""The shape of the product's code (docs/architecture.md "Who may call
whom"), checked on a build:

  - no source file of the product over MAX_FILE_LINES lines;
  - no function over MAX_FUNC_LINES lines (a definition's body runs from
    a "{" alone at column 0 to the next "}" at column 0, the style of the
    whole tree);
  - no two files that call each other in a circle: from each object file
    of the build, the global symbols it defines and the ones it uses
    (nm), a graph of which file calls which; any strongly connected
    component of more than one file is a cycle;
  - per-thread storage (the PT_TLS segment of snbd-server and libsnbd) at
    most MAX_TLS_BYTES: glibc zeroes it at the top of each new thread's
    stack, so every byte of it stays resident in every connection's
    thread (a 4 KiB per-thread buffer once cost each idle connection a
    page).

The product is server/, common/, lib/ and tools/ (tests, fuzzers and the
bench are not).  Run through tests/lib/run-one.sh (SNBD_SRC, SNBD_BUILD),
in the `unit` suite.
"""
import glob
import os
import subprocess
import sys

MAX_FILE_LINES = 900
MAX_FUNC_LINES = 80
MAX_TLS_BYTES = 2048
BINARIES = ("server/snbd-server", "lib/libsnbd.so")
PRODUCT = ("server", "common", "lib", "tools")


def product_sources(src):
    for d in PRODUCT:
        for path in sorted(glob.glob(os.path.join(src, d, "**", "*.[ch]"),
                                     recursive=True)):
            yield os.path.relpath(path, src)


def long_functions(src, rel):
    """(first line, length, header) of each function over the limit."""
    with open(os.path.join(src, rel), encoding="utf-8") as f:
        lines = f.read().split("\n")
    out = []
    start = None
    for i, line in enumerate(lines):
        if line == "{" and i > 0:
            start = i
        elif line.startswith("}") and start is not None:
            n = i - start - 1
            if n > MAX_FUNC_LINES:
                out.append((start, n, lines[start - 1].strip()))
            start = None
    return out


def objects(src, build):
    """Object files of the product, keyed by the source they come from:
    BUILD/DIR/TARGET.p/NAME.c.o is SRC/DIR/NAME.c (Meson's layout); the
    first object of each source is taken (some are built into several
    targets)."""
    objs = {}
    for path in sorted(glob.glob(os.path.join(build, "**", "*.p", "*.c.o"),
                                 recursive=True)):
        rel_dir = os.path.dirname(os.path.relpath(os.path.dirname(path),
                                                  build))
        rel = os.path.join(rel_dir, os.path.basename(path)[:-2])
        if rel.split(os.sep)[0] in PRODUCT and \
                os.path.exists(os.path.join(src, rel)):
            objs.setdefault(rel, path)
    return objs


def symbols(obj):
    r = subprocess.run(["nm", "--defined-only", "-g", obj],
                       capture_output=True, text=True, check=True)
    defined = {ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip()}
    r = subprocess.run(["nm", "-u", obj], capture_output=True, text=True,
                       check=True)
    used = {ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip()}
    return defined, used


def cycles(objs):
    defined_in, uses = {}, {}
    for src, obj in objs.items():
        d, u = symbols(obj)
        uses[src] = u
        for s in d:
            defined_in.setdefault(s, src)
    graph = {src: {defined_in[s] for s in u if s in defined_in} - {src}
             for src, u in uses.items()}
    # Tarjan's strongly connected components, iteratively.
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
    return comps


def tls_bytes(path):
    """The size in memory of path's PT_TLS segment (0 if none)."""
    out = subprocess.run(["readelf", "-lW", path], check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "TLS":
            return int(f[5], 16)
    return 0


def main():
    src, build = os.environ["SNBD_SRC"], os.environ["SNBD_BUILD"]
    bad = 0
    files = list(product_sources(src))
    for rel in files:
        with open(os.path.join(src, rel), encoding="utf-8") as f:
            n = f.read().count("\n")
        if n > MAX_FILE_LINES:
            print("%s: %d lines (at most %d)" % (rel, n, MAX_FILE_LINES))
            bad += 1
        for line, length, head in long_functions(src, rel):
            print("%s:%d: %s: %d lines (at most %d)" % (rel, line, head,
                                                        length,
                                                        MAX_FUNC_LINES))
            bad += 1
    objs = objects(src, build)
    if len(objs) < 20:
        print("only %d product objects found in %s: not a build?" %
              (len(objs), build))
        return 1
    for comp in cycles(objs):
        print("files calling each other in a circle: " + ", ".join(comp))
        bad += 1
    for rel in BINARIES:
        n = tls_bytes(os.path.join(build, rel))
        if n > MAX_TLS_BYTES:
            print("%s: %d bytes of per-thread storage (at most %d)" %
                  (rel, n, MAX_TLS_BYTES))
            bad += 1
    print("%d source files, %d objects: %s" % (
        len(files), len(objs), "%d problem(s)" % bad if bad else "ok"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
