package gpu

import (
	"math"

	"gitee.com/gidean/conv-linn/codegen/kernel"
	"gitee.com/gidean/conv-linn/codegen/llvm"
)

// The GPU has no libm: NVPTX cannot lower llvm.log, llvm.exp on f64 or
// llvm.pow (CUDA's libdevice provides them, and slc ships no CUDA toolkit).
// These are their inline replacements, evaluated in f64 (f32 arguments are
// widened and the result rounded once), scalar or vector, to within a few
// f64 ulps — well inside the f32 results the kernels round them to, and the
// same numbers on a real GPU and in the PTX emulator.

// gpuMath returns the inline replacement of libm intrinsic name, or false
// when name is not one.
func (k *kfn) gpuMath(name string, t llvm.Type, args []llvm.Value) (llvm.Value, bool) {
	wide := func(v llvm.Value) llvm.Value {
		if kernel.ElemKind(v.Type()) == llvm.DoubleTypeKind {
			return v
		}
		return k.B.FPExt(v, k.e.WithElem(v.Type(), k.e.F64), "")
	}
	narrow := func(v llvm.Value) llvm.Value {
		if kernel.ElemKind(t) == llvm.DoubleTypeKind {
			return v
		}
		return k.B.FPTrunc(v, t, "")
	}
	switch name {
	case "llvm.log":
		return narrow(k.log64(wide(args[0]))), true
	case "llvm.exp":
		return narrow(k.exp64(wide(args[0]))), true
	case "llvm.pow":
		return narrow(k.pow64(wide(args[0]), wide(args[1]))), true
	case "llvm.maximum", "llvm.minimum":
		return k.ieeeMinMax(args[0], args[1], name == "llvm.maximum"), true
	}
	return llvm.Value{}, false
}

// ieeeMinMax is IEEE 754-2019 maximum (or minimum) of x and y — NaN when
// either is NaN, +0 above −0 — from compares and selects: NVPTX lowers
// llvm.maximum to max.NaN, which the PTX emulator cannot parse. Equal
// operands (±0) combine their bits, AND for the maximum (+0 wins), OR for
// the minimum (−0 wins).
func (k *kfn) ieeeMinMax(x, y llvm.Value, isMax bool) llvm.Value {
	b, t := k.B, x.Type()
	it := k.e.WithElem(t, k.e.I32)
	if kernel.ElemKind(t) == llvm.DoubleTypeKind {
		it = k.e.WithElem(t, k.e.I64)
	}
	pred := llvm.FloatOGT
	if !isMax {
		pred = llvm.FloatOLT
	}
	r := b.Select(b.FCmp(pred, x, y, ""), x, y, "")
	xi, yi := b.BitCast(x, it, ""), b.BitCast(y, it, "")
	var both llvm.Value
	if isMax {
		both = b.And(xi, yi, "")
	} else {
		both = b.Or(xi, yi, "")
	}
	r = b.Select(b.FCmp(llvm.FloatOEQ, x, y, ""), b.BitCast(both, t, ""), r, "")
	return b.Select(b.FCmp(llvm.FloatUNO, x, y, ""), b.FAdd(x, y, ""), r, "")
}

