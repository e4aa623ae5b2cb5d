package cpu

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// microKernel defines
//
//	void name.mk.k<kc>.m<rows>.n<cols>(const float *ap, const float *bp, float *c, i1 first)
//
// which multiplies a packed MR×kc micro-panel of A (ap[k·MR + r]) by a
// packed kc×NR micro-panel of B (bp[k·NR + j]) into the top-left rows×cols
// corner of the C tile at c (row stride N): C = alpha·AB when first is set
// and the kernel overwrites, else C += alpha·AB. The rows×⌈cols/W⌉ vector
// accumulators live in registers for the whole k loop; only the first
// rows rows and the vectors covering cols columns are computed at all.
func (g *gemmGen) microKernel(kc, rows, cols int) (llvm.Function, error) {
	p, s := g.p, g.p.s
	name := fmt.Sprintf("%s.mk.k%d.m%d.n%d", s.Name, kc, rows, cols)
	fn, err := g.newFunction(name, []llvm.Type{g.ptr, g.ptr, g.ptr, g.i1}, true)
	if err != nil {
		return fn, err
	}
	if err := fn.AddAttribute(llvm.FunctionIndex, "noinline", 0); err != nil {
		return fn, err
	}
	for i, ro := range []bool{true, true, false} {
		if err := g.markPointer(fn, i, ro); err != nil {
			return fn, err
		}
	}
	ap, bp, c, first := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3)
	b := g.b
	w, mr, nr := g.w, p.b.MR, p.b.NR
	nv := ceilDiv(cols, w)
	// Packed B is 64-byte aligned and NR is a multiple of W, so every
	// vector load from it is aligned to the vector size (at most 64).
	bAlign := min(4*w, 64)

	// Prefetch the C tile for writing: it is read and written only after
	// the k loop, which hides the misses (worth ~10% when C is in DRAM).
	pf, err := g.m.Intrinsic("llvm.prefetch", g.ptr)
	if err != nil {
		return fn, err
	}
	for r := 0; r < rows; r++ {
		// One prefetch per 64-byte line the row may touch (rows need not
		// be aligned): offsets 0, 16, ... and the last column.
		for off := 0; off < cols+15; off += 16 {
			ptr := g.atc(c, int64(r*s.N+min(off, cols-1)))
			b.Call(pf, []llvm.Value{ptr, llvm.ConstInt(g.i32, 1), llvm.ConstInt(g.i32, 3), llvm.ConstInt(g.i32, 1)}, "")
		}
	}
	acc := make([][]llvm.Value, rows)
	for r := range acc {
		acc[r] = make([]llvm.Value, nv)
		for j := range acc[r] {
			acc[r][j] = llvm.ConstNull(g.vec)
		}
	}
	// step performs the rank-1 update for k = koff relative to apk/bpk.
	step := func(apk, bpk llvm.Value, koff int) {
		bv := make([]llvm.Value, nv)
		for j := range bv {
			bv[j] = g.load(g.vec, g.atc(bpk, int64(koff*nr+j*w)), bAlign)
		}
		for r := 0; r < rows; r++ {
			a := g.load(g.f32, g.atc(apk, int64(koff*mr+r)), 4)
			sa := b.VectorSplat(w, a, "")
			for j := range bv {
				acc[r][j] = b.Call(g.fma, []llvm.Value{sa, bv[j], acc[r][j]}, "")
			}
		}
	}

	u := p.b.Unroll
	iters, rem := kc/u, kc%u
	switch {
	case iters >= 2:
		entry := b.InsertBlock()
		loop := fn.AppendBasicBlock("k")
		after := fn.AppendBasicBlock("k.end")
		b.Br(loop)
		b.SetInsertPointAtEnd(loop)
		apPhi, bpPhi, nPhi := b.Phi(g.ptr, "ap"), b.Phi(g.ptr, "bp"), b.Phi(g.i64, "n")
		phis := make([][]llvm.Value, rows)
		init := make([][]llvm.Value, rows)
		for r := range acc {
			phis[r] = make([]llvm.Value, nv)
			init[r] = acc[r]
			for j := range acc[r] {
				phis[r][j] = b.Phi(g.vec, "")
			}
			acc[r] = append([]llvm.Value(nil), phis[r]...)
		}
		for k := 0; k < u; k++ {
			step(apPhi, bpPhi, k)
		}
		apNext := g.atc(apPhi, int64(u*mr))
		bpNext := g.atc(bpPhi, int64(u*nr))
		nNext := g.add(nPhi, g.c64(1))
		b.CondBr(b.ICmp(llvm.IntSLT, nNext, g.c64(int64(iters)), ""), loop, after)
		blocks := []llvm.BasicBlock{entry, loop}
		apPhi.AddIncoming([]llvm.Value{ap, apNext}, blocks)
		bpPhi.AddIncoming([]llvm.Value{bp, bpNext}, blocks)
		nPhi.AddIncoming([]llvm.Value{g.c64(0), nNext}, blocks)
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
		apk := g.atc(ap, int64(iters*u*mr))
		bpk := g.atc(bp, int64(iters*u*nr))
		for k := 0; k < rem; k++ {
			step(apk, bpk, k)
		}
	}

	if err := g.storeTile(c, acc, cols, first); err != nil {
		return fn, err
	}
	b.RetVoid()
	return fn, nil
}

// storeTile writes the accumulators to the C tile at c: C = alpha·acc when
// first is set and the kernel overwrites, else C += alpha·acc. Columns at
// and past cols are neither read nor written.
func (g *gemmGen) storeTile(c llvm.Value, acc [][]llvm.Value, cols int, first llvm.Value) error {
	s := g.p.s
	var alpha llvm.Value
	if s.Alpha != 1 {
		alpha = llvm.ConstSplat(g.w, llvm.ConstFloat(g.f32, float64(s.Alpha)))
	}
	var err error
	write := func(accumulate bool) {
		for r := range acc {
			for j, v := range acc[r] {
				lanes := min(g.w, cols-j*g.w)
				ptr := g.atc(c, int64(r*s.N+j*g.w))
				if !alpha.IsNil() {
					v = g.b.FMul(alpha, v, "")
				}
				if accumulate {
					var old llvm.Value
					if lanes == g.w {
						old = g.load(g.vec, ptr, 4)
					} else if old, err = g.maskedLoad(ptr, lanes); err != nil {
						return
					}
					v = g.b.FAdd(old, v, "")
				}
				if lanes == g.w {
					g.store(v, ptr, 4)
				} else if err = g.maskedStore(v, ptr, lanes); err != nil {
					return
				}
			}
		}
	}
	if s.Accumulate {
		write(true)
	} else {
		g.ifElse("store", first, func() { write(false) }, func() { write(true) })
	}
	return err
}
