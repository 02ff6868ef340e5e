#!/bin/sh
# The engine's proof on real data: LeNet-5 (DAFL's definition) trained for
# 10 epochs on the real Fashion-MNIST training set reaches at least 89% test
# accuracy. Skips (exit 77) when the Debian data package is not installed.
set -eu
data=/usr/share/datasets/fashion-mnist
if [ ! -f "$data/train-images-idx3-ubyte.gz" ]; then
	echo "skipped: $data not installed (apt-get install dataset-fashion-mnist)"
	exit 77
fi
out=$(./nasty-bench train --arch lenet5 --dataset fashion-mnist --epochs 10 --seed 0)
echo "$out"
best=$(echo "$out" | sed -n 's/^result: .* best_acc=\([0-9.]*\) .*/\1/p')
[ -n "$best" ] || { echo "no result line"; exit 1; }
if awk -v b="$best" 'BEGIN { exit !(b >= 89.0) }'; then
	echo "1 passed, 0 failed"
else
	echo "best accuracy $best% is below 89%"
	echo "0 passed, 1 failed"
	exit 1
fi
