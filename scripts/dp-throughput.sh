#!/usr/bin/env bash
# Data-parallel scaling on this machine (README, "Data-parallel training"):
# llama_60m SLTrain (r 128, δ 0.03, α 32), micro-batches of 4 × 256, updates of
# 8 sequences, trained for STEPS updates as 1 process × 2 threads (2
# micro-batches accumulated) and as 2 ranks × 1 thread (one micro-batch
# each), from the same compiled artifact; prints each run's training
# tokens/s (slc's own "Done:" figure, this session's updates) and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-6}
GO=${GO:-go}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$GO build -o "$work/slc" ./cmd/slc
"$work/slc" compile testdata/configs/llama_60m.json --batch-size 4 --max-length 256 -o "$work/m.slc" >/dev/null
flags=(--data testdata/tinyshakespeare.txt --total-batch-size 8 --num-training-steps "$STEPS" --warmup-steps 0
	--eval-fraction 0 --save-every 0 --log-every 1)
rate() { sed -n 's/^Done: .*(\([0-9,]*\) tokens\/s).*/\1/p' | tr -d ,; }
one=$("$work/slc" train "$work/m.slc" "${flags[@]}" --threads 2 --save-dir "$work/one" | tee /dev/stderr | rate)
two=$("$work/slc" train "$work/m.slc" "${flags[@]}" --nproc 2 --threads 1 --save-dir "$work/two" | tee /dev/stderr | rate)
echo "1 process x 2 threads: $one tokens/s"
echo "2 ranks x 1 thread:    $two tokens/s"
awk -v a="$one" -v b="$two" 'BEGIN { printf "2 ranks / 1 process: %.2fx\n", b / a }'
