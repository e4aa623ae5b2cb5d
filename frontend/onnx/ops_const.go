package onnx

import (
	"errors"
	"math"
	"slices"

	"gitee.com/gidean/conv-linn/ir"
)

// constOps are computed at import: their results depend on attributes,
// constant operands and static shapes only, and become import-time
// constants (importer.consts) that a shape or axes operand may read.
var constOps = map[string]opDef{
	"Constant":        {conv: convConstant, attrs: []string{"value", "value_float", "value_floats", "value_int", "value_ints"}},
	"ConstantOfShape": {conv: convConstantOfShape, attrs: []string{"value"}},
	"Range":           {conv: convRange},
	"EyeLike":         {conv: convEyeLike, attrs: []string{"dtype", "k"}},
	"Shape":           {conv: convShape, attrs: []string{"start", "end"}},
	"Size":            {conv: convSize},
}

// convConstant is the tensor of its one value attribute.
func convConstant(c *ctx) error {
	a := c.a
	var t *Tensor
	switch {
	case a["value"] != nil && a["value"].t != nil:
		var err error
		if t, err = tensorOf(a["value"].t); err != nil {
			var u *Unsupported
			if errors.As(err, &u) {
				return c.unsupported(u.What, u.Detail)
			}
			return err
		}
	case a["value_float"] != nil:
		t = &Tensor{DType: ir.F32, F: []float64{float64(a["value_float"].f)}}
	case a["value_int"] != nil:
		t = &Tensor{DType: ir.I64, I: []int64{a["value_int"].i}}
	case a["value_floats"] != nil:
		t = &Tensor{DType: ir.F32, Shape: []int{len(a["value_floats"].floats)}}
		for _, f := range a["value_floats"].floats {
			t.F = append(t.F, float64(f))
		}
	case a["value_ints"] != nil:
		t = &Tensor{DType: ir.I64, Shape: []int{len(a["value_ints"].ints)}, I: append([]int64{}, a["value_ints"].ints...)}
	default:
		return c.errorf("no value")
	}
	c.im.bools[c.out] = t.Bool
	return c.setConst(t)
}

// convConstantOfShape is a tensor of the constant shape filled with the
// value attribute (0.0 as f32 without one).
func convConstantOfShape(c *ctx) error {
	shape, err := c.ints(0)
	if err != nil {
		return err
	}
	t := &Tensor{Name: c.out, DType: ir.F32}
	val := 0.0
	if p, ok := c.a["value"]; ok && p.t != nil {
		k, err := tensorOf(p.t)
		if err != nil {
			return c.unsupported("dtype", dtName(p.t.dataType))
		}
		if k.len() != 1 {
			return c.errorf("value has %d elements", k.len())
		}
		t.DType, val = k.DType, k.at(0)
	}
	m := 1
	for _, d := range shape {
		if d < 0 || d > math.MaxInt32 {
			return c.errorf("bad shape %v", shape)
		}
		t.Shape = append(t.Shape, int(d))
		m *= int(d)
	}
	if t.DType.IsFloat() {
		t.F = make([]float64, m)
		for k := range t.F {
			t.F[k] = val
		}
	} else {
		t.I = make([]int64, m)
		for k := range t.I {
			t.I[k] = int64(val)
		}
	}
	return c.setConst(t)
}

// convRange is start, start + delta, … up to limit, of constant scalars.
func convRange(c *ctx) error {
	var ops [3]*Tensor
	for k := range ops {
		t, err := c.constant(k)
		if err != nil {
			return err
		}
		if t.len() != 1 || (k > 0 && t.DType != ops[0].DType) {
			return c.errorf("operands must be scalars of one dtype")
		}
		ops[k] = t
	}
	t := &Tensor{Name: c.out, DType: ops[0].DType}
	if t.DType.IsFloat() {
		st, li, de := ops[0].F[0], ops[1].F[0], ops[2].F[0]
		cnt := max(int(math.Ceil((li-st)/de)), 0)
		for k := range cnt {
			t.F = append(t.F, st+float64(k)*de)
		}
		t.Shape = []int{cnt}
		if cnt == 0 {
			t.F = []float64{}
		}
	} else {
		st, li, de := ops[0].I[0], ops[1].I[0], ops[2].I[0]
		if de == 0 {
			return c.errorf("delta 0")
		}
		t.I = []int64{}
		for v := st; (de > 0 && v < li) || (de < 0 && v > li); v += de {
			t.I = append(t.I, v)
		}
		t.Shape = []int{len(t.I)}
	}
	return c.setConst(t)
}

// convEyeLike is a 2-D tensor of the operand's shape with ones on the k-th
// diagonal.
func convEyeLike(c *ctx) error {
	t, err := c.typeOf(0)
	if err != nil {
		return err
	}
	if t.Rank() != 2 {
		return c.errorf("input %v is not 2-D", t)
	}
	dt := t.DType
	if p, ok := c.a["dtype"]; ok {
		if dt, err = irDType(p.i); err != nil {
			return c.unsupported("dtype", dtName(p.i))
		}
	}
	k := c.attrInt("k", 0)
	e := &Tensor{Name: c.out, DType: dt, Shape: slices.Clone(t.Shape)}
	r, cols := t.Shape[0], t.Shape[1]
	if dt.IsFloat() {
		e.F = make([]float64, r*cols)
	} else {
		e.I = make([]int64, r*cols)
	}
	for i := range r {
		if j := int64(i) + k; j >= 0 && j < int64(cols) {
			if dt.IsFloat() {
				e.F[i*cols+int(j)] = 1
			} else {
				e.I[i*cols+int(j)] = 1
			}
		}
	}
	return c.setConst(e)
}

// convShape is the operand's static shape (dims start to end, opset 15).
func convShape(c *ctx) error {
	if (c.has("start") || c.has("end")) && c.im.opset < 15 {
		return c.unsupported("attribute", "start/end before opset 15")
	}
	var s []int
	if t, ok := c.im.consts[c.in(0)]; ok {
		s = t.Shape
	} else {
		v, err := c.x(0)
		if err != nil {
			return err
		}
		s = c.b.Type(v).Shape
	}
	r := int64(len(s))
	clamp := func(i int64) int64 {
		if i < 0 {
			i += r
		}
		return min(max(i, 0), r)
	}
	st, en := clamp(c.attrInt("start", 0)), clamp(c.attrInt("end", r))
	t := &Tensor{Name: c.out, DType: ir.I64, Shape: []int{0}, I: []int64{}}
	for k := st; k < en; k++ {
		t.I = append(t.I, int64(s[k]))
	}
	t.Shape[0] = len(t.I)
	return c.setConst(t)
}

// convSize is the operand's element count.
func convSize(c *ctx) error {
	t, err := c.typeOf(0)
	if err != nil {
		return err
	}
	return c.setConst(&Tensor{Name: c.out, DType: ir.I64, I: []int64{t.NumElements()}})
}
