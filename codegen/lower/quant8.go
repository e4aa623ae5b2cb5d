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
	b, e := k.B, k.e
	t := x.Type()
	if t.Kind() == llvm.VectorTypeKind {
		return llvm.Value{}, fmt.Errorf("%s has no vector form", op)
	}
	signed := op == "Quant8Signed" || op == "Dequant8Signed"
	sfx := map[bool]string{true: "s", false: "u"}[signed]
	x64 := x
	if t.Kind() != llvm.DoubleTypeKind {
		x64 = b.FPExt(x, e.F64, "")
	}
	if e.tr.computeConsts {
		// No constant tables on the GPU: the code values are computed.
		fm := b.FastMath()
		b.SetFastMath(llvm.FastMathNone)
		defer b.SetFastMath(fm)
		var v llvm.Value
		if op == "Dequant8Signed" || op == "Dequant8Unsigned" {
			f, err := e.Mod.Intrinsic("llvm.fptosi.sat", e.I64, e.F64)
			if err != nil {
				return llvm.Value{}, err
			}
			v = k.dynValue(k.Min(k.Max(b.Call(f, []llvm.Value{x64}, ""), k.C64(0)), k.C64(255)), signed)
		} else {
			lo := k.C64(0)
			for step := int64(128); step >= 1; step /= 2 {
				a, c := k.dynValue(k.Addc(lo, step-1), signed), k.dynValue(k.Addc(lo, step), signed)
				mid := b.FMul(b.FAdd(a, c, ""), llvm.ConstFloat(e.F64, 0.5), "")
				lo = b.Select(b.FCmp(llvm.FloatOLT, mid, x64, ""), k.Addc(lo, step), lo, "")
			}
			v = b.UIToFP(lo, e.F64, "")
		}
		if t.Kind() != llvm.DoubleTypeKind {
			v = b.FPTrunc(v, t, "")
		}
		return v, nil
	}
	if op == "Dequant8Signed" || op == "Dequant8Unsigned" {
		code := ir.DynamicCode(signed)
		base := b.Call(e.table("dyncode8_"+sfx, code[:]), nil, "")
		f, err := e.Mod.Intrinsic("llvm.fptosi.sat", e.I64, e.F64)
		if err != nil {
			return llvm.Value{}, err
		}
		i := k.Min(k.Max(b.Call(f, []llvm.Value{x64}, ""), k.C64(0)), k.C64(255))
		v := k.LoadAt(e.F64, base, i)
		if t.Kind() != llvm.DoubleTypeKind {
			v = b.FPTrunc(v, t, "")
		}
		return v, nil
	}
	mids := ir.DynamicMidpoints(signed)
	base := b.Call(e.table("dynmid8_"+sfx, mids[:]), nil, "")
	lo := k.C64(0)
	for step := int64(128); step >= 1; step /= 2 {
		m := k.LoadAt(e.F64, base, k.Addc(lo, step-1))
		lo = b.Select(b.FCmp(llvm.FloatOLT, m, x64, ""), k.Addc(lo, step), lo, "")
	}
	return b.UIToFP(lo, t, ""), nil
}

// dynValue computes code value number i (an i64 in 0…255) of the signed
// or unsigned dynamic code as an f64, exactly as ir.DynamicValue builds the
// tables (the caller turns contraction off): the index gives the sign, the
// decade e (from the position p among the positive values: 2^e − 1 ≤ p <
// 2^(e+1) − 1 signed, 2^(e+1) − 2 ≤ p < 2^(e+2) − 2 unsigned) and the step k of K.
func (k *kfn) dynValue(i llvm.Value, signed bool) llvm.Value {
	b, e := k.B, k.e
	ge := func(x llvm.Value, c int64) llvm.Value {
		return b.ZExt(b.ICmp(llvm.IntSGE, x, k.C64(c), ""), e.I64, "")
	}
	var q, neg, zero, one, dec llvm.Value
	if signed {
		pos := b.ICmp(llvm.IntSGE, i, k.C64(128), "")
		p := b.Select(pos, k.Sub(i, k.C64(128)), k.Sub(k.C64(126), i), "")
		neg = b.ICmp(llvm.IntSLT, i, k.C64(128), "")
		zero = b.ICmp(llvm.IntEQ, i, k.C64(127), "")
		q = k.Addc(p, 1) // 1…127: e = ⌊log2 q⌋
		dec = k.C64(0)
		for j := int64(1); j <= 6; j++ {
			dec = k.Add(dec, ge(q, 1<<j))
		}
	} else {
		neg = b.ICmp(llvm.IntSLT, i, k.C64(0), "") // never: i ≥ 0
		zero = b.ICmp(llvm.IntEQ, i, k.C64(0), "")
		q = k.Addc(i, 1) // p + 2 with p = i − 1: e = ⌊log2 q⌋ − 1
		dec = k.C64(0)
		for j := int64(2); j <= 7; j++ {
			dec = k.Add(dec, ge(q, 1<<j))
		}
	}
	one = b.ICmp(llvm.IntEQ, i, k.C64(255), "")
	K := b.Shl(k.C64(1), dec, "")
	if !signed {
		K = b.Shl(K, k.C64(1), "")
	}
	step := k.Sub(q, K)
	f64 := e.F64
	f := b.FDiv(b.FAdd(b.SIToFP(step, f64, ""), llvm.ConstFloat(f64, 0.5), ""), b.SIToFP(K, f64, ""), "")
	h := b.FAdd(llvm.ConstFloat(f64, 0.1), b.FMul(llvm.ConstFloat(f64, 0.9), f, ""), "")
	scale := llvm.ConstFloat(f64, ir.DynamicPow10[0])
	for j := 1; j < len(ir.DynamicPow10); j++ {
		scale = b.Select(b.ICmp(llvm.IntEQ, dec, k.C64(int64(j)), ""), llvm.ConstFloat(f64, ir.DynamicPow10[j]), scale, "")
	}
	v := b.FPExt(b.FPTrunc(b.FMul(scale, h, ""), e.F32, ""), f64, "")
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
	ct := e.ComputeOf(t)
	err = e.kernel(name, groupParams(g), func(k *kfn) error {
		b := k.B
		k.each(rows, 1, func(row llvm.Value) {
			xr := k.At(t, k.P[0], k.Mulc(row, C))
			m := k.Variable(ct, llvm.ConstFloat(ct, 0))
			k.LoopN(C, func(j llvm.Value) {
				v := k.LoadAt(t, xr, j)
				a := b.Select(b.FCmp(llvm.FloatOLT, v, llvm.ConstFloat(ct, 0), ""), b.FNeg(v, ""), v, "")
				cur := k.Load(ct, m)
				k.Store(b.Select(b.FCmp(llvm.FloatOGT, a, cur, ""), a, cur, ""), ct, m)
			})
			k.StoreAt(k.Load(ct, m), t, k.P[1], row)
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}}, nil
}
