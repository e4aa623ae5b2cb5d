package gpu

import (
	"gitee.com/gidean/conv-linn/codegen/cpu"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// simtGEMM defines the GPU's matrix product for spec with the ABI of
// codegen/cpu's GEMMs, void f(c, a, b, scratch, tid, nthreads), so that
// every kernel calls it as it calls a CPU GEMM: the threads split the
// elements of C (all batch items together) into contiguous shares and each
// computes its elements one by one, Σ_k of fused multiply-adds of the
// widened operands into an f32 accumulator in k order (as the CPU
// micro-kernels' FMAs), then alpha·Σ (+ the old C with Accumulate), rounded
// once to C's type. This is the plain SIMT variant: correct for every spec,
// runnable in the PTX emulator and, having no barriers, callable from any
// control flow (a per-thread loop or condition); the block-cooperative
// variants (gemm_tiled.go, gemm_mma.go) are faster but need uniform calls.
// Options.GPUKernels "simt" takes it for every GEMM: the reference the
// tiled variant is checked against, bit for bit.
func (e *Backend) simtGEMM(spec cpu.GEMM) (cpu.Kernel, llvm.Function, error) {
	s := spec
	if s.Batch == 0 {
		s.Batch = 1
	}
	ptr, i64 := e.Ptr, e.I64
	f := e.Mod.AddFunction(s.Name, llvm.FunctionType(e.Void, []llvm.Type{ptr, ptr, ptr, ptr, i64, i64}, false))
	f.SetLinkage(llvm.InternalLinkage)
	if err := e.stamp(f); err != nil {
		return cpu.Kernel{}, llvm.Function{}, err
	}
	if err := f.AddAttribute(llvm.FunctionIndex, "alwaysinline", 0); err != nil { // as gpuGEMMFunction's
		return cpu.Kernel{}, llvm.Function{}, err
	}
	k, finish := e.gemmFrame(f, s)
	ta, tb, tc := e.gemmElem(s.ElemA), e.gemmElem(s.ElemB), e.gemmElem(s.ElemC)
	M, N, K := int64(s.M), int64(s.N), int64(s.K)
	lo, hi := k.Share(int64(s.Batch)*M*N, 1)
	k.Loop(lo, hi, func(idx llvm.Value) {
		item := k.Divc(idx, M*N)
		rest := k.Remc(idx, M*N)
		i, j := k.Divc(rest, N), k.Remc(rest, N)
		aBase := k.Mul(item, k.C64(s.StrideA))
		bBase := k.Mul(item, k.C64(s.StrideB))
		cAt := k.Add(k.Mul(item, k.C64(s.StrideC)), k.Add(k.Mulc(i, N), j))
		acc := k.Variable(e.F32, llvm.ConstFloat(e.F32, 0))
		k.LoopN(K, func(kk llvm.Value) {
			var ai, bi llvm.Value
			if s.TransA { // A stored [K, M]
				ai = k.Add(aBase, k.Add(k.Mulc(kk, M), i))
			} else {
				ai = k.Add(aBase, k.Add(k.Mulc(i, K), kk))
			}
			if s.TransB { // B stored [N, K]
				bi = k.Add(bBase, k.Add(k.Mulc(j, K), kk))
			} else {
				bi = k.Add(bBase, k.Add(k.Mulc(kk, N), j))
			}
			sum, _ := k.callIntrinsic("llvm.fma", e.F32, k.LoadAt(ta, k.P[1], ai), k.LoadAt(tb, k.P[2], bi), k.Load(e.F32, acc))
			k.Store(sum, e.F32, acc)
		})
		k.gemmStore(s, tc, cAt, k.Load(e.F32, acc))
	})
	finish()
	return cpu.Kernel{GEMM: s}, f, nil
}
