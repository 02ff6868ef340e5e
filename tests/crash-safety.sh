#!/bin/sh
# Crash safety and storage faults of the suite runner, on the smoke suite,
# at precise moments rather than random ones: tests/fault/fault-shim.so
# (LD_PRELOAD) kills the runner's whole process group at the Nth write,
# fsync or rename of a chosen file, or makes writes fail with ENOSPC,
# EACCES or EROFS (so the tests also hold as root, which ignores
# permission bits).
#  1. 14 kill -9, each at a different moment (writing the synthetic data,
#     a checkpoint's payload, a state file's fsync and rename, the best
#     checkpoint's rename, the log, an artefact's summary, and each report
#     file), resumed each time: no run reports a corrupt artefact or a
#     state it cannot resume, no file is half-written, no temporary file
#     is left, and the final results.csv and gaps.csv equal those of an
#     uninterrupted run (all columns but wall time);
#  2. a damaged checkpoint and a damaged log in the store are reported
#     and retrained, with the same results;
#  3. a disk that fills up (while training, while writing the data, while
#     writing the reports) gives one error line, keeps what finished, and
#     the next run completes; while copying the per-model logs, one line
#     per file and a final error, the reports written;
#  4. an unwritable or read-only output folder or store gives one error
#     line before any training;
#  5. a job whose training diverges (learning rate 1e12) is recorded as
#     diverged and the rest of the matrix goes on.
set -u
shim=$PWD/tests/fault/.libs/fault-shim.so
if [ ! -f "$shim" ]; then
	echo "crash-safety: $shim is not built (make check builds it)"
	exit 99
fi
# a sanitizer build refuses a preloaded library ahead of its runtime
if ! LD_PRELOAD=$shim ./nasty-bench --version >/dev/null 2>&1; then
	echo "crash-safety: the program does not run with LD_PRELOAD (sanitizer build?): skipped"
	exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
strip() { cut -d, -f1-14,16- "$1"; } # all columns but wall_s

# The errors of a run: its stderr without the suite's "not set" notes.
errors() { grep -v ': not set: \| not set: ' "$1"; }

# faulty OUT STORE COUNTER OPS PATTERN AT|- BYTES|- ACTION [ARGS]: one run
# under the shim, in its own session (a kill reaches the libtool wrapper,
# the program and every job it runs, as a crash or an OOM kill would);
# stderr into COUNTER.err. Returns the run's exit status.
faulty() {
	out=$1 store=$2 counter=$3 ops=$4 pat=$5 at=$6 bytes=$7 action=$8
	shift 8
	rm -f "$counter"
	[ "$at" = - ] && at=
	[ "$bytes" = - ] && bytes=
	LD_PRELOAD=$shim NB_FAULT_OPS=$ops NB_FAULT_PATH=$pat \
		NB_FAULT_AT=$at NB_FAULT_BYTES=$bytes NB_FAULT_ACTION=$action \
		NB_FAULT_COUNTER=$counter \
		setsid ./nasty-bench --suite smoke --quiet --out "$out" \
		--store "$store" "$@" >/dev/null 2>"$counter.err"
}

# 0. the uninterrupted reference
if ./nasty-bench --suite smoke --quiet --out "$tmp/a" --store "$tmp/sa" \
	>"$tmp/a.log" 2>&1; then ok; else
	bad "reference run failed"; cat "$tmp/a.log"; fi

