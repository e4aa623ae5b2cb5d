package roofline

import (
	"fmt"
	"math"
	"strings"

	"gitee.com/gidean/conv-linn/artifact"
)

// The model. A kernel's time is its launch cost plus the larger of its
// memory time and its compute time:
//
//   - occupancy: the blocks resident on an SM are bounded by the GPU's
//     threads, registers (ptxas's count, or an estimate), shared memory and
//     blocks per SM; a launch of fewer blocks than SMs leaves SMs idle;
//   - memory: the bytes it reads and writes (each buffer once: the
//     compulsory traffic; products' re-reads of A and B tiles are assumed
//     to hit L2), plus, for a kernel with per-thread scratch, the scratch
//     written and read once, at the HBM bandwidth times the fraction of SMs
//     busy times min(1, resident warps per SM / 16) — 16 warps per SM
//     keeping enough loads in flight to cover the latency (Little's law,
//     an assumption);
//   - compute: its operations at the tensor-core peak (products on tensor
//     cores) times tensorEff, or at the fp32 peak times simtEff, times the
//     fraction of SMs busy, times min(1, resident warps per SM / 8), and
//     rounded up to whole waves of blocks.
//
// tensorEff and simtEff are what the kernels reach of the peaks when the
// GPU is full: assumptions (mma.sync fed from shared memory without an
// ldmatrix/cp.async pipeline; 4×4 SIMT micro-tiles), the numbers a first
// GPU run calibrates.
const (
	tensorEff    = 0.35
	simtEff      = 0.5
	memSatWarps  = 16
	compSatWarps = 8
)

// Kernel is one step's prediction.
type Kernel struct {
	Program string
	Step    int
	Name    string
	Class   string // the kernel's kind: its symbol's tag ("ew", "matmul", "mt_ew", …) and part suffix
	Grid    int
	Block   int
	Usage   Usage
	// Occupancy is the resident warps per SM over the SM's maximum.
	Occupancy          float64
	Flops, Bytes       int64
	TensorCore         bool
	Seconds            float64
	Launch, Mem, Compu float64 // its parts, in seconds
}

// Bound says what limits the kernel: "launch", "memory" or "compute".
func (k Kernel) Bound() string {
	switch {
	case k.Launch >= k.Mem && k.Launch >= k.Compu:
		return "launch"
	case k.Mem >= k.Compu:
		return "memory"
	}
	return "compute"
}

// Options say how to read the artifact.
type Options struct {
	// Usage holds ptxas's report by kernel name (ParsePtxas); a kernel
	// missing from it gets Estimate's.
	Usage map[string]Usage
	// OneLaunch predicts the launch slc used before per-kernel geometry:
	// every step on min(4 blocks per SM, the largest scratch's fit in
	// 1 GiB) blocks of 256 threads, of which only as many as the kernel's
	// own geometry (its units of work) have work.
	OneLaunch bool
	// Programs lists the programs to predict, in order (nil: all).
	Programs []string
}

// Prediction is the predicted time of an artifact's programs.
type Prediction struct {
	GPU       GPU
	Kernels   []Kernel
	Estimated int // kernels whose usage was estimated, not ptxas's
}

// Seconds is the predicted time of program name (all when name is "").
func (p *Prediction) Seconds(name string) float64 {
	t := 0.0
	for _, k := range p.Kernels {
		if name == "" || k.Program == name {
			t += k.Seconds
		}
	}
	return t
}

// Launches is the number of launches of program name (all when "").
func (p *Prediction) Launches(name string) int {
	n := 0
	for _, k := range p.Kernels {
		if name == "" || k.Program == name {
			n++
		}
	}
	return n
}

