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
	if e.gpu() {
		// No constant tables on the GPU: the code values are computed.
		fm := b.FastMath()
		b.SetFastMath(llvm.FastMathNone)
		defer b.SetFastMath(fm)
		var v llvm.Value
		if op == "Dequant8Signed" || op == "Dequant8Unsigned" {
			f, err := e.mod.Intrinsic("llvm.fptosi.sat", e.i64, e.f64)
			if err != nil {
				return llvm.Value{}, err
			}
			v = k.dynValue(k.min(k.max(b.Call(f, []llvm.Value{x64}, ""), k.c64(0)), k.c64(255)), signed)
		} else {
			lo := k.c64(0)
			for step := int64(128); step >= 1; step /= 2 {
				a, c := k.dynValue(k.addc(lo, step-1), signed), k.dynValue(k.addc(lo, step), signed)
				mid := b.FMul(b.FAdd(a, c, ""), llvm.ConstFloat(e.f64, 0.5), "")
				lo = b.Select(b.FCmp(llvm.FloatOLT, mid, x64, ""), k.addc(lo, step), lo, "")
			}
			v = b.UIToFP(lo, e.f64, "")
		}
		if t.Kind() != llvm.DoubleTypeKind {
			v = b.FPTrunc(v, t, "")
		}
		return v, nil
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

// dynValue computes code value number i (an i64 in 0…255) of the signed
// or unsigned dynamic code as an f64, exactly as ir.DynamicValue builds the
// tables (the caller turns contraction off): the index gives the sign, the
// decade e (from the position p among the positive values: 2^e − 1 ≤ p <
// 2^(e+1) − 1 signed, 2^(e+1) − 2 ≤ p < 2^(e+2) − 2 unsigned) and the step k of K.
func (k *kfn) dynValue(i llvm.Value, signed bool) llvm.Value {
	b, e := k.b, k.e
	ge := func(x llvm.Value, c int64) llvm.Value {
		return b.ZExt(b.ICmp(llvm.IntSGE, x, k.c64(c), ""), e.i64, "")
	}
	var q, neg, zero, one, dec llvm.Value
	if signed {
		pos := b.ICmp(llvm.IntSGE, i, k.c64(128), "")
		p := b.Select(pos, k.sub(i, k.c64(128)), k.sub(k.c64(126), i), "")
		neg = b.ICmp(llvm.IntSLT, i, k.c64(128), "")
		zero = b.ICmp(llvm.IntEQ, i, k.c64(127), "")
		q = k.addc(p, 1) // 1…127: e = ⌊log2 q⌋
		dec = k.c64(0)
		for j := int64(1); j <= 6; j++ {
			dec = k.add(dec, ge(q, 1<<j))
		}
	} else {
		neg = b.ICmp(llvm.IntSLT, i, k.c64(0), "") // never: i ≥ 0
		zero = b.ICmp(llvm.IntEQ, i, k.c64(0), "")
		q = k.addc(i, 1) // p + 2 with p = i − 1: e = ⌊log2 q⌋ − 1
		dec = k.c64(0)
		for j := int64(2); j <= 7; j++ {
			dec = k.add(dec, ge(q, 1<<j))
		}
	}
	one = b.ICmp(llvm.IntEQ, i, k.c64(255), "")
	K := b.Shl(k.c64(1), dec, "")
	if !signed {
		K = b.Shl(K, k.c64(1), "")
	}
	step := k.sub(q, K)
	f64 := e.f64
	f := b.FDiv(b.FAdd(b.SIToFP(step, f64, ""), llvm.ConstFloat(f64, 0.5), ""), b.SIToFP(K, f64, ""), "")
	h := b.FAdd(llvm.ConstFloat(f64, 0.1), b.FMul(llvm.ConstFloat(f64, 0.9), f, ""), "")
	scale := llvm.ConstFloat(f64, ir.DynamicPow10[0])
	for j := 1; j < len(ir.DynamicPow10); j++ {
		scale = b.Select(b.ICmp(llvm.IntEQ, dec, k.c64(int64(j)), ""), llvm.ConstFloat(f64, ir.DynamicPow10[j]), scale, "")
	}
	v := b.FPExt(b.FPTrunc(b.FMul(scale, h, ""), e.f32, ""), f64, "")
	v = b.Select(neg, b.FNeg(v, ""), v, "")
	v = b.Select(zero, llvm.ConstFloat(f64, 0), v, "")
	return b.Select(one, llvm.ConstFloat(f64, 1), v, "")
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