# 1. kill -9 at chosen moments of one resumed run
b=$tmp/b sb=$tmp/sb
# operation, path pattern, which matching call (counted over the run and
# its jobs). The first ones fall while models train, the last ones while
# the reports are written (every model is then finished).
kills="write:*/synthetic-data/*:3
write:*/best.safetensors.tmp.*:4
fsync:*/state.safetensors.tmp.*:1
rename:*/state.safetensors:2
rename:*/best.safetensors:2
write:*/log.csv.tmp.*:3
rename:*/summary.ini:1
write:*/summary.ini.tmp.*:1
rename:*/description.txt:2
rename:*/best.safetensors:3
rename:*/logs/*.csv:2
write:*/results.csv.tmp.*:1
rename:*/gaps.csv:1
fsync:*/report.md.tmp.*:1"
n=0
killed=0
for k in $kills; do
	n=$((n + 1))
	op=${k%%:*}
	rest=${k#*:}
	pat=${rest%:*}
	at=${rest##*:}
	faulty "$b" "$sb" "$tmp/kill$n" "$op" "$pat" "$at" - kill
	status=$?
	if [ "$status" -eq 137 ] && [ "$(cat "$tmp/kill$n")" -ge "$at" ]; then
		killed=$((killed + 1))
	else
		bad "kill $n ($op $pat #$at) did not happen: exit $status, $(cat "$tmp/kill$n" 2>/dev/null || echo 0) matching calls"
		cat "$tmp/kill$n.err"
	fi
	# a killed run must not leave processes behind
	sleep 0.2
	if pgrep -f -- "--out $b " >/dev/null; then
		bad "processes of the killed run survive (kill $n)"
	fi
	# the store says finished, partial or to train; never corrupt
	if ./nasty-bench --suite smoke --out "$b" --store "$sb" --dry-run \
		2>/dev/null | grep -q corrupt; then
		bad "kill $n ($op $pat) left a corrupt artefact"
	fi
	# a report file is either absent or whole
	if [ -f "$b/results.csv" ] &&
		[ "$(strip "$b/results.csv")" != "$(strip "$tmp/a/results.csv")" ]; then
		bad "kill $n: results.csv is half-written"
	fi
	if [ -f "$b/gaps.csv" ] && ! cmp -s "$b/gaps.csv" "$tmp/a/gaps.csv"; then
		bad "kill $n: gaps.csv is half-written"
	fi
	if [ -f "$b/report.md" ] && [ "$(grep -c . "$b/report.md")" -ne \
		"$(grep -c . "$tmp/a/report.md")" ]; then
		bad "kill $n: report.md is half-written"
	fi
	# nothing the killed runs said was an error about the files
	if grep -q 'corrupt\|cannot resume\|failed' "$tmp/kill$n.err"; then
		bad "kill $n: the run reported damage:"
		cat "$tmp/kill$n.err"
	fi
done
[ "$killed" -eq 14 ] && ok || bad "$killed of 14 kills happened"
echo "crash-safety: $killed runs killed with SIGKILL at a chosen file operation, each resumed"
if ./nasty-bench --suite smoke --quiet --out "$b" --store "$sb" \
	>"$tmp/b.log" 2>&1; then ok; else
	bad "final resumed run failed"; cat "$tmp/b.log"; fi
if [ "$(strip "$tmp/a/results.csv")" = "$(strip "$b/results.csv")" ]; then
	ok
else
	bad "results after the kills differ from an uninterrupted run"
	diff "$tmp/a/results.csv" "$b/results.csv"
fi
cmp -s "$tmp/a/gaps.csv" "$b/gaps.csv" && ok || bad "gaps.csv after the kills differs"
models=$(($(wc -l <"$tmp/a/results.csv") - 1))
[ "$(ls "$b/logs" | wc -l)" -eq "$models" ] && ok || bad "per-model logs after the kills"
left=$(find "$b" "$sb" -name '*.tmp*' | wc -l)
[ "$left" -eq 0 ] && ok || { bad "$left temporary files left:"; find "$b" "$sb" -name '*.tmp*'; }
./nasty-bench --suite smoke --out "$b" --store "$sb" >"$tmp/b2.log" 2>&1
grep -q "reusing $models finished models" "$tmp/b2.log" && ok || bad "the resumed store is not reused whole"

# 2. damaged artefacts are reported and retrained
keys=$(tail -n +2 "$b/results.csv" | cut -d, -f16)
k1=$(echo "$keys" | sed -n 3p) # the scratch student
k2=$(echo "$keys" | sed -n 1p) # the normal teacher
f=$sb/store/$k1/best.safetensors
size=$(wc -c <"$f")
printf '\377' | dd of="$f" bs=1 seek=$((size - 100)) conv=notrunc 2>/dev/null
truncate -s -10 "$sb/store/$k2/log.csv"
./nasty-bench --suite smoke --out "$b" --store "$sb" >"$tmp/c.log" 2>&1
[ "$(grep -c 'corrupt artefact of' "$tmp/c.log")" -eq 2 ] && ok ||
	{ bad "damaged artefacts not reported"; cat "$tmp/c.log"; }
grep -q "reusing $((models - 2)) finished models" "$tmp/c.log" && ok || bad "damaged artefacts reused"
[ "$(strip "$tmp/a/results.csv")" = "$(strip "$b/results.csv")" ] && ok ||
	bad "results after retraining damaged artefacts differ"

# 3. the disk fills up
# a) while the models train (the synthetic data takes about 2 MB, a whole
#    run about 10 MB): one error line, the finished models are kept
d=$tmp/d sd=$tmp/sd
faulty "$d" "$sd" "$tmp/full1" write,fsync "$tmp/*" - 6000000 ENOSPC
status=$?
[ "$status" -ne 0 ] && [ "$status" -ne 137 ] && ok || bad "full disk: exit $status"
errors "$tmp/full1.err" >"$tmp/full1.msg"
if [ "$(wc -l <"$tmp/full1.msg")" -eq 1 ] &&
	grep -q '^nasty-bench: error: .*No space left on device.*run the same command again' \
		"$tmp/full1.msg"; then ok; else
	bad "full disk: not one clear error line:"; cat "$tmp/full1.err"; fi
fin=$(./nasty-bench --suite smoke --out "$d" --store "$sd" --dry-run 2>/dev/null |
	grep -c ' finished$')
[ "$fin" -ge 1 ] && ok || bad "full disk: no finished model kept"
[ -z "$(find "$d" "$sd" -name '*.tmp*')" ] && ok || bad "full disk: temporary files left"
#    space is freed: the next run completes, reusing what finished
if ./nasty-bench --suite smoke --out "$d" --store "$sd" >"$tmp/d.log" 2>&1; then ok; else
	bad "run after freeing space failed"; cat "$tmp/d.log"; fi
grep -q "reusing $fin finished model" "$tmp/d.log" && ok || bad "finished models were not kept"
[ "$(strip "$tmp/a/results.csv")" = "$(strip "$d/results.csv")" ] && ok ||
	bad "results after a full disk differ"
cp "$d/results.csv" "$tmp/results.before"
# b) while the reports are written: the old reports stay whole (the
#    pattern leaves out logs/ and images/, case d)
faulty "$d" "$sd" "$tmp/full2" write "$d/[!il]*.tmp.*" - 0 ENOSPC
status=$?
errors "$tmp/full2.err" >"$tmp/full2.msg"
[ "$status" -ne 0 ] && [ "$(wc -l <"$tmp/full2.msg")" -eq 1 ] &&
	grep -q 'No space left on device' "$tmp/full2.msg" && ok ||
	{ bad "full disk at the reports: exit $status:"; cat "$tmp/full2.err"; }
cmp -s "$tmp/results.before" "$d/results.csv" && ok || bad "full disk damaged results.csv"
# d) while the per-model logs are copied into OUT/logs: a line for each
#    file, the reports are written, the run fails at the end; the next run
#    copies them
faulty "$d" "$sd" "$tmp/full4" write "$d/logs/*.tmp.*" - 0 ENOSPC
status=$?
errors "$tmp/full4.err" >"$tmp/full4.msg"
copies=$(grep -c '^nasty-bench: could not copy .*No space left on device.*the original stays in the store$' \
	"$tmp/full4.msg")
[ "$status" -ne 0 ] && [ "$copies" -eq "$models" ] &&
	[ "$(wc -l <"$tmp/full4.msg")" -eq $((models + 1)) ] &&
	tail -n 1 "$tmp/full4.msg" |
	grep -q "^nasty-bench: error: $models per-model files could not be copied into $d" &&
	ok || { bad "full disk at the logs: exit $status:"; cat "$tmp/full4.err"; }
cmp -s "$tmp/results.before" "$d/results.csv" && ok || bad "full disk at the logs: results.csv differs"
[ -z "$(find "$d" -name '*.tmp*')" ] && ok || bad "full disk at the logs: temporary files left"
if ./nasty-bench --suite smoke --quiet --out "$d" --store "$sd" >"$tmp/d2.log" 2>&1 &&
	[ "$(ls "$d/logs" | wc -l)" -eq "$models" ]; then ok; else
	bad "run after a full disk at the logs"; cat "$tmp/d2.log"; fi
# c) while the synthetic data is written
faulty "$tmp/e" "$tmp/se" "$tmp/full3" write,fsync "$tmp/*" - 1000000 ENOSPC
status=$?
errors "$tmp/full3.err" >"$tmp/full3.msg"
[ "$status" -ne 0 ] && [ "$(wc -l <"$tmp/full3.msg")" -eq 1 ] &&
	grep -q 'No space left on device' "$tmp/full3.msg" && ok ||
	{ bad "full disk at the data: exit $status:"; cat "$tmp/full3.err"; }
if ./nasty-bench --suite smoke --quiet --out "$tmp/e" --store "$tmp/se" \
	>"$tmp/e.log" 2>&1; then ok; else
	bad "run after a full disk at the data failed"; cat "$tmp/e.log"; fi

# 4. folders that cannot be written
# a) an existing output folder: refused before any training
mkdir -p "$tmp/f"
faulty "$tmp/f" "$tmp/sf" "$tmp/acc1" open,mkdir "$tmp/f/*" - - EACCES
status=$?
errors "$tmp/acc1.err" >"$tmp/acc1.msg"
[ "$status" -ne 0 ] && [ "$(wc -l <"$tmp/acc1.msg")" -eq 1 ] &&
	grep -q "^nasty-bench: error: $tmp/f: cannot write there: Permission denied" \
		"$tmp/acc1.msg" && ok ||
	{ bad "unwritable output folder: exit $status:"; cat "$tmp/acc1.err"; }
[ -z "$(ls "$tmp/sf/store")" ] && ok || bad "unwritable output folder: models were trained"
# b) an output folder that cannot be created
faulty "$tmp/g/out" "$tmp/sg" "$tmp/acc2" mkdir "$tmp/g*" - - EACCES
status=$?
errors "$tmp/acc2.err" >"$tmp/acc2.msg"
[ "$status" -ne 0 ] && [ "$(wc -l <"$tmp/acc2.msg")" -eq 1 ] &&
	grep -q "Permission denied" "$tmp/acc2.msg" && ok ||
	{ bad "uncreatable output folder: exit $status:"; cat "$tmp/acc2.err"; }
# c) a read-only store
mkdir -p "$tmp/sh/store"
faulty "$tmp/h" "$tmp/sh" "$tmp/rofs" open,mkdir "$tmp/sh/*" - - EROFS
status=$?
errors "$tmp/rofs.err" >"$tmp/rofs.msg"
[ "$status" -ne 0 ] && [ "$(wc -l <"$tmp/rofs.msg")" -eq 1 ] &&
	grep -q "$tmp/sh/store: cannot write there: Read-only file system" \
		"$tmp/rofs.msg" && ok ||
	{ bad "read-only store: exit $status:"; cat "$tmp/rofs.err"; }
if ./nasty-bench --suite smoke --quiet --out "$tmp/h" --store "$tmp/sh" \
	>"$tmp/h.log" 2>&1; then ok; else
	bad "run after the store became writable failed"; cat "$tmp/h.log"; fi

# 5. a diverging job is recorded as such; the matrix goes on
sed -e 's/^students = lenet5-half$/students = lenet5-half, cnn/' \
	-e 's/^attacks = .*/attacks = kd/' \
	-e 's/^name = smoke$/name = diverge/' \
	"$NB_TEST_SRCDIR/suites/smoke.ini" >"$tmp/diverge.ini"
printf '\n[train.cnn]\nlr = 1e12\n' >>"$tmp/diverge.ini"
./nasty-bench --suite "$tmp/diverge.ini" --quiet --out "$tmp/i" \
	--store "$tmp/si" >"$tmp/i.log" 2>&1
status=$?
[ "$status" -eq 0 ] && ok || { bad "diverging suite: exit $status"; cat "$tmp/i.log"; }
# every cnn student diverged, everything else finished ok as without it
awk -F, 'NR > 1 && $6 == "cnn" && $14 == "diverged" { d++ }
	NR > 1 && $6 != "cnn" && $14 == "ok" { o++ }
	END { exit !(d == 3 && o == 5 && NR == 9) }' "$tmp/i/results.csv" && ok ||
	{ bad "diverged jobs:"; cat "$tmp/i/results.csv"; }
[ "$(awk -F, 'NR > 1 && $6 != "cnn"' "$tmp/i/results.csv" | cut -d, -f4-14,16-)" = \
	"$(awk -F, 'NR > 1 && ($10 == "" || $10 == "kd" || $10 == "scratch")' \
		"$tmp/a/results.csv" | cut -d, -f4-14,16-)" ] && ok ||
	bad "the other jobs' results changed"
grep -q '^| student baseline (scratch) | — | 100.00 | diverged |' "$tmp/i/report.md" && ok ||
	{ bad "report.md does not show the divergence"; cat "$tmp/i/report.md"; }

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
