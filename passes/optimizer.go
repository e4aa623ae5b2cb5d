package passes

import (
	"fmt"
	"math"

	"gitee.com/gidean/conv-linn/ir"
)

// clipEps is the 1e-6 that torch.nn.utils.clip_grad_norm_ adds to the norm.
const clipEps = 1e-6

// optimizer is the "optimizer" pass: it builds the "update" graph, one AdamW
// step over the gradients accumulated by train_step, exactly as PyTorch 1.13's
// torch.optim.AdamW (single-tensor path) after clip_grad_norm_:
//
//	grad_norm = √Σ_P ‖g_P‖²                              (output "grad_norm")
//	coef      = min(1, max_grad_norm / (grad_norm + 1e-6)); g = g·coef
//	p = p·(1 − lr·wd)
//	m = β1·m + (1−β1)·g
//	v = β2·v + (1−β2)·g·g
//	bc1 = 1 − β1^step; bc2 = 1 − β2^step
//	p = p − (lr/bc1)·m / (√v/√bc2 + ε)
//
// and the accumulators "P.grad" are reset to zero. Inputs, per trainable P: P,
// "P.grad" (GradAccum), "P.exp_avg" and "P.exp_avg_sq" (OptState, zeros); then
// the Scalars "lr", "step" (1-based, as a float), "weight_decay" and
// "max_grad_norm" (+Inf: no clipping). β1, β2 and ε are Consts from Options.
// The Scalars are f64 and the per-step scalars (1 − lr·wd, lr/bc1, √bc2) are
// computed in f64 and rounded once to the arithmetic's dtype, as PyTorch
// computes them in Python floats: β2 rounded to f32 would put a 1e-5 relative
// error into 1 − β2^step. Tensor arithmetic is f32 (f64 when the parameters
// are f64); the optimizer state has its parameter's dtype, as
// torch.zeros_like(p).
func optimizer(s *State) error {
	m := s.Module
	ts := m.Graph("train_step")
	if ts == nil {
		s.Note("optimizer: no train_step graph: no update graph")
		return nil
	}
	if m.Graph("update") != nil {
		return fmt.Errorf("the module already has an \"update\" graph")
	}
	o := s.Options
	for _, c := range []struct {
		name string
		v    float64
	}{{"beta1", o.Beta1}, {"beta2", o.Beta2}} {
		if !(c.v >= 0 && c.v < 1) {
			return fmt.Errorf("AdamW %s must be in [0, 1), got %v", c.name, c.v)
		}
	}
	if !(o.Eps >= 0) || !isFinite(o.Eps) {
		return fmt.Errorf("AdamW eps must be finite and >= 0, got %v", o.Eps)
	}

	var params []*ir.Input
	ct := ir.F32
	for _, acc := range ts.InputsWithRole(ir.GradAccum) {
		p := ts.Input(acc.Of)
		if p == nil {
			return fmt.Errorf("train_step: accumulator %q belongs to no input", acc.Name)
		}
		params = append(params, p)
		if p.Type.DType == ir.F64 {
			ct = ir.F64
		}
	}

	b := ir.NewBuilder("update")
	st := make([]adamState, len(params))
	addState := func(name string, t ir.Type, role ir.Role, of string) string {
		v := b.AddInput(name, t, role, &ir.Init{Kind: ir.InitZeros})
		if v != "" {
			b.G.Input(v).Of = of
		}
		return v
	}
	for i, p := range params {
		st[i].p = b.AddInput(p.Name, p.Type, ir.Param, p.Init.Clone())
		st[i].g = addState(p.Name+".grad", p.Type, ir.GradAccum, p.Name)
		st[i].m = addState(p.Name+".exp_avg", p.Type, ir.OptState, p.Name)
		st[i].v = addState(p.Name+".exp_avg_sq", p.Type, ir.OptState, p.Name)
	}
	scalar := func(name string) string { return b.AddInput(name, ir.Type{DType: ir.F64}, ir.Scalar, nil) }
	lr, step, wd, maxNorm := scalar("lr"), scalar("step"), scalar("weight_decay"), scalar("max_grad_norm")
	c := func(v float64) string { return b.Const(v, ir.Type{DType: ct}) }
	c64 := func(v float64) string { return b.Const(v, ir.Type{DType: ir.F64}) }
	toCT := func(v string) string {
		if b.Type(v).DType == ct {
			return v
		}
		return b.Op("Cast", ir.Attrs{"to": ir.String(ct.String())}, v)
	}
	if err := b.Err(); err != nil {
		return err
	}

	if allBF16(params) {
		return bf16Update(s, b, params, st, lr, step, wd, maxNorm)
	}

	// Global-norm clipping.
	grads := make([]string, len(params))
	var sumsq string
	for i := range params {
		grads[i] = toCT(st[i].g)
		sq := sumSquares(b, grads[i])
		if sumsq == "" {
			sumsq = sq
		} else {
			sumsq = b.Add(sumsq, sq)
		}
	}
	if sumsq == "" {
		sumsq = c(0)
	}
	norm := b.Unary("Sqrt", sumsq)
	one := c(1)
	coef := b.Op("Min", nil, one, b.Div(toCT(maxNorm), b.Add(norm, c(clipEps))))

	// Per-step scalars, shared by every parameter, in f64 like Python's.
	one64 := c64(1)
	decay := toCT(b.Sub(one64, b.Mul(lr, wd)))
	bc1 := b.Sub(one64, b.Op("Pow", nil, c64(o.Beta1), step))
	bc2 := b.Sub(one64, b.Op("Pow", nil, c64(o.Beta2), step))
	stepSize := toCT(b.Div(lr, bc1))
	bc2Sqrt := toCT(b.Unary("Sqrt", bc2))
	beta1, beta2 := c(o.Beta1), c(o.Beta2)
	oneMinusB1, oneMinusB2, eps := c(1-o.Beta1), c(1-o.Beta2), c(o.Eps)

	outs := []*ir.Output{{Name: "grad_norm", Value: norm}}
	back := func(v string, like string) string {
		if dt := b.Type(like).DType; dt != ct {
			return b.Op("Cast", ir.Attrs{"to": ir.String(dt.String())}, v)
		}
		return v
	}
	for i, p := range params {
		ps := st[i]
		b.Scope = p.Name
		g := b.Mul(grads[i], coef)
		pw := b.Mul(toCT(ps.p), decay)
		m1 := b.Add(b.Mul(toCT(ps.m), beta1), b.Mul(g, oneMinusB1))
		v1 := b.Add(b.Mul(toCT(ps.v), beta2), b.Mul(b.Mul(g, oneMinusB2), g))
		denom := b.Add(b.Div(b.Unary("Sqrt", v1), bc2Sqrt), eps)
		p1 := b.Sub(pw, b.Div(b.Mul(m1, stepSize), denom))
		zero := b.Const(0, p.Type)
		outs = append(outs,
			&ir.Output{Name: p.Name, Value: back(p1, ps.p), Updates: ps.p},
			&ir.Output{Name: ps.m, Value: back(m1, ps.m), Updates: ps.m},
			&ir.Output{Name: ps.v, Value: back(v1, ps.v), Updates: ps.v},
			&ir.Output{Name: ps.g, Value: zero, Updates: ps.g})
	}
	b.Scope = ""
	if err := b.Err(); err != nil {
		return err
	}
	b.G.Outputs = outs
	insertGraphAfter(m, "train_step", b.G)
	s.Note("optimizer: update runs AdamW (β1=%g, β2=%g, ε=%g, decoupled weight decay, global-norm clipping) on %d parameters in %v",
		o.Beta1, o.Beta2, o.Eps, len(params), ct)
	return nil
}

