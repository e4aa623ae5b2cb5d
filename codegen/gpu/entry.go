package gpu

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// # CUDA ABI
//
// On the cuda device every kernel is a PTX entry
//
//	.entry kernel(.param .u64 args, .param .u64 scratch, .param .u64 stride)
//
// where args points (in global memory) at the call's buffer pointers, as
// the CPU ABI's args does, and scratch at stride bytes per GPU thread
// (stride ≥ Lowering.ScratchBytes). A launch runs any 1-D grid of any
// block size, and every thread of it runs the kernel's body with tid
// t = ctaid.x·ntid.x + tid.x, nthreads T = nctaid.x·ntid.x and its scratch
// at scratch + t·stride. The GPU shares the CPU's lowering of each op's
// math, but not how the work maps to threads (see "How the GPU maps
// iterations to threads" in rows.go):
//
//   - independent iterations (element-wise groups, data movement, Gather,
//     RoPE, CausalMask, the bf16 roundings and zero fills around the
//     products, reductions whose outputs are independent) go grid-stride,
//     i = t, t + T, … instead of the CPU's contiguous shares: coalesced,
//     and bit-identical to the CPU's results (long reductions over outer
//     axes take two calls, chunks' partial sums and then their sum);
//   - row reductions (Softmax over the last axis, the cross-entropy and
//     its gradient, reductions over the innermost axis: RMSNorm and its
//     backward) are block-cooperative: rows go to blocks, a row's
//     elements to the block's threads, and blockReduce combines them with
//     bar.sync (and, "tensorcore", warp shuffles);
//   - the matrix products call the GPU GEMMs of gemm_tiled.go and
//     gemm_mma.go (block-cooperative) or gemm_simt.go;
//   - what depends on a per-thread partition (ScatterAdd's rows, the
//     sparse scatter and sparse product of LowRankSparseAdd) keeps the
//     CPU's contiguous shares.
//
// A body that synchronizes the threads of a block (bar.sync, shfl.sync, a
// block-cooperative GEMM) must be reached by every thread of the block:
// the launch runs every thread through the body, and the body's
// synchronizing code sits in block-uniform control flow only.

// ptxEntry defines kernel name as a PTX entry calling body with the buffer
// pointers first lists (argument indices) and this GPU thread's tid,
// nthreads and scratch.
func (e *Backend) ptxEntry(name string, body llvm.Function, first []int) error {
	w := e.Mod.AddFunction(name, llvm.FunctionType(e.Void, []llvm.Type{e.Ptr, e.Ptr, e.I64}, false))
	w.SetCallConv(llvm.PTXKernelCallConv)
	for _, a := range []string{"nounwind"} {
		if err := w.AddAttribute(llvm.FunctionIndex, a, 0); err != nil {
			return err
		}
	}
	b := e.b
	b.SetInsertPointAtEnd(w.AppendBasicBlock("entry"))
	sreg := func(r string) (llvm.Value, error) {
		f, err := e.Intrinsic("llvm.nvvm.read.ptx.sreg." + r)
		if err != nil {
			return llvm.Value{}, err
		}
		return b.ZExt(b.Call(f, nil, ""), e.I64, ""), nil
	}
	var regs [4]llvm.Value
	for i, r := range []string{"ctaid.x", "ntid.x", "tid.x", "nctaid.x"} {
		v, err := sreg(r)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		regs[i] = v
	}
	tid := b.Add(b.Mul(regs[0], regs[1], ""), regs[2], "")
	nth := b.Mul(regs[3], regs[1], "")
	scr := b.InBoundsGEP(e.I8, w.Param(1), []llvm.Value{b.Mul(tid, w.Param(2), "")}, "")
	args := make([]llvm.Value, 0, len(first)+3)
	for _, i := range first {
		slotPtr := b.InBoundsGEP(e.Ptr, w.Param(0), []llvm.Value{llvm.ConstInt(e.I64, int64(i))}, "")
		v := b.Load(e.Ptr, slotPtr, fmt.Sprintf("arg%d", i))
		v.SetAlignment(8)
		args = append(args, v)
	}
	args = append(args, tid, nth, scr)
	b.Call(body, args, "")
	b.RetVoid()
	return nil
}
