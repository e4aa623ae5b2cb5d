package codegen

import (
	"io"
	"time"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/target"
)

// This file is what the rest of slc needs of codegen without LLVM: the
// options and the names of the targets. A build with the tag slc_runtime
// (a runtime-only slc, see nocompiler.go) has only these.

// Options configure Compile. The zero value compiles for the host CPU.
type Options struct {
	// Target is what the kernels are compiled for: an x86-64 CPU (the
	// zero Target: this machine's) or a CUDA GPU, whose artifact's Code is
	// PTX text (see lower's CUDA ABI).
	Target target.Target
	// SLTrainLowering is "merged", "factored" or "auto" ("" = auto): how
	// LowRankSparseAdd runs (see lower.ChooseSLTrain).
	SLTrainLowering string
	// MeasureSLTrain, under SLTrainLowering auto, times both lowerings of
	// every LowRankSparseAdd shape on this machine (when the target is this
	// machine) and gives each layer the faster; the times are cached per
	// CPU, target and shape in CacheDir (see calibrate.go). Unset, auto is
	// the cost model's.
	MeasureSLTrain bool
	// Threads is how many threads the kernels will run on, for the
	// measurement (0 = every CPU).
	Threads int
	// CacheDir holds the measured times ("" = the user cache directory's
	// slc/sltrain-lowering).
	CacheDir string
	// Progress, when set, receives a line when a measurement starts and
	// when it ends; Warnings, one line per problem that does not stop the
	// compile (a corrupt cache file, a measurement that failed).
	Progress, Warnings io.Writer
	// Version is stamped as the artifact's CompilerVersion ("" =
	// version.Version).
	Version string
	// Explain, when set, receives one line per graph and per decision worth
	// reporting (kernels, arena, SLTrain lowerings).
	Explain io.Writer
	// Decisions, when set, receives Compile's decisions as data (what a
	// caller acts on, where Explain words them for a reader).
	Decisions *Decisions
	// EmitLLVM and EmitAsm, when set, receive the optimized LLVM IR and the
	// x86-64 assembly of the kernels.
	EmitLLVM, EmitAsm io.Writer
	// Groups and Plans are the fuse-groups and memory-plan results
	// (passes.State.Groups and .Plans) for every graph of m, both required:
	// Compile refuses a module without them (UnplannedError); passes.Schedule
	// plans a module that did not go through the pipeline.
	Groups map[string][]*passes.Group
	Plans  map[string]*passes.MemoryPlan
	// CC is the C compiler used to link the shared object ("" = "cc").
	CC string
	// XentChunkRows is the rows per chunk of a chunked loss head (passes'
	// fuse-linear-xent); 0 sizes chunks to about 32 MiB of logits.
	XentChunkRows int64
	// GPUOneTensor keeps the cuda device's schedule of one kernel per group
	// (no multi-tensor batches, batch.go) and one block per reduced output
	// (no grid-wide sums): the design before them, for comparisons (slc
	// bench --predict).
	GPUOneTensor bool
}

// Decisions are the choices Compile made that a caller may act on.
type Decisions struct {
	// SLTrain is every LowRankSparseAdd's lowering, in graph and node order.
	SLTrain []SLTrainChoice
}

// SLTrainChoice is the lowering Compile gave one LowRankSparseAdd:
// "merged" or "factored".
type SLTrainChoice struct {
	Graph, Node, Lowering string
}

// SLTrainCount is how many of graph's LowRankSparseAdd layers are merged and
// how many factored.
func (d *Decisions) SLTrainCount(graph string) (merged, factored int) {
	for _, c := range d.SLTrain {
		switch {
		case c.Graph != graph:
		case c.Lowering == "merged":
			merged++
		case c.Lowering == "factored":
			factored++
		}
	}
	return merged, factored
}

// SLTrainLayerTimes is one row of MeasureSLTrainLayers' table: a
// LowRankSparseAdd node (y[rows, out] = x[rows, in]·Wᵀ, W of rank r plus nnz
// sparse values; x of dtype X, the factors of W), both lowerings' measured
// forward times and the faster.
type SLTrainLayerTimes struct {
	Graph, Node           string
	Rows, In, Out, R, NNZ int64
	X, W                  ir.DType
	Merged, Factored      time.Duration
	Pick                  string
}

// lowerTarget is how lower.Options spell opt.Target: Device "" (the CPU)
// or "cuda", and the GPU's kernel kind.
func (o Options) lowerTarget() (device, kernels string) {
	if o.Target.IsCUDA() {
		return "cuda", string(o.Target.Kernels)
	}
	return "", ""
}