// sumSquares returns Σ v² as a rank-0 value.
func sumSquares(b *ir.Builder, v string) string {
	sq := b.Mul(v, v)
	if r := b.Type(sq).Rank(); r > 0 {
		sq = b.Reduce("ReduceSum", sq, false, allAxes(r)...)
	}
	return sq
}

// isFinite reports whether f is neither NaN nor infinite.
func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// adamState names one parameter's inputs of the update graph: the
// parameter, its gradient accumulator and its two AdamW moments.
type adamState struct{ p, g, m, v string }

// allBF16 reports whether every parameter is bf16: the seed's pure-bf16
// training (model.to(torch.bfloat16)), whose update has its own rounding.
func allBF16(params []*ir.Input) bool {
	for _, p := range params {
		if p.Type.DType != ir.BF16 {
			return false
		}
	}
	return len(params) > 0
}

// bf16Update builds the update of bf16 parameters as the seed's GPU
// computes it: torch.nn.utils.clip_grad_norm_ and torch ≥ 2.1's AdamW
// (foreach, the CUDA default) on bf16 tensors, each op computing in f32 on
// the widened values with Python scalars in f32, and rounding its result to
// bf16 once (R):
//
//	n_P  = R(√Σ g_P²)                    per-tensor vector_norm
//	norm = R(√Σ_P n_P²)                  vector_norm of the stacked norms ("grad_norm")
//	coef = min(1, R(R(1/R(norm + 1e-6))·max))   max / t is t.reciprocal()·max
//	g = R(g·coef)
//	p = R(p·(1 − lr·wd))                 _foreach_mul_
//	m = R(m + (1−β1)·(g − m))            _foreach_lerp_ (weight 1−β1 < ½)
//	v = R(R(v·β2) + (1−β2)·g·g)          _foreach_mul_, _foreach_addcmul_
//	d = R(R(R(√v) / √bc2) + ε)           _foreach_sqrt, _foreach_div_, _foreach_add_
//	p = R(p − (lr/bc1)·m/d)              _foreach_addcdiv_
//
// This is tools/torchref's Bf16AdamW. (PyTorch 1.13's CPU kernels differ:
// they round every Python scalar to bf16 first, so that v·0.999 becomes
// v·0.99609375.) The exp_avg and exp_avg_sq states are bf16, as
// torch.zeros_like(p).
func bf16Update(s *State, b *ir.Builder, params []*ir.Input, st []adamState, lr, step, wd, maxNorm string) error {
	o := s.Options
	F := func(v string) string {
		if b.Type(v).DType == ir.F32 {
			return v
		}
		return b.Op("Cast", ir.Attrs{"to": ir.String("f32")}, v)
	}
	R := func(v string) string { return b.Op("Cast", ir.Attrs{"to": ir.String("bf16")}, v) }
	c := func(v float64) string { return b.Const(v, ir.Type{DType: ir.F32}) }
	c64 := func(v float64) string { return b.Const(v, ir.Type{DType: ir.F64}) }

	var sumsq string
	for i := range params {
		n := F(R(b.Unary("Sqrt", sumSquares(b, F(st[i].g)))))
		sq := b.Mul(n, n)
		if sumsq == "" {
			sumsq = sq
		} else {
			sumsq = b.Add(sumsq, sq)
		}
	}
	norm := R(b.Unary("Sqrt", sumsq))
	recip := F(R(b.Div(c(1), F(R(b.Add(F(norm), c(clipEps)))))))
	coef := b.Op("Min", nil, c(1), F(R(b.Mul(recip, F(maxNorm)))))

	one64 := c64(1)
	decay := F(b.Sub(one64, b.Mul(lr, wd)))
	bc1 := b.Sub(one64, b.Op("Pow", nil, c64(o.Beta1), step))
	bc2 := b.Sub(one64, b.Op("Pow", nil, c64(o.Beta2), step))
	negStepSize := F(b.Unary("Neg", b.Div(lr, bc1)))
	bc2Sqrt := F(b.Unary("Sqrt", bc2))
	beta2, oneMinusB1, oneMinusB2, eps := c(o.Beta2), c(1-o.Beta1), c(1-o.Beta2), c(o.Eps)
	if 1-o.Beta1 >= 0.5 {
		return fmt.Errorf("bf16 AdamW: β1 %v < 0.5 takes lerp's other branch, not built", o.Beta1)
	}

	outs := []*ir.Output{{Name: "grad_norm", Value: norm}}
	for i, p := range params {
		ps := st[i]
		b.Scope = p.Name
		g := F(R(b.Mul(F(ps.g), coef)))
		pw := F(R(b.Mul(F(ps.p), decay)))
		m := F(ps.m)
		m1 := R(b.Add(m, b.Mul(oneMinusB1, b.Sub(g, m))))
		v1 := R(b.Add(F(R(b.Mul(F(ps.v), beta2))), b.Mul(oneMinusB2, b.Mul(g, g))))
		denom := F(R(b.Add(F(R(b.Div(F(R(b.Unary("Sqrt", F(v1)))), bc2Sqrt))), eps)))
		p1 := R(b.Add(pw, b.Mul(negStepSize, b.Div(F(m1), denom))))
		outs = append(outs,
			&ir.Output{Name: p.Name, Value: p1, Updates: ps.p},
			&ir.Output{Name: ps.m, Value: m1, Updates: ps.m},
			&ir.Output{Name: ps.v, Value: v1, Updates: ps.v},
			&ir.Output{Name: ps.g, Value: b.Const(0, p.Type), Updates: ps.g})
	}
	b.Scope = ""
	if err := b.Err(); err != nil {
		return err
	}
	b.G.Outputs = outs
	insertGraphAfter(s.Module, "train_step", b.G)
	s.Note("optimizer: update runs AdamW (β1=%g, β2=%g, ε=%g, decoupled weight decay, global-norm clipping) on %d bf16 parameters with PyTorch's bf16 rounding at every op",
		o.Beta1, o.Beta2, o.Eps, len(params))
	return nil
}
