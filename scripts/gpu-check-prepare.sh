#!/usr/bin/env bash
# Prepares the cuda device check on any machine (no GPU needed): everything
# scripts/gpu-check.sh runs on a GPU machine that has only the NVIDIA driver
# (no Go, LLVM or CUDA toolkit there). `make gpu-check-prepare` calls it.
#
#   gpucheck/<case>/          the tiny LLaMA's programs as PTX, with inputs (e2e's
#                             TestCUDAProgramsInEmulator): judged against the interpreter
#   gpucheck/train-<case>/    two updates of two micro-batches with the CPU runtime's
#                             results (TestCUDATrainMatchesCPU): judged against the CPU
#   gpucheck/bench-<model>-<dtype>/  an SLTrain artifact and a timed-updates session
#   gpucheck/export-hf/       an slc export of a short CPU run, for a transformers load
#
# bin/ptxrun and bin/slc-runtime (both LLVM-free: slc's runtime, the CUDA driver
# loaded at run time) run them.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
$GO build -o bin/ptxrun ./cmd/ptxrun
$GO build -o bin/slc ./cmd/slc
$GO build -tags slc_runtime -o bin/slc-runtime ./cmd/slc
rm -rf gpucheck
mkdir -p gpucheck
SLC_CUDA_PREPARE=$PWD/gpucheck $GO test ./e2e -run 'TestCUDA(ProgramsInEmulator|TrainMatchesCPU)$' -count=1
# The benchmarks: llama_20m and llama_60m SLTrain (r 128, δ 0.03, α 32), the
# seed's sequence length; 60m in bf16 at the seed's micro-batch of 256.
bench() { # model dtype batch steps warmup
	local dir=gpucheck/bench-$1-$2-b$3
	mkdir -p "$dir"
	bin/slc compile "testdata/configs/$1.json" --device cuda --gpu sm_90 --dtype "$2" --batch-size "$3" --max-length 256 -o "$dir/m.slc" >/dev/null
	printf '{"artifact": "m.slc", "device": "cuda", "bench": {"Steps": %d, "Warmup": %d, "Accum": 1, "peak_tflops": 989}}\n' "$4" "$5" >"$dir/session.json"
}
bench llama_20m f32 64 5 2
bench llama_60m f32 64 3 1
bench llama_60m bf16 256 3 1
bench llama_60m bf16-mixed 64 3 1
# A short CPU run of the bundled default, exported for transformers.
bin/slc train testdata/configs/llama_shakespeare.json --data testdata/tinyshakespeare.txt \
	--num-training-steps 3 --batch-size 4 --total-batch-size 4 --max-length 64 --eval-fraction 0 \
	--save-dir gpucheck/run --overwrite >/dev/null
bin/slc export gpucheck/run/latest -o gpucheck/export-hf >/dev/null
rm -rf gpucheck/run
du -sh gpucheck bin/ptxrun bin/slc-runtime
