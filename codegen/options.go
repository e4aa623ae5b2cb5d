package codegen

import (
	"io"
	"slices"
	"strings"
	"time"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// This file is what the rest of slc needs of codegen without LLVM: the
// options and the names of the targets. A build with the tag slc_runtime
// (a runtime-only slc, see nocompiler.go) has only these.

// Options configure Compile. The zero value compiles for the host CPU.
type Options struct {
	// CPU is the LLVM CPU name ("znver4", "x86-64-v3", …); "" is the host's.
	CPU string
	// Features is the LLVM feature string ("+avx2,+fma"); "" means the
	// host's features when CPU is "" too, and the CPU's own otherwise.
	Features string
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
	// Device is "" or "cpu" for x86-64 kernels in a shared object, or
	// "cuda" for NVPTX kernels: the artifact's Code is then PTX text (see
	// lower's CUDA ABI) for GPU (default DefaultGPU); CPU and Features
	// must be empty.
	Device string
	GPU    string
	// GPUKernels picks the cuda device's matrix products: "" or "portable"
	// (tiled shared-memory SIMT GEMMs), "tensorcore" (mma.sync for bf16
	// products); see lower.Options.GPUKernels.
	GPUKernels string
	// XentChunkRows is the rows per chunk of a chunked loss head (passes'
	// fuse-linear-xent); 0 sizes chunks to about 32 MiB of logits.
	XentChunkRows int64
	// GPUOneTensor keeps the cuda device's schedule of one kernel per group
	// (no multi-tensor batches, batch.go) and one block per reduced output
	// (no grid-wide sums): the design before them, for comparisons (slc
	// bench --predict).
	GPUOneTensor bool
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

// DefaultGPU is the default --gpu: sm_90 (H100/H200).
const DefaultGPU = "sm_90"

// GPUs are the NVPTX targets --gpu accepts, with the PTX ISA version each is
// emitted for: the lowest that LLVM 19 supports for it, so that current
// drivers load it.
var GPUs = map[string]string{"sm_80": "+ptx70", "sm_86": "+ptx71", "sm_89": "+ptx78", "sm_90": "+ptx78"}

// x86CPUs are the CPU names LLVM 19 accepts for 64-bit x86 code (from
// `llc -mtriple=x86_64 -mcpu=help`, minus the 32-bit-only processors).
// LLVM aborts the process on any other name, so Compile checks first.
var x86CPUs = strings.Fields(`
alderlake amdfam10 arrowlake arrowlake-s arrowlake_s athlon-fx athlon64 athlon64-sse3 atom
atom_sse4_2 atom_sse4_2_movbe barcelona bdver1 bdver2 bdver3 bdver4 bonnell broadwell btver1
btver2 cannonlake cascadelake clearwaterforest cooperlake core-avx-i core-avx2 core2
core_2_duo_sse4_1 core_2_duo_ssse3 core_2nd_gen_avx core_3rd_gen_avx core_4th_gen_avx
core_4th_gen_avx_tsx core_5th_gen_avx core_5th_gen_avx_tsx core_aes_pclmulqdq core_i7_sse4_2
corei7 corei7-avx emeraldrapids generic goldmont goldmont-plus goldmont_plus gracemont
grandridge graniterapids graniterapids-d graniterapids_d haswell icelake-client icelake-server
icelake_client icelake_server ivybridge k8 k8-sse3 knl knm lunarlake meteorlake mic_avx512
nehalem nocona opteron opteron-sse3 pantherlake penryn raptorlake rocketlake sandybridge
sapphirerapids sierraforest silvermont skx skylake skylake-avx512 skylake_avx512 slm tigerlake
tremont westmere x86-64 x86-64-v2 x86-64-v3 x86-64-v4 znver1 znver2 znver3 znver4 znver5`)

// X86CPUs returns the CPU names --cpu accepts.
func X86CPUs() []string { return slices.Clone(x86CPUs) }

// GPUNames lists GPUs, sorted.
func GPUNames() []string {
	var names []string
	for n := range GPUs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
