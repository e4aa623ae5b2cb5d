package gpu

import (
	"math"

	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// # How the GPU maps iterations to threads
//
// The CPU gives each of its few threads a contiguous share of a kernel's
// iterations (kernel.Fn.Share). On the cuda device that mapping is the slow one:
// neighbouring threads of a warp touch addresses a whole share apart (no
// coalescing), and a row handled by one thread serializes its reduction
// while the rest of the GPU idles. So the cuda device maps work three ways:
//
//   - Grid-stride (gridStride, each, forEach): independent iterations —
//     element-wise bodies, copies, gathers, the per-element loops of RoPE
//     and CausalMask, the independent outputs of a reduction over outer
//     axes — go to the launch's T = nctaid·ntid threads as i = t, t + T,
//     t + 2T, … (t the thread's global number, the kernel's tid), so a warp
//     touches 32 consecutive elements. Each iteration computes exactly what
//     it computes on the CPU, so results are bit-identical to the CPU's
//     mapping (and to every launch's). A long reduction over outer axes
//     with few outputs (a norm weight's gradient, summed over every token)
//     is split into chunks first, two calls (reduceChunksGPU): the same
//     result for every launch, summed in another order than the CPU's.
//   - Block rows (blockRows, rowStride, blockReduce): the row reductions —
//     Softmax over the last axis, SoftmaxCrossEntropy and its gradient, and
//     ReduceSum/ReduceMean groups whose innermost axis is reduced (RMSNorm's
//     mean of squares, the row sums of its backward) — give rows to blocks
//     round-robin (block b takes rows b, b + nctaid, …) and a row's
//     elements to the block's threads strided (thread tx takes elements
//     tx, tx + ntid, …); each thread's partial (an f64 sum, or a maximum)
//     is combined with the others' by blockReduce, through shared memory
//     with bar.sync. The reduction order is fixed by the block size (not
//     by timing), so a launch gives the same bits on every run, but they
//     differ in the last bits from the CPU's order.
//   - The block-cooperative GEMMs (gemm_tiled.go, gemm_mma.go).
//
// The uniformity rule (as for the block-cooperative GEMMs): bar.sync
// (llvm.nvvm.barrier0) and shfl.sync must be reached by every thread of
// the block, the same number of times. So everything that contains a
// blockReduce — blockRows' loop over rows, rowStride's callers' row
// bodies, the loops and conditions around them — has bounds and
// conditions that depend only on the block (ctaid.x, ntid.x, nctaid.x,
// the shapes, values every thread of the block loaded alike), never on
// tid.x; only the loops between reductions (rowStride's element loops,
// the stores of one thread) may depend on the thread. A kernel body that
// synchronizes is marked convergent and loses nosync (codegen/lower's Emitter.kernel, through its gpuBackend.export).

// rowSlots is the number of f64 partials the portable block reduction
// stages in shared memory (8 KB): a block of more threads (beyond CUDA's
// 1024, which only an emulator launches) folds its threads onto the slots
// in rounds.
const rowSlots = 1024

// gridStride emits `for i := tid; i < n; i += nthreads { body(i) }`: the
// GPU's coalesced mapping of independent iterations (n of them: the
// kernel's launch geometry provides up to n threads).
func (k *kfn) gridStride(n int64, body func(i llvm.Value)) {
	k.Work.Threads = max(k.Work.Threads, n)
	hi := k.C64(n)
	if !k.Stop.IsNil() {
		hi = k.Min(hi, k.Stop)
	}
	k.LoopStep(k.Tid, hi, k.Nth, body)
}

// blockRows runs body for each of rows rows this block takes: rows ctaid.x,
// ctaid.x + nctaid.x, … (a block-uniform loop: body may reduce). Every
// thread of the block runs body for the row; rowStride splits its elements.
func (k *kfn) blockRows(rows int64, body func(hw kernel.BlockRegs, row llvm.Value)) error {
	hw, err := k.blockRegs()
	if err != nil {
		return err
	}
	k.Work.Blocks = max(k.Work.Blocks, rows)
	k.LoopStep(hw.Bx, k.C64(rows), hw.Nb, func(row llvm.Value) { body(hw, row) })
	return nil
}

// rowStride visits this thread's elements of a row of n: l = tid.x,
// tid.x + ntid.x, … (consecutive threads, consecutive elements). Its body
// must not reduce (its trip count depends on the thread).
func (k *kfn) rowStride(hw kernel.BlockRegs, n llvm.Value, body func(l llvm.Value)) {
	k.LoopStep(hw.Tx, n, hw.Nt, body)
}

// RedOp is a block reduction's operation.
type RedOp int

const (
	RedSum RedOp = iota // FAdd (f64 partial sums)
	RedMax              // IEEE maximum (llvm.maximum: NaN-propagating, +0 above −0), exact in any order
)

// identity is op's neutral element of type t: +0 for the sum (partial sums
// start at +0, so no −0 is lost), −Inf for the maximum.
func (k *kfn) identity(op RedOp, t llvm.Type) llvm.Value {
	if op == RedMax {
		return llvm.ConstFloat(t, math.Inf(-1))
	}
	return llvm.ConstFloat(t, 0)
}

// combine is op(a, b). Both operations are commutative bit for bit, which
// is what makes every lane of a butterfly end with the same value.
func (k *kfn) combine(op RedOp, a, b llvm.Value) (llvm.Value, error) {
	if op == RedMax {
		return k.callIntrinsic("llvm.maximum", a.Type(), a, b)
	}
	return k.B.FAdd(a, b, ""), nil
}

// blockReduce combines v (f32 or f64, one per thread of the block) over
// the block by op and returns the result to every thread, the same bits to
// all. Every thread of the block must call it (see the uniformity rule),
// with the block size the only thing its order depends on.
//
// Portable (Options.GPUKernels "" / "portable" / "simt"): treeReduce. The
// GPU-only "tensorcore" variant: warpReduce (warp shuffles, shared memory
// only across warps), "tensorcore-emulated" the same with every shuffle
// emulated through shared memory, for the PTX emulator.
func (k *kfn) blockReduce(hw kernel.BlockRegs, op RedOp, v llvm.Value) (llvm.Value, error) {
	k.Syncs = true
	switch k.e.opt.GPUKernels {
	case "tensorcore", "tensorcore-emulated":
		return k.warpReduce(hw, op, v)
	}
	return k.treeReduce(hw, op, v)
}

// treeReduce is the portable block reduction, for any block size:
// bar.sync (the last reduction's readers are done); thread tx puts its
// value in slot tx of an f64 array in shared memory (blocks above rowSlots
// threads fold thread tx onto slot tx mod rowSlots, in rounds of rowSlots
// threads, each round after a bar.sync); bar.sync; then for s = P/2, …, 2,
// 1 (P the power of two at or above the slots in use, S), thread tx < s
// with tx + s < S combines slot tx with slot tx + s, bar.sync after each
// step; every thread reads slot 0. An f32 value travels widened to f64,
// exactly.
func (k *kfn) treeReduce(hw kernel.BlockRegs, op RedOp, v llvm.Value) (llvm.Value, error) {
	b, f64 := k.B, k.e.F64
	t := v.Type()
	sh := k.e.sharedArray("slc_rows_partials", f64, rowSlots)
	slots := k.Min(hw.Nt, k.C64(rowSlots))
	rounds := b.UDiv(k.Addc(hw.Nt, rowSlots-1), k.C64(rowSlots), "")
	wide := k.Widen(v)
	var ferr error
	if err := k.barrier(); err != nil {
		return v, err
	}
	k.Loop(k.C64(0), rounds, func(r llvm.Value) {
		slot := k.Sub(hw.Tx, k.Mulc(r, rowSlots))
		mine := b.And(b.ICmp(llvm.IntSGE, slot, k.C64(0), ""), b.ICmp(llvm.IntSLT, slot, k.C64(rowSlots), ""), "")
		k.When(mine, func() {
			p := k.At(f64, sh, slot)
			c, err := k.combine(op, k.Load(f64, p), wide)
			if err != nil {
				ferr = err
				return
			}
			k.Store(b.Select(b.ICmp(llvm.IntEQ, r, k.C64(0), ""), wide, c, ""), f64, p)
		})
		if err := k.barrier(); err != nil {
			ferr = err
		}
	})
	for s := int64(rowSlots / 2); s >= 1; s /= 2 {
		k.When(b.ICmp(llvm.IntSLT, k.C64(s), slots, ""), func() { // block-uniform
			in := b.And(b.ICmp(llvm.IntSLT, hw.Tx, k.C64(s), ""), b.ICmp(llvm.IntSLT, k.Addc(hw.Tx, s), slots, ""), "")
			k.When(in, func() {
				p := k.At(f64, sh, hw.Tx)
				c, err := k.combine(op, k.Load(f64, p), k.LoadAt(f64, sh, k.Addc(hw.Tx, s)))
				if err != nil {
					ferr = err
					return
				}
				k.Store(c, f64, p)
			})
			if err := k.barrier(); err != nil {
				ferr = err
			}
		})
	}
	r := k.LoadAt(f64, sh, k.C64(0))
	if t.Kind() != llvm.DoubleTypeKind {
		r = b.FPTrunc(r, t, "")
	}
	return r, ferr
}

// warpReduce is the block reduction of the "tensorcore" variant, for
// blocks of whole warps (ntid a multiple of 32, at most 1024): each warp
// combines its 32 values by a butterfly of shuffles (shfl.sync.bfly with
// lane masks 16, 8, 4, 2, 1: every lane ends with the warp's value, the
// same bits in all lanes, the operations being commutative); bar.sync;
// lane 0 of warp w puts it in slot w of shared memory; bar.sync; then every
// warp reads the ntid/32 slots (lane l slot l, the identity past the last
// warp) and runs the butterfly again. Other blocks take treeReduce (a
// block-uniform branch).
func (k *kfn) warpReduce(hw kernel.BlockRegs, op RedOp, v llvm.Value) (llvm.Value, error) {
	b, f64 := k.B, k.e.F64
	t := v.Type()
	res := k.Variable(t, k.identity(op, t))
	whole := b.And(b.ICmp(llvm.IntEQ, b.And(hw.Nt, k.C64(31), ""), k.C64(0), ""), b.ICmp(llvm.IntULE, hw.Nt, k.C64(1024), ""), "")
	var ferr error
	k.When(whole, func() {
		lane, warp, warps := b.And(hw.Tx, k.C64(31), ""), b.LShr(hw.Tx, k.C64(5), ""), b.LShr(hw.Nt, k.C64(5), "")
		w, err := k.butterfly(hw, op, v)
		if err != nil {
			ferr = err
			return
		}
		sh := k.e.sharedArray("slc_rows_warps", f64, 32)
		if err := k.barrier(); err != nil {
			ferr = err
			return
		}
		k.When(b.ICmp(llvm.IntEQ, lane, k.C64(0), ""), func() { k.StoreAt(k.Widen(w), f64, sh, warp) })
		if err := k.barrier(); err != nil {
			ferr = err
			return
		}
		x := k.LoadAt(f64, sh, lane)
		if t.Kind() != llvm.DoubleTypeKind {
			x = b.FPTrunc(x, t, "")
		}
		x = b.Select(b.ICmp(llvm.IntULT, lane, warps, ""), x, k.identity(op, t), "")
		r, err := k.butterfly(hw, op, x)
		if err != nil {
			ferr = err
			return
		}
		k.Store(r, t, res)
	})
	k.When(b.Xor(whole, llvm.ConstInt(k.e.Ctx.Int1Type(), 1), ""), func() {
		r, err := k.treeReduce(hw, op, v)
		if err != nil {
			ferr = err
			return
		}
		k.Store(r, t, res)
	})
	return k.Load(t, res), ferr
}

// butterfly combines v over the 32 lanes of each warp: v = op(v,
// shfl.bfly(v, m)) for m = 16, 8, 4, 2, 1.
func (k *kfn) butterfly(hw kernel.BlockRegs, op RedOp, v llvm.Value) (llvm.Value, error) {
	for m := int64(16); m >= 1; m /= 2 {
		o, err := k.shuffleXor(hw, v, m)
		if err != nil {
			return v, err
		}
		if v, err = k.combine(op, v, o); err != nil {
			return v, err
		}
	}
	return v, nil
}

// shuffleXor returns the v of lane laneid ^ m of this warp (all 32 lanes
// take part): llvm.nvvm.shfl.sync.bfly.f32 for an f32 v, two
// llvm.nvvm.shfl.sync.bfly.i32 of its halves for an f64 (member mask
// 0xffffffff; c = 0x1f: the whole warp is one segment). With
// "tensorcore-emulated" it is emulateShuffle instead.
func (k *kfn) shuffleXor(hw kernel.BlockRegs, v llvm.Value, m int64) (llvm.Value, error) {
	if k.e.opt.GPUKernels == "tensorcore-emulated" {
		return k.emulateShuffle(hw, v, m)
	}
	b, i32 := k.B, k.e.I32
	all, mask, clamp := llvm.ConstInt(i32, -1), llvm.ConstInt(i32, m), llvm.ConstInt(i32, 31)
	if v.Type().Kind() == llvm.FloatTypeKind {
		f, err := k.e.Intrinsic("llvm.nvvm.shfl.sync.bfly.f32")
		if err != nil {
			return v, err
		}
		return b.Call(f, []llvm.Value{all, v, mask, clamp}, ""), nil
	}
	f, err := k.e.Intrinsic("llvm.nvvm.shfl.sync.bfly.i32")
	if err != nil {
		return v, err
	}
	bits := b.BitCast(v, k.e.I64, "")
	lo := b.Trunc(bits, i32, "")
	hi := b.Trunc(b.LShr(bits, k.C64(32), ""), i32, "")
	lo = b.Call(f, []llvm.Value{all, lo, mask, clamp}, "")
	hi = b.Call(f, []llvm.Value{all, hi, mask, clamp}, "")
	r := b.Or(b.Shl(b.ZExt(hi, k.e.I64, ""), k.C64(32), ""), b.ZExt(lo, k.e.I64, ""), "")
	return b.BitCast(r, v.Type(), ""), nil
}

// emulateShuffle is shuffleXor through shared memory, for the PTX emulator
// (which has no shfl.sync): bar.sync (the last step's readers are done);
// thread tx writes v to slot tx; bar.sync; it reads slot tx ^ m (in the
// block: the block is whole warps). Every thread of the block must call it,
// as warpReduce does.
func (k *kfn) emulateShuffle(hw kernel.BlockRegs, v llvm.Value, m int64) (llvm.Value, error) {
	b, f64 := k.B, k.e.F64
	stage := k.e.sharedArray("slc_rows_shuffle", f64, 1024)
	if err := k.barrier(); err != nil {
		return v, err
	}
	k.StoreAt(k.Widen(v), f64, stage, hw.Tx)
	if err := k.barrier(); err != nil {
		return v, err
	}
	r := k.LoadAt(f64, stage, b.Xor(hw.Tx, k.C64(m), ""))
	if v.Type().Kind() != llvm.DoubleTypeKind {
		r = b.FPTrunc(r, v.Type(), "")
	}
	return r, nil
}

// blockRowMax is the maximum of row[l·stride] over l < n (storage type st,
// computed in computeOf(st)), from −Inf, over the block: each thread its
// strided elements, then blockReduce.
func (k *kfn) blockRowMax(hw kernel.BlockRegs, st llvm.Type, n int64, row llvm.Value) (llvm.Value, error) {
	t := k.e.ComputeOf(st)
	m := k.Variable(t, k.identity(RedMax, t))
	var ferr error
	k.rowStride(hw, k.C64(n), func(l llvm.Value) {
		v, err := k.combine(RedMax, k.Load(t, m), k.LoadAt(st, row, l))
		if err != nil {
			ferr = err
			return
		}
		k.Store(v, t, m)
	})
	if ferr != nil {
		return m, ferr
	}
	return k.blockReduce(hw, RedMax, k.Load(t, m))
}

// blockRowExpSum is rowExpSum over the block (a contiguous row of n):
// e_l = exp(row[l] − m), stored to out[l] (of storage ot) unless out is the
// zero Value, by the thread that owns l; returns Σ e_l in f64 (each thread's
// part in element order, then blockReduce).
func (k *kfn) blockRowExpSum(hw kernel.BlockRegs, t, ot llvm.Type, n int64, row, out, m llvm.Value, exp func(llvm.Value) (llvm.Value, error)) (llvm.Value, error) {
	f64 := k.e.F64
	sum := k.Variable(f64, llvm.ConstFloat(f64, 0))
	var ferr error
	k.rowStride(hw, k.C64(n), func(l llvm.Value) {
		e, err := exp(k.B.FSub(k.LoadAt(t, row, l), m, ""))
		if err != nil {
			ferr = err
			return
		}
		if !out.IsNil() {
			k.StoreAt(e, ot, out, l)
		}
		k.Store(k.B.FAdd(k.Load(f64, sum), k.Widen(e), ""), f64, sum)
	})
	if ferr != nil {
		return sum, ferr
	}
	return k.blockReduce(hw, RedSum, k.Load(f64, sum))
}
