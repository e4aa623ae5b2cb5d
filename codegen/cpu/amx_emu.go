package cpu

import (
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// emuTiles is the emulated tile back end (see amx.go): each instruction is
// a call to an internal function of the kernel's module, in plain IR,
// acting on the tile area's state (a copy of the loaded 64-byte
// configuration: palette_id at 0, colsb[i] at 16+2i, rows[i] at 48+i; all
// zero when no configuration is loaded) and its eight 1 KB tile registers.
// Where the hardware raises #GP or #UD (a palette other than 0 or 1, a
// tile over 16 rows or 64 bytes per row, an unconfigured tile used, shapes
// that do not fit tdpbf16ps) the emulation executes llvm.trap, so a kernel
// that breaks the rules fails loudly in the tests.
type emuTiles struct {
	e                                  *emitter
	ldcfg, rel, zero_, ld, st, dp, trp llvm.Function
	memcpy, memset, fma                llvm.Function
}

func newEmuTiles(e *emitter, name string) (*emuTiles, error) {
	t := &emuTiles{e: e}
	var err error
	if t.memcpy, err = e.Mod.Intrinsic("llvm.memcpy", e.Ptr, e.Ptr, e.I64); err != nil {
		return nil, err
	}
	if t.memset, err = e.Mod.Intrinsic("llvm.memset", e.Ptr, e.I64); err != nil {
		return nil, err
	}
	if t.fma, err = e.Mod.Intrinsic("llvm.fma", e.F32); err != nil {
		return nil, err
	}
	if t.trp, err = e.Mod.Intrinsic("llvm.trap"); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		fn     *llvm.Function
		suffix string
		params []llvm.Type
		body   func(fn llvm.Function)
	}{
		{&t.ldcfg, "ldtilecfg", []llvm.Type{e.Ptr, e.Ptr}, t.emitConfig},
		{&t.rel, "tilerelease", []llvm.Type{e.Ptr}, t.emitRelease},
		{&t.zero_, "tilezero", []llvm.Type{e.Ptr, e.I64}, t.emitZero},
		{&t.ld, "tileloadd", []llvm.Type{e.Ptr, e.I64, e.Ptr, e.I64}, t.emitLoad},
		{&t.st, "tilestored", []llvm.Type{e.Ptr, e.I64, e.Ptr, e.I64}, t.emitStore},
		{&t.dp, "tdpbf16ps", []llvm.Type{e.Ptr, e.I64, e.I64, e.I64}, t.emitDot},
	} {
		fn, err := e.newFunction(name+".tile."+f.suffix, f.params, true)
		if err != nil {
			return nil, err
		}
		f.body(fn)
		e.B.RetVoid()
		*f.fn = fn
	}
	return t, nil
}

func (t *emuTiles) c(n int) llvm.Value { return t.e.C64(int64(n)) }

func (t *emuTiles) config(tr, cfg llvm.Value) { t.e.B.Call(t.ldcfg, []llvm.Value{tr, cfg}, "") }
func (t *emuTiles) release(tr llvm.Value)     { t.e.B.Call(t.rel, []llvm.Value{tr}, "") }
func (t *emuTiles) zero(tr llvm.Value, n int) { t.e.B.Call(t.zero_, []llvm.Value{tr, t.c(n)}, "") }
func (t *emuTiles) load(tr llvm.Value, n int, base, stride llvm.Value) {
	t.e.B.Call(t.ld, []llvm.Value{tr, t.c(n), base, stride}, "")
}
func (t *emuTiles) store(tr llvm.Value, n int, base, stride llvm.Value) {
	t.e.B.Call(t.st, []llvm.Value{tr, t.c(n), base, stride}, "")
}
func (t *emuTiles) dot(tr llvm.Value, c, a, b int) {
	t.e.B.Call(t.dp, []llvm.Value{tr, t.c(c), t.c(a), t.c(b)}, "")
}

// byteAt is p + off bytes.
func (t *emuTiles) byteAt(p, off llvm.Value) llvm.Value {
	return t.e.B.GEP(t.e.Ctx.Int8Type(), p, []llvm.Value{off}, "")
}

func (t *emuTiles) state(tr llvm.Value) llvm.Value { return t.byteAt(tr, t.c(tileStateOff)) }

// tile is the address of tile register n's 16×64 bytes.
func (t *emuTiles) tile(tr, n llvm.Value) llvm.Value {
	return t.byteAt(tr, t.e.Add(t.c(tileDataOff), t.e.Mul(n, t.c(1024))))
}

