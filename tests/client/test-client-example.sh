#!/usr/bin/env bash
# The example program in libsnbd(3) compiles with the flags pkg-config
# gives for snbd, links with libsnbd only, and does what the page says.
. "$SNBD_SRC/tests/lib/common.sh"
require nbdkit cc pkg-config nm

page=$SNBD_SRC/docs/libsnbd.3
# Every client page renders without warnings (where man is installed).
if command -v man >/dev/null; then
  for p in "$page" "$SNBD_SRC/docs/snbd-info.1" "$SNBD_SRC/docs/snbd-copy.1"; do
    warnings=$(MANWIDTH=80 man --warnings -l "$p" 2>&1 >/dev/null || true)
    [ -z "$warnings" ] || fail "man warnings in $p: $warnings"
  done
fi
sed -n '/^\.\\" example-begin/,/^\.\\" example-end/p' "$page" |
  sed -e '/^\./d' -e 's/\\e/\\/g' >example.c
grep -q 'snbd_connect_uri' example.c || fail "no example found in $page"

export PKG_CONFIG_PATH=$SNBD_BUILD/meson-uninstalled
# A sanitizer build's library needs its runtime in the program too.
cc=(cc)
if [[ $(nm -D "$SNBD_BUILD/lib/libsnbd.so") == *" U __asan_"* ]]; then
  cc=(clang -fsanitize=address,undefined)
fi
# shellcheck disable=SC2046
"${cc[@]}" -std=c99 -Wall -Wextra -Werror -o example example.c \
  $(pkg-config --cflags --libs snbd)
[[ $(nm -u example) == *" snbd_create"* ]] || fail "example does not use libsnbd"

nbdkit -U - memory 1M --run './example "$uri" >out.txt'
cat out.txt
grep -qx 'size: 1048576 bytes' out.txt || fail "size line: $(cat out.txt)"
grep -qx 'first byte: x' out.txt || fail "read-back line: $(cat out.txt)"
# And its error path: a server that is not there.
expect_fail ./example "nbd+unix:///?socket=$PWD/none.sock" 2>err.txt
grep -q 'snbd_connect_uri' err.txt || fail "error: $(cat err.txt)"
echo "example: all checks passed"
