// Package target names what slc's kernels are compiled for and run on: the
// x86-64 CPU (an LLVM CPU name and feature string, or this machine's) or an
// NVIDIA GPU through CUDA (an SM and the kind of its matrix-product
// kernels). The flags are parsed into a Target once (Parse); codegen compiles
// for it, the artifact records it, and the runtime opens the device it names.
//
// The package imports no LLVM (the runtime-only slc uses it): the CPU names
// and GPUs it accepts are the lists LLVM 19 supports, kept here as data.
package target

import (
	"fmt"
	"slices"
	"strings"
)

// Device is the kind of machine a Target runs on.
type Device uint8

// Devices. The zero Device is the CPU, so the zero Target is this machine's
// CPU.
const (
	CPU  Device = iota // x86-64 kernels in a shared object
	CUDA               // NVPTX kernels (PTX text) through the CUDA driver
)

// String is the device's name as --device and an artifact's target kind
// spell it: "cpu" or "cuda".
func (d Device) String() string {
	switch d {
	case CPU:
		return "cpu"
	case CUDA:
		return "cuda"
	}
	return fmt.Sprintf("device(%d)", uint8(d))
}

// Kernels is the kind of a CUDA target's matrix-product kernels.
type Kernels string

// Kernel kinds. Portable and TensorCore are what --gpu-kernels offers; SIMT
// and TensorCoreEmulated are references for tests and comparisons (see
// codegen/lower's gemmGPU). "" is Portable.
const (
	Portable           Kernels = "portable"            // tiled shared-memory SIMT GEMMs
	TensorCore         Kernels = "tensorcore"          // mma.sync for bf16·bf16 products
	SIMT               Kernels = "simt"                // one thread per output element
	TensorCoreEmulated Kernels = "tensorcore-emulated" // TensorCore's data flow without mma.sync
)

// Target is what the kernels are compiled for. The zero value is this
// machine's CPU. Targets are comparable with ==; Equal also treats the
// defaults ("" SM, "" kernels) as the values they stand for.
type Target struct {
	Device Device
	// CPU is the LLVM CPU name ("znver4", "x86-64-v3"); "" is this
	// machine's. CPU device only.
	CPU string
	// Features is the LLVM feature string ("+avx2,+fma,-avx512f"); "" means
	// the host's features when CPU is "" too, and the CPU's own otherwise.
	// CPU device only.
	Features string
	// SM is the GPU ("sm_90"); "" is DefaultSM. CUDA device only.
	SM string
	// Kernels is the GPU's matrix-product kernels; "" is Portable. CUDA
	// device only.
	Kernels Kernels
}

// Host is this machine's CPU with its own features.
func Host() Target { return Target{} }

// NewCPU is the CPU target of an LLVM CPU name ("" for this machine's) and
// feature string.
func NewCPU(cpu, features string) Target { return Target{Device: CPU, CPU: cpu, Features: features} }

// NewCUDA is the CUDA target of an SM ("" for DefaultSM) and kernel kind
// ("" for Portable).
func NewCUDA(sm string, k Kernels) Target { return Target{Device: CUDA, SM: sm, Kernels: k} }

// IsCUDA reports whether t is a GPU target.
func (t Target) IsCUDA() bool { return t.Device == CUDA }

// GPU returns the SM a CUDA target compiles for: SM, or DefaultSM.
func (t Target) GPU() string {
	if t.SM == "" {
		return DefaultSM
	}
	return t.SM
}

// KernelKind returns a CUDA target's kernels: Kernels, or Portable.
func (t Target) KernelKind() Kernels {
	if t.Kernels == "" {
		return Portable
	}
	return t.Kernels
}

// Equal reports whether t and u compile to the same code: the same device,
// CPU and features, or the same SM and kernels (defaults resolved).
func (t Target) Equal(u Target) bool {
	if t.Device != u.Device {
		return false
	}
	if t.Device == CUDA {
		return t.GPU() == u.GPU() && t.KernelKind() == u.KernelKind()
	}
	return t.CPU == u.CPU && t.Features == u.Features
}

// String describes t for messages: "cpu (this machine's)", "cpu znver4",
// "cpu x86-64-v3 +avx512f", "cuda sm_90 portable".
func (t Target) String() string {
	switch t.Device {
	case CPU:
		s := "cpu"
		if t.CPU == "" {
			s += " (this machine's)"
		} else {
			s += " " + t.CPU
		}
		if t.Features != "" {
			s += " " + t.Features
		}
		return s
	case CUDA:
		return fmt.Sprintf("cuda %s %s", t.GPU(), t.KernelKind())
	}
	return t.Device.String()
}

// Check reports why t cannot be compiled for: an unknown device, CPU name,
// GPU or kernel kind, a malformed feature string or one disabling what
// x86-64 cannot do without, a CPU name or features on a CUDA target.
func (t Target) Check() error {
	switch t.Device {
	case CPU:
		if t.SM != "" || t.Kernels != "" {
			return fmt.Errorf("a GPU (%q) or GPU kernels (%q) do not apply to the cpu device", t.SM, t.Kernels)
		}
		return checkCPU(t.CPU, t.Features)
	case CUDA:
		if t.CPU != "" || t.Features != "" {
			return fmt.Errorf("a CPU name or features do not apply to the cuda device (use the GPU)")
		}
		if _, ok := gpus[t.GPU()]; !ok {
			return fmt.Errorf("unknown GPU %q (want one of %s)", t.GPU(), strings.Join(GPUNames(), ", "))
		}
		switch t.KernelKind() {
		case Portable, TensorCore, SIMT, TensorCoreEmulated:
			return nil
		}
		return fmt.Errorf("GPU kernels %q: want portable, tensorcore or simt", t.Kernels)
	}
	return fmt.Errorf("unknown device %v (want cpu or cuda)", t.Device)
}

// essentialFeatures cannot be turned off: the x86-64 C ABI passes floats in
// SSE registers, and LLVM aborts without them.
var essentialFeatures = []string{"64bit", "sse", "sse2", "x87"}

// checkCPU validates a CPU name and feature string.
func checkCPU(cpu, features string) error {
	if cpu != "" && !slices.Contains(x86CPUs, cpu) {
		return fmt.Errorf("unknown x86-64 CPU %q (examples: x86-64-v3, x86-64-v4, skylake-avx512, znver4; empty for the host's)", cpu)
	}
	if features == "" {
		return nil
	}
	for _, f := range strings.Split(features, ",") {
		name := strings.TrimLeft(f, "+-")
		if len(f) < 2 || (f[0] != '+' && f[0] != '-') || len(name) != len(f)-1 || strings.IndexFunc(name, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
		}) >= 0 {
			return fmt.Errorf("bad CPU feature %q in %q (want a comma-separated list like +avx2,+fma,-avx512f)", f, features)
		}
		if f[0] == '-' && slices.Contains(essentialFeatures, name) {
			return fmt.Errorf("CPU feature %s cannot be disabled on x86-64", name)
		}
	}
	return nil
}
