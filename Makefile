# slc: the SLTrain model compiler. See README.md.

GO ?= go

.PHONY: run test build setup xcheck ablation gpu-check-prepare

# The bundled default: check/install the tools, then train a small SLTrain
# LLaMA (d 128, 4 layers, r = d/4, δ 0.03) on Tiny Shakespeare for a few
# minutes on the CPU, printing the falling loss and the eval perplexity; then
# sample from it, export dense HF weights, and leave the loss curve in
# runs/shakespeare/loss.png. A second run starts afresh (--overwrite).
RUN_DIR ?= runs/shakespeare
RUN_STEPS ?= 1000

run: setup
	$(GO) build -o bin/slc ./cmd/slc
	bin/slc train testdata/configs/llama_shakespeare.json --data testdata/tinyshakespeare.txt \
		--batch-size 16 --max-length 128 --rank 32 --sp-ratio 0.03 --lora-alpha 32 --lr 3e-3 \
		--num-training-steps $(RUN_STEPS) --eval-every 100 --save-every 250 --save-dir $(RUN_DIR) --overwrite
	bin/slc generate $(RUN_DIR)/latest --prompt "ROMEO:" --max-new-tokens 300 --seed 1
	bin/slc export $(RUN_DIR)/latest -o $(RUN_DIR)/hf

# The test command of the README and of CI (.ci/run).
test: setup
	$(GO) vet ./...
	$(GO) test -timeout 30m ./...

build:
	$(GO) build -o bin/slc ./cmd/slc

setup:
	bash scripts/setup.sh

# Cross-check against an independent PyTorch implementation of the seed's
# semantics (tools/torchref): same init, same rows, full-rank and SLTrain.
xcheck: setup
	bash scripts/xcheck.sh

# The ablation of README.md's "Ablation": full-rank vs SLTrain (r = d/4,
# δ 0.03) vs low-rank only on Tiny Shakespeare at equal updates, batch, lr and
# seed; prints the table and draws docs/ablation.png (about 4-5 minutes on two
# idle cores; make ablation SEEDS="0 1 2" for error bars, three times as long).
SEEDS ?= 0

ablation: setup
	GO=$(GO) SEEDS="$(SEEDS)" bash scripts/ablation.sh

# The cuda device check, prepared on any machine (no GPU): bin/ptxrun and
# gpucheck/ (the tiny LLaMA's programs as PTX artifacts with their inputs).
# Carry both to a GPU machine and run scripts/gpu-check.sh there.
gpu-check-prepare: setup
	$(GO) build -o bin/ptxrun ./internal/ptxemu/ptxrun
	rm -rf gpucheck
	SLC_CUDA_PREPARE=$(CURDIR)/gpucheck $(GO) test ./e2e -run TestCUDAProgramsInEmulator -count=1
