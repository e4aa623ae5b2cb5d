package onnx

import (
	"math"

	"gitee.com/gidean/conv-linn/ir"
)

// logicOps are the comparisons, the bool ops, Where and the casts. ONNX's
// bool values are 0/1 i64 values here (slc has no bool dtype), tracked in
// importer.bools; they may only feed Where, Cast, the bool ops and the
// movement ops, or a graph output declared bool.
var logicOps = map[string]opDef{
	"Equal":    {conv: convCompare},
	"Less":     {conv: convCompare},
	"Greater":  {conv: convCompare},
	"Not":      {conv: convBool},
	"And":      {conv: convBool},
	"Or":       {conv: convBool},
	"Xor":      {conv: convBool},
	"Where":    {conv: convWhere},
	"Cast":     {conv: convCast, attrs: []string{"to"}},
	"CastLike": {conv: convCastLike, attrs: []string{"saturate"}}, // saturate only matters for float8
}

// convCompare converts Equal, Less and Greater into a 0/1 i64 bool.
func convCompare(c *ctx) error {
	b, op := c.b, c.n.opType
	u, v, err := c.pair()
	if err != nil {
		return err
	}
	if c.im.bools[c.in(0)] || c.im.bools[c.in(1)] {
		return c.unsupported("dtype", "bool")
	}
	if b.Type(u).DType != b.Type(v).DType {
		return c.errorf("operands %v and %v differ in dtype", b.Type(u), b.Type(v))
	}
	var y string
	switch op {
	case "Greater":
		y = b.Op("Greater", nil, u, v)
	case "Less":
		y = b.Op("Greater", nil, v, u)
	default:
		y = c.im.equal(u, v)
		if b.Type(u).DType.IsFloat() {
			// (1 − [u > v])·(1 − [v > u]) is 1 for a NaN too: times
			// notNaN(u)·notNaN(v), notNaN(w) = min([w > −∞] + [∞ > w], 1).
			for _, w := range []string{u, v} {
				inf := b.Scalar(math.Inf(1), w)
				g := b.Add(b.Op("Greater", nil, w, b.Unary("Neg", inf)), b.Op("Greater", nil, inf, w))
				y = b.Mul(y, b.Op("Min", nil, g, b.Scalar(1, w)))
			}
		}
	}
	if dt := b.Type(u).DType; dt != ir.I64 {
		y = b.Op("Cast", ir.Attrs{"to": ir.String("i64")}, y)
	}
	return c.setBool(y)
}

// convBool converts Not, And, Or and Xor. On 0/1 values: not c = 1 − c,
// and = c·d, or = max(c, d), xor = [c > d] + [d > c].
func convBool(c *ctx) error {
	b, op := c.b, c.n.opType
	var vs []string
	for k := range c.n.inputs {
		if !c.im.bools[c.in(k)] {
			return c.unsupported("dtype", "non-bool operand of "+op)
		}
		v, err := c.x(k)
		if err != nil {
			return err
		}
		vs = append(vs, v)
	}
	if len(vs) != map[string]int{"Not": 1}[op] && (op == "Not" || len(vs) != 2) {
		return c.errorf("%d operands", len(vs))
	}
	var y string
	switch op {
	case "Not":
		y = b.Sub(b.Scalar(1, vs[0]), vs[0])
	case "And":
		y = b.Mul(vs[0], vs[1])
	case "Or":
		y = b.Op("Max", nil, vs[0], vs[1])
	case "Xor":
		y = b.Add(b.Op("Greater", nil, vs[0], vs[1]), b.Op("Greater", nil, vs[1], vs[0]))
	}
	return c.setBool(y)
}

// convWhere is importer.where of a bool condition.
func convWhere(c *ctx) error {
	if !c.im.bools[c.in(0)] {
		return c.unsupported("non-bool condition", c.in(0))
	}
	cond, u, err := c.pair()
	if err != nil {
		return err
	}
	v, err := c.x(2)
	if err != nil {
		return err
	}
	if c.im.bools[c.in(1)] || c.im.bools[c.in(2)] {
		return c.unsupported("dtype", "bool")
	}
	return c.set(c.im.where(cond, u, v))
}

// convCast is slc's Cast, or x ≠ 0 held as 0/1 for a cast to bool.
func convCast(c *ctx) error {
	b := c.b
	v, err := c.x(0)
	if err != nil {
		return err
	}
	to := c.attrInt("to", 0)
	if to == dtBool {
		if c.im.bools[c.in(0)] {
			c.im.bools[c.out] = true
			return c.set(v)
		}
		y := b.Sub(b.Scalar(1, v), c.im.equal(v, b.Scalar(0, v)))
		if b.Type(y).DType != ir.I64 {
			y = b.Op("Cast", ir.Attrs{"to": ir.String("i64")}, y)
		}
		c.im.bools[c.out] = true
		return c.set(y)
	}
	dt, err := irDType(to)
	if err != nil {
		return c.unsupported("dtype", dtName(to))
	}
	if b.Type(v).DType == dt {
		return c.set(v)
	}
	return c.set(b.Op("Cast", ir.Attrs{"to": ir.String(dt.String())}, v))
}

// convCastLike casts x to the dtype of the second operand.
func convCastLike(c *ctx) error {
	b := c.b
	v, like, err := c.pair()
	if err != nil {
		return err
	}
	if c.im.bools[c.in(0)] || c.im.bools[c.in(1)] {
		return c.unsupported("dtype", "bool")
	}
	dt := b.Type(like).DType
	if b.Type(v).DType == dt {
		return c.set(v)
	}
	return c.set(b.Op("Cast", ir.Attrs{"to": ir.String(dt.String())}, v))
}
