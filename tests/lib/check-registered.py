#!/usr/bin/env python3
"""Fails for any test that exists but is not registered with Meson.

tests/run.sh and `meson test` run only the tests tests/meson.build
registers; a tests/*/test-* script or a test_* executable in the build
tree that is not registered would silently never run.  This lists each
one and exits 1.  Run through tests/lib/run-one.sh (SNBD_SRC, SNBD_BUILD).
"""
import glob
import json
import os
import sys

src = os.environ["SNBD_SRC"]
build = os.environ["SNBD_BUILD"]

with open(os.path.join(build, "meson-info", "intro-tests.json")) as f:
    registered = {t["name"] for t in json.load(f)}

on_disk = set()
for path in glob.glob(os.path.join(src, "tests", "*", "test-*")):
    if os.path.isfile(path):
        on_disk.add(os.path.relpath(path, src))
if os.path.isfile(os.path.join(src, "fuzz", "regress.sh")):
    on_disk.add("fuzz/regress.sh")
for root, dirs, files in os.walk(build):
    # Object directories (NAME.p) and Meson's own files hold no tests.
    dirs[:] = [d for d in dirs if not d.endswith(".p")
               and not d.startswith("meson-")]
    for name in files:
        path = os.path.join(root, name)
        if name.startswith("test_") and os.access(path, os.X_OK):
            on_disk.add(os.path.relpath(path, build))

missing = sorted(on_disk - registered)
for name in missing:
    print(f"not registered: {name} (add it to tests/meson.build, or "
          "append its executable to unit_tests)")
if missing:
    sys.exit(1)
print(f"all {len(on_disk)} tests are registered")
