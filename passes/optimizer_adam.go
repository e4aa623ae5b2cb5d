package passes

import (
	"fmt"

	"gitee.com/gidean/conv-linn/ir"
)

// Adam and AdamW as PyTorch computes them (single-tensor torch.optim.Adam and
// AdamW of PyTorch 1.13 in f32/f64):
//
//	adamw: p = p·(1 − lr·wd)             decoupled weight decay (Loshchilov & Hutter)
//	adam:  g = g + wd·p                  L2 decay into the gradient (the seed's default Adam)
//	m = β1·m + (1−β1)·g
//	v = β2·v + (1−β2)·g·g
//	bc1 = 1 − β1^step; bc2 = 1 − β2^step
//	p = p − (lr/bc1)·m / (√v/√bc2 + ε)
//
// States "P.exp_avg" and "P.exp_avg_sq" have P's dtype (torch.zeros_like).
// Pure bf16 follows torch ≥ 2.1's foreach kernels (the seed's CUDA default),
// each op in f32 on widened values and rounded once to bf16 (R):
//
//	adam:  g = R(g + wd·p)               _foreach_add(grads, params, alpha=wd)
//	adamw: p = R(p·(1 − lr·wd))          _foreach_mul_
//	m = R(m + (1−β1)·(g − m))            _foreach_lerp_ (weight 1−β1 < ½)
//	v = R(R(v·β2) + (1−β2)·g·g)          _foreach_mul_, _foreach_addcmul_
//	d = R(R(R(√v) / √bc2) + ε)           _foreach_sqrt, _foreach_div_, _foreach_add_
//	p = R(p − (lr/bc1)·m/d)              _foreach_addcdiv_
//
// This is tools/torchref's Bf16AdamW and Bf16Adam. (PyTorch 1.13's CPU
// kernels differ: they round every Python scalar to bf16 first, so that
// v·0.999 becomes v·0.99609375.)

// checkAdam checks β1, β2 and ε.
func checkAdam(o Options) error {
	for _, c := range []struct {
		name string
		v    float64
	}{{"beta1", o.Beta1}, {"beta2", o.Beta2}} {
		if !(c.v >= 0 && c.v < 1) {
			return fmt.Errorf("Adam %s must be in [0, 1), got %v", c.name, c.v)
		}
	}
	if !(o.Eps >= 0) || !isFinite(o.Eps) {
		return fmt.Errorf("Adam eps must be finite and >= 0, got %v", o.Eps)
	}
	return nil
}

func describeAdam(decay string) func(o Options) string {
	return func(o Options) string {
		return fmt.Sprintf("β1=%g, β2=%g, ε=%g, %s", o.Beta1, o.Beta2, o.Eps, decay)
	}
}

// adamStep is Adam's (l2) or AdamW's step of one parameter.
func adamStep(l2 bool) func(u *updateBuilder, P *ir.Input, p, g string) error {
	return func(u *updateBuilder, P *ir.Input, p, g string) error {
		b, o := u.b, u.o
		m := u.optState(P, ".exp_avg", P.Type)
		v := u.optState(P, ".exp_avg_sq", P.Type)
		one64 := u.c64(1)
		bc1 := b.Sub(one64, b.Op("Pow", nil, u.c64(o.Beta1), u.step))
		bc2 := b.Sub(one64, b.Op("Pow", nil, u.c64(o.Beta2), u.step))
		if u.bf16 {
			return adamBF16(u, l2, p, g, m, v, bc1, bc2)
		}
		pw := u.toCT(p)
		if l2 {
			g = b.Add(g, b.Mul(pw, u.toCT(u.wd)))
		} else {
			pw = b.Mul(pw, u.toCT(b.Sub(one64, b.Mul(u.lr, u.wd))))
		}
		m1 := b.Add(b.Mul(u.toCT(m), u.c(o.Beta1)), b.Mul(g, u.c(1-o.Beta1)))
		v1 := b.Add(b.Mul(u.toCT(v), u.c(o.Beta2)), b.Mul(b.Mul(g, u.c(1-o.Beta2)), g))
		denom := b.Add(b.Div(b.Unary("Sqrt", v1), u.toCT(b.Unary("Sqrt", bc2))), u.c(o.Eps))
		p1 := b.Sub(pw, b.Div(b.Mul(m1, u.toCT(b.Div(u.lr, bc1))), denom))
		u.set(p, p1)
		u.set(m, m1)
		u.set(v, v1)
		return nil
	}
}

// adamBF16 is the step in pure bf16, rounding as torch's foreach kernels.
func adamBF16(u *updateBuilder, l2 bool, p, g, m, v, bc1, bc2 string) error {
	b, o, F, R := u.b, u.o, u.F, u.R
	if 1-o.Beta1 >= 0.5 {
		return fmt.Errorf("bf16 Adam: β1 %v < 0.5 takes lerp's other branch, not built", o.Beta1)
	}
	c := func(v float64) string { return b.Const(v, ir.Type{DType: ir.F32}) }
	pw := F(p)
	if l2 {
		g = F(R(b.Add(g, b.Mul(F(u.wd), pw))))
	} else {
		pw = F(R(b.Mul(pw, F(b.Sub(u.c64(1), b.Mul(u.lr, u.wd))))))
	}
	mf := F(m)
	m1 := R(b.Add(mf, b.Mul(c(1-o.Beta1), b.Sub(g, mf))))
	v1 := R(b.Add(F(R(b.Mul(F(v), c(o.Beta2)))), b.Mul(c(1-o.Beta2), b.Mul(g, g))))
	denom := F(R(b.Add(F(R(b.Div(F(R(b.Unary("Sqrt", F(v1)))), F(b.Unary("Sqrt", bc2))))), c(o.Eps))))
	p1 := R(b.Add(pw, b.Mul(F(b.Unary("Neg", b.Div(u.lr, bc1))), b.Div(F(m1), denom))))
	u.set(p, p1)
	u.set(m, m1)
	u.set(v, v1)
	return nil
}
