# slc: the SLTrain model compiler. See README.md.

GO ?= go

.PHONY: run test build setup

# Check/install the tools, then compile the bundled 60M LLaMA config and print
# its summary (the default demo until training lands).
run: setup
	$(GO) run ./cmd/slc compile testdata/configs/llama_60m.json

# The test command of the README and of CI (.ci/run).
test: setup
	$(GO) vet ./...
	$(GO) test ./...

build:
	$(GO) build -o bin/slc ./cmd/slc

setup:
	bash scripts/setup.sh
