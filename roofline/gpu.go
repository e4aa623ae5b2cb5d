// Package roofline predicts how long a cuda artifact's kernels take on a
// named GPU, without one: a roofline model over each step's work (the
// floating-point operations and bytes the lowering counted, artifact.Step)
// and its launch (grid, block, and the occupancy its registers and shared
// memory allow — from NVIDIA's ptxas -v when it is at hand, else
// estimated). It is a model, not a measurement: its efficiencies are
// assumptions stated below, to be calibrated by the first run on a GPU
// (scripts/gpu-check.sh prints predicted against measured per kernel).
package roofline

import (
	"fmt"
	"strings"
)

// GPU is a GPU's published peaks and limits.
type GPU struct {
	Name string
	SMs  int
	// TensorTFLOPS is the dense bf16 tensor-core peak, SIMTTFLOPS the fp32
	// peak of the CUDA cores (an FMA is two operations), HBMGBps the
	// memory bandwidth in GB/s.
	TensorTFLOPS, SIMTTFLOPS, HBMGBps float64
	// LaunchUs is the cost of one kernel launch queued back to back (the
	// driver's and the GPU's, 3 µs: an assumption within the 3–5 µs
	// usually measured).
	LaunchUs float64
	// Per-SM limits that bound occupancy.
	ThreadsPerSM, RegsPerSM, SharedPerSM, BlocksPerSM int
}

// GPUs are the GPUs the model knows, by their data sheets.
var GPUs = []GPU{
	{Name: "NVIDIA H100 SXM", SMs: 132, TensorTFLOPS: 989, SIMTTFLOPS: 67, HBMGBps: 3350, LaunchUs: 3,
		ThreadsPerSM: 2048, RegsPerSM: 65536, SharedPerSM: 228 << 10, BlocksPerSM: 32},
	{Name: "NVIDIA H200", SMs: 132, TensorTFLOPS: 989, SIMTTFLOPS: 67, HBMGBps: 4800, LaunchUs: 3,
		ThreadsPerSM: 2048, RegsPerSM: 65536, SharedPerSM: 228 << 10, BlocksPerSM: 32},
	{Name: "NVIDIA A100 SXM", SMs: 108, TensorTFLOPS: 312, SIMTTFLOPS: 19.5, HBMGBps: 2039, LaunchUs: 3,
		ThreadsPerSM: 2048, RegsPerSM: 65536, SharedPerSM: 164 << 10, BlocksPerSM: 32},
}

// Lookup finds a GPU by a short name: H100 (or H100-SXM), H200 or A100,
// any case.
func Lookup(name string) (GPU, error) {
	key := strings.ToUpper(strings.TrimSpace(name))
	key = strings.TrimPrefix(strings.TrimPrefix(key, "NVIDIA"), " ")
	for _, g := range GPUs {
		short := strings.Fields(strings.TrimPrefix(g.Name, "NVIDIA "))[0]
		if key == short || key == strings.ToUpper(strings.TrimPrefix(g.Name, "NVIDIA ")) || strings.ReplaceAll(key, "-", " ") == strings.ToUpper(strings.TrimPrefix(g.Name, "NVIDIA ")) {
			return g, nil
		}
	}
	return GPU{}, fmt.Errorf("unknown GPU %q (want H100, H200 or A100)", name)
}
