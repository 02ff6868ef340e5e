#!/bin/sh
# The MPI runner (configure --with-mpi) end to end, on one machine:
#  1. the smoke suite on 3 ranks gives the same results.csv (all columns but
#     wall time) as a single-process run;
#  2. one teacher with BatchNorm trained data-parallel on 2 ranks matches
#     the single-process training (per-epoch loss within 1e-3 relative,
#     accuracy within a point), and a second data-parallel run is
#     bit-identical to the first;
#  3. a job process killed mid-run fails alone (the rest of the matrix
#     finishes), and an mpirun with another rank count resumes the matrix
#     to the single-process results;
#  4. a run killed on every rank leaves nothing running and resumes, again
#     with another rank count, to the same results.
# Skipped (77) without MPI. Every job uses one thread, so the runs are
# bit-comparable.
set -u
[ -n "${MPIRUN:-}" ] && [ -x "$MPIRUN" ] || { echo "no mpirun: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

# Open MPI refuses root without --allow-run-as-root (CI runs as root), and
# more ranks than cores without --oversubscribe
flags=""
"$MPIRUN" --version 2>&1 | grep -q "Open MPI" &&
	flags="--oversubscribe --allow-run-as-root"
mpi() {
	n=$1
	shift
	"$MPIRUN" $flags -np "$n" "$@"
}
strip() { cut -d, -f1-14,16- "$1"; } # all columns but wall_s
suite="--suite smoke --threads 1 --quiet"

# 1. single process vs 3 ranks
./nasty-bench $suite --out "$tmp/a" --store "$tmp/sa" >"$tmp/a.log" 2>&1 ||
	{ bad "single-process smoke run"; cat "$tmp/a.log"; }
if mpi 3 ./nasty-bench --suite smoke --threads 1 --out "$tmp/m" --store "$tmp/sm" \
	>"$tmp/m.log" 2>&1; then
	ok
else
	bad "3-rank smoke run"; cat "$tmp/m.log"
fi
if [ -s "$tmp/a/results.csv" ] &&
	[ "$(strip "$tmp/a/results.csv")" = "$(strip "$tmp/m/results.csv")" ]; then
	ok
else
	bad "3 ranks: results.csv differs from one process"
	diff "$tmp/a/results.csv" "$tmp/m/results.csv"
fi
cmp -s "$tmp/a/gaps.csv" "$tmp/m/gaps.csv" && ok || bad "3 ranks: gaps.csv differs"
# reports written once, by rank 0: one table in the output of all ranks
[ "$(grep -c '^# nasty-bench report' "$tmp/m.log")" -eq 1 ] && ok ||
	bad "the report was printed $(grep -c '^# nasty-bench report' "$tmp/m.log") times"

# 2. data-parallel: the paper's CNN (BatchNorm 2d and 1d), SGD
cat >"$tmp/dp.ini" <<'EOF'
[suite]
name = dp
dataset = mnist
synthetic = idx
synthetic_train = 1000
synthetic_test = 200
seeds = 0
teachers = cnn
students = lenet5-half
attacks = kd
[train]
optim = sgd
lr = 0.05
momentum = 0.9
wd = 0.0005
epochs = 2
batch = 100
schedule = constant
EOF
dp="--suite $tmp/dp.ini --threads 1 --only teacher/cnn/normal/*"
./nasty-bench $dp --quiet --out "$tmp/d1" --store "$tmp/sd1" >"$tmp/d1.log" 2>&1 ||
	{ bad "single-process cnn"; cat "$tmp/d1.log"; }
for k in 2 3; do
	if mpi 3 ./nasty-bench $dp --data-parallel --out "$tmp/d$k" \
		--store "$tmp/sd$k" >"$tmp/d$k.log" 2>&1; then ok; else
		bad "data-parallel run $k"; cat "$tmp/d$k.log"; fi
done
# rank 0 schedules; the two idle ranks train the one ready job together
grep -q "^start  teacher/cnn/normal/s0 (data-parallel on ranks 1..2)" "$tmp/d2.log" &&
	ok || { bad "the teacher did not train data-parallel"; cat "$tmp/d2.log"; }
key=$(awk -F, 'NR == 2 { print $16 }' "$tmp/d1/results.csv")
log1="$tmp/d1/logs/$key.csv"
log2="$tmp/d2/logs/$key.csv"
if [ -n "$key" ] && [ -s "$log1" ] && [ -s "$log2" ] &&
	paste -d, "$log1" "$log2" | awk -F, -v n=12 '
	NR > 1 {
		rows++
		l1 = $3; l2 = $(n + 3); a1 = $7; a2 = $(n + 7)
		d = l1 - l2; if (d < 0) d = -d
		s = l1 < 0 ? -l1 : l1
		if (d > 1e-3 * s + 1e-6) { print "loss", l1, l2; bad = 1 }
		d = a1 - a2; if (d < 0) d = -d
		if (d > 1.0) { print "accuracy", a1, a2; bad = 1 }
	}
	END { exit bad || rows != 2 }'; then
	ok
else
	bad "data-parallel training differs from one process"
	cat "$log1" "$log2"
fi
cmp -s "$tmp/sd2/$key/best.safetensors" "$tmp/sd3/$key/best.safetensors" 2>/dev/null ||
	cmp -s "$(find "$tmp/sd2" -name best.safetensors | head -n 1)" \
		"$(find "$tmp/sd3" -name best.safetensors | head -n 1)" &&
	ok || bad "two data-parallel runs differ"
# and the data-parallel model is not the one-process model bit for bit
# (the sums run in another order): the comparison above is a real one
cmp -s "$(find "$tmp/sd1" -name best.safetensors | head -n 1)" \
	"$(find "$tmp/sd2" -name best.safetensors | head -n 1)" &&
	echo "note: the data-parallel model equals the one-process model bit for bit"

# A live job process of the run writing to $1: three levels below mpirun
# (mpirun -> rank -> launcher -> job), not a zombie (which kill accepts).
job_pid() {
	ps -eo pid=,ppid=,stat=,args= | awk -v pat="--out $1" '
		index($0, pat) { parent[$1] = $2; state[$1] = $3 }
		END {
			for (p in parent) {
				q = parent[p]
				if (state[p] !~ /^Z/ && (q in parent) &&
				    (parent[q] in parent) &&
				    (parent[parent[q]] in parent)) { print p; exit }
			}
		}'
}

# 3. kill one job process, then resume on 2 ranks
( mpi 3 ./nasty-bench $suite --out "$tmp/k" --store "$tmp/sk" >"$tmp/k.log" 2>&1; echo $? >"$tmp/k.rc" ) &
# the first job process found, as soon as it runs (a smoke job lasts about
# a second); another one if it ended before the signal
killed=""
i=0
while [ $i -lt 400 ] && [ -z "$killed" ]; do
	sleep 0.05
	victim=$(job_pid "$tmp/k")
	[ -n "$victim" ] && kill -9 "$victim" 2>/dev/null && killed=$victim
	i=$((i + 1))
done
[ -n "$killed" ] && ok || bad "no job process found to kill"
wait
[ "$(cat "$tmp/k.rc")" = 1 ] && ok || { bad "run with a killed job: exit $(cat "$tmp/k.rc") (want 1)"; cat "$tmp/k.log"; }
grep -q "failed: killed by signal 9" "$tmp/k.log" && ok ||
	{ bad "the killed job is not reported"; cat "$tmp/k.log"; }
mpi 2 ./nasty-bench $suite --out "$tmp/k" --store "$tmp/sk" >"$tmp/k2.log" 2>&1 ||
	{ bad "resume on 2 ranks"; cat "$tmp/k2.log"; }
if [ "$(strip "$tmp/a/results.csv")" = "$(strip "$tmp/k/results.csv")" ]; then ok; else
	bad "after a killed job and a resume on 2 ranks, results differ"
	diff "$tmp/a/results.csv" "$tmp/k/results.csv"
fi

# 4. kill every rank (the whole session), then resume on 2 ranks
for delay in 1.0 2.5; do
	setsid "$MPIRUN" $flags -np 3 ./nasty-bench $suite --out "$tmp/x" \
		--store "$tmp/sx" >/dev/null 2>&1 &
	pid=$!
	sleep "$delay"
	kill -9 -- "-$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	sleep 0.3
	left=$(ps -eo pid=,args= | grep -F -- "--out $tmp/x" | grep -v grep |
		awk '{ print $1 }')
	if [ -n "$left" ]; then
		bad "processes of the killed run survive"
		kill -9 $left 2>/dev/null
	else
		ok
	fi
done
mpi 2 ./nasty-bench $suite --out "$tmp/x" --store "$tmp/sx" >"$tmp/x.log" 2>&1 ||
	{ bad "resume of a killed run on 2 ranks"; cat "$tmp/x.log"; }
if [ "$(strip "$tmp/a/results.csv")" = "$(strip "$tmp/x/results.csv")" ]; then ok; else
	bad "after killing every rank and resuming on 2, results differ"
	diff "$tmp/a/results.csv" "$tmp/x/results.csv"
fi

echo "mpi-runner: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
