#!/bin/sh
# Checkpoints open in PyTorch and PyTorch checkpoints open here, for every
# architecture (tests/fixtures/torch_compat.py). Needs Debian's
# python3-torch; skipped (exit 77) without it, so CI and users without
# PyTorch are not affected.
set -eu
srcdir=${srcdir:-.}
if ! /usr/bin/python3 -c 'import torch' 2>/dev/null; then
	echo "skipped: /usr/bin/python3 has no torch (apt-get install python3-torch)"
	exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
OMP_NUM_THREADS=2 /usr/bin/python3 "$srcdir/tests/fixtures/torch_compat.py" \
	./nasty-bench "$work"
