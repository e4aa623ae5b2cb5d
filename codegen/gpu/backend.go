package gpu

import (
	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// Options are the choices of the cuda device's kernels (codegen/lower's
// Options.GPUKernels: "" or "portable", "tensorcore", "simt",
// "tensorcore-emulated"; see gemmGPU and blockReduce).
type Options struct {
	GPUKernels string
}

// Backend emits the cuda device's kernel pieces into one module: the GEMMs,
// the block-cooperative row primitives, the inline math NVPTX lacks and the
// PTX entries. It shares the lowering's builders (b at the current
// instruction, ab in the current function's alloca block).
type Backend struct {
	*kernel.Types
	b, ab *llvm.Builder
	opt   Options
	// stamp puts the target's attributes on a kernel function.
	stamp func(llvm.Function) error
	// gemmWork is the parallelism of each GEMM function, by its name.
	gemmWork map[string]kernel.Work
}

// New returns the backend for module t.Mod.
func New(t *kernel.Types, b, ab *llvm.Builder, opt Options, stamp func(llvm.Function) error) *Backend {
	return &Backend{Types: t, b: b, ab: ab, opt: opt, stamp: stamp, gemmWork: map[string]kernel.Work{}}
}

// GEMMWork is the parallelism of the GEMM function name (made by GEMM).
func (e *Backend) GEMMWork(name string) (kernel.Work, bool) {
	w, ok := e.gemmWork[name]
	return w, ok
}

// kfn is a kernel body this package adds to: the shared Fn and the backend.
type kfn struct {
	*kernel.Fn
	e *Backend
}

func (e *Backend) fn(k *kernel.Fn) *kfn { return &kfn{Fn: k, e: e} }

// callIntrinsic calls an overloaded intrinsic on args, all of type t: the
// inline replacement (math.go) when NVPTX has no lowering for it.
func (k *kfn) callIntrinsic(name string, t llvm.Type, args ...llvm.Value) (llvm.Value, error) {
	if v, ok := k.gpuMath(name, t, args); ok {
		return v, nil
	}
	f, err := k.e.Intrinsic(name, t)
	if err != nil {
		return llvm.Value{}, err
	}
	return k.B.Call(f, args, ""), nil
}
