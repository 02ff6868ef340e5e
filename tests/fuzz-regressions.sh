#!/bin/sh
# fuzz-regressions.sh - replays every saved fuzz input through its harness
# (tests/fuzz/replay, built with the normal compiler): each file of
# tests/fuzz/regressions/PARSER/ (inputs that once broke a parser, kept
# forever) and of tests/fuzz/corpus/PARSER/ (the seeds) must go through
# without a crash, a sanitizer report (in a --enable-sanitizers build) or a
# broken parser promise. See tests/fuzz/README.md.
#
# tests/fuzz/regressions/open.txt lists inputs whose finding is not fixed
# yet ("PARSER/FILE  reason", one a line): they are expected to fail and
# reported as such; one that passes fails the test, so that its line is
# removed once the parser is fixed.
set -u
src=${NB_TEST_SRCDIR:-${srcdir:-.}}
replay=./tests/fuzz/replay
open_list="$src/tests/fuzz/regressions/open.txt"
if [ ! -x "$replay" ]; then
	echo "fuzz-regressions: $replay is not built (make check builds it)"
	exit 99
fi
is_open() {
	[ -f "$open_list" ] && grep -q "^$1[[:space:]]" "$open_list"
}
n=0
failed=0
known=0
for dir in "$src"/tests/fuzz/regressions/* "$src"/tests/fuzz/corpus/*; do
	[ -d "$dir" ] || continue
	parser=$(basename "$dir")
	for f in "$dir"/*; do
		[ -f "$f" ] || continue
		n=$((n + 1))
		id="$parser/$(basename "$f")"
		if out=$("$replay" "$parser" "$f" 2>&1); then
			if is_open "$id"; then
				failed=$((failed + 1))
				echo "FIXED? $id passes: remove it from $open_list"
			fi
		elif is_open "$id"; then
			known=$((known + 1))
			echo "open finding (expected failure): $id"
			printf '%s\n' "$out" | grep 'promise broken\|ERROR' | head -n 1
		else
			failed=$((failed + 1))
			echo "FAIL: $id ($f)"
			printf '%s\n' "$out" | tail -n 40
		fi
	done
done
echo "fuzz-regressions: $n inputs, $failed failed, $known open findings"
if [ "$n" -eq 0 ]; then
	echo "fuzz-regressions: no inputs found under $src/tests/fuzz"
	exit 1
fi
[ "$failed" -eq 0 ]
