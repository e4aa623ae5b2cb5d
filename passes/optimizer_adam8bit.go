package passes

import (
	"fmt"

	"gitee.com/gidean/conv-linn/ir"
)

// Adam8bit is bitsandbytes' Adam8bit(lr, weight_decay) as its kernels
// compute it (Dettmers et al., "8-bit Optimizers via Block-wise
// Quantization", 2022): both moments are stored as 8-bit indices into the
// dynamic tree code (ir.DynamicCode: signed for m, unsigned for v) with one
// f32 absmax per block of 2,048 values. A step dequantizes, updates in
// f32, and requantizes with the new blocks' absmax:
//
//	m = code_s[state1]·absmax1;  v = code_u[state2]·absmax2     (per block)
//	m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g·g
//	absmax1 = max_block |m|;  absmax2 = max_block v
//	p = p + s·m/(√v + c2·ε)       c2 = √(1−β2^t), s = −lr·c2/(1−β1^t)
//	p = p·(1 − lr·wd)             decoupled, after the step (rounded to p's dtype in between)
//	state1 = nearest_s(m/absmax1);  state2 = nearest_u(v/absmax2)
//
// Tensors of fewer than 4,096 elements keep f32 states "P.state1" and
// "P.state2" (bitsandbytes' min_8bit_size) and take the same step without
// quantization. The 8-bit states are "P.state1"/"P.state2" (u8, padded to
// whole blocks: [blocks, 2048], the tail stays 0) and "P.absmax1"/
// "P.absmax2" ([blocks, 1]); nearest is ir.QuantizeDynamic (a block of
// zeros quantizes 0/1). Arithmetic is f32 (f64 for f64 models), also for
// bf16 parameters, which bitsandbytes widens in its kernels.

// Adam8bit's block size and the size below which states stay 32-bit.
const (
	adam8bitBlock   = 2048
	adam8bitMinSize = 4096
)

func describeAdam8bit(o Options) string {
	return fmt.Sprintf("β1=%g, β2=%g, ε=%g, 8-bit block-wise states (blocks of %d, f32 below %d elements), decoupled weight decay after the step",
		o.Beta1, o.Beta2, o.Eps, adam8bitBlock, adam8bitMinSize)
}

func adam8bitStep(u *updateBuilder, P *ir.Input, p, g string) error {
	b, o, ct := u.b, u.o, u.ct
	n := int(P.Type.NumElements())
	one64 := u.c64(1)
	bc1 := b.Sub(one64, b.Op("Pow", nil, u.c64(o.Beta1), u.step))
	c2 := b.Unary("Sqrt", b.Sub(one64, b.Op("Pow", nil, u.c64(o.Beta2), u.step)))
	stepSize := u.toCT(b.Unary("Neg", b.Div(b.Mul(u.lr, c2), bc1)))
	epsC := u.toCT(b.Mul(c2, u.c64(o.Eps)))
	decay := u.toCT(b.Sub(one64, b.Mul(u.lr, u.wd)))
	moments := func(m, v, g string) (string, string) {
		m1 := b.Add(b.Mul(m, u.c(o.Beta1)), b.Mul(g, u.c(1-o.Beta1)))
		v1 := b.Add(b.Mul(v, u.c(o.Beta2)), b.Mul(u.c(1-o.Beta2), b.Mul(g, g)))
		return m1, v1
	}
	step := func(pf, m1, v1 string) string {
		p1 := b.Add(pf, b.Mul(stepSize, b.Div(m1, b.Add(b.Unary("Sqrt", v1), epsC))))
		if P.Type.DType != ct {
			p1 = u.cast(u.cast(p1, P.Type.DType), ct) // bitsandbytes stores p, then decays it
		}
		return b.Mul(p1, decay)
	}
	minSize := o.Adam8bitMinSize
	if minSize <= 0 {
		minSize = adam8bitMinSize
	}
	if n < minSize {
		s1 := u.optState(P, ".state1", ir.Type{DType: ct, Shape: P.Type.Shape})
		s2 := u.optState(P, ".state2", ir.Type{DType: ct, Shape: P.Type.Shape})
		m1, v1 := moments(s1, s2, g)
		u.set(p, step(u.toCT(p), m1, v1))
		u.set(s1, m1)
		u.set(s2, v1)
		return nil
	}
	nb := (n + adam8bitBlock - 1) / adam8bitBlock
	pad := nb*adam8bitBlock - n
	blocks := func(v string) string {
		v = b.Reshape(v, n)
		if pad > 0 {
			v = b.Op("Concat", ir.Attrs{"axis": ir.Int(0)}, v, b.Const(0, ir.T(ct, pad)))
		}
		return b.Reshape(v, nb, adam8bitBlock)
	}
	q1 := u.optState(P, ".state1", ir.T(ir.U8, nb, adam8bitBlock))
	a1 := u.optState(P, ".absmax1", ir.T(ct, nb, 1))
	q2 := u.optState(P, ".state2", ir.T(ir.U8, nb, adam8bitBlock))
	a2 := u.optState(P, ".absmax2", ir.T(ct, nb, 1))
	m := b.Mul(b.Unary("Dequant8Signed", u.toCT(q1)), a1)
	v := b.Mul(b.Unary("Dequant8Unsigned", u.toCT(q2)), a2)
	m1, v1 := moments(m, v, blocks(g))
	am1, am2 := b.Op("AbsMaxLast", nil, m1), b.Op("AbsMaxLast", nil, v1)
	// A block of zeros has absmax 0: divide by 1 there (0/0 would be NaN).
	safe := func(a string) string { return b.Add(a, b.Sub(u.c(1), b.Op("Greater", nil, a, u.c(0)))) }
	quant := func(op, x, a string) string {
		return u.cast(b.Unary(op, b.Div(x, safe(a))), ir.U8)
	}
	// Rounded to p's dtype before it is reshaped back (and its padding cut):
	// the same values as rounding after, but the reshaped copies a large
	// tensor's update makes (1B's lm_head: 250 MiB each in f32) are in
	// p's dtype; with no padding there is no Slice to copy.
	p1 := b.Reshape(u.cast(step(blocks(u.toCT(p)), m1, v1), P.Type.DType), nb*adam8bitBlock)
	if pad > 0 {
		p1 = b.Slice(p1, 0, 0, n)
	}
	u.set(p, b.Reshape(p1, P.Type.Shape...))
	u.set(q1, quant("Quant8Signed", m1, am1))
	u.set(a1, am1)
	u.set(q2, quant("Quant8Unsigned", v1, am2))
	u.set(a2, am2)
	return nil
}
