#!/bin/bash
# compare.sh - the engine (`nasty-bench bench`) against PyTorch
# (bench/pytorch-bench.py) on the same configurations, one configuration at
# a time (ours, then PyTorch in both memory layouts), then four tables:
# the engine's numbers, PyTorch's (both layouts), the ratios (speed: ours /
# PyTorch's faster layout; peak memory: ours / that layout's) and, for every
# arch measured at 1 thread and more, the thread scaling of both.
#
# When a configuration ran more than once (--repeat, --max-fgn retries, or
# several runs' raw lines given to --from), each side shows its fastest
# run. fgn is the CPU time other processes used while the run went on, as
# a fraction of all CPUs (/proc/stat busy time minus the run's own CPU
# time). On a shared machine anything above ~0.05 makes the row noisy, and
# 2-thread rows suffer most (an OpenMP barrier waits for a thread that
# another process has pushed off its core).
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
#   --from DIR    run nothing: print the tables of the raw lines kept by
#                 earlier --out runs (repeatable: the fastest run wins)
#   --markdown    print the tables as Markdown
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
# The tables of raw files: keys.txt (the configurations in order, optional)
# then ours.txt and torch.txt lines of one or more runs. Four tables:
#  1. the engine: img/s, GFLOP/s, peak MB, fgn (its fastest run);
#  2. PyTorch: the fastest run of each layout, the faster layout's GFLOP/s,
#     peak MB and fgn;
#  3. ratios: speed (ours / PyTorch's faster layout), speed per CPU
#     second (img_per_cpu_s, the fastest of each side: far steadier than
#     img/s while other jobs share the machine) and peak memory (ours /
#     the faster layout's), with a verdict against the targets;
#  4. scaling: img/s at the most threads over img/s at 1 thread, for every
#     arch and mode measured at 1 thread and more.
table() {
	awk -v md="$markdown" '
	function field(line, key,    i, n, kv) {
		n = split(line, kv, " ")
		for (i = 1; i <= n; i++)
			if (index(kv[i], key "=") == 1)
				return substr(kv[i], length(key) + 2)
		return ""
	}
	function head(title, cols,    n, c, i, line, sep) {
		print ""
		print (md ? "**" title "**" : "== " title " ==")
		if (md) print ""
		n = split(cols, c, "|")
		line = ""; sep = ""
		for (i = 1; i <= n; i++) {
			line = line (md ? "| " c[i] " " : sprintf("%-16s", c[i]))
			sep = sep "|---"
		}
		print line (md ? "|" : "")
		if (md) print sep "|"
	}
	function row(vals,    n, c, i, line) {
		n = split(vals, c, "|")
		line = ""
		for (i = 1; i <= n; i++)
			line = line (md ? "| " c[i] " " : sprintf("%-16s", c[i]))
		print line (md ? "|" : "")
	}
	function num(x) { return sprintf("%.1f", x) }
	{
		a = field($0, "arch"); m = field($0, "mode"); t = field($0, "threads")
		k = a SUBSEP m SUBSEP t
		if (!(k in seen)) {
			seen[k] = 1
			order[++n] = k
		}
		if (!((a SUBSEP m) in am_seen)) {
			am_seen[a SUBSEP m] = 1
			am_order[++nam] = a SUBSEP m
		}
		if (t + 0 == 1) one[a SUBSEP m] = 1
		if (t + 0 > maxt[a SUBSEP m]) maxt[a SUBSEP m] = t + 0
		if (FILENAME ~ /keys\.txt$/)
			next
		v = field($0, "img_per_s") + 0
		if (FILENAME ~ /ours\.txt$/) {
			if (!(k in ours) || v > ours[k]) {
				ours[k] = v; ogf[k] = field($0, "gflops")
				omb[k] = field($0, "peak_rss_mb")
				ofg[k] = field($0, "fgn")
			}
			u = field($0, "img_per_cpu_s") + 0
			if (u > ocpu[k]) ocpu[k] = u
			next
		}
		l = field($0, "layout")
		kl = k SUBSEP l
		if (!(kl in pl) || v > pl[kl]) {
			pl[kl] = v; pgf[kl] = field($0, "gflops")
			pmb[kl] = field($0, "peak_rss_mb"); pfg[kl] = field($0, "fgn")
		}
		u = field($0, "img_per_cpu_s") + 0
		if (u > pcpu[k]) pcpu[k] = u
	}
	END {
		for (i = 1; i <= n; i++) {
			k = order[i]
			for (j = 1; j <= 2; j++) {
				l = j == 1 ? "nchw" : "channels_last"
				if ((k SUBSEP l) in pl && (!(k in pt) || pl[k SUBSEP l] > pt[k])) {
					pt[k] = pl[k SUBSEP l]; lay[k] = l
				}
			}
		}
		head("nasty-bench", "arch|mode|threads|img/s|GFLOP/s|peak MB|img/CPU-s|fgn")
		for (i = 1; i <= n; i++) {
			k = order[i]; split(k, p, SUBSEP)
			if (k in ours)
				row(p[1] "|" p[2] "|" p[3] "|" num(ours[k]) "|" ogf[k] "|" omb[k] "|" \
				    (ocpu[k] ? num(ocpu[k]) : "-") "|" ofg[k])
			else
				row(p[1] "|" p[2] "|" p[3] "|-|-|-|-|-")
		}
		head("PyTorch", "arch|mode|threads|nchw img/s|chlast img/s|best|GFLOP/s|peak MB|img/CPU-s|fgn")
		for (i = 1; i <= n; i++) {
			k = order[i]; split(k, p, SUBSEP)
			a1 = (k SUBSEP "nchw") in pl ? num(pl[k SUBSEP "nchw"]) : "-"
			a2 = (k SUBSEP "channels_last") in pl ? num(pl[k SUBSEP "channels_last"]) : "-"
			if (k in pt) {
				kl = k SUBSEP lay[k]
				row(p[1] "|" p[2] "|" p[3] "|" a1 "|" a2 "|" lay[k] "|" pgf[kl] "|" pmb[kl] "|" \
				    (pcpu[k] ? num(pcpu[k]) : "-") "|" pfg[kl])
			} else
				row(p[1] "|" p[2] "|" p[3] "|" a1 "|" a2 "|-|-|-|-|-")
		}
		head("ours / PyTorch", "arch|mode|threads|speed ratio|CPU-time ratio|memory ratio|speed >= 1|memory <= 1")
		for (i = 1; i <= n; i++) {
			k = order[i]; split(k, p, SUBSEP)
			r = "-"; mr = "-"; ok = "-"; mok = "-"
			cr = ocpu[k] && pcpu[k] ? sprintf("%.2f", ocpu[k] / pcpu[k]) : "-"
			if ((k in ours) && (k in pt) && pt[k] > 0) {
				r = sprintf("%.2f", ours[k] / pt[k])
				ok = ours[k] >= pt[k] ? "yes" : "no"
				kl = k SUBSEP lay[k]
				if (pmb[kl] + 0 > 0) {
					mr = sprintf("%.2f", omb[k] / pmb[kl])
					mok = omb[k] + 0 <= pmb[kl] + 0 ? "yes" : "no"
				}
			}
			row(p[1] "|" p[2] "|" p[3] "|" r "|" cr "|" mr "|" ok "|" mok)
		}
		ns = 0
		for (i = 1; i <= nam; i++)
			if ((am_order[i] in one) && maxt[am_order[i]] > 1)
				ns++
		if (!ns)
			exit
		head("scaling (img/s at T threads / at 1 thread)", "arch|mode|T|ours 1|ours T|ours scaling|PyTorch 1|PyTorch T|PyTorch scaling")
		for (i = 1; i <= nam; i++) {
			am = am_order[i]
			if (!(am in one) || maxt[am] <= 1)
				continue
			split(am, p, SUBSEP)
			k1 = am SUBSEP 1; kt = am SUBSEP maxt[am]
			o1 = (k1 in ours) ? ours[k1] : 0; ot = (kt in ours) ? ours[kt] : 0
			q1 = (k1 in pt) ? pt[k1] : 0; qt = (kt in pt) ? pt[kt] : 0
			row(p[1] "|" p[2] "|" maxt[am] "|" (o1 ? num(o1) : "-") "|" (ot ? num(ot) : "-") "|" \
			    (o1 && ot ? sprintf("%.2f", ot / o1) : "-") "|" (q1 ? num(q1) : "-") "|" \
			    (qt ? num(qt) : "-") "|" (q1 && qt ? sprintf("%.2f", qt / q1) : "-"))
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
