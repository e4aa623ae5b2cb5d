package lower

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/cpu"
	"gitee.com/gidean/conv-linn/codegen/gpu"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// backend is the target's part of the lowering, picked once by NewEmitter
// from Options.Device (as Go's ssa.NewConfig picks a target's lowering
// functions once): the shared lowering of every op asks it how a kernel is
// exported, how a GEMM is made and called, how independent iterations map
// to threads, how constant tables are reached and which math NVPTX lacks,
// and reads its traits (tinygrad's Renderer: a target described as data)
// where an op has a lowering of its own per target. cpuBackend emits
// x86-64 kernels with the CPU ABI (lower.go); gpuBackend NVPTX kernels
// with the CUDA ABI (codegen/gpu's entry.go).
type backend interface {
	// traits describe the target to the ops' lowerings.
	traits() traits
	// export completes kernel name around its filled body k (params and
	// slot as in Emitter.kernel, first the body's parameters' arguments):
	// the CPU's exported wrapper, or the GPU's PTX entry and launch.
	export(k *kfn, name string, params []param, slot, first []int) error
	// math is the inline replacement of the intrinsic name on args of type
	// t, or false where the target lowers the intrinsic itself.
	math(k *kfn, name string, t llvm.Type, args []llvm.Value) (llvm.Value, bool)
	// gemm adds the GEMM function of spec (spec.Name set) to the module.
	gemm(e *Emitter, spec cpu.GEMM) (cpu.Kernel, llvm.Function, error)
	// calledGEMM records in k what calling the GEMM function f implies.
	calledGEMM(k *kfn, f llvm.Function)
	// each visits this thread's iterations of [0, n), n > 0, which must be
	// independent of each other (align: see kfn.each).
	each(k *kfn, n, align int64, body func(i llvm.Value))
	// forEach visits this thread's points of a merged iteration space
	// (see kfn.forEach), total > 0 of them.
	forEach(k *kfn, total int64, dims []int64, ss []stream, body func(offs []llvm.Value))
	// tableAccessor makes f, the accessor of constant table sym, reach
	// values; false leaves it declared for the C file (Emitter.CSource).
	tableAccessor(e *Emitter, f llvm.Function, sym string, values []float64) bool
	// device is the cuda device's kernel pieces, for the GPU's own op
	// lowerings (nil on the CPU, where traits keep them unreached).
	device() *gpu.Backend
}

// traits describe a target to the ops' lowerings, each one a choice an op
// makes by it.
type traits struct {
	// blockRows: row reductions (Softmax over the last axis, the
	// cross-entropy, sums over the innermost axis) are block-cooperative,
	// a row to a block (codegen/gpu's rows.go), not a row per thread.
	blockRows bool
	// coalesce: independent elements go to consecutive threads
	// (grid-stride: Gather, CausalMask, RoPE), not in contiguous shares of
	// rows.
	coalesce bool
	// splitSums: long sums over outer axes or the innermost one take two
	// calls (chunks' partial sums, then their sum), not one pass.
	splitSums bool
	// computeConsts: constants (RoPE's angles, the 8-bit code books) are
	// computed in the kernel; the CPU reads them from constant tables.
	computeConsts bool
	// chunkedXent: the chunked linear cross-entropy (linear_xent.go) is
	// available.
	chunkedXent bool
	// sortedSparse: the scatters of a sparse support (the merged
	// SLTrain lowering's W += S, ScatterAdd) take the sorted index's row
	// runs (codegen/gpu's sparse.go), falling back in the kernel to the
	// CPU's mapping when the index is not sorted.
	sortedSparse bool
}

// newBackend picks the backend of opt.Device.
func newBackend(e *Emitter, opt Options) (backend, error) {
	switch opt.Device {
	case "", "cpu":
		return cpuBackend{}, nil
	case "cuda":
		return gpuBackend{gpu.New(e.Types, e.b, e.ab, gpu.Options{GPUKernels: opt.GPUKernels}, e.stamp)}, nil
	}
	return nil, fmt.Errorf("device %q: want cpu or cuda", opt.Device)
}

// each visits this thread's iterations of [0, n), which must be
// independent of each other: on the CPU a contiguous share (parts that are
// multiples of align), on the GPU grid-stride.
func (k *kfn) each(n, align int64, body func(i llvm.Value)) {
	if n <= 0 {
		return
	}
	k.e.be.each(k, n, align, body)
}

// cpuBackend lowers to x86-64 kernels of the CPU ABI.
type cpuBackend struct{}

func (cpuBackend) traits() traits                 { return traits{chunkedXent: true} }
func (cpuBackend) device() *gpu.Backend           { return nil }
func (cpuBackend) calledGEMM(*kfn, llvm.Function) {}

