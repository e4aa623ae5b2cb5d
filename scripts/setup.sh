#!/usr/bin/env bash
# Installs what building and testing slc needs on Debian 12, and nothing that is
# already there: the LLVM 19 C API (codegen), flatc (the IR's FlatBuffers
# schema), PyTorch and NumPy (reference checks against the seed's Python), make,
# Open MPI (mpirun and libmpi.so.40, which slc train loads at run time for
# data-parallel ranks; the MPI tests start real ranks) and the Go modules. Safe to run again: a second run changes nothing and only
# checks. Prints one line per thing it checks.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(llvm-19-dev g++ flatbuffers-compiler python3-torch python3-numpy libopenblas0-pthread make sentencepiece python3-sentencepiece libonnx-testdata python3-onnx openmpi-bin libopenmpi-dev)

say() { printf 'setup: %s\n' "$*"; }

if ! command -v go >/dev/null 2>&1; then
	say "go: missing; install Go $(awk '$1 == "go" {print $2}' go.mod) or newer and put it on PATH"
	exit 1
fi
say "go: $(go env GOVERSION)"

installed() {
	[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

if command -v dpkg-query >/dev/null 2>&1; then
	missing=()
	for p in "${packages[@]}"; do
		if installed "$p"; then
			say "$p: installed"
		else
			say "$p: missing"
			missing+=("$p")
		fi
	done
	if [ ${#missing[@]} -gt 0 ]; then
		sudo=()
		if [ "$(id -u)" -ne 0 ]; then
			if ! command -v sudo >/dev/null 2>&1; then
				say "need root or sudo to install: ${missing[*]}"
				exit 1
			fi
			sudo=(sudo)
		fi
		say "installing: ${missing[*]}"
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
		for p in "${missing[@]}"; do
			installed "$p" || { say "$p: still missing after apt-get install"; exit 1; }
			say "$p: installed now"
		done
	fi
else
	say "dpkg-query not found (not Debian): install ${packages[*]} or their equivalents yourself"
fi

for c in make flatc llvm-config-19; do
	if command -v "$c" >/dev/null 2>&1; then
		say "$c: $(command -v "$c")"
	else
		say "$c: not on PATH"
	fi
done

go mod download
say "go modules: downloaded (go mod download)"

# The PTX emulator the cuda tests use when it is beside the checkout (CI has
# it; a user's machine does not, and those tests then skip): its own
# run-time packages.
emu=../shared/tools/ptxemu
if [ -f "$emu/deps.sh" ]; then
	bash "$emu/deps.sh"
	say "ptxemu: $emu (run-time packages checked)"
fi
