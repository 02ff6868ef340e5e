#!/bin/sh
# fuzz-regressions.sh - replays every saved fuzz input through its harness
# (tests/fuzz/replay, built with the normal compiler): each file of
# tests/fuzz/regressions/PARSER/ (inputs that once crashed, kept forever)
# and of tests/fuzz/corpus/PARSER/ (the seeds) must go through without a
# crash, a sanitizer report (in a --enable-sanitizers build) or a broken
# parser promise. See tests/fuzz/README.md.
set -u
src=${NB_TEST_SRCDIR:-${srcdir:-.}}
replay=./tests/fuzz/replay
if [ ! -x "$replay" ]; then
	echo "fuzz-regressions: $replay is not built (make check builds it)"
	exit 99
fi
n=0
failed=0
for dir in "$src"/tests/fuzz/regressions/* "$src"/tests/fuzz/corpus/*; do
	[ -d "$dir" ] || continue
	parser=$(basename "$dir")
	for f in "$dir"/*; do
		[ -f "$f" ] || continue
		n=$((n + 1))
		if ! out=$("$replay" "$parser" "$f" 2>&1); then
			failed=$((failed + 1))
			echo "FAIL: $parser $f"
			printf '%s\n' "$out" | tail -n 40
		fi
	done
done
echo "fuzz-regressions: $n inputs, $failed failed"
[ "$n" -gt 0 ] || { echo "fuzz-regressions: no inputs found under $src/tests/fuzz"; exit 1; }
[ "$failed" -eq 0 ]
