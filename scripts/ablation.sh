#!/usr/bin/env bash
# The ablation of README.md's "Ablation" section: train the bundled Shakespeare
# LLaMA (testdata/configs/llama_shakespeare.json, d 128) on Tiny Shakespeare at
# equal updates, batch, learning rate, schedule and seed, as
#
#   full          --peft full                              dense weights
#   sltrain       --rank 32 --sp-ratio 0.03                SLTrain, r = d/4, δ 0.03
#   lowrank       --rank 32 --sp-ratio 0                   low-rank only, SLTrain's init (B = 0)
#   lowrank-init  --rank 32 --sp-ratio 0 --init B.safetensors
#                                                          low-rank only, B drawn non-zero
#   sltrain-bf16  sltrain's flags --dtype bfloat16         SLTrain in the seed's pure bf16
#   full-bf16     --peft full --dtype bfloat16             full-rank in the seed's pure bf16
#   sltrain-mixed sltrain's flags --dtype bf16-mixed       SLTrain in slc's bf16-mixed
#   sltrain-bf16-adam8bit    sltrain-bf16 with --optimizer adam8bit
#                                                          bitsandbytes' 8-bit Adam (the seed's 7B script)
#   sltrain-bf16-adam8bit-pl sltrain-bf16 with --optimizer adam8bit_per_layer
#                                                          the same, updated inside the backward
#
# The fourth run exists because the third cannot learn: with B = 0 and no
# sparse part every fused layer starts at W = 0, which is a saddle point where
# every lora_A/lora_B gradient is exactly zero (see scripts/lowrank_init.py).
#
# Each run goes to $OUT/<name> (further seeds: $OUT/seed<S>/<name>), its log
# next to it ($OUT/<name>.log). Then the script prints a Markdown table and
# draws the first seed's runs with `slc plot` into $PLOT.
#
#   bash scripts/ablation.sh                    # one seed: 4 runs of about 50 s each on 2 idle cores
#   SEEDS="0 1 2" bash scripts/ablation.sh      # three seeds (3 times as long): a mean ± sd table too
#
# STEPS, BATCH, LEN, LR, EVAL_EVERY, OUT, PLOT and YMAX override the defaults;
# NAMES="sltrain sltrain-bf16" runs only those variants.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
STEPS=${STEPS:-1000}
BATCH=${BATCH:-16}
LEN=${LEN:-128}
LR=${LR:-3e-3}
EVAL_EVERY=${EVAL_EVERY:-100}
SEEDS=${SEEDS:-0}
OUT=${OUT:-runs/ablation}
PLOT=${PLOT:-docs/ablation.png}
YMAX=${YMAX-3} # top of the plot's loss axis, past the first updates (loss ln 320 ≈ 5.8); empty: fit all
RANK=32
ALPHA=32
CONFIG=testdata/configs/llama_shakespeare.json
DATA=testdata/tinyshakespeare.txt
read -r -a NAMES <<<"${NAMES:-full sltrain lowrank lowrank-init sltrain-bf16 full-bf16 sltrain-mixed}"

$GO build -o bin/slc ./cmd/slc
mkdir -p "$OUT" "$(dirname "$PLOT")"

# flags NAME SEED: the run's own flags.
flags() {
	case $1 in
	full) echo "--peft full" ;;
	sltrain) echo "--rank $RANK --sp-ratio 0.03 --lora-alpha $ALPHA" ;;
	lowrank) echo "--rank $RANK --sp-ratio 0 --lora-alpha $ALPHA" ;;
	lowrank-init) echo "--rank $RANK --sp-ratio 0 --lora-alpha $ALPHA --init $OUT/lowrank-init-B-seed$2.safetensors" ;;
	sltrain-bf16) echo "--rank $RANK --sp-ratio 0.03 --lora-alpha $ALPHA --dtype bfloat16" ;;
	full-bf16) echo "--peft full --dtype bfloat16" ;;
	sltrain-mixed) echo "--rank $RANK --sp-ratio 0.03 --lora-alpha $ALPHA --dtype bf16-mixed" ;;
	sltrain-bf16-adam8bit) echo "--rank $RANK --sp-ratio 0.03 --lora-alpha $ALPHA --dtype bfloat16 --optimizer adam8bit" ;;
	sltrain-bf16-adam8bit-pl) echo "--rank $RANK --sp-ratio 0.03 --lora-alpha $ALPHA --dtype bfloat16 --optimizer adam8bit_per_layer" ;;
	*) echo "ablation: unknown variant $1" >&2; exit 2 ;;
	esac
}

# label NAME: the variant in the plot's legend.
label() {
	case $1 in
	full) echo "full-rank" ;;
	sltrain) echo "SLTrain r $RANK, δ 0.03" ;;
	lowrank) echo "low-rank r $RANK (B = 0 init)" ;;
	lowrank-init) echo "low-rank r $RANK (B ≠ 0 init)" ;;
	sltrain-bf16) echo "SLTrain r $RANK, δ 0.03, bf16" ;;
	full-bf16) echo "full-rank, bf16" ;;
	sltrain-mixed) echo "SLTrain r $RANK, δ 0.03, bf16-mixed" ;;
	sltrain-bf16-adam8bit) echo "SLTrain r $RANK, δ 0.03, bf16, 8-bit Adam" ;;
	sltrain-bf16-adam8bit-pl) echo "SLTrain r $RANK, δ 0.03, bf16, 8-bit Adam per layer" ;;
	esac
}

