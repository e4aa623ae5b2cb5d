package cpu

import (
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// Packing copies a block of A or B into the micro-kernel's panel layout.
// Where the source runs along k (A as [M,K], B as [N,K]) the copy is a
// transpose: W source vectors of W consecutive k each are transposed in
// registers (transpose) and stored as W panel rows, so no gather or scatter
// is needed; the last kc mod W steps are copied element by element. A bf16
// source is widened to float32 as it is loaded (exactly), so the float32
// micro-kernel serves it; the dot path's packing is in pack_bf16.go.

// emitPackA defines
//
//	void name.packA(const A *A, float *ap, i64 ic, i64 mc, i64 pc, i64 kc)
//
// which copies op(A)[ic:ic+mc, pc:pc+kc] into MR-row micro-panels:
// panel q (rows ic+q·MR…) starts at ap[q·MR·kc] and holds element (r, k)
// at [k·MR + r]. Rows past M in the last panel are zero or left as they
// were: the micro-kernel for that edge never reads them.
func (g *gemmGen) emitPackA() (llvm.Function, error) {
	p, s := g.p, g.p.s
	fn, err := g.newPackFunction("packA")
	if err != nil {
		return fn, err
	}
	a, ap, ic, mc, pc, kc := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3), fn.Param(4), fn.Param(5)
	b := g.B
	el := s.ElemA
	w, mr := g.w, p.b.MR
	m, k := int64(s.M), int64(s.K)
	if s.TransA {
		// A[k][m] at k·M + m: for each k, one contiguous run of mc floats
		// is dealt out to the panels (k outermost, so that a wide A is read
		// row by row rather than with a stride of M floats).
		g.forLoop("k", g.C64(0), kc, 1, func(kk llvm.Value) {
			src := g.elemAt(el, a, g.Add(g.Mul(g.Add(pc, kk), g.C64(m)), ic))
			dst := g.at(ap, g.Mul(kk, g.C64(int64(mr))))
			g.forLoop("q", g.C64(0), mc, int64(mr), func(q llvm.Value) {
				g.edgeRows(g.Add(ic, q), func(rows int) {
					g.store(g.loadF32(el, g.elemAt(el, src, q), rows), g.at(dst, g.Mul(q, kc)), 4)
				})
			})
		})
		b.RetVoid()
		return fn, nil
	}
	g.forLoop("q", g.C64(0), mc, int64(mr), func(q llvm.Value) {
		row0 := g.Add(ic, q)
		dst := g.at(ap, g.Mul(q, kc))
		g.edgeRows(row0, func(rows int) {
			// A[m][k] at m·K + k: transpose W×W blocks of (row, k).
			src := g.elemAt(el, a, g.Add(g.Mul(row0, g.C64(k)), pc))
			kMain := b.And(kc, g.C64(int64(-w)), "")
			g.forLoop("k", g.C64(0), kMain, int64(w), func(k0 llvm.Value) {
				s0 := g.elemAt(el, src, k0)
				d0 := g.at(dst, g.Mul(k0, g.C64(int64(mr))))
				for r0 := 0; r0 < rows; r0 += w {
					vs := make([]llvm.Value, w)
					for i := range vs {
						if r0+i < rows {
							vs[i] = g.loadF32(el, g.elemAtc(el, s0, int64(r0+i)*k), w)
						} else {
							vs[i] = llvm.ConstNull(g.vec)
						}
					}
					n := min(w, mr-r0)
					for kk, v := range g.transpose(vs) {
						g.storePrefix(v, n, g.atc(d0, int64(kk*mr+r0)), 4)
					}
				}
			})
			g.forLoop("kt", kMain, kc, 1, func(kk llvm.Value) {
				s0 := g.elemAt(el, src, kk)
				d0 := g.at(dst, g.Mul(kk, g.C64(int64(mr))))
				for r := 0; r < rows; r++ {
					g.store(g.loadF32(el, g.elemAtc(el, s0, int64(r)*k), 0), g.atc(d0, int64(r)), 4)
				}
			})
		})
	})
	b.RetVoid()
	return fn, nil
}

