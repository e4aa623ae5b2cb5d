package passes

import (
	"fmt"

	"gitee.com/gidean/conv-linn/ir"
)

// SGD as torch.optim.SGD(lr, momentum=μ, weight_decay=wd) with dampening 0
// and no Nesterov, the seed's "sgd" (μ = --beta1):
//
//	g = g + wd·p
//	buf = μ·buf + g          (torch's first step sets buf = g: the same, from zeros)
//	p = p − lr·buf           (p − lr·g when μ = 0: no state)
//
// The state "P.momentum_buffer" has P's dtype. In pure bf16 each op rounds
// to bf16 as torch's foreach SGD does (_foreach_add, _foreach_mul_,
// _foreach_add_, _foreach_add_ with alpha −lr), scalars in f32.

func checkSGD(o Options) error {
	if !(o.Beta1 >= 0 && o.Beta1 < 1) {
		return &OptionError{Option: "beta1", Msg: fmt.Sprintf("SGD momentum (--beta1) must be in [0, 1), got %v", o.Beta1)}
	}
	return nil
}

func describeSGD(o Options) string {
	return fmt.Sprintf("momentum %g, dampening 0, L2 weight decay", o.Beta1)
}

func sgdStep(u *updateBuilder, P *ir.Input, p, g string) error {
	b, mu := u.b, u.o.Beta1
	round := func(v string) string { return v }
	pw := u.toCT(p)
	if u.bf16 {
		round = func(v string) string { return u.F(u.R(v)) }
	}
	g = round(b.Add(g, b.Mul(pw, u.toCT(u.wd))))
	d := g
	if mu != 0 {
		buf := u.optState(P, ".momentum_buffer", P.Type)
		d = round(b.Add(round(b.Mul(u.toCT(buf), u.c(mu))), g))
		u.set(buf, d)
	}
	u.set(p, b.Add(pw, b.Mul(d, u.toCT(b.Unary("Neg", u.lr)))))
	return nil
}