# dir NAME SEED: where the run goes.
first_seed=${SEEDS%% *}
dir() {
	if [ "$2" = "$first_seed" ]; then echo "$OUT/$1"; else echo "$OUT/seed$2/$1"; fi
}

echo "Ablation: $CONFIG on $DATA, $STEPS updates of $BATCH × $LEN tokens, lr $LR (cosine, 10% warmup), eval every $EVAL_EVERY; seeds: $SEEDS"
start=$SECONDS
for seed in $SEEDS; do
	python3 scripts/lowrank_init.py "$CONFIG" "$RANK" "$ALPHA" "$seed" "$OUT/lowrank-init-B-seed$seed.safetensors"
	for name in "${NAMES[@]}"; do
		d=$(dir "$name" "$seed")
		mkdir -p "$(dirname "$d")"
		t0=$SECONDS
		# shellcheck disable=SC2046 # the flags are words
		if ! bin/slc train "$CONFIG" --data "$DATA" --batch-size "$BATCH" --max-length "$LEN" --lr "$LR" \
			--num-training-steps "$STEPS" --eval-every "$EVAL_EVERY" --save-every 0 --seed "$seed" \
			$(flags "$name" "$seed") --save-dir "$d" --overwrite >"$d.log" 2>&1; then
			echo "ablation: $name (seed $seed) failed; the end of $d.log:" >&2
			tail -5 "$d.log" >&2
			exit 1
		fi
		printf '  %-24s seed %s: %3ds  %s\n' "$name" "$seed" $((SECONDS - t0)) "$(grep '^Done:' "$d.log")"
	done
done
echo "Training took $((SECONDS - start)) s in all."

# row NAME SEED: one Markdown table row from the run's log and metrics.
#   params        "Total params: 0.42M (417,920 in …)" of the log
#   train loss    the last update's, and the mean of the last 10% of the updates
#   eval loss/ppl the last evaluation (at the end)
#   tokens/s      the median of the updates' own throughputs (evaluations and
#                 load spikes of a shared machine left out)
row() {
	local d params
	d=$(dir "$1" "$2")
	params=$(sed -n 's/^Total params: [^(]*(\([0-9,]*\) in .*/\1/p' "$d.log")
	awk -v name="$1" -v seed="$2" -v params="$params" -v tail_n=$((STEPS / 10)) '
		function num(key,   m) {
			if (match($0, "\"" key "\": [-+0-9.eE]+")) { m = substr($0, RSTART, RLENGTH); sub(/^[^:]*: /, "", m); return m + 0 }
			return "nan"
		}
		/"eval_loss"/ { ev = num("eval_loss"); ppl = num("eval_ppl"); next }
		/"loss"/ { n++; loss[n] = num("loss"); tps[n] = num("tokens_per_s") }
		END {
			s = 0; for (i = n - tail_n + 1; i <= n; i++) s += loss[i]
			# median tokens/s (insertion sort: n is small)
			for (i = 2; i <= n; i++) { v = tps[i]; j = i - 1; while (j > 0 && tps[j] > v) { tps[j + 1] = tps[j]; j-- }; tps[j + 1] = v }
			med = (n % 2) ? tps[(n + 1) / 2] : (tps[n / 2] + tps[n / 2 + 1]) / 2
			printf "| %s | %s | %s | %.4f | %.4f | %.4f | %.2f | %.0f |\n", name, seed, params, loss[n], s / tail_n, ev, ppl, med
		}' "$d/metrics.jsonl"
}

table=$OUT/table.md
echo
{
	echo "| run | seed | trainable params | final train loss | train loss, mean of last $((STEPS / 10)) | final eval loss | eval perplexity | tokens/s (median) |"
	echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
	for seed in $SEEDS; do
		for name in "${NAMES[@]}"; do row "$name" "$seed"; done
	done
} | tee "$table"

if [ "$(wc -w <<<"$SEEDS")" -gt 1 ]; then
	rows=$(cat "$table")
	{
		echo
		echo "| run | seeds | final eval loss, mean ± sd | eval perplexity, mean | train loss (last $((STEPS / 10))), mean ± sd |"
		echo "| --- | ---: | ---: | ---: | ---: |"
		for name in "${NAMES[@]}"; do
			awk -F' *[|] *' -v name="$name" '
				$2 == name { n++; e[n] = $7; p += $8; t[n] = $6 }
				function mean(a,   i, s) { s = 0; for (i = 1; i <= n; i++) s += a[i]; return s / n }
				function sd(a, m,   i, s) { s = 0; for (i = 1; i <= n; i++) s += (a[i] - m) ^ 2; return sqrt(s / (n - 1)) }
				END { me = mean(e); mt = mean(t); printf "| %s | %d | %.4f ± %.4f | %.2f | %.4f ± %.4f |\n", name, n, me, sd(e, me), p / n, mt, sd(t, mt) }
			' <<<"$rows"
		done
	} | tee -a "$table"
fi

echo
labels=()
metrics=()
for name in "${NAMES[@]}"; do
	metrics+=("$(dir "$name" "$first_seed")/metrics.jsonl")
	labels+=(--label "$(label "$name")")
done
bin/slc plot "${metrics[@]}" "${labels[@]}" ${YMAX:+--ymax "$YMAX"} -o "$PLOT" \
	--title "llama_shakespeare (d 128, 4 layers), $STEPS updates of $BATCH × $LEN tokens, lr $LR, seed $first_seed"
