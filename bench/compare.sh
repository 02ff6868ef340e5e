#!/bin/bash
# compare.sh - the engine (`nasty-bench bench`) against PyTorch
# (bench/pytorch-bench.py) on the same configurations, one configuration at
# a time (ours, then PyTorch in both memory layouts), then a side-by-side
# table:
#
#   arch | mode | threads | ours img/s | PyTorch best img/s | layout |
#   ratio | ours peak MB | PyTorch peak MB | fgn ours/PyTorch
#
# ratio = ours / PyTorch's faster layout (nchw or channels_last); the
# PyTorch peak MB is that layout's. When a configuration ran more than once
# (--repeat, --max-fgn retries, or several runs' raw lines given to
# --from), each side shows its fastest run. fgn is the CPU time other processes
# used while the run went on, as a fraction of all CPUs (/proc/stat busy
# time minus the run's own CPU time). On a shared machine anything above
# ~0.05 makes the row noisy, and 2-thread rows suffer most (an OpenMP
# barrier waits for a thread that another process has pushed off its core).
#
# Usage: bench/compare.sh [--arch NAME|all]... [--threads N]...
#        [--mode train|infer|both] [--batch N] [--seconds S] [--warmup N]
#        [--min-steps N] [--classes N] [--repeat N] [--max-fgn F
#        [--retries N] [--wait S]] [--out DIR] [--markdown]
#        bench/compare.sh --from DIR... [--markdown]
#
#   --repeat N    run every configuration N times (default 1), ours and
#                 PyTorch alternating
#   --max-fgn F   before each run wait (at most --wait seconds, default
#                 900) until other processes use less than F of the CPUs,
#                 and run again when a run's fgn reached F (at most
#                 --retries more times, default 2)
#   --out DIR     keep the raw lines (DIR/ours.txt, DIR/torch.txt)
#   --from DIR    run nothing: print the table of the raw lines kept by
#                 earlier --out runs (repeatable: the fastest run wins)
#   --markdown    print the table as Markdown
#
# Defaults: every architecture of the paper, 1 and 2 threads, train and
# infer, batch 128, the benchmarks' own defaults for the rest (3 s per
# configuration: about an hour in all on 2 cores; --seconds 2 --min-steps
# 1 --warmup 1 takes about half that).
#
# Environment: NASTY_BENCH (default ./nasty-bench), TORCH_PYTHON (default
# /usr/bin/python3, which needs python3-torch).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
nasty=${NASTY_BENCH:-./nasty-bench}
py=${TORCH_PYTHON:-/usr/bin/python3}
# the order of `nasty-bench bench --arch all`
all_archs="lenet5 lenet5-half cnn preresnet20 preresnet32 resnet18 resnet34
resnet50 resnext29 mobilenetv2 shufflenetv2"

archs=""
threads=""
modes="train infer"
common=()
out=""
markdown=0
max_fgn=""
retries=2
repeat=1
from=()
wait_max=900
usage() {
	sed -n '2,/^set -eu/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}
need() {
	if [ "$1" -lt 2 ]; then
		echo "compare.sh: $2 needs a value" >&2
		exit 2
	fi
}
add_arch() {
	if [ "$1" = all ]; then
		archs="$archs $all_archs"
	else
		archs="$archs $1"
	fi
}
set_mode() {
	case "$1" in
	train | infer) modes=$1 ;;
	both) modes="train infer" ;;
	*)
		echo "compare.sh: --mode: '$1' is not train, infer or both" >&2
		exit 2
		;;
	esac
}
while [ $# -gt 0 ]; do
	case "$1" in
	--arch)
		need $# "$1"
		add_arch "$2"
		shift 2
		;;
	--arch=*)
		add_arch "${1#*=}"
		shift
		;;
	--threads)
		need $# "$1"
		threads="$threads $2"
		shift 2
		;;
	--threads=*)
		threads="$threads ${1#*=}"
		shift
		;;
	--mode)
		need $# "$1"
		set_mode "$2"
		shift 2
		;;
	--mode=*)
		set_mode "${1#*=}"
		shift
		;;
	--batch | --seconds | --warmup | --min-steps | --classes)
		need $# "$1"
		common+=("$1" "$2")
		shift 2
		;;
	--batch=* | --seconds=* | --warmup=* | --min-steps=* | --classes=*)
		common+=("${1%%=*}" "${1#*=}")
		shift
		;;
	--max-fgn | --retries | --wait | --out | --repeat | --from)
		need $# "$1"
		case "$1" in
		--max-fgn) max_fgn=$2 ;;
		--retries) retries=$2 ;;
		--wait) wait_max=$2 ;;
		--out) out=$2 ;;
		--repeat) repeat=$2 ;;
		--from) from+=("$2") ;;
		esac
		shift 2
		;;
	--markdown)
		markdown=1
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "compare.sh: unknown argument '$1' (see --help)" >&2
		exit 2
		;;
	esac
