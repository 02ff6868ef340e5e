#!/bin/sh
# A plugin author's path, end to end: install into a temporary root, build
# each skeleton plugin out of tree with
#   cc -shared -fPIC $(pkg-config --cflags nasty-bench) skeleton.c -o skeleton.so
# against the installed headers, and load it with --plugin-dir.
set -eu
srcdir=${srcdir:-.}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s install DESTDIR="$tmp/root" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; echo "0 passed, 1 failed"; exit 1; }
pc=$(find "$tmp/root" -name nasty-bench.pc | head -n 1)
[ -n "$pc" ] || { echo "nasty-bench.pc was not installed"; exit 1; }
PKG_CONFIG_PATH=$(dirname "$pc")
PKG_CONFIG_SYSROOT_DIR="$tmp/root"
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
mkdir "$tmp/plugins"
chmod 700 "$tmp/plugins"
pass=0
fail=0
for kind in arch teacher attack; do
	# shellcheck disable=SC2046
	if cc -shared -fPIC $(pkg-config --cflags nasty-bench) \
		"$srcdir/plugins/skeleton/$kind.c" -o "$tmp/plugins/my-$kind.so"; then
		pass=$((pass + 1))
	else
		echo "skeleton $kind.c did not build out of tree"
		fail=$((fail + 1))
	fi
done
list=$(./nasty-bench --plugin-dir "$tmp/plugins" --list-plugins)
for name in skeleton-arch skeleton-teacher skeleton-attack; do
	if echo "$list" | grep -q "^  $name "; then
		pass=$((pass + 1))
	else
		echo "$name did not load"
		fail=$((fail + 1))
	fi
done
# and the loaded architecture builds
if ./nasty-bench --plugin-dir "$tmp/plugins" describe skeleton-arch \
	--input 1x8x8 --opt hidden=16 | grep -q "^parameters: 1210$"; then
	pass=$((pass + 1))
else
	echo "describe skeleton-arch failed"
	fail=$((fail + 1))
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
