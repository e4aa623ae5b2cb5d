package cpu

import (
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// Packing for the dot path (plan.dot: bf16 A and B, vdpbf16ps). Panels
// hold bf16 pairs along k, kcp = kc rounded up to even deep: element (r, k)
// of an A panel is at [(k/2)·2MR + 2r + k%2] and element (k, j) of a B
// panel at [(k/2)·2NR + 2j + k%2], so one 32-bit word is the pair (k, k+1)
// of a row or column. When kc is odd (only the last K block can be), the
// second half of the last pair is zero in both panels, so it adds 0·0.
//
// Where the source runs along k (A as [M,K], B as [N,K]) a pair is already
// one (possibly 2-byte-aligned) 32-bit word of the source, and packing is
// the float path's W×W transpose applied to words. Where it runs across k
// (A as [K,M], B as [K,N]) two source rows k, k+1 are interleaved with one
// shuffle.

// kcPairs returns the number of full pairs of kc, whether kc is odd, and
// the panel depth kcp (kc rounded up to even, or to 32 for AMX tiles).
func (g *gemmGen) kcPairs(kc llvm.Value) (full, odd, kcp llvm.Value) {
	b := g.B
	full = b.LShr(kc, g.C64(1), "pairs")
	odd = b.ICmp(llvm.IntNE, b.And(kc, g.C64(1), ""), g.C64(0), "odd")
	kcp = b.And(g.Add(kc, g.C64(1)), g.C64(-2), "kcp")
	if g.p.amx {
		kcp = b.And(g.Add(kc, g.C64(31)), g.C64(-32), "kcp")
	}
	return full, odd, kcp
}

// zeroPadB zeroes, for AMX tiles, the pair rows of the B panels past the
// kc values packed, up to the panel depth kcp (a multiple of 32): every
// NR-column panel of the nc columns, all 2·NR halves of each row.
func (g *gemmGen) zeroPadB(bp, kc, nc llvm.Value) {
	if !g.p.amx {
		return
	}
	b := g.B
	nr := int64(g.p.b.NR)
	full, odd, kcp := g.kcPairs(kc)
	used := g.Add(full, b.ZExt(odd, g.I64, ""))
	row := llvm.VectorType(g.I16, int(2*nr))
	g.forLoop("pad", used, b.LShr(kcp, g.C64(1), ""), 1, func(pp llvm.Value) {
		dst := g.elemAt(BF16, bp, g.Mul(pp, g.C64(2*nr)))
		g.forLoop("padp", g.C64(0), nc, nr, func(q llvm.Value) {
			g.store(llvm.ConstNull(row), g.elemAt(BF16, dst, g.Mul(q, kcp)), 64)
		})
	})
}

// interleave returns <x0, y0, x1, y1, …> of the n-lane vectors x and y.
func (e *emitter) interleave(x, y llvm.Value, n int) llvm.Value {
	idx := make([]llvm.Value, 2*n)
	for i := 0; i < n; i++ {
		idx[2*i] = llvm.ConstInt(e.I32, int64(i))
		idx[2*i+1] = llvm.ConstInt(e.I32, int64(n+i))
	}
	return e.B.ShuffleVector(x, y, llvm.ConstVector(idx), "")
}

// packWords copies, for the n rows (of A) or columns (of B) starting at
// src, whose k runs contiguously with stride ld between them, the kc
// values from k = 0 into pair words: word (p, i) goes to dst32[p·width +
// i]. Lanes [n, fill) of each pair, and the pad of an odd kc, are zero.
func (g *gemmGen) packWords(src, dst, kc llvm.Value, n, fill, width int, ld int64, align int) {
	b := g.B
	w := g.w
	full, odd, _ := g.kcPairs(kc)
	word := func(i int, pair llvm.Value) llvm.Value {
		return g.elemAt(BF16, g.elemAtc(BF16, src, int64(i)*ld), g.Mul(pair, g.C64(2)))
	}
	out := func(pair llvm.Value, i int) llvm.Value {
		return g.B.InBoundsGEP(g.I32, dst, []llvm.Value{g.Add(g.Mul(pair, g.C64(int64(width))), g.C64(int64(i)))}, "")
	}
	vec32 := llvm.VectorType(g.I32, w)
	pMain := b.And(full, g.C64(int64(-w)), "")
	g.forLoop("kp", g.C64(0), pMain, int64(w), func(p0 llvm.Value) {
		for i0 := 0; i0 < max(n, fill); i0 += w {
			vs := make([]llvm.Value, w)
			for i := range vs {
				if i0+i < n {
					vs[i] = g.load(vec32, word(i0+i, p0), 2)
				} else {
					vs[i] = llvm.ConstNull(vec32)
				}
			}
			lanes := min(w, max(n, fill)-i0)
			for kk, v := range g.transpose(vs) {
				g.storePrefix(v, lanes, out(g.Add(p0, g.C64(int64(kk))), i0), align)
			}
		}
	})
	g.forLoop("kpt", pMain, full, 1, func(pp llvm.Value) {
		for i := 0; i < max(n, fill); i++ {
			x := llvm.ConstInt(g.I32, 0)
			if i < n {
				x = g.load(g.I32, word(i, pp), 2)
			}
			g.store(x, out(pp, i), 4)
		}
	})
	g.ifElse("odd", odd, func() {
		for i := 0; i < max(n, fill); i++ {
			x := llvm.ConstInt(g.I32, 0)
			if i < n {
				x = b.ZExt(g.load(g.I16, word(i, full), 2), g.I32, "")
			}
			g.store(x, out(full, i), 4)
		}
	}, nil)
}

// emitPackADot defines
//
//	void name.packA(const bf16 *A, bf16 *ap, i64 ic, i64 mc, i64 pc, i64 kc)
//
// which copies op(A)[ic:ic+mc, pc:pc+kc] into MR-row micro-panels of bf16
// pairs: panel q (rows ic+q·MR…) starts at ap[q·kcp], in the layout
// above. Rows past M in the last panel are not written: the micro-kernel
// for that edge never reads them.
func (g *gemmGen) emitPackADot() (llvm.Function, error) {
	p, s := g.p, g.p.s
	fn, err := g.newPackFunction("packA")
	if err != nil {
		return fn, err
	}
	a, ap, ic, mc, pc, kc := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3), fn.Param(4), fn.Param(5)
	b := g.B
	mr := p.b.MR
	m, k := int64(s.M), int64(s.K)
	_, _, kcp := g.kcPairs(kc)
	if s.TransA {
		// A[k][m] at k·M + m: rows k and k+1 of A, mc values each, are
		// interleaved into the panels (pairs outermost, so that a wide A is
		// read row by row).
		src := g.elemAt(BF16, a, g.Add(g.Mul(pc, g.C64(m)), ic))
		full, odd, _ := g.kcPairs(kc)
		pair := func(pp llvm.Value, second bool) {
			r0 := g.elemAt(BF16, src, g.Mul(pp, g.C64(2*m)))
			r1 := g.elemAtc(BF16, r0, m)
			dst := g.elemAt(BF16, ap, g.Mul(pp, g.C64(int64(2*mr))))
			g.forLoop("q", g.C64(0), mc, int64(mr), func(q llvm.Value) {
				g.edgeRows(g.Add(ic, q), func(rows int) {
					rowT := llvm.VectorType(g.I16, rows)
					x := g.load(rowT, g.elemAt(BF16, r0, q), 2)
					y := llvm.ConstNull(rowT)
					if second {
						y = g.load(rowT, g.elemAt(BF16, r1, q), 2)
					}
					g.store(g.interleave(x, y, rows), g.elemAt(BF16, dst, g.Mul(q, kcp)), 4)
				})
			})
		}
		g.forLoop("kp", g.C64(0), full, 1, func(pp llvm.Value) { pair(pp, true) })
		g.ifElse("odd", odd, func() { pair(full, false) }, nil)
		b.RetVoid()
		return fn, nil
	}
	// A[m][k] at m·K + k: a pair is one word of a row; transpose words.
	g.forLoop("q", g.C64(0), mc, int64(mr), func(q llvm.Value) {
		row0 := g.Add(ic, q)
		dst := g.elemAt(BF16, ap, g.Mul(q, kcp))
		g.edgeRows(row0, func(rows int) {
			src := g.elemAt(BF16, a, g.Add(g.Mul(row0, g.C64(k)), pc))
			g.packWords(src, dst, kc, rows, rows, mr, k, 4)
		})
	})
	b.RetVoid()
	return fn, nil
}

