package gpu

import (
	"math"

	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// BlockRowOnlineExpSum is a row's maximum m and Σ exp(row[l] − m) (f64)
// over the block in one pass over the row (storage type st, n elements),
// the online softmax: each thread keeps its running maximum mₜ and its sum
// sₜ relative to it (a new maximum rescales the sum by exp(m_old − m_new));
// then m = the block's maximum of the mₜ and the sum = Σₜ sₜ·exp(mₜ − m),
// two block reductions. The cross-entropy (SoftmaxCrossEntropy and its
// gradient) reads its logits once for this instead of twice (BlockRowMax,
// then BlockRowExpSum). exp is the lowering's exponential in st's compute
// type; an equal maximum rescales by exactly 1 (so that −Inf rows give
// no NaN from −Inf − −Inf). Every thread of the block must call it.
func (e *Backend) BlockRowOnlineExpSum(k *kernel.Fn, hw kernel.BlockRegs, st llvm.Type, n int64, row llvm.Value, exp func(llvm.Value) (llvm.Value, error)) (m, total llvm.Value, err error) {
	g := e.fn(k)
	b, f64 := g.B, e.F64
	t := e.ComputeOf(st)
	one := llvm.ConstFloat(f64, 1)
	mv := g.Variable(t, llvm.ConstFloat(t, math.Inf(-1)))
	sv := g.Variable(f64, llvm.ConstFloat(f64, 0))
	// factor is exp(from − to) widened to f64, exactly 1 where from = to.
	factor := func(from, to llvm.Value) (llvm.Value, error) {
		x, err := exp(b.FSub(from, to, ""))
		if err != nil {
			return x, err
		}
		return b.Select(b.FCmp(llvm.FloatOEQ, from, to, ""), one, g.Widen(x), ""), nil
	}
	var ferr error
	g.rowStride(hw, g.C64(n), func(l llvm.Value) {
		x := g.LoadAt(st, row, l)
		old := g.Load(t, mv)
		nm, err := g.combine(RedMax, old, x)
		if err != nil {
			ferr = err
			return
		}
		rescale, err := factor(old, nm)
		if err != nil {
			ferr = err
			return
		}
		term, err := factor(x, nm)
		if err != nil {
			ferr = err
			return
		}
		g.Store(b.FAdd(b.FMul(g.Load(f64, sv), rescale, ""), term, ""), f64, sv)
		g.Store(nm, t, mv)
	})
	if ferr != nil {
		return m, total, ferr
	}
	if m, err = g.blockReduce(hw, RedMax, g.Load(t, mv)); err != nil {
		return m, total, err
	}
	// A thread without elements has sₜ = 0 (and mₜ = −Inf): it adds 0.
	f, err := factor(g.Load(t, mv), m)
	if err != nil {
		return m, total, err
	}
	total, err = g.blockReduce(hw, RedSum, b.FMul(g.Load(f64, sv), f, ""))
	return m, total, err
}