done
# The table of raw files: keys.txt (the configurations in order, optional)
# then ours.txt and torch.txt lines of one or more runs.
table() {
	awk -v md="$markdown" '
	function field(line, key,    i, n, kv) {
		n = split(line, kv, " ")
		for (i = 1; i <= n; i++)
			if (index(kv[i], key "=") == 1)
				return substr(kv[i], length(key) + 2)
		return ""
	}
	{
		k = field($0, "arch") SUBSEP field($0, "mode") SUBSEP field($0, "threads")
		if (!(k in seen)) {
			seen[k] = 1
			order[++n] = k
		}
		v = field($0, "img_per_s") + 0
		if (FILENAME ~ /keys\.txt$/)
			next
		if (FILENAME ~ /ours\.txt$/) {
			if (!(k in ours) || v > ours[k]) {
				ours[k] = v; omb[k] = field($0, "peak_rss_mb")
				ofg[k] = field($0, "fgn")
			}
		} else if (field($0, "best") == "1" && (!(k in pt) || v > pt[k])) {
			pt[k] = v; pmb[k] = field($0, "peak_rss_mb")
			lay[k] = field($0, "layout"); pfg[k] = field($0, "fgn")
		}
	}
	END {
		if (md) {
			print "| arch | mode | threads | ours img/s | PyTorch best img/s | layout | ratio | ours peak MB | PyTorch peak MB | fgn ours/PyTorch |"
			print "|---|---|---|---|---|---|---|---|---|---|"
			fmt = "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n"
		} else {
			fmt = "%-13s %-5s %7s %11s %13s %-13s %6s %9s %12s %9s\n"
			printf fmt, "arch", "mode", "threads", "ours img/s",
			    "PyTorch img/s", "layout", "ratio", "ours MB",
			    "PyTorch MB", "fgn o/p"
		}
		for (i = 1; i <= n; i++) {
			k = order[i]
			split(k, p, SUBSEP)
			r = "-"
			if ((k in ours) && (k in pt) && pt[k] > 0)
				r = sprintf("%.2f", ours[k] / pt[k])
			printf fmt, p[1], p[2], p[3],
			    (k in ours) ? sprintf("%.1f", ours[k]) : "-",
			    (k in pt) ? sprintf("%.1f", pt[k]) : "-",
			    (k in pt) ? lay[k] : "-", r,
			    (k in ours) ? omb[k] : "-", (k in pt) ? pmb[k] : "-",
			    ((k in ours) ? ofg[k] : "-") "/" ((k in pt) ? pfg[k] : "-")
		}
	}' "$@"
}
if [ ${#from[@]} -gt 0 ]; then
	files=()
	for d in "${from[@]}"; do
		[ -f "$d/keys.txt" ] && files+=("$d/keys.txt")
	done
	for d in "${from[@]}"; do
		files+=("$d/ours.txt")
	done
	for d in "${from[@]}"; do
		files+=("$d/torch.txt")
	done
	table "${files[@]}"
	exit 0
fi
[ -n "$archs" ] || archs=$all_archs
[ -n "$threads" ] || threads="1 2"
if [ ! -x "$nasty" ]; then
	echo "compare.sh: $nasty not found (run from the build folder or set NASTY_BENCH)" >&2
	exit 2
fi
if ! "$py" -c 'import torch' 2>/dev/null; then
	echo "compare.sh: $py has no torch (apt-get install python3-torch, or set TORCH_PYTHON)" >&2
	exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "$out" ]; then
	mkdir -p "$out"
else
	out=$tmp
fi
: >"$out/keys.txt"
: >"$out/ours.txt"
: >"$out/torch.txt"
ncpu=$(getconf _NPROCESSORS_ONLN)
hz=$(getconf CLK_TCK)

# busy CPU ticks of the whole machine (everything but idle and iowait)
busy_ticks() {
	awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
# CPU seconds (user + system) used so far by this shell's finished
# children (the `times` builtin must run in this shell, not a subshell)
child_cpu() {
	times >"$tmp/times.txt"
	awk 'NR == 2 {
		t = 0
		for (i = 1; i <= 2; i++) {
			split($i, p, "m"); sub("s", "", p[2]); t += p[1] * 60 + p[2]
		}
		printf "%.3f\n", t }' "$tmp/times.txt"
}
# 0 if the machine's load over the next 5 s stays below max_fgn
quiet() {
	local b0 b1
	b0=$(busy_ticks)
	sleep 5
	b1=$(busy_ticks)
	awk -v b="$((b1 - b0))" -v hz="$hz" -v n="$ncpu" -v m="$max_fgn" \
		'BEGIN { exit !(b / hz / (5 * n) < m) }'
}
wait_quiet() {
	local waited=0
	[ -n "$max_fgn" ] || return 0
	while ! quiet; do
		waited=$((waited + 5))
		if [ "$waited" -ge "$wait_max" ]; then
			echo "# still busy after ${wait_max}s: running anyway" >&2
			return 0
		fi
	done
}
# Runs "$@" once; its stdout lines with fgn=... added into $tmp/last.txt
# and the fgn into $tmp/fgn.txt.
measure_once() {
	local b0 c0 w0 b1 c1 w1 fgn
	child_cpu >"$tmp/c0.txt"
	b0=$(busy_ticks)
	w0=$(date +%s.%N)
	"$@" >"$tmp/raw.txt" || echo "compare.sh: '$*' failed" >&2
	w1=$(date +%s.%N)
	b1=$(busy_ticks)
	child_cpu >"$tmp/c1.txt"
	c0=$(cat "$tmp/c0.txt")
	c1=$(cat "$tmp/c1.txt")
	fgn=$(awk -v b="$((b1 - b0))" -v hz="$hz" -v c="$c1" -v c0="$c0" \
		-v w="$w1" -v w0="$w0" -v n="$ncpu" 'BEGIN {
		f = (b / hz - (c - c0)) / ((w - w0) * n)
		printf "%.2f", f < 0 ? 0 : f }')
	sed "s/\$/ fgn=$fgn/" "$tmp/raw.txt" >"$tmp/last.txt"
	echo "$fgn" >"$tmp/fgn.txt"
}
# Runs "$@" --repeat times (waiting for a quiet machine and running again
# after a disturbed run when --max-fgn is given) and appends every run's
# lines to file $1.
measured() {
	local file=$1 runs=0 retry=0 fgn
	shift
	while [ "$runs" -lt "$repeat" ]; do
		wait_quiet
		measure_once "$@"
		tee -a "$file" <"$tmp/last.txt" >&2
		fgn=$(cat "$tmp/fgn.txt")
		if [ -n "$max_fgn" ] && [ "$retry" -lt "$retries" ] &&
			awk -v a="$fgn" -v m="$max_fgn" 'BEGIN { exit !(a >= m) }'; then
			retry=$((retry + 1))
			echo "# fgn=$fgn: again" >&2
			continue
		fi
		runs=$((runs + 1))
	done
}

echo "# $(uptime)" >&2
for a in $archs; do
	for m in $modes; do
		for t in $threads; do
			echo "arch=$a mode=$m threads=$t" >>"$out/keys.txt"
			measured "$out/ours.txt" "$nasty" bench --arch "$a" \
				--mode "$m" --threads "$t" ${common[@]+"${common[@]}"}
			measured "$out/torch.txt" "$py" "$here/pytorch-bench.py" \
				--arch "$a" --mode "$m" --threads "$t" \
				${common[@]+"${common[@]}"}
		done
	done
done
echo "# $(uptime)" >&2
table "$out/keys.txt" "$out/ours.txt" "$out/torch.txt"
