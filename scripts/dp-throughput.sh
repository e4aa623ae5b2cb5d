#!/usr/bin/env bash
# Data-parallel scaling on this machine (README, "Data-parallel training"):
# llama_60m SLTrain (r 128, δ 0.03, α 32), micro-batches of 4 × 256, updates of
# 8 sequences (2,048 tokens), trained for STEPS updates as 1 process × 2
# threads (2 micro-batches accumulated) and as 2 ranks × 1 thread (one
# micro-batch each, --nproc 2), from the same compiled artifact, ROUNDS times
# in alternation. Prints each run's median update time (from metrics.jsonl,
# the first update left out), the tokens/s it gives, the 2-rank runs' median
# all-reduce time per update (allreduce_s) and the ratio of the medians over
# all rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-6}
ROUNDS=${ROUNDS:-2}
GO=${GO:-go}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$GO build -o "$work/slc" ./cmd/slc
"$work/slc" compile testdata/configs/llama_60m.json --batch-size 4 --max-length 256 -o "$work/m.slc" >/dev/null
flags=(--data testdata/tinyshakespeare.txt --total-batch-size 8 --num-training-steps "$STEPS" --warmup-steps 0
	--eval-fraction 0 --save-every 0 --log-every 1000 --overwrite)
# Update times (s) of a run, one per line: differences of elapsed_s after the first update.
times() { grep '"loss"' "$1/metrics.jsonl" | sed 's/.*"elapsed_s": \([0-9.e+-]*\).*/\1/' | awk 'NR > 1 { print $1 - prev } { prev = $1 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
: >"$work/one.t"
: >"$work/two.t"
: >"$work/ar.t"
for r in $(seq "$ROUNDS"); do
	"$work/slc" train "$work/m.slc" "${flags[@]}" --threads 2 --save-dir "$work/one" >/dev/null
	times "$work/one" | tee -a "$work/one.t" | median | awk -v r="$r" '{ printf "round %d: 1 process x 2 threads: %.2f s/update (%.0f tokens/s)\n", r, $1, 2048 / $1 }'
	"$work/slc" train "$work/m.slc" "${flags[@]}" --nproc 2 --threads 1 --save-dir "$work/two" >/dev/null
	times "$work/two" | tee -a "$work/two.t" | median | awk -v r="$r" '{ printf "round %d: 2 ranks x 1 thread:    %.2f s/update (%.0f tokens/s)\n", r, $1, 2048 / $1 }'
	grep -o '"allreduce_s": [0-9.e+-]*' "$work/two/metrics.jsonl" | awk '{ print $2 }' | tee -a "$work/ar.t" | median |
		awk -v r="$r" '{ printf "round %d: 2 ranks: all-reduce of the gradients %.3f s/update (median)\n", r, $1 }'
done
one=$(median <"$work/one.t")
two=$(median <"$work/two.t")
awk -v a="$one" -v b="$two" 'BEGIN { printf "all rounds: 1 process x 2 threads %.2f s/update (%.0f tokens/s), 2 ranks x 1 thread %.2f s/update (%.0f tokens/s); 2 ranks / 1 process: %.2fx\n", a, 2048 / a, b, 2048 / b, a / b }'
awk -v a="$(median <"$work/ar.t")" 'BEGIN { printf "all rounds: all-reduce of the gradients (2 ranks) %.3f s/update\n", a }'