// log64 is ln x for f64 x: x = 2^e·m with m in [√½, √2), s = (m−1)/(m+1),
// ln m = 2·atanh(s) by its series to s²³ (|s| ≤ 0.172: the next term is below
// 2⁻⁵⁶ relative), plus e·ln 2 in two parts. Subnormals are scaled by 2⁵⁴
// first; ln 0 = −Inf, ln of a negative number or NaN is NaN, ln +Inf = +Inf.
func (k *kfn) log64(x llvm.Value) llvm.Value {
	b, f := k.B, x.Type()
	i64 := k.e.WithElem(f, k.e.I64)
	c := func(v float64) llvm.Value { return k.Splat(f, v) }
	ci := func(v int64) llvm.Value { return k.IntSplat(i64, v) }
	sub := b.FCmp(llvm.FloatOLT, x, c(0x1p-1022), "")
	xs := b.Select(sub, b.FMul(x, c(0x1p54), ""), x, "")
	bias := b.Select(sub, ci(-54), ci(0), "")
	bits := b.BitCast(xs, i64, "")
	e := b.Sub(b.And(b.LShr(bits, ci(52), ""), ci(0x7ff), ""), ci(1023), "")
	m := b.BitCast(b.Or(b.And(bits, ci(0x000fffffffffffff), ""), ci(0x3ff0000000000000), ""), f, "")
	big := b.FCmp(llvm.FloatOGT, m, c(math.Sqrt2), "")
	m = b.Select(big, b.FMul(m, c(0.5), ""), m, "")
	e = b.Add(b.Add(e, b.Select(big, ci(1), ci(0), ""), ""), bias, "")
	s := b.FDiv(b.FSub(m, c(1), ""), b.FAdd(m, c(1), ""), "")
	z := b.FMul(s, s, "")
	p := c(1.0 / 23)
	for n := 21; n >= 1; n -= 2 {
		p = b.FAdd(b.FMul(p, z, ""), c(1/float64(n)), "")
	}
	lm := b.FMul(b.FMul(c(2), s, ""), p, "")
	ef := b.SIToFP(e, f, "")
	const ln2Hi, ln2Lo = 6.93147180369123816490e-01, 1.90821492927058770002e-10
	r := b.FAdd(b.FMul(ef, c(ln2Hi), ""), b.FAdd(lm, b.FMul(ef, c(ln2Lo), ""), ""), "")
	r = b.Select(b.FCmp(llvm.FloatOEQ, x, c(0), ""), c(math.Inf(-1)), r, "")
	r = b.Select(b.FCmp(llvm.FloatOEQ, x, c(math.Inf(1)), ""), x, r, "")
	return b.Select(b.FCmp(llvm.FloatOGE, x, c(0), ""), r, c(math.NaN()), "") // NaN and x < 0 → NaN
}

// exp64 is e^x for f64 x: n = round(x·log₂e), r = x − n·ln 2 in two parts,
// e^r by its Taylor series to r¹⁴/14! (|r| ≤ 0.35: below 2⁻⁵⁷), scaled by 2ⁿ
// in two halves so that subnormal results come out right; overflow is +Inf,
// underflow 0, NaN stays NaN.
func (k *kfn) exp64(x llvm.Value) llvm.Value {
	b, f := k.B, x.Type()
	i64 := k.e.WithElem(f, k.e.I64)
	c := func(v float64) llvm.Value { return k.Splat(f, v) }
	ci := func(v int64) llvm.Value { return k.IntSplat(i64, v) }
	isNaN := b.FCmp(llvm.FloatUNO, x, x, "")
	xc := b.Select(b.FCmp(llvm.FloatOLT, x, c(-746), ""), c(-746), x, "")
	xc = b.Select(b.FCmp(llvm.FloatOGT, xc, c(710), ""), c(710), xc, "")
	xc = b.Select(isNaN, c(0), xc, "")
	const magic = 6755399441055744 // 1.5·2^52: adding it rounds to an integer
	n := b.FSub(b.FAdd(b.FMul(xc, c(math.Log2E), ""), c(magic), ""), c(magic), "")
	const ln2Hi, ln2Lo = 6.93147180369123816490e-01, 1.90821492927058770002e-10
	r := b.FSub(b.FSub(xc, b.FMul(n, c(ln2Hi), ""), ""), b.FMul(n, c(ln2Lo), ""), "")
	p := c(1.0 / 87178291200) // 1/14!
	fact := 87178291200.0
	for i := 13; i >= 1; i-- {
		fact /= float64(i + 1)
		p = b.FAdd(b.FMul(p, r, ""), c(1/fact), "")
	}
	y := b.FAdd(b.FMul(p, r, ""), c(1), "")
	ni := b.FPToSI(n, i64, "")
	n1 := b.AShr(ni, ci(1), "")
	n2 := b.Sub(ni, n1, "")
	pow2 := func(e llvm.Value) llvm.Value {
		return b.BitCast(b.Shl(b.Add(e, ci(1023), ""), ci(52), ""), f, "")
	}
	y = b.FMul(b.FMul(y, pow2(n1), ""), pow2(n2), "")
	y = b.Select(b.FCmp(llvm.FloatOGE, x, c(709.782712893384), ""), c(math.Inf(1)), y, "")
	y = b.Select(b.FCmp(llvm.FloatOLE, x, c(-745.2), ""), c(0), y, "")
	return b.Select(isNaN, x, y, "")
}