// emitPackB defines
//
//	void name.packB(const B *B, float *bp, i64 pc, i64 kc, i64 jc, i64 nc)
//
// which copies op(B)[pc:pc+kc, jc:jc+nc] into NR-column micro-panels:
// panel p (columns jc+p·NR…) starts at bp[p·NR·kc] and holds element
// (k, j) at [k·NR + j]. In the last panel, the lanes past N of the last
// vector the micro-kernel reads are zero; later vectors are not written.
func (g *gemmGen) emitPackB() (llvm.Function, error) {
	p, s := g.p, g.p.s
	fn, err := g.newPackFunction("packB")
	if err != nil {
		return fn, err
	}
	bm, bp, pc, kc, jc, nc := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3), fn.Param(4), fn.Param(5)
	b := g.B
	el := s.ElemB
	w, nr := g.w, int64(p.b.NR)
	n, k := int64(s.N), int64(s.K)
	bAlign := min(4*w, 64)
	var ferr error
	if !s.TransB {
		// B[k][n] at k·N + n: for each k, copy the run of nc floats into
		// the panels as vectors (k outermost, so that a wide B is read row
		// by row).
		g.forLoop("k", g.C64(0), kc, 1, func(kk llvm.Value) {
			src := g.elemAt(el, bm, g.Add(g.Mul(g.Add(pc, kk), g.C64(n)), jc))
			dst := g.at(bp, g.Mul(kk, g.C64(nr)))
			g.forLoop("p", g.C64(0), nc, nr, func(pp llvm.Value) {
				g.edgeCols(g.Add(jc, pp), func(cols int) {
					s0, d0 := g.elemAt(el, src, pp), g.at(dst, g.Mul(pp, kc))
					for j := 0; j*w < cols; j++ {
						lanes := min(w, cols-j*w)
						var v llvm.Value
						if lanes == w {
							v = g.loadF32(el, g.elemAtc(el, s0, int64(j*w)), w)
						} else if v, err = g.loadF32Masked(el, g.elemAtc(el, s0, int64(j*w)), lanes); err != nil {
							ferr = err
							return
						}
						g.store(v, g.atc(d0, int64(j*w)), bAlign)
					}
				})
			})
		})
		b.RetVoid()
		return fn, ferr
	}
	g.forLoop("p", g.C64(0), nc, nr, func(pp llvm.Value) {
		col0 := g.Add(jc, pp)
		dst := g.at(bp, g.Mul(pp, kc))
		g.edgeCols(col0, func(cols int) {
			// B[n][k] at n·K + k: transpose W×W blocks of (column, k).
			src := g.elemAt(el, bm, g.Add(g.Mul(col0, g.C64(k)), pc))
			kMain := b.And(kc, g.C64(int64(-w)), "")
			g.forLoop("k", g.C64(0), kMain, int64(w), func(k0 llvm.Value) {
				s0 := g.elemAt(el, src, k0)
				d0 := g.at(dst, g.Mul(k0, g.C64(nr)))
				for c0 := 0; c0 < cols; c0 += w {
					vs := make([]llvm.Value, w)
					for i := range vs {
						if c0+i < cols {
							vs[i] = g.loadF32(el, g.elemAtc(el, s0, int64(c0+i)*k), w)
						} else {
							vs[i] = llvm.ConstNull(g.vec)
						}
					}
					for kk, v := range g.transpose(vs) {
						g.store(v, g.atc(d0, int64(kk)*nr+int64(c0)), bAlign)
					}
				}
			})
			g.forLoop("kt", kMain, kc, 1, func(kk llvm.Value) {
				s0 := g.elemAt(el, src, kk)
				d0 := g.at(dst, g.Mul(kk, g.C64(nr)))
				for c := 0; c < roundUp(cols, w); c++ {
					x := llvm.ConstFloat(g.F32, 0)
					if c < cols {
						x = g.loadF32(el, g.elemAtc(el, s0, int64(c)*k), 0)
					}
					g.store(x, g.atc(d0, int64(c)), 4)
				}
			})
		})
	})
	b.RetVoid()
	return fn, ferr
}

