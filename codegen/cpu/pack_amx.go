package cpu

import (
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// Packing of A for the AMX kernels (plan.amx). An A tile is 16 rows of 32
// consecutive k (64 bytes, 16 bf16 pairs), so the panels are row-major:
// element (r, k) of the MR-row panel q is at ap[q·kcp + r·kcp + k], with kcp
// = kc rounded up to 32; the k past kc and the rows past M are zero, so
// every tile is full and the padding adds 0·0. B keeps the vdpbf16ps pair
// layout (pack_bf16.go, its pair rows zero-padded to kcp/2 by zeroPadB):
// the pair rows of 16 columns are exactly a B tile's rows, 4·NR bytes
// apart.

// laneLess is the <n x i1> mask of the lanes l with l < lim (an i64).
func (e *emitter) laneLess(lim llvm.Value, n int) llvm.Value {
	idx := make([]llvm.Value, n)
	for i := range idx {
		idx[i] = e.C64(int64(i))
	}
	return e.B.ICmp(llvm.IntSLT, llvm.ConstVector(idx), e.B.VectorSplat(n, lim, ""), "")
}

// maskedLoadDyn reads the lanes of the vector type t (n lanes, element
// alignment align) at p whose mask bit is set, zero elsewhere, touching no
// memory for the others.
func (e *emitter) maskedLoadDyn(t llvm.Type, p, mask llvm.Value, align int) (llvm.Value, error) {
	f, err := e.Mod.Intrinsic("llvm.masked.load", t, e.Ptr)
	if err != nil {
		return llvm.Value{}, err
	}
	return e.B.Call(f, []llvm.Value{p, llvm.ConstInt(e.I32, int64(align)), mask, llvm.ConstNull(t)}, ""), nil
}

// emitPackAAMX defines
//
//	void name.packA(const bf16 *A, bf16 *ap, i64 ic, i64 mc, i64 pc, i64 kc)
//
// which copies op(A)[ic:ic+mc, pc:pc+kc] into the row-major panels above,
// writing all MR rows of the last panel and all kcp columns.
func (g *gemmGen) emitPackAAMX() (llvm.Function, error) {
	p, s := g.p, g.p.s
	fn, err := g.newPackFunction("packA")
	if err != nil {
		return fn, err
	}
	a, ap, ic, mc, pc, kc := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3), fn.Param(4), fn.Param(5)
	b := g.B
	mr := int64(p.b.MR)
	m, k := int64(s.M), int64(s.K)
	_, _, kcp := g.kcPairs(kc)
	mcp := b.And(g.Add(mc, g.C64(mr-1)), g.C64(-mr), "mcp")
	var ferr error
	if !s.TransA {
		// A[m][k] at m·K + k: each row's run of kc values is copied 32 at
		// a time with masked loads (the lanes past kc, and whole rows past
		// M, read nothing and become zero).
		row32 := llvm.VectorType(g.I16, 32)
		g.forLoop("r", g.C64(0), mcp, 1, func(r llvm.Value) {
			row := g.Add(ic, r)
			valid := b.ICmp(llvm.IntSLT, row, g.C64(m), "")
			src := g.elemAt(BF16, a, g.Add(g.Mul(g.Min(row, g.C64(m-1)), g.C64(k)), pc))
			lim := b.Select(valid, kc, g.C64(0), "")
			dst := g.elemAt(BF16, ap, g.Mul(r, kcp))
			g.forLoop("k", g.C64(0), kcp, 32, func(k0 llvm.Value) {
				in := b.ICmp(llvm.IntSLT, k0, lim, "")
				at := b.Select(in, g.elemAt(BF16, src, k0), src, "")
				v, err := g.maskedLoadDyn(row32, at, g.laneLess(g.Sub(lim, k0), 32), 2)
				if err != nil {
					ferr = err
					return
				}
				g.store(v, g.elemAt(BF16, dst, k0), 64)
			})
		})
		b.RetVoid()
		return fn, ferr
	}
	// A[k][m] at k·M + m: for 16 rows and 32 k at a time, rows k and k+1
	// (16 m each) are interleaved into 16 words of pairs, and the 16×16
	// words transposed so that each row's 16 pairs are one 64-byte store.
	vec16 := llvm.VectorType(g.I16, 16)
	w32 := llvm.VectorType(g.I32, 16)
	g.forLoop("g", g.C64(0), mcp, 16, func(r0 llvm.Value) {
		m0 := g.Add(ic, r0)
		nval := g.Max(g.Min(g.Sub(g.C64(m), m0), g.C64(16)), g.C64(0))
		mbase := g.Min(m0, g.C64(m-1))
		g.forLoop("k", g.C64(0), kcp, 32, func(k0 llvm.Value) {
			rowAt := func(kk llvm.Value) llvm.Value {
				in := b.ICmp(llvm.IntSLT, kk, kc, "")
				kidx := g.Add(pc, g.Min(kk, g.Sub(kc, g.C64(1))))
				src := g.elemAt(BF16, a, g.Add(g.Mul(kidx, g.C64(m)), mbase))
				v, err := g.maskedLoadDyn(vec16, src, g.laneLess(b.Select(in, nval, g.C64(0), ""), 16), 2)
				if err != nil {
					ferr = err
				}
				return v
			}
			vs := make([]llvm.Value, 16)
			for q := range vs {
				kk := g.Add(k0, g.C64(int64(2*q)))
				x, y := rowAt(kk), rowAt(g.Add(kk, g.C64(1)))
				vs[q] = b.BitCast(g.interleave(x, y, 16), w32, "")
			}
			for i, v := range g.transpose(vs) {
				g.store(v, g.elemAt(BF16, ap, g.Add(g.Mul(g.Add(r0, g.C64(int64(i))), kcp), k0)), 64)
			}
		})
	})
	b.RetVoid()
	return fn, ferr
}
