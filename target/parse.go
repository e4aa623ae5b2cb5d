package target

import (
	"fmt"
	"slices"
	"strings"
)

// Flags are the command-line spellings of a target, as slc's --device,
// --gpu, --gpu-kernels, --cpu and --features give them (the flags' defaults
// included: GPU DefaultSM, GPUKernels "portable").
type Flags struct {
	Device     string // "cpu" (or "") or "cuda", any case
	GPU        string // the SM of --device cuda
	GPUKernels string // "portable" or "tensorcore", any case
	CPU        string // an LLVM x86-64 CPU name; "" for this machine's
	Features   string // an LLVM feature string; "" for the CPU's own
}

// Parse turns flags into a Target. --gpu and --gpu-kernels are checked with
// or without --device cuda, so that a bad value is refused the same way
// everywhere. An error is one line naming the flag and its value.
func Parse(f Flags) (Target, error) {
	if f.CPU != "" && !slices.Contains(x86CPUs, f.CPU) {
		return Target{}, fmt.Errorf("flag --cpu: %q is not an x86-64 CPU LLVM knows (for example x86-64-v3, x86-64-v4, znver4; leave it out for this machine's)", f.CPU)
	}
	if err := checkCPU("", f.Features); err != nil {
		return Target{}, fmt.Errorf("flag --features: %v", err)
	}
	if _, ok := gpus[f.GPU]; !ok {
		return Target{}, fmt.Errorf("flag --gpu: %q is not one of %s", f.GPU, strings.Join(GPUNames(), ", "))
	}
	kernels := Kernels(strings.ToLower(f.GPUKernels))
	if kernels != Portable && kernels != TensorCore {
		return Target{}, fmt.Errorf("flag --gpu-kernels: %q is not portable or tensorcore", kernels)
	}
	switch d := strings.ToLower(f.Device); d {
	case "", "cpu":
		return NewCPU(f.CPU, f.Features), nil
	case "cuda":
		if f.CPU != "" {
			return Target{}, fmt.Errorf("flag --cpu: names an x86-64 CPU; --device cuda takes --gpu")
		}
		if f.Features != "" {
			return Target{}, fmt.Errorf("flag --features: names x86-64 features; --device cuda takes --gpu")
		}
		return NewCUDA(f.GPU, kernels), nil
	default:
		return Target{}, fmt.Errorf("flag --device: %q is not cpu or cuda", d)
	}
}
