#!/usr/bin/env bash
# snbd-server, snbd-info and snbd-copy print the version that meson.build's
# project(version:) gives, the only place it is written.
. "$SNBD_SRC/tests/lib/common.sh"
require meson
require_server

want=$(meson introspect --projectinfo "$SNBD_BUILD" |
       "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["version"])')
[ -n "$want" ] || fail "meson introspect gave no version"
expect_eq "snbd-server --version" "snbd-server $want" "$("$SNBD_SERVER" --version)"
expect_eq "snbd-server -V" "snbd-server $want" "$("$SNBD_SERVER" -V)"
expect_eq "snbd-info --version" "snbd-info $want" "$("$SNBD_INFO" --version)"
expect_eq "snbd-copy --version" "snbd-copy $want" "$("$SNBD_COPY" --version)"
# The man pages' .TH lines are written by hand: they must say the same.
for page in "$SNBD_SRC"/docs/*.[1-8]; do
  th=$(sed -n '1{/^\.TH /p}' "$page")
  [[ $th == *"\"snbd $want\""* ]] || fail "$page: .TH line '$th' is not snbd $want"
done