// emitPackBDot defines
//
//	void name.packB(const bf16 *B, bf16 *bp, i64 pc, i64 kc, i64 jc, i64 nc)
//
// which copies op(B)[pc:pc+kc, jc:jc+nc] into NR-column micro-panels of
// bf16 pairs: panel p (columns jc+p·NR…) starts at bp[p·kcp]. In the last
// panel, the lanes past N of the last vector the micro-kernel reads are
// zero; later vectors are not written.
func (g *gemmGen) emitPackBDot() (llvm.Function, error) {
	p, s := g.p, g.p.s
	fn, err := g.newPackFunction("packB")
	if err != nil {
		return fn, err
	}
	bm, bp, pc, kc, jc, nc := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3), fn.Param(4), fn.Param(5)
	b := g.B
	w, nr := g.w, int64(p.b.NR)
	n, k := int64(s.N), int64(s.K)
	_, _, kcp := g.kcPairs(kc)
	var ferr error
	if !s.TransB {
		// B[k][n] at k·N + n: rows k and k+1 of B, nc values each, are
		// interleaved W columns at a time (pairs outermost, so that a wide
		// B is read row by row).
		src := g.elemAt(BF16, bm, g.Add(g.Mul(pc, g.C64(n)), jc))
		full, odd, _ := g.kcPairs(kc)
		vec16 := llvm.VectorType(g.I16, w)
		pair := func(pp llvm.Value, second bool) {
			r0 := g.elemAt(BF16, src, g.Mul(pp, g.C64(2*n)))
			r1 := g.elemAtc(BF16, r0, n)
			dst := g.elemAt(BF16, bp, g.Mul(pp, g.C64(2*nr)))
			g.forLoop("p", g.C64(0), nc, nr, func(q llvm.Value) {
				g.edgeCols(g.Add(jc, q), func(cols int) {
					d0 := g.elemAt(BF16, dst, g.Mul(q, kcp))
					for j := 0; j*w < cols; j++ {
						lanes := min(w, cols-j*w)
						row := func(r llvm.Value) llvm.Value {
							at := g.elemAt(BF16, r, g.Add(q, g.C64(int64(j*w))))
							if lanes == w {
								return g.load(vec16, at, 2)
							}
							v, err := g.maskedLoadOf(vec16, at, lanes, 2)
							if err != nil {
								ferr = err
							}
							return v
						}
						x, y := row(r0), llvm.ConstNull(vec16)
						if second {
							y = row(r1)
						}
						g.store(g.interleave(x, y, w), g.elemAtc(BF16, d0, int64(2*j*w)), 64)
					}
				})
			})
		}
		g.forLoop("kp", g.C64(0), full, 1, func(pp llvm.Value) { pair(pp, true) })
		g.ifElse("odd", odd, func() { pair(full, false) }, nil)
		g.zeroPadB(bp, kc, nc)
		b.RetVoid()
		return fn, ferr
	}
	// B[n][k] at n·K + k: a pair is one word of a column; transpose words.
	g.forLoop("p", g.C64(0), nc, nr, func(q llvm.Value) {
		col0 := g.Add(jc, q)
		dst := g.elemAt(BF16, bp, g.Mul(q, kcp))
		g.edgeCols(col0, func(cols int) {
			src := g.elemAt(BF16, bm, g.Add(g.Mul(col0, g.C64(k)), pc))
			g.packWords(src, dst, kc, cols, roundUp(cols, w), p.b.NR, k, 64)
		})
	})
	g.zeroPadB(bp, kc, nc)
	b.RetVoid()
	return fn, ferr
}
