#!/usr/bin/env bash
# The device check of the cuda device, for a machine with an NVIDIA GPU and its
# driver (no Go, LLVM or CUDA toolkit needed there). Prepare it on any machine
# with `make gpu-check-prepare` (bin/ptxrun and gpucheck/), carry both, then:
#
#   bash scripts/gpu-check.sh [OUT_DIR]     # writes OUT_DIR/report.txt ($OUT, else gpucheck-report)
#
# (gpucheck/, bin/ptxrun and bin/slc-runtime are git-ignored: carry them with
# the working tree, about 51 MB together.)
#
# 1. Every kernel of the tiny LLaMA's train_step, update and eval (full-rank and
#    SLTrain, f32, bf16-mixed and bf16) on the GPU through slc's runtime (the
#    whole PTX module JIT-compiled by cuModuleLoadData, state resident on the
#    device, one launch per step), each program judged against the reference
#    interpreter from the state the GPU had before it (ptxrun's check).
# 2. The tiny train step (2 updates × 2 micro-batches, clipping, weight decay)
#    on the GPU against the CPU runtime's results computed at prepare time
#    (within 1e-5).
# 3. `slc train` on the GPU (bin/slc-runtime, the CLI without LLVM): llama_20m
#    SLTrain for 30 updates on Tiny Shakespeare, the loss must fall.
# 4. slc's speed: `slc bench ARTIFACT --baseline torch` for llama_20m / llama_60m
#    SLTrain (tokens/s, MFU against 989 TFLOP/s dense bf16, device memory held)
#    against PyTorch's reference of the seed's SLTrain model on the same GPU in
#    the same run (tools/torchref/bench.py --device cuda), then ptxrun's timed
#    updates both ways (each program replayed as one CUDA graph, the default,
#    and every step launched directly, SLC_CUDA_GRAPHS=0: s/update and
#    kernels vs launches queued per update) and PyTorch's torch.cuda.max_memory_allocated at the same shapes,
#    and the roofline model's prediction for this GPU beside the measured
#    profile, kernel by kernel (slc bench --predict / --profile).
# 5. transformers' LlamaForCausalLM.from_pretrained of an slc export.
# Budget: about 8 minutes on an H100/H200. Exit status 0 when every check passed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpucheck-report}}
mkdir -p "$out"
report="$out/report.txt"
status=0
exec > >(tee "$report") 2>&1
echo "slc device check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "nvidia-smi: not available"
if [ ! -x bin/ptxrun ] || [ ! -x bin/slc-runtime ] || ! ls gpucheck/*/session.json >/dev/null 2>&1; then
	echo "gpu-check: bin/ptxrun, bin/slc-runtime or gpucheck/ missing: run make gpu-check-prepare first"
	exit 2
fi
run() { # name timeout session
	echo "== $1"
	if timeout "$2" bin/ptxrun "$3" >"$out/$1.log" 2>&1; then
		grep -v '^==Ocelot==' "$out/$1.log" | tail -n 8
	else
		local rc=$?
		status=1
		echo "FAILED (exit $rc):"
		tail -n 20 "$out/$1.log"
	fi
}
for s in gpucheck/*/session.json; do
	name=$(basename "$(dirname "$s")")
	case $name in
	bench-*) ;;
	train-*) run "train step vs the CPU runtime: $name" 120 "$s" ;;
	*) run "kernels vs the interpreter: $name" 120 "$s" ;;
	esac
