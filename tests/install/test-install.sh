#!/usr/bin/env bash
# `make install` as a packager runs it: a private build directory,
# PREFIX=/usr and DESTDIR under this test's temporary directory.  Checks
# the installed file list (every man page in docs/ included), runs the
# installed programs, compiles and runs a program against the installed
# snbd.pc and headers (and only the installed libsnbd), and has
# systemd-analyze verify the units.
. "$SNBD_SRC/tests/lib/common.sh"
require make meson ninja cc pkg-config

build=$TMPDIR/b dest=$TMPDIR/dest
make -C "$SNBD_SRC" install BUILD="$build" PREFIX=/usr DESTDIR="$dest" \
  >"$TMPDIR/install.log" 2>&1 ||
  { tail -30 "$TMPDIR/install.log"; fail "make install failed"; }

libdir=$(meson introspect --buildoptions "$build" | "$PYTHON" -c '
import json, sys
print([o["value"] for o in json.load(sys.stdin) if o["name"] == "libdir"][0])')
[[ $libdir == /* ]] || libdir=/usr/$libdir
version=$(meson introspect --projectinfo "$build" |
          "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["version"])')

# -- the file list --
{
  printf '%s\n' /etc/snbd/snbd.conf /usr/bin/snbd-copy /usr/bin/snbd-info \
    /usr/bin/snbd-server /usr/include/snbd/protocol.h \
    /usr/include/snbd/snbd.h /usr/lib/systemd/system/snbd-server.service \
    /usr/lib/systemd/system/snbd-server.socket "$libdir/libsnbd.so" \
    "$libdir/libsnbd.so.0" "$libdir/libsnbd.so.$version" \
    "$libdir/pkgconfig/snbd.pc"
  # The rbd: backend's module, when the build has it (meson option rbd).
  [ ! -e "$build/server/backends/rbd.so" ] || echo "$libdir/snbd/rbd.so"
  for page in "$SNBD_SRC"/docs/*.[1-8]; do
    name=${page##*/}
    echo "/usr/share/man/man${name##*.}/$name"
  done
} | sort >want.txt
(cd "$dest" && find . -type f -o -type l) | sed 's|^\.||' | sort >got.txt
diff -u want.txt got.txt || fail "installed files differ from the list (- missing, + extra)"
grep -q 'snbd-server\.8' want.txt || fail "docs/snbd-server.8 not in the list"

# -- the installed programs, with only the installed library --
export LD_LIBRARY_PATH=$dest$libdir
for p in snbd-server snbd-info snbd-copy; do
  expect_eq "installed $p --version" "$p $version" "$("$dest/usr/bin/$p" --version)"
done
libs=$(ldd "$dest/usr/bin/snbd-info")   # (not piped into grep -q: pipefail)
[[ $libs == *"libsnbd.so.0 => $dest$libdir/"* ]] ||
  fail "installed snbd-info does not use the installed libsnbd: $libs"

# The installed server loads its modules from $libdir/snbd, never from
# the build tree; under DESTDIR that directory does not exist yet, which
# the one refusal line names (unless a real install is there).
if [ -e "$build/server/backends/rbd.so" ] && [ ! -e "$libdir/snbd/rbd.so" ]; then
  if "$dest/usr/bin/snbd-server" -U - 'rbd:pool/image' --run true 2>mod.err
  then fail "an rbd: export without its module started"; fi
  grep -qF "snbd-server: error: export (default): cannot load the rbd backend from $libdir/snbd/rbd.so: cannot open shared object file" mod.err ||
    fail "missing module: $(cat mod.err)"
fi
ldd "$dest$libdir/snbd/rbd.so" 2>/dev/null | grep -q librbd ||
  [ ! -e "$build/server/backends/rbd.so" ] || fail "installed rbd.so does not use librbd"

# The example configuration is valid as installed.
"$dest/usr/bin/snbd-server" --check-config -c "$dest/etc/snbd/snbd.conf" \
  2>check.log || fail "the installed snbd.conf does not pass --check-config: $(cat check.log)"
grep -q "configuration OK" check.log || fail "--check-config: $(cat check.log)"

# -- a program built against the installed snbd.pc --
cat >prog.c <<'PROG'
#include <stdio.h>
#include <snbd/snbd.h>
#include <snbd/protocol.h>

int main(int argc, char **argv)
{
  struct snbd_handle *h = snbd_create();
  if (!h || argc != 2 || snbd_connect_uri(h, argv[1]) == -1) {
    fprintf(stderr, "prog: %s\n", snbd_get_error());
    return 1;
  }
  int flags = snbd_get_export_flags(h);
  printf("%lld %s\n", (long long)snbd_get_size(h),
         flags & NBD_FLAG_READ_ONLY ? "ro" : "rw");
  snbd_shutdown(h);
  snbd_close(h);
  return 0;
}
PROG
export PKG_CONFIG_PATH=$dest$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
expect_eq "pkg-config --modversion snbd" "$version" "$(pkg-config --modversion snbd)"
# shellcheck disable=SC2046
cc -o prog prog.c $(pkg-config --cflags --libs snbd) ||
  fail "cannot build against the installed snbd.pc"
out=$("$dest/usr/bin/snbd-server" -U - memory:3M,readonly --run './prog "$uri"') ||
  fail "the program built against the installed library failed: $out"
expect_eq "size and flags from the installed library" "3145728 ro" "$out"

# -- the systemd units --
grep -qx "ExecStart=/usr/bin/snbd-server -c /etc/snbd/snbd.conf --log=syslog" \
  "$dest/usr/lib/systemd/system/snbd-server.service" ||
  fail "snbd-server.service does not start the installed server with /etc/snbd/snbd.conf"
if command -v systemd-analyze >/dev/null; then
  # The units as installed, with the server's path moved under DESTDIR
  # (verify checks that ExecStart= exists).
  mkdir units
  for u in snbd-server.service snbd-server.socket; do
    sed "s|/usr/bin/snbd-server|$dest/usr/bin/snbd-server|" \
      "$dest/usr/lib/systemd/system/$u" >"units/$u"
  done
  # A unit systemd only half understands (a misspelled key or value) is
  # reported on stderr with exit status 0: any output fails.
  out=$(systemd-analyze verify --man=no units/snbd-server.socket \
        units/snbd-server.service 2>&1) || fail "systemd-analyze verify: $out"
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
else
  echo "systemd-analyze is not installed: units not verified"
fi
echo "installed $(wc -l <got.txt) files under $dest; all checks passed"
