#!/bin/sh
# The suite runner end to end on the smoke suite (synthetic data, seconds):
#  1. a run writes results.csv and gaps.csv with the contract's columns and
#     sane values, and report.md;
#  2. a run killed with SIGKILL at several moments and resumed each time
#     ends with the same results (all columns but wall time) as the
#     uninterrupted run;
#  3. a second run reuses every model from the store;
#  4. a bad suite file gives a one-line error naming file and line.
# The smoke suite has data-trained attacks (kd, feature-kd, whose hint
# regressor's state must survive the kills) and data-free ones (dafl,
# deepinversion, whose generator and image pool must survive them too);
# deepinversion's grids of synthesised images reach the report and open
# in PIL when /usr/bin/python3 has it.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

run() { ./nasty-bench --suite smoke --quiet "$@"; }

# 1. one clean run
if run --out "$tmp/a" --store "$tmp/store-a" >"$tmp/a.log" 2>&1; then ok; else
	bad "smoke run failed"; cat "$tmp/a.log"; fi
head -n 1 "$tmp/a/results.csv" | grep -qx \
	'suite,tier,dataset,seed,role,arch,strategy,teacher_arch,teacher_strategy,attack,epochs,best_acc,last_acc,status,wall_s,key,final_kl' &&
	ok || bad "results.csv header"
head -n 1 "$tmp/a/gaps.csv" | grep -qx \
	'dataset,teacher_arch,defense,student_arch,attack,seeds,teacher_normal_acc,teacher_defended_acc,teacher_gap,student_baseline_acc,student_from_normal_acc,student_from_defended_acc,gap_vs_normal,gap_vs_baseline' &&
	ok || bad "gaps.csv header"
rows=$(tail -n +2 "$tmp/a/results.csv" | wc -l)
[ "$rows" -eq 11 ] && ok || bad "results.csv has $rows rows, want 11"
# every model ok, 3 epochs, accuracies in (10, 100]: above chance on the
# synthetic classes (a data-free student of the nasty teacher may not be,
# and deepinversion's LeNet-5 teacher has no BatchNorm to invert here)
awk -F, 'NR > 1 && ($14 != "ok" || $11 != 3 || $12 > 100 || $13 < 0 ||
	$13 > 100 || length($16) != 64) { bad = 1 }
	NR > 1 && $12 <= 10 && !($10 == "dafl" && $9 == "nasty") &&
	$10 != "deepinversion" { bad = 1 }
	END { exit bad }' "$tmp/a/results.csv" && ok || bad "results.csv values"
grep -q '^- dafl: white box (gradients, features), data-free$' \
	"$tmp/a/report.md" && ok || bad "report.md: dafl's access"
grep -q '^- feature-kd: white box (features), training data$' \
	"$tmp/a/report.md" && ok || bad "report.md: feature-kd's access"
grep -q '^- deepinversion: white box (gradients, BatchNorm statistics), data-free$' \
	"$tmp/a/report.md" && ok || bad "report.md: deepinversion's access"
# deepinversion: one grid per teacher (normal, nasty), linked in the report
pngs=$(ls "$tmp/a/images" 2>/dev/null | grep -c '\.png$')
[ "$pngs" -eq 2 ] && ok || bad "images: $pngs grids, want 2"
[ "$(grep -c '^- deepinversion from lenet5 .*(images/[0-9a-f]*\.png)$' \
	"$tmp/a/report.md")" -eq 2 ] && ok || bad "report.md: image links"
# 64 images (2 batches of 32) of 32x32 in 10 columns: 342x240 greyscale
if /usr/bin/python3 -c 'import PIL' 2>/dev/null; then
	for f in "$tmp"/a/images/*.png; do
		/usr/bin/python3 -c 'import sys
from PIL import Image
im = Image.open(sys.argv[1]); im.load()
sys.exit(0 if (im.size, im.mode) == ((342, 240), "L") else 1)' "$f" &&
			ok || bad "PIL cannot read $f as a 342x240 grey grid"
	done
fi
# the nasty teacher reports its KL term, the normal one does not
awk -F, '$5 == "teacher" && $7 == "nasty" && $17 > 0 { n = 1 }
	$5 == "teacher" && $7 == "normal" && $17 != "" { bad = 1 }
	END { exit !(n && !bad) }' "$tmp/a/results.csv" && ok || bad "final_kl column"
[ "$(tail -n +2 "$tmp/a/gaps.csv" | wc -l)" -eq 4 ] && ok || bad "gaps.csv rows"
grep -q '^| T lenet5 nasty |' "$tmp/a/report.md" && ok || bad "report.md table"
[ "$(ls "$tmp/a/logs" | wc -l)" -eq 11 ] && ok || bad "per-model logs"

# 2. kill -9 at several moments, resume each time
strip() { cut -d, -f1-14,16- "$1"; } # all columns but wall_s
for delay in 0.3 0.9 1.6 2.4 3.3; do
	# its own session, so that kill reaches the libtool wrapper, the
	# program and every job it runs, as a crash or an OOM kill would
	setsid ./nasty-bench --suite smoke --quiet --out "$tmp/b" \
		--store "$tmp/store-b" >/dev/null 2>&1 &
	pid=$!
	sleep "$delay"
	kill -9 -- "-$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	# nothing of it may survive
	sleep 0.2
	if pgrep -f -- "--out $tmp/b" >/dev/null; then
		bad "processes of the killed run survive"
		pkill -9 -f -- "--out $tmp/b"
	fi
done
if run --out "$tmp/b" --store "$tmp/store-b" >"$tmp/b.log" 2>&1; then ok; else
	bad "resumed run failed"; cat "$tmp/b.log"; fi
if [ "$(strip "$tmp/a/results.csv")" = "$(strip "$tmp/b/results.csv")" ]; then
	ok
else
	bad "results after kills differ from an uninterrupted run"
	diff "$tmp/a/results.csv" "$tmp/b/results.csv"
fi
cmp -s "$tmp/a/gaps.csv" "$tmp/b/gaps.csv" && ok || bad "gaps.csv after kills differs"
# the same synthesised images too
for f in "$tmp"/a/images/*.png; do
	cmp -s "$f" "$tmp/b/images/${f##*/}" && ok ||
		bad "synthesised images after kills differ: ${f##*/}"
done

# 3. a re-run reuses everything
./nasty-bench --suite smoke --out "$tmp/c" --store "$tmp/store-a" >"$tmp/c.log" 2>&1
grep -q "reusing 11 finished models" "$tmp/c.log" && ok || bad "re-run did not reuse the store"

# 4. a bad suite file
printf '[suite]\nname = x\ndataset = mnist\nteachers = lenet5\nbogus = 1\n' >"$tmp/bad.ini"
out=$(./nasty-bench --suite "$tmp/bad.ini" --out "$tmp/d" 2>&1)
status=$?
[ "$status" -eq 2 ] && ok || bad "bad suite exit status $status"
echo "$out" | grep -q "bad.ini:5:" && ok || bad "bad suite message: $out"
[ "$(echo "$out" | grep -c error)" -eq 1 ] && ok || bad "bad suite: not one error line"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