// pow64 is x^y for f64 x and y with Go's math.Pow special cases that
// matter for finite inputs: y = 0 or x = 1 gives 1; x > 0 gives
// e^(y·ln x); x = 0 gives 0 (y > 0) or +Inf (y < 0); x < 0 gives ±|x|^y for
// an integer y (negative for an odd one) and NaN otherwise.
func (k *kfn) pow64(x, y llvm.Value) llvm.Value {
	b, f := k.B, x.Type()
	c := func(v float64) llvm.Value { return k.Splat(f, v) }
	ax, _ := k.callIntrinsic("llvm.fabs", f, x)
	mag := k.exp64(b.FMul(y, k.log64(ax), ""))
	ty, _ := k.callIntrinsic("llvm.trunc", f, y)
	isInt := b.FCmp(llvm.FloatOEQ, ty, y, "")
	half, _ := k.callIntrinsic("llvm.trunc", f, b.FMul(y, c(0.5), ""))
	odd := b.FCmp(llvm.FloatONE, b.FMul(half, c(2), ""), y, "")
	neg := b.Select(isInt, b.Select(odd, b.FNeg(mag, ""), mag, ""), c(math.NaN()), "")
	r := b.Select(b.FCmp(llvm.FloatOLT, x, c(0), ""), neg, mag, "")
	zero := b.Select(b.FCmp(llvm.FloatOGT, y, c(0), ""), c(0), c(math.Inf(1)), "")
	r = b.Select(b.FCmp(llvm.FloatOEQ, x, c(0), ""), zero, r, "")
	one := b.Or(b.FCmp(llvm.FloatOEQ, y, c(0), ""), b.FCmp(llvm.FloatOEQ, x, c(1), ""), "")
	return b.Select(one, c(1), r, "")
}

// sincos64 returns cos x and sin x for f64 x (|x| up to about 2²⁰): n =
// round(x·2/π), r = x − n·π/2 in three parts (Cody–Waite), cos r and sin r
// by their Taylor series to r¹⁶ and r¹⁷ (|r| ≤ π/4: below 2⁻⁵⁶), then the
// quadrant n mod 4 picks and signs them. The GPU's RoPE computes its angles
// with it where the CPU reads a table made at compile time.
func (k *kfn) sincos64(x llvm.Value) (cos, sin llvm.Value) {
	b, f := k.B, x.Type()
	i64 := k.e.WithElem(f, k.e.I64)
	c := func(v float64) llvm.Value { return k.Splat(f, v) }
	ci := func(v int64) llvm.Value { return k.IntSplat(i64, v) }
	const magic = 6755399441055744 // 1.5·2^52
	n := b.FSub(b.FAdd(b.FMul(x, c(2/math.Pi), ""), c(magic), ""), c(magic), "")
	// π/2 = p1 + p2 + p3 (fdlibm's pio2_1, pio2_2, pio2_3).
	r := b.FSub(x, b.FMul(n, c(1.57079632673412561417e+00), ""), "")
	r = b.FSub(r, b.FMul(n, c(6.07710050650619224932e-11), ""), "")
	r = b.FSub(r, b.FMul(n, c(2.02226624879595063154e-21), ""), "")
	z := b.FMul(r, r, "")
	// cos r = Σ (−1)^j z^j/(2j)!, sin r = r·Σ (−1)^j z^j/(2j+1)!, j ≤ 8.
	pc, ps := c(0), c(0)
	for j := 8; j >= 0; j-- {
		fc, fs := 1.0, 1.0
		for m := 2; m <= 2*j; m++ {
			fc *= float64(m)
		}
		for m := 2; m <= 2*j+1; m++ {
			fs *= float64(m)
		}
		sign := 1.0
		if j%2 == 1 {
			sign = -1
		}
		pc = b.FAdd(b.FMul(pc, z, ""), c(sign/fc), "")
		ps = b.FAdd(b.FMul(ps, z, ""), c(sign/fs), "")
	}
	cr, sr := pc, b.FMul(ps, r, "")
	q := b.And(b.FPToSI(n, i64, ""), ci(3), "")
	swap := b.ICmp(llvm.IntEQ, b.And(q, ci(1), ""), ci(1), "")
	cosv := b.Select(swap, sr, cr, "")
	sinv := b.Select(swap, cr, sr, "")
	// quadrant 0: (c, s); 1: (−s, c); 2: (−c, −s); 3: (s, −c)
	negCos := b.Or(b.ICmp(llvm.IntEQ, q, ci(1), ""), b.ICmp(llvm.IntEQ, q, ci(2), ""), "")
	negSin := b.ICmp(llvm.IntUGE, q, ci(2), "")
	cos = b.Select(negCos, b.FNeg(cosv, ""), cosv, "")
	sin = b.Select(negSin, b.FNeg(sinv, ""), sinv, "")
	return cos, sin
}
