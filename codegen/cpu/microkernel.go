package cpu

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// microKernel defines
//
//	void name.mk.k<kc>.m<rows>.n<cols>(const void *ap, const void *bp, void *c, i1 first)
//
// which multiplies a packed MR×kc micro-panel of A by a packed kc×NR
// micro-panel of B into the top-left rows×cols corner of the C tile at c
// (row stride N, elements of ElemC): C = alpha·AB when first is set and the
// kernel overwrites, else C += alpha·AB. The rows×⌈cols/W⌉ vector
// accumulators live in registers for the whole k loop; only the first
// rows rows and the vectors covering cols columns are computed at all.
//
// The panels hold floats (ap[k·MR + r], bp[k·NR + j]; one llvm.fma per
// row and vector and k) or, on the dot path, bf16 pairs along k
// (ap[(k/2)·2MR + 2r + k%2], bp[(k/2)·2NR + 2j + k%2]; one vdpbf16ps per
// row and vector and pair of k, the A pair broadcast as 32 bits).
//
// When the plan goes through the workspace (viaW) the function is
//
//	void name.mk…(const void *ap, const void *bp, void *c, i1 first, float *w, i1 last)
//
// with w the tile's MR×NR floats (row stride NR): the block's sums acc are
// added to w (stored there when first is set) unless last is set, when
// alpha·(w + acc), plus C if Accumulate, is rounded once into C instead.
// w is prefetched before the k loop and read only after it.
//
// The AMX kernels take the driver's tile area as a last parameter and
// compute acc on tiles (kLoopAMX), with the same epilogue.
func (g *gemmGen) microKernel(kc, rows, cols int) (llvm.Function, error) {
	p, s := g.p, g.p.s
	name := fmt.Sprintf("%s.mk.k%d.m%d.n%d", s.Name, kc, rows, cols)
	params := []llvm.Type{g.Ptr, g.Ptr, g.Ptr, g.I1}
	if p.viaW {
		params = append(params, g.Ptr, g.I1)
	}
	if p.amx {
		params = append(params, g.Ptr) // the tile area
	}
	fn, err := g.newFunction(name, params, true)
	if err != nil {
		return fn, err
	}
	if err := fn.AddAttribute(llvm.FunctionIndex, "noinline", 0); err != nil {
		return fn, err
	}
	ptrs := []int{0, 1, 2} // the pointer parameters; 0 and 1 are read-only
	if p.viaW {
		ptrs = append(ptrs, 4)
	}
	if p.amx {
		ptrs = append(ptrs, len(params)-1) // the tile area
	}
	for _, i := range ptrs {
		if err := g.markPointer(fn, i, i < 2); err != nil {
			return fn, err
		}
	}
	ap, bp, c, first := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3)
	var w, last llvm.Value
	if p.viaW {
		w, last = fn.Param(4), fn.Param(5)
	}
	nv := ceilDiv(cols, g.w)

	// Prefetch the C tile for writing: it is read and written only after
	// the k loop, which hides the misses (worth ~10% when C is in DRAM).
	// Through the workspace, C is written only by the last K block, and
	// the workspace tile is what to prefetch.
	if p.viaW {
		g.ifElse("pf", last, func() { err = g.prefetchTile(c, rows, cols) }, nil)
		if err == nil {
			err = g.prefetchLines(w, 4*rows*p.b.NR)
		}
	} else {
		err = g.prefetchTile(c, rows, cols)
	}
	if err != nil {
		return fn, err
	}
	if p.amx {
		// The C tiles wait in the staging area; the epilogue takes them
		// amxRowGroup rows at a time, so that their vectors stay in
		// registers.
		tr := fn.Param(len(params) - 1)
		g.kLoopAMX(kc, rows, cols, ap, bp, tr)
		for r0 := 0; r0 < rows && err == nil; r0 += amxRowGroup {
			part := g.stagedRows(tr, r0, min(r0+amxRowGroup, rows), nv)
			var wp llvm.Value
			if p.viaW {
				wp = g.atc(w, int64(r0*p.b.NR))
			}
			err = g.epilogue(g.elemAtc(s.ElemC, c, int64(r0*s.N)), wp, first, last, part, cols)
		}
	} else {
		acc := make([][]llvm.Value, rows)
		for r := range acc {
			acc[r] = make([]llvm.Value, nv)
			for j := range acc[r] {
				acc[r][j] = llvm.ConstNull(g.vec)
			}
		}
		if p.dot {
			err = g.kLoopDot(fn, kc, rows, nv, ap, bp, acc)
		} else {
			g.kLoopF32(fn, kc, rows, nv, ap, bp, acc)
		}
		if err == nil {
			err = g.epilogue(c, w, first, last, acc, cols)
		}
	}
	if err != nil {
		return fn, err
	}
	g.B.RetVoid()
	return fn, nil
}

