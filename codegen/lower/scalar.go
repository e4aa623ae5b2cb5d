package lower

import (
	"fmt"
	"math"

	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// Scalar semantics of the element-wise ops, one value at a time. Float ops
// follow ir/opdefs.go exactly as the interpreter does; integer ops wrap.
// Where the interpreter reports a data-dependent error a kernel cannot
// (integer division by zero, a float→int cast of NaN), the kernel gives a
// defined value instead: x/0 = 0 and saturating casts (NaN → 0).

// constValue is a Const's value as an immediate of dtype d.
func (k *kfn) constValue(v float64, d ir.DType) (llvm.Value, error) {
	t, err := k.e.scalarType(d)
	if err != nil {
		return llvm.Value{}, err
	}
	if d.IsFloat() {
		return llvm.ConstFloat(t, v), nil
	}
	tr := math.Trunc(v)
	if math.IsNaN(tr) || tr < -(1<<63) || tr >= 1<<63 {
		return llvm.Value{}, fmt.Errorf("Const %v cannot be %v", v, d)
	}
	iv := int64(tr)
	if d == ir.I32 {
		iv = int64(int32(iv))
	}
	if d == ir.U8 {
		iv = int64(uint8(iv))
	}
	return llvm.ConstInt(t, iv), nil
}

// unaryOp computes op(x) for a value of dtype d.
func (k *kfn) unaryOp(op string, d ir.DType, x llvm.Value) (llvm.Value, error) {
	b := k.B
	if op == "Identity" {
		return x, nil
	}
	if d.IsInt() {
		if op == "Neg" {
			return b.Sub(k.IntSplat(x.Type(), 0), x, ""), nil
		}
		return llvm.Value{}, fmt.Errorf("%s of an integer tensor is not supported by the CPU kernels (Cast to a float type first)", op)
	}
	t := x.Type()
	one := k.Splat(t, 1)
	switch op {
	case "Neg":
		return b.FNeg(x, ""), nil
	case "Exp":
		return k.exp(x)
	case "Log":
		return k.callIntrinsic("llvm.log", t, x)
	case "Sqrt":
		return k.callIntrinsic("llvm.sqrt", t, x)
	case "Rsqrt":
		s, err := k.callIntrinsic("llvm.sqrt", t, x)
		if err != nil {
			return s, err
		}
		return b.FDiv(one, s, ""), nil
	case "Recip":
		return b.FDiv(one, x, ""), nil
	case "Sigmoid":
		return k.sigmoid(x)
	case "Silu":
		s, err := k.sigmoid(x)
		if err != nil {
			return s, err
		}
		return b.FMul(x, s, ""), nil
	case "Quant8Signed", "Quant8Unsigned", "Dequant8Signed", "Dequant8Unsigned":
		return k.dynamic8(op, x)
	}
	return llvm.Value{}, fmt.Errorf("no CPU kernel for element-wise op %q", op)
}

// sigmoid is 1/(1+e^-x) for x ≥ 0 and e^x/(1+e^x) otherwise, as the
// interpreter computes it, so that neither branch overflows.
func (k *kfn) sigmoid(x llvm.Value) (llvm.Value, error) {
	b, t := k.B, x.Type()
	ax, err := k.callIntrinsic("llvm.fabs", t, x)
	if err != nil {
		return ax, err
	}
	e, err := k.exp(b.FNeg(ax, ""))
	if err != nil {
		return e, err
	}
	den := b.FAdd(k.Splat(t, 1), e, "")
	pos := b.FDiv(k.Splat(t, 1), den, "")
	neg := b.FDiv(e, den, "")
	return b.Select(b.FCmp(llvm.FloatOGE, x, k.Splat(t, 0), ""), pos, neg, ""), nil
}

// exp is e^x: an inline evaluation for f32 and vectors of f32 (so loops
// vectorize, and a vector lane computes what the scalar chain does), libm's
// for f64.
func (k *kfn) exp(x llvm.Value) (llvm.Value, error) {
	if kernel.ElemKind(x.Type()) != llvm.FloatTypeKind {
		return k.callIntrinsic("llvm.exp", x.Type(), x)
	}
	return k.expf(x), nil
}

// expf evaluates e^x for f32 x (a scalar or a vector of f32): n =
// round(x·log2 e), r = x − n·ln 2 in two parts (Cody–Waite), e^r by
// Cephes' degree-6 polynomial on |r| ≤ ½ ln 2, and the result scaled by 2^n
// in two halves so that results down to the subnormals and up to overflow
// come out right. NaN gives NaN, large x +Inf, very negative x 0. Accuracy
// is within 2 ulp of the correctly rounded value.
func (k *kfn) expf(x llvm.Value) llvm.Value {
	b, f := k.B, x.Type()
	i32 := k.e.I32
	if f.Kind() == llvm.VectorTypeKind {
		i32 = llvm.VectorType(i32, f.VectorSize())
	}
	c := func(v float64) llvm.Value { return k.Splat(f, v) }
	ci := func(v int64) llvm.Value { return k.IntSplat(i32, v) }
	isNaN := b.FCmp(llvm.FloatUNO, x, x, "")
	xc := b.Select(b.FCmp(llvm.FloatOLT, x, c(-104), ""), c(-104), x, "")
	xc = b.Select(b.FCmp(llvm.FloatOGT, xc, c(89), ""), c(89), xc, "")
	xc = b.Select(isNaN, c(0), xc, "")
	const magic = 12582912 // 1.5·2^23: adding it rounds to an integer
	t := b.FAdd(b.FMul(xc, c(math.Log2E), ""), c(magic), "")
	n := b.FSub(t, c(magic), "")
	r := b.FSub(xc, b.FMul(n, c(0.693359375), ""), "")
	r = b.FSub(r, b.FMul(n, c(-2.12194440e-4), ""), "")
	p := c(1.9875691500e-4)
	for _, coef := range []float64{1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1} {
		p = b.FAdd(b.FMul(p, r, ""), c(coef), "")
	}
	y := b.FAdd(b.FAdd(b.FMul(b.FMul(p, r, ""), r, ""), r, ""), c(1), "")
	ni := b.FPToSI(n, i32, "")
	n1 := b.AShr(ni, ci(1), "")
	n2 := b.Sub(ni, n1, "")
	pow2 := func(e llvm.Value) llvm.Value {
		return b.BitCast(b.Shl(b.Add(e, ci(127), ""), ci(23), ""), f, "")
	}
	y = b.FMul(b.FMul(y, pow2(n1), ""), pow2(n2), "")
	return b.Select(isNaN, x, y, "")
}

// binaryOp computes op(x, y) for values of dtype d.
func (k *kfn) binaryOp(op string, d ir.DType, x, y llvm.Value) (llvm.Value, error) {
	b, t := k.B, x.Type()
	if d.IsInt() {
		zero, one := k.IntSplat(t, 0), k.IntSplat(t, 1)
		switch op {
		case "Add":
			return b.Add(x, y, ""), nil
		case "Sub":
			return b.Sub(x, y, ""), nil
		case "Mul":
			return b.Mul(x, y, ""), nil
		case "Div":
			// Truncated division; x/0 = 0 and x/-1 = -x (wrapping), the
			// two cases where a hardware divide would trap.
			isZero := b.ICmp(llvm.IntEQ, y, zero, "")
			isM1 := b.ICmp(llvm.IntEQ, y, k.IntSplat(t, -1), "")
			safe := b.Select(b.Or(isZero, isM1, ""), one, y, "")
			q := b.SDiv(x, safe, "")
			q = b.Select(isM1, b.Sub(zero, x, ""), q, "")
			return b.Select(isZero, zero, q, ""), nil
		case "Max":
			return b.Select(b.ICmp(llvm.IntSGT, x, y, ""), x, y, ""), nil
		case "Min":
			return b.Select(b.ICmp(llvm.IntSLT, x, y, ""), x, y, ""), nil
		case "Greater":
			return b.Select(b.ICmp(llvm.IntSGT, x, y, ""), one, zero, ""), nil
		}
		return llvm.Value{}, fmt.Errorf("%s of integer tensors is not supported by the CPU kernels", op)
	}
	switch op {
	case "Add":
		return b.FAdd(x, y, ""), nil
	case "Sub":
		return b.FSub(x, y, ""), nil
	case "Mul":
		return b.FMul(x, y, ""), nil
	case "Div":
		return b.FDiv(x, y, ""), nil
	case "Pow":
		return k.callIntrinsic("llvm.pow", t, x, y)
	case "Max":
		// IEEE maximum: NaN if either is NaN, +0 above -0 (Go's math.Max).
		return k.callIntrinsic("llvm.maximum", t, x, y)
	case "Min":
		return k.callIntrinsic("llvm.minimum", t, x, y)
	case "Greater":
		return b.Select(b.FCmp(llvm.FloatOGT, x, y, ""), k.Splat(t, 1), k.Splat(t, 0), ""), nil
	}
	return llvm.Value{}, fmt.Errorf("no CPU kernel for element-wise op %q", op)
}

// castOp converts x from dtype from to dtype to: floats round to nearest
// even, ints convert exactly (or wrap), float→int truncates toward zero and
// saturates (NaN → 0).
func (k *kfn) castOp(from, to ir.DType, x llvm.Value) (llvm.Value, error) {
	b := k.B
	t, err := k.e.scalarType(to)
	if err != nil {
		return llvm.Value{}, err
	}
	if _, err := k.e.scalarType(from); err != nil {
		return llvm.Value{}, err
	}
	fs, ts := from.Size(), to.Size()
	switch {
	case from == to:
		return x, nil
	case from.IsFloat() && to.IsFloat() && x.Type().Kind() == t.Kind():
		return x, nil // bf16 ↔ f32 compute in f32; a bf16 result is rounded by the chain
	case from.IsFloat() && to.IsFloat() && x.Type().Kind() == llvm.VectorTypeKind && x.Type().ElementType().Kind() == t.Kind():
		return x, nil
	case from.IsFloat() && to.IsFloat():
		if ts > fs {
			return b.FPExt(x, t, ""), nil
		}
		return b.FPTrunc(x, t, ""), nil
	case from == ir.U8 && to.IsFloat():
		return b.UIToFP(x, t, ""), nil
	case from.IsInt() && to.IsFloat():
		return b.SIToFP(x, t, ""), nil
	case from.IsFloat() && to == ir.U8:
		f, err := k.e.Mod.Intrinsic("llvm.fptoui.sat", t, x.Type())
		if err != nil {
			return llvm.Value{}, err
		}
		return b.Call(f, []llvm.Value{x}, ""), nil
	case from.IsFloat() && to.IsInt():
		f, err := k.e.Mod.Intrinsic("llvm.fptosi.sat", t, x.Type())
		if err != nil {
			return llvm.Value{}, err
		}
		return b.Call(f, []llvm.Value{x}, ""), nil
	default:
		if ts > fs && from == ir.U8 {
			return b.ZExt(x, t, ""), nil
		}
		if ts > fs {
			return b.SExt(x, t, ""), nil
		}
		return b.Trunc(x, t, ""), nil
	}
}
