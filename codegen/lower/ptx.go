package lower

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
// (stride ≥ Lowering.ScratchBytes). A launch runs any 1-D grid: thread
// t = ctaid.x·ntid.x + tid.x of T = nctaid.x·ntid.x in all calls the same
// body the CPU kernel's thread t of T runs (tid t, nthreads T, its scratch
// at scratch + t·stride). So the GPU shares every kernel's lowering with the
// CPU: what differs is how threads are numbered, not what they compute.

// gpu reports whether the emitter targets the cuda device.
func (e *Emitter) gpu() bool { return e.opt.Device == "cuda" }

// ptxEntry defines kernel name as a PTX entry calling body with the buffer
// pointers first lists (argument indices) and this GPU thread's tid,
// nthreads and scratch.
func (e *Emitter) ptxEntry(name string, body llvm.Function, first []int) error {
	w := e.mod.AddFunction(name, llvm.FunctionType(e.void, []llvm.Type{e.ptr, e.ptr, e.i64}, false))
	w.SetCallConv(llvm.PTXKernelCallConv)
	for _, a := range []string{"nounwind"} {
		if err := w.AddAttribute(llvm.FunctionIndex, a, 0); err != nil {
			return err
		}
	}
	b := e.b
	b.SetInsertPointAtEnd(w.AppendBasicBlock("entry"))
	sreg := func(r string) (llvm.Value, error) {
		f, err := e.intrinsic("llvm.nvvm.read.ptx.sreg." + r)
		if err != nil {
			return llvm.Value{}, err
		}
		return b.ZExt(b.Call(f, nil, ""), e.i64, ""), nil
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
	scr := b.InBoundsGEP(e.i8, w.Param(1), []llvm.Value{b.Mul(tid, w.Param(2), "")}, "")
	args := make([]llvm.Value, 0, len(first)+3)
	for _, i := range first {
		slotPtr := b.InBoundsGEP(e.ptr, w.Param(0), []llvm.Value{llvm.ConstInt(e.i64, int64(i))}, "")
		v := b.Load(e.ptr, slotPtr, fmt.Sprintf("arg%d", i))
		v.SetAlignment(8)
		args = append(args, v)
	}
	args = append(args, tid, nth, scr)
	b.Call(body, args, "")
	b.RetVoid()
	return nil
}
