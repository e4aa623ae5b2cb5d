package lower

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// Block-wise 8-bit quantization (the adam8bit optimizer's states): the
// dynamic code's lookups as element-wise ops, and the per-block absmax.

// dynamic8 computes Quant8Signed/Unsigned (the nearest code value's index:
// a branch-free binary search over the 255 midpoints, in f64, which hold
// them exactly) and Dequant8Signed/Unsigned (a load from the 256 values) of
// a scalar x. The tables are constant arrays (see table).
func (k *kfn) dynamic8(op string, x llvm.Value) (llvm.Value, error) {
	b, e := k.b, k.e
	t := x.Type()
	if t.Kind() == llvm.VectorTypeKind {
		return llvm.Value{}, fmt.Errorf("%s has no vector form", op)
	}
	signed := op == "Quant8Signed" || op == "Dequant8Signed"
	sfx := map[bool]string{true: "s", false: "u"}[signed]
	x64 := x
	if t.Kind() != llvm.DoubleTypeKind {
		x64 = b.FPExt(x, e.f64, "")
	}
	if op == "Dequant8Signed" || op == "Dequant8Unsigned" {
		code := ir.DynamicCode(signed)
		base := b.Call(e.table("dyncode8_"+sfx, code[:]), nil, "")
		f, err := e.mod.Intrinsic("llvm.fptosi.sat", e.i64, e.f64)
		if err != nil {
			return llvm.Value{}, err
		}
		i := k.min(k.max(b.Call(f, []llvm.Value{x64}, ""), k.c64(0)), k.c64(255))
		v := k.loadAt(e.f64, base, i)
		if t.Kind() != llvm.DoubleTypeKind {
			v = b.FPTrunc(v, t, "")
		}
		return v, nil
	}
	mids := ir.DynamicMidpoints(signed)
	base := b.Call(e.table("dynmid8_"+sfx, mids[:]), nil, "")
	lo := k.c64(0)
	for step := int64(128); step >= 1; step /= 2 {
		m := k.loadAt(e.f64, base, k.addc(lo, step-1))
		lo = b.Select(b.FCmp(llvm.FloatOLT, m, x64, ""), k.addc(lo, step), lo, "")
	}
	return b.UIToFP(lo, t, ""), nil
}

// absMaxLast emits AbsMaxLast: per row of the last axis, max |x| from 0
// (NaNs fail the comparison and are skipped), one thread per row.
func (e *Emitter) absMaxLast(name string, g *Group) (*Lowering, error) {
	x := g.Inputs[0].Type
	t, err := e.storageType(x.DType)
	if err != nil || !x.DType.IsFloat() || x.Rank() < 1 {
		return nil, fmt.Errorf("AbsMaxLast of %v: want a float tensor", x)
	}
	C := int64(x.Shape[x.Rank()-1])
	rows := numel(x.Shape[:x.Rank()-1])
	ct := e.computeOf(t)
	err = e.kernel(name, groupParams(g), func(k *kfn) error {
		b := k.b
		k.each(rows, 1, func(row llvm.Value) {
			xr := k.at(t, k.p[0], k.mulc(row, C))
			m := k.variable(ct, llvm.ConstFloat(ct, 0))
			k.loopN(C, func(j llvm.Value) {
				v := k.loadAt(t, xr, j)
				a := b.Select(b.FCmp(llvm.FloatOLT, v, llvm.ConstFloat(ct, 0), ""), b.FNeg(v, ""), v, "")
				cur := k.load(ct, m)
				k.store(b.Select(b.FCmp(llvm.FloatOGT, a, cur, ""), a, cur, ""), ct, m)
			})
			k.storeAt(k.load(ct, m), t, k.p[1], row)
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}}, nil
}