// epilogue writes the block sums acc (rows of ⌈cols/W⌉ vectors) of the C
// tile at c: C = alpha·acc (+ C) by storeTile, or through the workspace
// tile w when the plan has one (first: store into w; last: add w and
// round into C; otherwise add into w).
func (g *gemmGen) epilogue(c, w, first, last llvm.Value, acc [][]llvm.Value, cols int) error {
	p, b := g.p, g.B
	if !p.viaW {
		return g.storeTile(c, acc, cols, first)
	}
	for r := range acc {
		for j := range acc[r] {
			// w is scratch: reading it on the first block is harmless
			// and the select discards what was there.
			old := g.load(g.vec, g.atc(w, int64(r*p.b.NR+j*g.w)), 4)
			acc[r][j] = b.Select(first, acc[r][j], b.FAdd(old, acc[r][j], ""), "")
		}
	}
	var err error
	g.ifElse("out", last, func() {
		err = g.storeTile(c, acc, cols, llvm.Value{})
	}, func() {
		for r := range acc {
			for j, v := range acc[r] {
				g.store(v, g.atc(w, int64(r*p.b.NR+j*g.w)), 4)
			}
		}
	})
	return err
}

// prefetchTile prefetches, for writing, the 64-byte lines of the rows×cols
// C tile at c.
func (g *gemmGen) prefetchTile(c llvm.Value, rows, cols int) error {
	s := g.p.s
	pf, err := g.Mod.Intrinsic("llvm.prefetch", g.Ptr)
	if err != nil {
		return err
	}
	line := 64 / s.ElemC.Size()
	for r := 0; r < rows; r++ {
		// One prefetch per 64-byte line the row may touch (rows need not
		// be aligned): offsets 0, line, ... and the last column.
		for off := 0; off < cols+line-1; off += line {
			ptr := g.elemAtc(s.ElemC, c, int64(r*s.N+min(off, cols-1)))
			g.B.Call(pf, []llvm.Value{ptr, llvm.ConstInt(g.I32, 1), llvm.ConstInt(g.I32, 3), llvm.ConstInt(g.I32, 1)}, "")
		}
	}
	return nil
}

// prefetchLines prefetches, for writing, the bytes 64-byte lines from p
// (64-byte aligned).
func (g *gemmGen) prefetchLines(p llvm.Value, bytes int) error {
	pf, err := g.Mod.Intrinsic("llvm.prefetch", g.Ptr)
	if err != nil {
		return err
	}
	for off := 0; off < bytes; off += 64 {
		g.B.Call(pf, []llvm.Value{g.atc(p, int64(off/4)), llvm.ConstInt(g.I32, 1), llvm.ConstInt(g.I32, 3), llvm.ConstInt(g.I32, 1)}, "")
	}
	return nil
}

// kLoop emits steps calls of step, unrolled by the blocking's factor: a
// loop of steps/Unroll iterations whose pointers into the panels advance
// by Unroll·aStep and Unroll·bStep elements of el, then the remainder.
// step(apk, bpk, koff) performs step koff relative to apk, bpk, updating
// acc (rows × nv vectors) in place.
func (g *gemmGen) kLoop(fn llvm.Function, steps int, el Elem, aStep, bStep int64, ap, bp llvm.Value,
	acc [][]llvm.Value, step func(apk, bpk llvm.Value, koff int)) {
	b := g.B
	u := g.p.b.Unroll
	iters, rem := steps/u, steps%u
	switch {
	case iters >= 2:
		entry := b.InsertBlock()
		loop := fn.AppendBasicBlock("k")
		after := fn.AppendBasicBlock("k.end")
		b.Br(loop)
		b.SetInsertPointAtEnd(loop)
		apPhi, bpPhi, nPhi := b.Phi(g.Ptr, "ap"), b.Phi(g.Ptr, "bp"), b.Phi(g.I64, "n")
		phis := make([][]llvm.Value, len(acc))
		init := make([][]llvm.Value, len(acc))
		for r := range acc {
			phis[r] = make([]llvm.Value, len(acc[r]))
			init[r] = acc[r]
			for j := range acc[r] {
				phis[r][j] = b.Phi(g.vec, "")
			}
			acc[r] = append([]llvm.Value(nil), phis[r]...)
		}
		for k := 0; k < u; k++ {
			step(apPhi, bpPhi, k)
		}
		apNext := g.elemAtc(el, apPhi, int64(u)*aStep)
		bpNext := g.elemAtc(el, bpPhi, int64(u)*bStep)
		nNext := g.Add(nPhi, g.C64(1))
		b.CondBr(b.ICmp(llvm.IntSLT, nNext, g.C64(int64(iters)), ""), loop, after)
		blocks := []llvm.BasicBlock{entry, loop}
		apPhi.AddIncoming([]llvm.Value{ap, apNext}, blocks)
		bpPhi.AddIncoming([]llvm.Value{bp, bpNext}, blocks)
		nPhi.AddIncoming([]llvm.Value{g.C64(0), nNext}, blocks)
		for r := range phis {
			for j := range phis[r] {
				phis[r][j].AddIncoming([]llvm.Value{init[r][j], acc[r][j]}, blocks)
			}
		}
		b.SetInsertPointAtEnd(after)
	case iters == 1:
		for k := 0; k < u; k++ {
			step(ap, bp, k)
		}
	}
	if rem > 0 {
		apk := g.elemAtc(el, ap, int64(iters*u)*aStep)
		bpk := g.elemAtc(el, bp, int64(iters*u)*bStep)
		for k := 0; k < rem; k++ {
			step(apk, bpk, k)
		}
	}
}