// transpose returns the transpose of the W×W matrix whose rows are the W
// vectors rows, built from log2(W) stages of two-input shuffles: stage b
// swaps bit b of the row index with bit b of the column index, pairing row
// i with row i|b.
func (e *emitter) transpose(rows []llvm.Value) []llvm.Value {
	w := e.w
	cur := append([]llvm.Value(nil), rows...)
	for bit := 1; bit < w; bit <<= 1 {
		lo, hi := make([]llvm.Value, w), make([]llvm.Value, w)
		for c := 0; c < w; c++ {
			if c&bit == 0 {
				lo[c], hi[c] = llvm.ConstInt(e.I32, int64(c)), llvm.ConstInt(e.I32, int64(c+bit))
			} else {
				lo[c], hi[c] = llvm.ConstInt(e.I32, int64(w+c-bit)), llvm.ConstInt(e.I32, int64(w+c))
			}
		}
		loMask, hiMask := llvm.ConstVector(lo), llvm.ConstVector(hi)
		next := make([]llvm.Value, w)
		for i := 0; i < w; i++ {
			if i&bit != 0 {
				continue
			}
			j := i | bit
			next[i] = e.B.ShuffleVector(cur[i], cur[j], loMask, "")
			next[j] = e.B.ShuffleVector(cur[i], cur[j], hiMask, "")
		}
		cur = next
	}
	return cur
}

// storePrefix stores the first n lanes of the W-lane vector v at p as one
// <n x T> store (n ≤ W), which the back end splits into legal pieces.
func (e *emitter) storePrefix(v llvm.Value, n int, p llvm.Value, align int) {
	if n < e.w {
		idx := make([]llvm.Value, n)
		for i := range idx {
			idx[i] = llvm.ConstInt(e.I32, int64(i))
		}
		v = e.B.ShuffleVector(v, llvm.Poison(v.Type()), llvm.ConstVector(idx), "")
	}
	e.store(v, p, align)
}

// newPackFunction defines name.packA or name.packB (suffix), whose six
// parameters are the source (read-only), the panel buffer and four i64
// offsets and extents.
func (g *gemmGen) newPackFunction(suffix string) (llvm.Function, error) {
	fn, err := g.newFunction(g.p.s.Name+"."+suffix, []llvm.Type{g.Ptr, g.Ptr, g.I64, g.I64, g.I64, g.I64}, true)
	if err != nil {
		return fn, err
	}
	for i, ro := range []bool{true, false} {
		if err := g.markPointer(fn, i, ro); err != nil {
			return fn, err
		}
	}
	return fn, nil
}

// edgeRows emits body(MR) for full panels and body(M mod MR) for the last
// panel of A, whose first row is row0.
func (g *gemmGen) edgeRows(row0 llvm.Value, body func(rows int)) {
	p, mr := g.p, g.p.b.MR
	if p.mEdge == 0 {
		body(mr)
		return
	}
	full := g.B.ICmp(llvm.IntSLE, g.Add(row0, g.C64(int64(mr))), g.C64(int64(p.s.M)), "")
	g.ifElse("rows", full, func() { body(mr) }, func() { body(p.mEdge) })
}

// edgeCols emits body(NR) for full panels and body(N mod NR) for the last
// panel of B, whose first column is col0.
func (g *gemmGen) edgeCols(col0 llvm.Value, body func(cols int)) {
	p, nr := g.p, g.p.b.NR
	if p.nEdge == 0 {
		body(nr)
		return
	}
	full := g.B.ICmp(llvm.IntSLE, g.Add(col0, g.C64(int64(nr))), g.C64(int64(p.s.N)), "")
	g.ifElse("cols", full, func() { body(nr) }, func() { body(p.nEdge) })
}
