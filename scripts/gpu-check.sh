#!/usr/bin/env bash
# The device check of the cuda device, for a machine with an NVIDIA GPU and its
# driver (no Go, LLVM or CUDA toolkit needed there). Prepare it on any machine
# with `make gpu-check-prepare` (bin/ptxrun and gpucheck/), carry both, then:
#
#   bash scripts/gpu-check.sh [OUT_DIR]     # writes OUT_DIR/report.txt ($OUT, else gpucheck-report)
#
# It runs every kernel of the tiny LLaMA's train_step, update and eval (full-rank
# and SLTrain, f32, bf16-mixed and bf16: the cases of e2e's
# TestCUDAProgramsInEmulator) on the GPU through the CUDA driver — the whole PTX
# module JIT-compiled by cuModuleLoadData, one launch per step of 132 blocks × 256
# threads — and judges every program against the reference interpreter started
# from the state the GPU had before it (ptxrun's check). Then PyTorch's reference
# of the seed's SLTrain model on the same GPU (tools/torchref/bench.py --device
# cuda), the baseline of later slc GPU figures. What it cannot do yet: slc has no
# CUDA runtime, so there is no `slc train --device cuda` and no slc GPU speed to
# report. Exit status: 0 when every check passed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpucheck-report}}
mkdir -p "$out"
report="$out/report.txt"
status=0
exec > >(tee "$report") 2>&1
echo "slc device check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "nvidia-smi: not available"
if [ ! -x bin/ptxrun ] || ! ls gpucheck/*/session.json >/dev/null 2>&1; then
	echo "gpu-check: bin/ptxrun or gpucheck/ missing: run make gpu-check-prepare first"
	exit 2
fi
for s in gpucheck/*/session.json; do
	name=$(basename "$(dirname "$s")")
	echo "== kernels vs the interpreter: $name"
	if timeout 300 bin/ptxrun "$s" >"$out/$name.log" 2>&1; then
		tail -n 8 "$out/$name.log"
	else
		status=1
		echo "FAILED:"
		tail -n 20 "$out/$name.log"
	fi
done
py=python3
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import torch' 2>/dev/null && py=/usr/bin/python3
for dt in float32 bfloat16; do
	for cfg in llama_20m llama_60m; do
		echo "== PyTorch reference on the GPU: $cfg SLTrain r 128, batch 64 x 256, $dt"
		timeout 240 "$py" tools/torchref/bench.py --config "testdata/configs/$cfg.json" --device cuda --dtype "$dt" \
			--peft sltrain --rank 128 --sp-ratio 0.03 --lora-alpha 32 --batch-size 64 --max-length 256 \
			--steps 10 --warmup 3 2>&1 | tail -n 1 || echo "bench.py failed"
	done
done
exit $status