func (cpuBackend) math(*kfn, string, llvm.Type, []llvm.Value) (llvm.Value, bool) {
	return llvm.Value{}, false
}

// gemm is codegen/cpu's generated GEMM for spec.
func (cpuBackend) gemm(e *Emitter, spec cpu.GEMM) (cpu.Kernel, llvm.Function, error) {
	k, err := e.gen.Add(e.Mod, spec)
	if err != nil {
		return cpu.Kernel{}, llvm.Function{}, err
	}
	f, ok := e.Mod.NamedFunction(k.Name)
	if !ok {
		return cpu.Kernel{}, llvm.Function{}, fmt.Errorf("internal error: GEMM %s not in the module", k.Name)
	}
	return k, f, nil
}

// each is the thread's contiguous share (parts that are multiples of
// align).
func (cpuBackend) each(k *kfn, n, align int64, body func(i llvm.Value)) {
	s, e := k.Share(n, align)
	k.Loop(s, e, body)
}

// tableAccessor leaves the accessor to the C file.
func (cpuBackend) tableAccessor(e *Emitter, f llvm.Function, sym string, values []float64) bool {
	return false
}

// gpuBackend lowers to NVPTX kernels of the CUDA ABI, with codegen/gpu's
// pieces.
type gpuBackend struct{ dev *gpu.Backend }

func (gpuBackend) traits() traits {
	return traits{blockRows: true, coalesce: true, splitSums: true, computeConsts: true, sortedSparse: true}
}
func (b gpuBackend) device() *gpu.Backend { return b.dev }

func (b gpuBackend) math(k *kfn, name string, t llvm.Type, args []llvm.Value) (llvm.Value, bool) {
	return b.dev.Math(k.Fn, name, t, args)
}

// gemm is the GPU GEMM of Options.GPUKernels. Every caller of
// Emitter.gemm calls the GEMM uniformly (all threads of the launch, the
// same operands), so the block-cooperative variants are safe here; see "GPU
// matrix products" in codegen/gpu's gemm_tiled.go.
func (b gpuBackend) gemm(_ *Emitter, spec cpu.GEMM) (cpu.Kernel, llvm.Function, error) {
	return b.dev.GEMM(spec)
}

// calledGEMM: a block-cooperative GEMM (convergent: it synchronizes) makes
// the calling body synchronize too, and its parallelism is the body's.
func (b gpuBackend) calledGEMM(k *kfn, f llvm.Function) {
	if f.HasAttribute(llvm.FunctionIndex, "convergent") {
		k.Syncs = true
	}
	if w, ok := b.dev.GEMMWork(f.Name()); ok {
		k.Work.Merge(w)
	}
}

// each is grid-stride.
func (b gpuBackend) each(k *kfn, n, _ int64, body func(i llvm.Value)) {
	b.dev.GridStride(k.Fn, n, body)
}

// forEach is grid-stride over the space's points.
func (b gpuBackend) forEach(k *kfn, total int64, dims []int64, ss []stream, body func(offs []llvm.Value)) {
	b.dev.GridStride(k.Fn, total, func(i llvm.Value) { body(k.offsets(i, dims, ss)) })
}

// tableAccessor: no C file on the GPU, so the table is a constant global
// in NVPTX's global address space, and the accessor is defined here.
func (gpuBackend) tableAccessor(e *Emitter, f llvm.Function, sym string, values []float64) bool {
	g := e.Mod.AddConstantF64Array(sym+"_data", values, 1, 64)
	f.SetLinkage(llvm.InternalLinkage)
	b := e.Ctx.NewBuilder()
	defer b.Dispose()
	b.SetInsertPointAtEnd(f.AppendBasicBlock("entry"))
	b.Ret(b.AddrSpaceCast(g, e.Ptr, ""))
	return true
}

// export makes the PTX entry of the CUDA ABI (codegen/gpu's entry.go) and
// records the kernel's launch geometry: a body that synchronizes becomes
// convergent and loses nosync.
func (b gpuBackend) export(k *kfn, name string, params []param, slot, first []int) error {
	e, body := k.e, k.F
	if k.Syncs {
		// Barriers or shuffles inside: the body synchronizes, and no
		// transformation may make its calls control-dependent on more.
		if err := body.RemoveAttribute(llvm.FunctionIndex, "nosync"); err != nil {
			return err
		}
		if err := body.AddAttribute(llvm.FunctionIndex, "convergent", 0); err != nil {
			return err
		}
	}
	for j := range first {
		for a, p := range params {
			if slot[a] == j {
				k.Work.Bytes += p.bytes
				break
			}
		}
	}
	e.launches[name] = gpu.LaunchOf(k.Work)
	return b.dev.Entry(name, body, first)
}