done
# predict_vs_measured NAME ARTIFACT: the roofline model's prediction for this
# GPU (slc bench --predict, package roofline) beside the measured profile, per
# kernel (ms per step, both summed over the step's programs): the first
# calibration of the model.
predict_vs_measured() {
	local gpu model
	gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
	case $gpu in *H200*) model=H200 ;; *H100*) model=H100 ;; *A100*) model=A100 ;; *) model= ;; esac
	echo "== predicted vs measured per kernel: $1 on ${gpu:-an unknown GPU}"
	if [ -z "$model" ]; then
		echo "no model of this GPU (roofline knows H100, H200 and A100)"
		return
	fi
	timeout 200 bin/slc-runtime bench "$2" --predict "$model" --profile 40 >"$out/predict-$1.txt" 2>&1 || { echo "FAILED: slc bench --predict"; status=1; return; }
	timeout 300 bin/slc-runtime bench "$2" --profile 40 --steps 3 --warmup 1 >"$out/profile-$1.txt" 2>&1 || { echo "FAILED: slc bench --profile"; status=1; return; }
	grep -E '^  (step|train_step|update):' "$out/predict-$1.txt" | head -n 3
	printf "  %-36s %-22s %12s %12s %7s\n" kernel class "predicted ms" "measured ms" measured/predicted
	awk 'FNR == NR { if ($1 == "predicted") { for (i = 1; i <= NF; i++) if ($i == "ms") p[$2] += $(i - 1); cls[$2] = $3 } next }
		$2 == "ms" && $6 != "" { m[$5] += $1 }
		END { for (k in p) if (k in m) printf "  %-36s %-22s %12.3f %12.3f %7.2f\n", k, cls[k], p[k], m[k], m[k] / p[k] }' \
		"$out/predict-$1.txt" "$out/profile-$1.txt" | sort -k3 -g -r | head -n 40
}
py=python3
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null && py=/usr/bin/python3
export SLC_PYTHON=$py
echo "== slc train on the GPU: llama_20m SLTrain, 30 updates on Tiny Shakespeare"
if timeout 240 bin/slc-runtime train gpucheck/bench-llama_20m-f32-b64/m.slc --data testdata/tinyshakespeare.txt \
	--num-training-steps 30 --warmup-steps 5 --lr 0.003 --eval-every 0 --save-every 0 \
	--save-dir "$out/train-run" --overwrite --log-every 5 >"$out/train.log" 2>&1; then
	grep -E "^(Device|Training|step|Done)" "$out/train.log" | tail -n 12
else
	status=1
	echo "FAILED:"
	tail -n 20 "$out/train.log"
fi
for s in gpucheck/bench-*/session.json; do
	name=$(basename "$(dirname "$s")") # bench-<model>-<dtype>-b<batch>
	IFS=- read -r _ model dtype batch <<<"${name/bf16-mixed/bf16mixed}"
	dtype=${dtype/bf16mixed/bf16-mixed}
	batch=${batch#b}
	echo "== slc bench on the GPU against PyTorch: $model SLTrain r 128, batch $batch x 256, $dtype"
	if ! timeout 200 bin/slc-runtime bench "$(dirname "$s")/m.slc" --baseline torch --steps 3 --warmup 1 2>&1 | grep -v "^Running"; then
		status=1
		echo "FAILED"
	fi
	run "ptxrun's timed updates, CUDA graphs (one launch per program run): $name" 120 "$s"
	SLC_CUDA_GRAPHS=0 run "ptxrun's timed updates, direct launches (SLC_CUDA_GRAPHS=0): $name" 120 "$s"
	predict_vs_measured "$name" "$(dirname "$s")/m.slc"
	tdt=$dtype
	case $dtype in f32) tdt=float32 ;; bf16) tdt=bfloat16 ;; esac
	echo "== PyTorch's device memory: $model, batch $batch x 256, $tdt"
	timeout 120 "$py" tools/torchref/bench.py --config "testdata/configs/$model.json" --device cuda --dtype "$tdt" \
		--peft sltrain --rank 128 --sp-ratio 0.03 --lora-alpha 32 --batch-size "$batch" --max-length 256 \
		--steps 2 --warmup 1 2>&1 | tail -n 1 | "$py" -c 'import json,sys; d=json.loads(sys.stdin.read()); print("max_memory_allocated %.2f GiB, %.0f tokens/s" % (d["max_memory_allocated"]/2**30, d["tokens_per_s"]))' || echo "bench.py failed"
done
echo "== transformers: LlamaForCausalLM.from_pretrained(gpucheck/export-hf)"
if ! timeout 120 "$py" - <<'PY'
import json, torch, transformers
m = transformers.LlamaForCausalLM.from_pretrained("gpucheck/export-hf", torch_dtype=torch.float32).cuda().eval()
ids = torch.arange(32, device="cuda").remainder(m.config.vocab_size)[None]
with torch.no_grad():
    out = m(ids, labels=ids)
assert torch.isfinite(out.logits).all()
print(json.dumps({"transformers": transformers.__version__, "params": sum(p.numel() for p in m.parameters()), "loss": out.loss.item()}))
PY
then
	status=1
	echo "FAILED"
fi
exit $status
