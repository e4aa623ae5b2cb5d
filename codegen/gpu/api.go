package gpu

import (
	"gitee.com/gidean/conv-linn/codegen/cpu"
	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// The pieces the shared lowering (codegen/lower) asks of the cuda device,
// each on the kernel body k it is filling.

// GEMM is the cuda device's GEMM function for spec, with the ABI of
// codegen/cpu's GEMMs (see gemmGPU for the variant and its call rule).
func (e *Backend) GEMM(spec cpu.GEMM) (cpu.Kernel, llvm.Function, error) { return e.gemmGPU(spec) }

// Entry defines kernel name as a PTX entry calling body (see entry.go).
func (e *Backend) Entry(name string, body llvm.Function, first []int) error {
	return e.ptxEntry(name, body, first)
}

// Math is the inline replacement of the libm intrinsic name on args of
// type t, or false when NVPTX lowers name itself.
func (e *Backend) Math(k *kernel.Fn, name string, t llvm.Type, args []llvm.Value) (llvm.Value, bool) {
	return e.fn(k).gpuMath(name, t, args)
}

// Exp64 is e^x for f64 x, inline (math.go).
func (e *Backend) Exp64(k *kernel.Fn, x llvm.Value) llvm.Value { return e.fn(k).exp64(x) }

// Sincos64 is cos x and sin x for f64 x, inline (math.go).
func (e *Backend) Sincos64(k *kernel.Fn, x llvm.Value) (cos, sin llvm.Value) {
	return e.fn(k).sincos64(x)
}

// GridStride emits the grid-stride loop over n independent iterations
// (rows.go).
func (e *Backend) GridStride(k *kernel.Fn, n int64, body func(i llvm.Value)) {
	e.fn(k).gridStride(n, body)
}

// Regs reads the block's coordinates (or the multi-tensor kernel's
// virtual ones).
func (e *Backend) Regs(k *kernel.Fn) (kernel.BlockRegs, error) { return e.fn(k).blockRegs() }

// BlockRows runs body for each of rows rows this block takes (rows.go).
func (e *Backend) BlockRows(k *kernel.Fn, rows int64, body func(hw kernel.BlockRegs, row llvm.Value)) error {
	return e.fn(k).blockRows(rows, body)
}

// RowStride visits this thread's elements of a row of n (rows.go).
func (e *Backend) RowStride(k *kernel.Fn, hw kernel.BlockRegs, n llvm.Value, body func(l llvm.Value)) {
	e.fn(k).rowStride(hw, n, body)
}

// Barrier is bar.sync: every thread of the block waits for the others
// (the uniformity rule of rows.go applies).
func (e *Backend) Barrier(k *kernel.Fn) error { return e.fn(k).barrier() }

// BlockReduce combines v over the block by op (rows.go).
func (e *Backend) BlockReduce(k *kernel.Fn, hw kernel.BlockRegs, op RedOp, v llvm.Value) (llvm.Value, error) {
	return e.fn(k).blockReduce(hw, op, v)
}

// BlockRowMax is a row's maximum over the block (rows.go).
func (e *Backend) BlockRowMax(k *kernel.Fn, hw kernel.BlockRegs, st llvm.Type, n int64, row llvm.Value) (llvm.Value, error) {
	return e.fn(k).blockRowMax(hw, st, n, row)
}

// BlockRowExpSum is Σ exp(row[l] − m) over the block, storing the
// exponentials to out unless it is the zero Value (rows.go); exp is the
// lowering's exponential.
func (e *Backend) BlockRowExpSum(k *kernel.Fn, hw kernel.BlockRegs, t, ot llvm.Type, n int64, row, out, m llvm.Value, exp func(llvm.Value) (llvm.Value, error)) (llvm.Value, error) {
	return e.fn(k).blockRowExpSum(hw, t, ot, n, row, out, m, exp)
}