// shape returns the configured rows and bytes per row of tile n (i64).
func (t *emuTiles) shape(tr, n llvm.Value) (rows, colsb llvm.Value) {
	e := t.e
	st := t.state(tr)
	rows = e.B.ZExt(e.load(e.Ctx.Int8Type(), t.byteAt(st, e.Add(t.c(48), n)), 1), e.I64, "rows")
	colsb = e.B.ZExt(e.load(e.I16, t.byteAt(st, e.Add(t.c(16), e.Mul(n, t.c(2)))), 2), e.I64, "colsb")
	return rows, colsb
}

// trapIf executes llvm.trap when bad holds (the hardware's #GP or #UD).
func (t *emuTiles) trapIf(bad llvm.Value) {
	t.e.ifElse("fault", bad, func() { t.e.B.Call(t.trp, nil, "") }, nil)
}

// configured traps unless tile n is configured (rows and colsb non-zero:
// the hardware's #UD for an unconfigured tile) and returns its shape.
func (t *emuTiles) configured(tr, n llvm.Value) (rows, colsb llvm.Value) {
	b := t.e.B
	rows, colsb = t.shape(tr, n)
	t.trapIf(b.Or(b.ICmp(llvm.IntEQ, rows, t.c(0), ""), b.ICmp(llvm.IntEQ, colsb, t.c(0), ""), ""))
	return rows, colsb
}

func (t *emuTiles) set(p llvm.Value, n llvm.Value) {
	t.e.B.Call(t.memset, []llvm.Value{p, llvm.ConstInt(t.e.Ctx.Int8Type(), 0), n, llvm.ConstInt(t.e.I1, 0)}, "")
}

func (t *emuTiles) copy(dst, src, n llvm.Value) {
	t.e.B.Call(t.memcpy, []llvm.Value{dst, src, n, llvm.ConstInt(t.e.I1, 0)}, "")
}

// emitConfig: ldtilecfg. Palette 0 is the init state (nothing
// configured); palette 1 takes the rows and colsb of the eight tiles
// (rows ≤ 16, colsb ≤ 64, else #GP); other palettes #GP. Loading a
// configuration zeroes every tile.
func (t *emuTiles) emitConfig(fn llvm.Function) {
	e, b := t.e, t.e.B
	tr, cfg := fn.Param(0), fn.Param(1)
	st := t.state(tr)
	t.copy(st, cfg, t.c(64))
	pal := e.load(e.Ctx.Int8Type(), st, 1)
	t.trapIf(b.ICmp(llvm.IntUGT, pal, llvm.ConstInt(e.Ctx.Int8Type(), 1), ""))
	e.ifElse("init", b.ICmp(llvm.IntEQ, pal, llvm.ConstInt(e.Ctx.Int8Type(), 0), ""), func() { t.set(st, t.c(64)) }, nil)
	e.forLoop("t", t.c(0), t.c(8), 1, func(n llvm.Value) {
		rows, colsb := t.shape(tr, n)
		t.trapIf(b.Or(b.ICmp(llvm.IntUGT, rows, t.c(16), ""), b.ICmp(llvm.IntUGT, colsb, t.c(64), ""), ""))
	})
	t.set(t.tile(tr, t.c(0)), t.c(8*1024))
}

// emitRelease: tilerelease returns to the init state, tiles zeroed.
func (t *emuTiles) emitRelease(fn llvm.Function) {
	tr := fn.Param(0)
	t.set(t.state(tr), t.c(64))
	t.set(t.tile(tr, t.c(0)), t.c(8*1024))
}

// emitZero: tilezero zeroes the whole register.
func (t *emuTiles) emitZero(fn llvm.Function) {
	tr, n := fn.Param(0), fn.Param(1)
	t.configured(tr, n)
	t.set(t.tile(tr, n), t.c(1024))
}

// emitLoad: tileloadd reads colsb bytes of each of the configured rows
// from base + row·stride; the rest of each row and the rows past them
// become zero.
func (t *emuTiles) emitLoad(fn llvm.Function) {
	e, b := t.e, t.e.B
	tr, n, base, stride := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3)
	rows, colsb := t.configured(tr, n)
	reg := t.tile(tr, n)
	e.forLoop("r", t.c(0), t.c(16), 1, func(r llvm.Value) {
		row := t.byteAt(reg, e.Mul(r, t.c(64)))
		e.ifElse("in", b.ICmp(llvm.IntULT, r, rows, ""), func() {
			t.copy(row, t.byteAt(base, e.Mul(r, stride)), colsb)
			t.set(t.byteAt(row, colsb), e.Sub(t.c(64), colsb))
		}, func() { t.set(row, t.c(64)) })
	})
}

// emitStore: tilestored writes colsb bytes of each configured row to
// base + row·stride.
func (t *emuTiles) emitStore(fn llvm.Function) {
	e := t.e
	tr, n, base, stride := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3)
	rows, colsb := t.configured(tr, n)
	reg := t.tile(tr, n)
	e.forLoop("r", t.c(0), rows, 1, func(r llvm.Value) {
		t.copy(t.byteAt(base, e.Mul(r, stride)), t.byteAt(reg, e.Mul(r, t.c(64))), colsb)
	})
}

