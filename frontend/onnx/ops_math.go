package onnx

import (
	"math"
	"slices"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// mathOps are the element-wise arithmetic ops and the activations.
var mathOps = map[string]opDef{
	"Sqrt":       {conv: unary("Sqrt"), floatIn: true},
	"Reciprocal": {conv: unary("Recip"), floatIn: true},
	"Neg":        {conv: unary("Neg")},
	"Exp":        {conv: unary("Exp"), floatIn: true},
	"Log":        {conv: unary("Log"), floatIn: true},
	"Sigmoid":    {conv: unary("Sigmoid"), floatIn: true},
	"Relu":       {conv: convRelu},
	"Tanh":       {conv: convTanh, floatIn: true},
	"Add":        {conv: convBinary},
	"Sub":        {conv: convBinary},
	"Mul":        {conv: convBinary},
	"Div":        {conv: convBinary},
	"Pow":        {conv: convBinary},
	"Max":        {conv: convVariadic},
	"Min":        {conv: convVariadic},
	"Sum":        {conv: convVariadic},
	"Mean":       {conv: convVariadic},
	"Clip":       {conv: convClip},
	"Abs":        {conv: convAbs},
	"Mod":        {conv: convMod, attrs: []string{"fmod"}},
	"Erf":        {conv: convErf},
	"Cos":        {conv: convTrig},
	"Sin":        {conv: convTrig},
	"LeakyRelu":  {conv: convLeakyRelu, attrs: []string{"alpha"}},
	"PRelu":      {conv: convPRelu},
	// The activations of one operand and constant attributes share the
	// attributes alpha, beta and gamma; each op refuses those it lacks.
	"Elu":             {conv: convActivation, attrs: activationAttrs},
	"Selu":            {conv: convActivation, attrs: activationAttrs},
	"Celu":            {conv: convActivation, attrs: activationAttrs},
	"HardSigmoid":     {conv: convActivation, attrs: activationAttrs},
	"HardSwish":       {conv: convActivation, attrs: activationAttrs},
	"ThresholdedRelu": {conv: convActivation, attrs: activationAttrs},
	"Softsign":        {conv: convActivation, attrs: activationAttrs},
	"Softplus":        {conv: convActivation, attrs: activationAttrs},
}

// unary converts an op that is one slc unary op.
func unary(op string) func(c *ctx) error {
	return func(c *ctx) error {
		v, err := c.x(0)
		if err != nil {
			return err
		}
		return c.set(c.b.Unary(op, v))
	}
}

// convRelu is max(x, 0).
func convRelu(c *ctx) error {
	v, err := c.x(0)
	if err != nil {
		return err
	}
	return c.set(c.b.Op("Max", nil, v, c.b.Scalar(0, v)))
}

// convTanh is tanh x = 2·σ(2x) − 1.
func convTanh(c *ctx) error {
	b := c.b
	v, err := c.x(0)
	if err != nil {
		return err
	}
	two := b.Scalar(2, v)
	return c.set(b.Sub(b.Mul(two, b.Unary("Sigmoid", b.Mul(two, v))), b.Scalar(1, v)))
}

// convBinary converts Add, Sub, Mul, Div and Pow, slc ops of the same name;
// Pow's exponent is cast to the base's dtype.
func convBinary(c *ctx) error {
	b := c.b
	u, v, err := c.pair()
	if err != nil {
		return err
	}
	if c.n.opType == "Pow" && b.Type(u).DType != b.Type(v).DType {
		if !b.Type(u).DType.IsFloat() {
			return c.dtype(b.Type(u).DType)
		}
		v = b.Op("Cast", ir.Attrs{"to": ir.String(b.Type(u).DType.String())}, v)
	}
	return c.set(b.Op(c.n.opType, nil, u, v))
}

// convVariadic converts Max, Min, Sum and Mean: element-wise over any number
// of operands, with broadcasting.
func convVariadic(c *ctx) error {
	b, op, k := c.b, c.n.opType, len(c.n.inputs)
	if k == 0 {
		return c.errorf("no inputs")
	}
	bop := map[string]string{"Max": "Max", "Min": "Min", "Sum": "Add", "Mean": "Add"}[op]
	var y string
	for j := range k {
		v, err := c.x(j)
		if err != nil {
			return err
		}
		if j == 0 {
			y = v
		} else {
			y = b.Op(bop, nil, y, v)
		}
	}
	if op == "Mean" {
		if err := c.needFloat(y); err != nil {
			return err
		}
		if k > 1 {
			y = b.Div(y, b.Scalar(float64(k), y))
		}
	}
	if k == 1 && b.Err() == nil {
		y = b.Unary("Identity", y)
	}
	return c.set(y)
}

// convClip is max(x, lo) then min(·, hi) for the bounds given.
func convClip(c *ctx) error {
	b := c.b
	y, err := c.x(0)
	if err != nil {
		return err
	}
	for k, bop := range []string{"Max", "Min"} {
		if c.in(k+1) == "" {
			continue
		}
		v, err := c.x(k + 1)
		if err != nil {
			return err
		}
		if b.Type(v).Rank() != 0 {
			return c.errorf("bound %v is not a scalar", b.Type(v))
		}
		y = b.Op(bop, nil, y, v)
	}
	return c.set(b.Unary("Identity", y))
}

// convAbs is max(x, −x).
func convAbs(c *ctx) error {
	v, err := c.x(0)
	if err != nil {
		return err
	}
	return c.set(c.b.Op("Max", nil, v, c.b.Unary("Neg", v)))
}

// convMod: for integers r = a − b·(a/b) with slc's truncating Div is C's
// fmod; for fmod=0 (the divisor's sign) b is added where r and b differ in
// sign. a − b·trunc(a/b) is not exact for floats: refused.
func convMod(c *ctx) error {
	b := c.b
	u, v, err := c.pair()
	if err != nil {
		return err
	}
	if dt := b.Type(u).DType; !dt.IsInt() || b.Type(v).DType != dt {
		return c.dtype(dt)
	}
	r := b.Sub(u, b.Mul(v, b.Div(u, v)))
	if c.attrInt("fmod", 0) == 0 {
		zero := b.Scalar(0, u)
		gt := func(p, q string) string { return b.Op("Greater", nil, p, q) }
		differ := b.Add(b.Mul(gt(zero, r), gt(v, zero)), b.Mul(gt(r, zero), gt(zero, v)))
		r = b.Add(r, b.Mul(differ, v))
	}
	return c.set(r)
}

// convErf is the approximation importer.erf.
func convErf(c *ctx) error {
	v, err := c.x(0)
	if err != nil {
		return err
	}
	if err := c.needFloat(v); err != nil {
		return err
	}
	return c.set(c.im.erf(v))
}

// convTrig converts Cos and Sin. slc has no trigonometric op: a constant
// operand (a rotary table of an exported LLaMA) is evaluated here; any other
// is refused.
func convTrig(c *ctx) error {
	t, ok := c.im.consts[c.in(0)]
	if !ok || c.im.params[c.in(0)] {
		return c.unsupported("non-constant operand (slc evaluates Cos and Sin of constants only)", c.in(0))
	}
	if !t.DType.IsFloat() {
		return c.dtype(t.DType)
	}
	f := math.Cos
	if c.n.opType == "Sin" {
		f = math.Sin
	}
	y := &Tensor{Name: c.out, DType: t.DType, Shape: slices.Clone(t.Shape), F: make([]float64, len(t.F))}
	for k, v := range t.F {
		y.F[k] = interp.RoundTo(t.DType, f(v))
	}
	return c.setConst(y)
}

// convLeakyRelu is max(x, 0) + α·min(x, 0): one of the two terms is 0.
func convLeakyRelu(c *ctx) error {
	b := c.b
	v, err := c.x(0)
	if err != nil {
		return err
	}
	if err := c.needFloat(v); err != nil {
		return err
	}
	zero := b.Scalar(0, v)
	neg := b.Mul(b.Op("Min", nil, v, zero), b.Scalar(c.attrFloat("alpha", 0.01), v))
	return c.set(b.Add(b.Op("Max", nil, v, zero), neg))
}

// convPRelu is max(x, 0) + slope·min(x, 0).
func convPRelu(c *ctx) error {
	b := c.b
	v, sl, err := c.pair()
	if err != nil {
		return err
	}
	zero := b.Scalar(0, v)
	return c.set(b.Add(b.Op("Max", nil, v, zero), b.Mul(sl, b.Op("Min", nil, v, zero))))
}

var activationAttrs = []string{"alpha", "beta", "gamma"}

// activationTakes lists the attributes of each activation of convActivation.
var activationTakes = map[string][]string{"Elu": {"alpha"}, "Selu": {"alpha", "gamma"}, "Celu": {"alpha"},
	"HardSigmoid": {"alpha", "beta"}, "ThresholdedRelu": {"alpha"}}

// convActivation converts Elu, Selu, Celu, HardSigmoid, HardSwish,
// ThresholdedRelu, Softsign and Softplus.
func convActivation(c *ctx) error {
	b, op := c.b, c.n.opType
	v, err := c.x(0)
	if err != nil {
		return err
	}
	if err := c.needFloat(v); err != nil {
		return err
	}
	for _, name := range activationAttrs {
		if c.has(name) && !slices.Contains(activationTakes[op], name) {
			return c.unsupported("attribute", name)
		}
	}
	k := func(f float64) string { return b.Scalar(f, v) }
	zero, one := k(0), k(1)
	pos, neg := b.Op("Max", nil, v, zero), b.Op("Min", nil, v, zero)
	hard := func(al, be float64) string { // max(0, min(1, αx + β))
		return b.Op("Max", nil, zero, b.Op("Min", nil, one, b.Add(b.Mul(v, k(al)), k(be))))
	}
	var y string
	switch op {
	case "Elu": // max(x, 0) + α(exp(min(x, 0)) − 1): the second term is 0 for x ≥ 0
		y = b.Add(pos, b.Mul(k(c.attrFloat("alpha", 1)), b.Sub(b.Unary("Exp", neg), one)))
	case "Selu":
		al, ga := c.attrFloat("alpha", 1.67326319217681884765625), c.attrFloat("gamma", 1.05070102214813232421875)
		y = b.Mul(k(ga), b.Add(pos, b.Mul(k(al), b.Sub(b.Unary("Exp", neg), one))))
	case "Celu": // max(0, x) + min(0, α(exp(x/α) − 1))
		al := c.attrFloat("alpha", 1)
		y = b.Add(pos, b.Op("Min", nil, zero, b.Mul(k(al), b.Sub(b.Unary("Exp", b.Div(v, k(al))), one))))
	case "HardSigmoid":
		y = hard(c.attrFloat("alpha", 0.2), c.attrFloat("beta", 0.5))
	case "HardSwish":
		y = b.Mul(v, hard(1.0/6, 0.5))
	case "ThresholdedRelu": // x where x > α, else 0
		g := b.Op("Greater", nil, v, k(c.attrFloat("alpha", 1)))
		y = c.im.where(b.Op("Cast", ir.Attrs{"to": ir.String("i64")}, g), v, zero)
	case "Softsign": // x / (1 + |x|)
		y = b.Div(v, b.Add(one, b.Op("Max", nil, v, b.Unary("Neg", v))))
	case "Softplus": // ln(exp(x) + 1)
		y = b.Unary("Log", b.Add(b.Unary("Exp", v), one))
	}
	return c.set(y)
}
