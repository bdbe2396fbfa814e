#!/usr/bin/env bash
# Nothing the installed server accepts is undocumented: every backend kind
# and filter it knows (the list its "unknown backend" error gives) has an
# entry in docs/snbd-server.8, and so has every long option of --help.
# The fault-injecting error: filter was reachable in the installed binary
# without a word in the docs (docs/security.md 37).
. "$SNBD_SRC/tests/lib/common.sh"
require_server
man=$SNBD_SRC/docs/snbd-server.8

msg=$("$SNBD_SERVER" -U - nosuchkind:1 --run true 2>&1) &&
  fail "an unknown backend was accepted"
kinds=$(sed -n 's/.*unknown backend "nosuchkind:1" (use \(.*\))$/\1/p' <<<"$msg" |
        sed 's/ or /, /g; s/, /\n/g' | sed 's/:.*//')
[ "$(wc -l <<<"$kinds")" -ge 2 ] || fail "no list of backends in: $msg"
for k in $kinds; do
  grep -q "^\.BI $k: " "$man" || fail "backend $k: is not in snbd-server(8)"
done

opts=$("$SNBD_SERVER" --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u)
for o in $opts; do
  m=$(sed 's/\\-/-/g' "$man")
  grep -q -- "$o\b" <<<"$m" || fail "option $o is not in snbd-server(8)"
done
echo "documented: $(echo $kinds) and $(wc -w <<<"$opts") options"
