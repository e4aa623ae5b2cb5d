package cpu

import (
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// emitPackA defines
//
//	void name.packA(const float *A, float *ap, i64 ic, i64 mc, i64 pc, i64 kc)
//
// which copies op(A)[ic:ic+mc, pc:pc+kc] into MR-row micro-panels:
// panel q (rows ic+q·MR…) starts at ap[q·MR·kc] and holds element (r, k)
// at [k·MR + r]. Rows past M in the last panel are left as they were: the
// micro-kernel for that edge never reads them.
func (g *gemmGen) emitPackA() (llvm.Function, error) {
	p, s := g.p, g.p.s
	fn, err := g.newFunction(s.Name+".packA", []llvm.Type{g.ptr, g.ptr, g.i64, g.i64, g.i64, g.i64}, true)
	if err != nil {
		return fn, err
	}
	for i, ro := range []bool{true, false} {
		if err := g.markPointer(fn, i, ro); err != nil {
			return fn, err
		}
	}
	a, ap, ic, mc, pc, kc := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3), fn.Param(4), fn.Param(5)
	b := g.b
	mr := int64(p.b.MR)
	m, k := int64(s.M), int64(s.K)
	g.forLoop("q", g.c64(0), mc, mr, func(q llvm.Value) {
		row0 := g.add(ic, q)
		dst := g.at(ap, g.mul(q, kc))
		panel := func(rows int) {
			g.forLoop("k", g.c64(0), kc, 1, func(kk llvm.Value) {
				d := g.at(dst, g.mul(kk, g.c64(mr)))
				var src llvm.Value
				var stride int64
				if s.TransA { // A[k][m] at k·M + m
					src = g.at(a, g.add(g.mul(g.add(pc, kk), g.c64(m)), row0))
					stride = 1
				} else { // A[m][k] at m·K + k
					src = g.at(a, g.add(g.mul(row0, g.c64(k)), g.add(pc, kk)))
					stride = k
				}
				for r := 0; r < rows; r++ {
					g.store(g.load(g.f32, g.atc(src, int64(r)*stride), 4), g.atc(d, int64(r)), 4)
				}
			})
		}
		if p.mEdge == 0 {
			panel(p.b.MR)
			return
		}
		full := b.ICmp(llvm.IntSLE, g.add(row0, g.c64(mr)), g.c64(m), "")
		g.ifElse("rows", full, func() { panel(p.b.MR) }, func() { panel(p.mEdge) })
	})
	b.RetVoid()
	return fn, nil
}

// emitPackB defines
//
//	void name.packB(const float *B, float *bp, i64 pc, i64 kc, i64 jc, i64 nc)
//
// which copies op(B)[pc:pc+kc, jc:jc+nc] into NR-column micro-panels:
// panel p (columns jc+p·NR…) starts at bp[p·NR·kc] and holds element
// (k, j) at [k·NR + j]. In the last panel, the lanes past N of the last
// vector the micro-kernel reads are zero; later vectors are not written.
func (g *gemmGen) emitPackB() (llvm.Function, error) {
	p, s := g.p, g.p.s
	fn, err := g.newFunction(s.Name+".packB", []llvm.Type{g.ptr, g.ptr, g.i64, g.i64, g.i64, g.i64}, true)
	if err != nil {
		return fn, err
	}
	for i, ro := range []bool{true, false} {
		if err := g.markPointer(fn, i, ro); err != nil {
			return fn, err
		}
	}
	bm, bp, pc, kc, jc, nc := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3), fn.Param(4), fn.Param(5)
	b := g.b
	w, nr := g.w, int64(p.b.NR)
	n, k := int64(s.N), int64(s.K)
	bAlign := min(4*w, 64)
	var ferr error
	g.forLoop("p", g.c64(0), nc, nr, func(pp llvm.Value) {
		col0 := g.add(jc, pp)
		dst := g.at(bp, g.mul(pp, kc))
		panel := func(cols int) {
			g.forLoop("k", g.c64(0), kc, 1, func(kk llvm.Value) {
				d := g.at(dst, g.mul(kk, g.c64(nr)))
				if !s.TransB { // B[k][n] at k·N + n: copy vectors
					src := g.at(bm, g.add(g.mul(g.add(pc, kk), g.c64(n)), col0))
					for j := 0; j*w < cols; j++ {
						lanes := min(w, cols-j*w)
						var v llvm.Value
						if lanes == w {
							v = g.load(g.vec, g.atc(src, int64(j*w)), 4)
						} else if v, err = g.maskedLoad(g.atc(src, int64(j*w)), lanes); err != nil {
							ferr = err
							return
						}
						g.store(v, g.atc(d, int64(j*w)), bAlign)
					}
					return
				}
				// B[n][k] at n·K + k: gather one column of the panel.
				src := g.at(bm, g.add(g.mul(col0, g.c64(k)), g.add(pc, kk)))
				for j := 0; j*w < cols; j++ {
					v := llvm.ConstNull(g.vec)
					for l := 0; l < w && j*w+l < cols; l++ {
						x := g.load(g.f32, g.atc(src, int64(j*w+l)*k), 4)
						v = b.InsertElement(v, x, llvm.ConstInt(g.i32, int64(l)), "")
					}
					g.store(v, g.atc(d, int64(j*w)), bAlign)
				}
			})
		}
		if p.nEdge == 0 {
			panel(p.b.NR)
			return
		}
		full := b.ICmp(llvm.IntSLE, g.add(col0, g.c64(nr)), g.c64(n), "")
		g.ifElse("cols", full, func() { panel(p.b.NR) }, func() { panel(p.nEdge) })
	})
	b.RetVoid()
	return fn, ferr
}