// Predict predicts every step of a cuda artifact on gpu.
func Predict(art *artifact.Artifact, gpu GPU, opt Options) (*Prediction, error) {
	if art.Target.Kind != artifact.TargetCUDA {
		return nil, fmt.Errorf("the artifact targets %q: the GPU model predicts cuda artifacts", art.Target.Kind)
	}
	names := opt.Programs
	if names == nil {
		for _, p := range art.Programs {
			names = append(names, p.Name)
		}
	}
	var scratch int64
	for _, p := range art.Programs {
		scratch = max(scratch, p.ScratchBytes)
	}
	oneGrid := gpu.SMs * 4
	if s := align64(scratch); s*256*int64(oneGrid) > artifact.MaxScratchBytes {
		oneGrid = int(max(1, artifact.MaxScratchBytes/(s*256)))
	}
	pred := &Prediction{GPU: gpu}
	for _, name := range names {
		p := art.Program(name)
		if p == nil {
			return nil, fmt.Errorf("the artifact has no program %q", name)
		}
		for i, st := range p.Steps {
			u, ok := opt.Usage[st.Kernel]
			if !ok {
				u = Estimate(st.Kernel)
				pred.Estimated++
			}
			grid, block, scr := int(st.Grid), int(st.Block), st.ScratchBytes
			switch {
			case grid < 1:
				grid, block = oneGrid, 256
			case opt.OneLaunch:
				// The blocks of the one launch that have work: the
				// kernel's units (its own geometry's threads, in blocks
				// of 256) where fewer.
				grid, block = min(oneGrid, (grid*block+255)/256), 256
			}
			k := Kernel{Program: name, Step: i, Name: st.Kernel, Class: Class(st.Kernel), Grid: grid, Block: block, Usage: u,
				Flops: st.Flops, Bytes: st.Bytes + 2*scr*int64(grid)*int64(block), TensorCore: st.TensorCore}
			gpu.time(&k)
			pred.Kernels = append(pred.Kernels, k)
		}
	}
	return pred, nil
}

// time fills k's occupancy and times.
func (g GPU) time(k *Kernel) {
	block := max(k.Block, 1)
	resident := min(g.BlocksPerSM, g.ThreadsPerSM/block)
	if r := max(k.Usage.Registers, 1); r*block > 0 {
		resident = min(resident, g.RegsPerSM/(roundTo(r, 8)*block))
	}
	if k.Usage.SharedBytes > 0 {
		resident = min(resident, g.SharedPerSM/k.Usage.SharedBytes)
	}
	resident = max(resident, 1)
	busy := math.Min(1, float64(k.Grid)/float64(g.SMs))                             // fraction of SMs with work
	perSM := math.Min(float64(resident), math.Ceil(float64(k.Grid)/float64(g.SMs))) // blocks at a time on a busy SM
	warps := perSM * math.Ceil(float64(block)/32)
	k.Occupancy = warps / float64(g.ThreadsPerSM/32)
	k.Launch = g.LaunchUs * 1e-6
	k.Mem = float64(k.Bytes) / (g.HBMGBps * 1e9 * busy * math.Min(1, warps/memSatWarps))
	peak, eff := g.SIMTTFLOPS, simtEff
	if k.TensorCore {
		peak, eff = g.TensorTFLOPS, tensorEff
	}
	waves := math.Ceil(float64(k.Grid) / (float64(g.SMs) * float64(resident)))
	fill := 1.0
	if k.Grid > g.SMs*resident {
		fill = float64(k.Grid) / (waves * float64(g.SMs*resident)) // the last wave's idle SMs
	}
	k.Compu = float64(k.Flops) / (peak * 1e12 * eff * busy * math.Min(1, warps/compSatWarps) * fill)
	k.Seconds = k.Launch + math.Max(k.Mem, k.Compu)
}

// Estimate is a kernel's usage without ptxas, from its kind: the GEMM
// kernels 64 registers and 18 KB of shared memory (ptxas's figures for
// llama_60m's, rounded up), the row and multi-tensor reductions 40 and
// 8 KB, the rest 40 registers.
func Estimate(kernel string) Usage {
	switch tag, _ := tagOf(kernel); tag {
	case "matmul", "linear", "lowranksparseadd":
		return Usage{Registers: 64, SharedBytes: 18 << 10}
	case "softmax", "softmaxcrossentropy", "softmaxcrossentropygrad", "red", "mt_red", "reducesum", "reducemean":
		return Usage{Registers: 40, SharedBytes: 8 << 10}
	}
	return Usage{Registers: 40}
}

// Class is the kind of a kernel symbol slc_<tag>_<hash>[_part]: the tag,
// and the part when there is one ("lowranksparseadd_s").
func Class(kernel string) string {
	tag, part := tagOf(kernel)
	if part != "" {
		return tag + "_" + part
	}
	return tag
}

// tagOf splits slc_<tag>_<12 hex digits>[_<part>].
func tagOf(kernel string) (tag, part string) {
	rest := strings.TrimPrefix(kernel, "slc_")
	f := strings.Split(rest, "_")
	for i := len(f) - 1; i > 0; i-- {
		if isHash(f[i]) {
			return strings.Join(f[:i], "_"), strings.Join(f[i+1:], "_")
		}
	}
	return rest, ""
}

func isHash(s string) bool {
	if len(s) != 12 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func align64(n int64) int64 { return (max(n, 1) + 63) / 64 * 64 }

func roundTo(n, m int) int { return (n + m - 1) / m * m }
