#!/usr/bin/env bash
# make xcheck: trains the same tiny LLaMA from the same initial weights on the
# same rows (--shuffle=false) with slc and with tools/torchref (an independent
# PyTorch implementation of the seed's semantics), full-rank and SLTrain, with
# gradient accumulation, clipping and weight decay on, and compares the loss and
# learning rate of every update and the final weights
# (scripts/xcheck_compare.py), judging the weights by PyTorch's own float32
# error against a float64 run. Cases: full and sltrain with the seed's cosine
# schedule, and sltrain with the seed's linear one (decays to 0, ignoring
# --min-lr-ratio); the seed's bf16 and slc's bf16-mixed; and the seed's
# padded document rows with the pad labels out of the loss.
set -euo pipefail
cd "$(dirname "$0")/.."

py=/usr/bin/python3
work=$(mktemp -d)
[ -n "${XCHECK_KEEP:-}" ] && echo "keeping $work" || trap 'rm -rf "$work"' EXIT
go build -o "$work/slc" ./cmd/slc
cfg=testdata/configs/llama_tiny.json # vocab 32, d 16, 2 layers

# The token stream: the first 8 KiB of Tiny Shakespeare, bytes folded into the
# tiny vocabulary, as an int64 .npy that both trainers read as it is.
"$py" -c '
import sys, numpy as np
b = np.frombuffer(open("testdata/tinyshakespeare.txt", "rb").read(8192), dtype=np.uint8)
np.save(sys.argv[1], (b.astype(np.int64) % 32))
' "$work/tokens.npy"

# Document rows (the cases with a fourth field, documents): a stream of
# documents of 1 to 40 ids in [2, 32), each ended by 1 (the end-of-text id of
# testdata/tokenizers/t5_tiny_16.model, whose pad id is 0), so that rows of 16
# are truncated, full or mostly padding, and the pad labels leave the loss.
"$py" -c '
import sys, numpy as np
g = np.random.default_rng(5)
docs = [np.append(g.integers(2, 32, size=n), 1) for n in g.integers(1, 41, size=200)]
np.save(sys.argv[1], np.concatenate(docs).astype(np.int64))
' "$work/docs.npy"

common=(--batch-size 2 --total-batch-size 4 --max-length 16 --num-training-steps 8
	--warmup-steps 2 --lr 0.01 --min-lr-ratio 0.1
	--weight-decay 0.1 --grad-clipping 0.5)
status=0
# Each case is PEFT:SCHEDULER:DTYPE. The bf16 cases are the seed's pure bf16
# (--dtype bfloat16): slc and torchref's bf16 mode both start from the init
# rounded to bf16 and are judged against a float64 run of that rounded init
# (scripts/xcheck_compare.py --dtype bfloat16: slc's error within 4× PyTorch
# bf16's own). The bf16-mixed cases are slc's mixed precision against
# torchref's (tools/torchref/precision.py), both judged against the plain
# float64 run. XCHECK_CASES="…" runs only the cases listed.
cases=${XCHECK_CASES:-full:cosine:float32 sltrain:cosine:float32 sltrain:linear:float32 full:cosine:bfloat16 sltrain:cosine:bfloat16 full:cosine:bf16-mixed sltrain:cosine:bf16-mixed sltrain:cosine:float32:documents}
for c in $cases; do
	peft=${c%%:*} rest=${c#*:}
	sched=${rest%%:*} dtype=${rest#*:}
	rows=packed
	if [[ $dtype == *:* ]]; then rows=${dtype#*:} dtype=${dtype%%:*}; fi
	tokens="$work/tokens.npy" slcrows=() torchrows=()
	if [ "$rows" = documents ]; then
		tokens="$work/docs.npy"
		slcrows=(--rows documents --tokenizer testdata/tokenizers/t5_tiny_16.model)
		torchrows=(--rows documents --pad-id 0 --eos-id 1)
	fi
	sl=(--peft "$peft")
	[ "$peft" = sltrain ] && sl+=(--rank 4 --sp-ratio 0.1 --lora-alpha 32)
	run=("${sl[@]}" "${common[@]}" --scheduler "$sched")
	d="$work/$peft"
	init=$(ls -d "$d"/init/checkpoint-* 2>/dev/null | tail -n 1 || true)
	if [ -z "$init" ] && [ ! -e "$d/init/latest" ]; then
		# Initial weights: slc's own seeded init, taken from a run with lr 0
		# (AdamW then leaves every parameter exactly as initialised); one per
		# --peft, shared by its schedulers.
		"$work/slc" train "$cfg" "${sl[@]}" --data "$work/tokens.npy" --shuffle=false --eval-fraction 0 \
			--batch-size 2 --max-length 16 --num-training-steps 1 --lr 0 --seed 7 --threads 2 \
			--save-dir "$d/init" >/dev/null
		init=$(ls -d "$d"/init/checkpoint-* 2>/dev/null | tail -n 1)
	fi
	[ -n "$init" ] || init="$d/init/latest"
	d="$work/$peft-$sched-$dtype-$rows"
	"$work/slc" train "$cfg" "${run[@]}" --dtype "$dtype" --init "$init/model.safetensors" "${slcrows[@]}" \
		--data "$tokens" --shuffle=false --eval-fraction 0 --threads 2 \
		--save-dir "$d/slc" --metrics "$d/slc.jsonl" >/dev/null
	final=$(ls -d "$d"/slc/checkpoint-* 2>/dev/null | tail -n 1)
	[ -n "$final" ] || final="$d/slc/latest"
	if [ "$dtype" != float32 ]; then
		round=()
		[ "$dtype" = bfloat16 ] && round=(--round-init bf16)
		"$py" tools/torchref/train.py --config "$cfg" "${run[@]}" --dtype "$dtype" \
			--init "$init/model.safetensors" --tokens "$work/tokens.npy" --threads 2 \
			--out "$d/torch.safetensors" --metrics "$d/torch.jsonl"
		"$py" tools/torchref/train.py --config "$cfg" "${run[@]}" --dtype float64 "${round[@]}" \
			--init "$init/model.safetensors" --tokens "$work/tokens.npy" --threads 2 \
			--out "$d/torch64.safetensors" --metrics "$d/torch64.jsonl"
		echo "xcheck $peft --scheduler $sched --dtype $dtype:"
		"$py" scripts/xcheck_compare.py --dtype "$dtype" --weight-decay 0.1 "$d/slc.jsonl" "$d/torch.jsonl" \
			"$final/model.safetensors" "$d/torch.safetensors" "$d/torch64.safetensors" "$d/torch64.jsonl" || status=1
		continue
	fi
	"$py" tools/torchref/train.py --config "$cfg" "${run[@]}" "${torchrows[@]}" \
		--init "$init/model.safetensors" --tokens "$tokens" --threads 2 \
		--out "$d/torch.safetensors" --metrics "$d/torch.jsonl"
	"$py" tools/torchref/train.py --config "$cfg" "${run[@]}" "${torchrows[@]}" --dtype float64 \
		--init "$init/model.safetensors" --tokens "$tokens" --threads 2 \
		--out "$d/torch64.safetensors" --metrics "$d/torch64.jsonl"
	echo "xcheck $peft --scheduler $sched --rows $rows:"
	"$py" scripts/xcheck_compare.py "$d/slc.jsonl" "$d/torch.jsonl" "$final/model.safetensors" "$d/torch.safetensors" "$d/torch64.safetensors" || status=1
done
exit $status