// kLoopF32 performs the kc rank-1 updates of float panels with llvm.fma.
func (g *gemmGen) kLoopF32(fn llvm.Function, kc, rows, nv int, ap, bp llvm.Value, acc [][]llvm.Value) {
	b := g.B
	w, mr, nr := g.w, g.p.b.MR, g.p.b.NR
	// Packed B is 64-byte aligned and NR is a multiple of W, so every
	// vector load from it is aligned to the vector size (at most 64).
	bAlign := min(4*w, 64)
	g.kLoop(fn, kc, F32, int64(mr), int64(nr), ap, bp, acc, func(apk, bpk llvm.Value, koff int) {
		bv := make([]llvm.Value, nv)
		for j := range bv {
			bv[j] = g.load(g.vec, g.atc(bpk, int64(koff*nr+j*w)), bAlign)
		}
		for r := 0; r < rows; r++ {
			a := g.load(g.F32, g.atc(apk, int64(koff*mr+r)), 4)
			sa := b.VectorSplat(w, a, "")
			for j := range bv {
				acc[r][j] = b.Call(g.fma, []llvm.Value{sa, bv[j], acc[r][j]}, "")
			}
		}
	})
}

// kLoopDot performs the ⌈kc/2⌉ pair updates of bf16-pair panels with
// vdpbf16ps: lane j of acc[r][v] += A[r][k]·B[k][16v+j] + A[r][k+1]·B[k+1][16v+j].
func (g *gemmGen) kLoopDot(fn llvm.Function, kc, rows, nv int, ap, bp llvm.Value, acc [][]llvm.Value) error {
	b := g.B
	w, mr, nr := g.w, g.p.b.MR, g.p.b.NR
	bfv := llvm.VectorType(g.Ctx.BFloatType(), 2*w)
	dp, err := g.Mod.Intrinsic("llvm.x86.avx512bf16.dpbf16ps.512")
	if err != nil {
		return err
	}
	g.kLoop(fn, ceilDiv(kc, 2), BF16, int64(2*mr), int64(2*nr), ap, bp, acc, func(apk, bpk llvm.Value, koff int) {
		bv := make([]llvm.Value, nv)
		for j := range bv {
			bv[j] = g.load(bfv, g.elemAtc(BF16, bpk, int64(koff*2*nr+j*2*w)), 64)
		}
		for r := 0; r < rows; r++ {
			a := g.load(g.I32, g.elemAtc(BF16, apk, int64(koff*2*mr+2*r)), 4)
			sa := b.BitCast(b.VectorSplat(w, a, ""), bfv, "")
			for j := range bv {
				// The broadcast operand last: vdpbf16ps takes a memory
				// operand (m32bcst) only there.
				acc[r][j] = b.Call(dp, []llvm.Value{acc[r][j], bv[j], sa}, "")
			}
		}
	})
	return nil
}

// storeTile writes the accumulators to the C tile at c: C = alpha·acc when
// first is set and the kernel overwrites, else C += alpha·acc. A nil first
// means the tile's only write: C = alpha·acc, plus the old C when
// Accumulate. A bf16 C is read widened and the sum rounded once to bf16.
// Columns at and past cols are neither read nor written.
func (g *gemmGen) storeTile(c llvm.Value, acc [][]llvm.Value, cols int, first llvm.Value) error {
	s := g.p.s
	el := s.ElemC
	var alpha llvm.Value
	if s.Alpha != 1 {
		alpha = llvm.ConstSplat(g.w, llvm.ConstFloat(g.F32, float64(s.Alpha)))
	}
	var err error
	write := func(accumulate bool) {
		for r := range acc {
			for j, v := range acc[r] {
				lanes := min(g.w, cols-j*g.w)
				ptr := g.elemAtc(el, c, int64(r*s.N+j*g.w))
				if !alpha.IsNil() {
					v = g.B.FMul(alpha, v, "")
				}
				if accumulate {
					var old llvm.Value
					if lanes == g.w {
						old = g.loadF32(el, ptr, g.w)
					} else if old, err = g.loadF32Masked(el, ptr, lanes); err != nil {
						return
					}
					v = g.B.FAdd(old, v, "")
				}
				if el == BF16 {
					v = g.roundBF16(v, g.w)
				}
				if lanes == g.w {
					g.store(v, ptr, el.Size())
				} else if err = g.maskedStore(v, ptr, lanes, el.Size()); err != nil {
					return
				}
			}
		}
	}
	switch {
	case first.IsNil():
		write(s.Accumulate)
	case s.Accumulate:
		write(true)
	case el == BF16:
		// One K block (plan.viaW is false): first is always set.
		write(false)
	default:
		g.ifElse("store", first, func() { write(false) }, func() { write(true) })
	}
	return err
}