// flush returns the float v with a denormal replaced by a zero of its
// sign: tdpbf16ps treats denormal inputs as zero (DAZ) and flushes
// denormal results to zero (FTZ).
func (t *emuTiles) flush(v llvm.Value) llvm.Value {
	e, b := t.e, t.e.B
	u := b.BitCast(v, e.I32, "")
	den := b.ICmp(llvm.IntEQ, b.And(u, llvm.ConstInt(e.I32, 0x7f800000), ""), llvm.ConstInt(e.I32, 0), "")
	return b.Select(den, b.BitCast(b.And(u, llvm.ConstInt(e.I32, -0x80000000), ""), e.F32, ""), v, "")
}

// emitDot: tdpbf16ps c, a, b as the SDM defines it. #UD unless all three
// tiles are configured, a and c have the same rows, a's pairs per row
// (colsb/4) equal b's rows, and b and c have the same colsb. Then for
// each configured row m and column n of c, and each pair k of a's row,
// in order:
//
//	acc = fma(A[m].bf16[2k],   B[k].bf16[2n],   acc)
//	acc = fma(A[m].bf16[2k+1], B[k].bf16[2n+1], acc)
//
// with acc starting at C[m][n], every input denormal taken as zero and
// every result denormal flushed to zero, round to nearest even (the fma
// is exact here but for the rounding of the sum: bf16 products fit in a
// float's significand). The bytes of c past its colsb, and its rows past
// its rows, become zero.
func (t *emuTiles) emitDot(fn llvm.Function) {
	e, b := t.e, t.e.B
	tr, cn, an, bn := fn.Param(0), fn.Param(1), fn.Param(2), fn.Param(3)
	cr, cc := t.configured(tr, cn)
	ar, ac := t.configured(tr, an)
	br, bc := t.configured(tr, bn)
	ne := func(x, y llvm.Value) llvm.Value { return b.ICmp(llvm.IntNE, x, y, "") }
	pairs := b.LShr(ac, t.c(2), "pairs")
	t.trapIf(b.Or(b.Or(ne(ar, cr), ne(pairs, br), ""), ne(bc, cc), ""))
	creg, areg, breg := t.tile(tr, cn), t.tile(tr, an), t.tile(tr, bn)
	half := func(reg, row, idx llvm.Value) llvm.Value {
		h := e.load(e.I16, t.byteAt(reg, e.Add(e.Mul(row, t.c(64)), e.Mul(idx, t.c(2)))), 2)
		return t.flush(e.WidenBF16(h))
	}
	e.forLoop("m", t.c(0), cr, 1, func(m llvm.Value) {
		e.forLoop("n", t.c(0), b.LShr(cc, t.c(2), ""), 1, func(n llvm.Value) {
			at := t.byteAt(creg, e.Add(e.Mul(m, t.c(64)), e.Mul(n, t.c(4))))
			acc0 := e.load(e.F32, at, 4)
			pre := b.InsertBlock()
			loop := e.F.AppendBasicBlock("k")
			exit := e.F.AppendBasicBlock("k.end")
			b.CondBr(b.ICmp(llvm.IntULT, t.c(0), pairs, ""), loop, exit)
			b.SetInsertPointAtEnd(loop)
			k := b.Phi(e.I64, "k")
			acc := b.Phi(e.F32, "acc")
			x := t.flush(acc)
			for h := 0; h < 2; h++ {
				av := half(areg, m, e.Add(e.Mul(k, t.c(2)), t.c(h)))
				bv := half(breg, k, e.Add(e.Mul(n, t.c(2)), t.c(h)))
				x = t.flush(b.Call(t.fma, []llvm.Value{av, bv, x}, ""))
			}
			next := e.Add(k, t.c(1))
			b.CondBr(b.ICmp(llvm.IntULT, next, pairs, ""), loop, exit)
			k.AddIncoming([]llvm.Value{t.c(0), next}, []llvm.BasicBlock{pre, loop})
			acc.AddIncoming([]llvm.Value{acc0, x}, []llvm.BasicBlock{pre, loop})
			b.SetInsertPointAtEnd(exit)
			res := b.Phi(e.F32, "")
			res.AddIncoming([]llvm.Value{acc0, x}, []llvm.BasicBlock{pre, loop})
			e.store(res, at, 4)
		})
		row := t.byteAt(creg, e.Mul(m, t.c(64)))
		t.set(t.byteAt(row, cc), e.Sub(t.c(64), cc))
	})
	e.forLoop("z", cr, t.c(16), 1, func(m llvm.Value) { t.set(t.byteAt(creg, e.Mul(m, t.c(64))), t.c(64)) })
}
