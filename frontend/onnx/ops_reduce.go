package onnx

import (
	"gitee.com/gidean/conv-linn/ir"
)

// reduceOps reduce along axes: the Reduce ops, CumSum, the softmaxes and
// GlobalAveragePool.
var reduceOps = map[string]opDef{
	// ReduceSum takes its axes as an operand since opset 13, ReduceMean as
	// an attribute until opset 18.
	"ReduceSum":         {conv: convReduce, attrs: []string{"keepdims", "noop_with_empty_axes"}, floatIn: true},
	"ReduceMean":        {conv: convReduce, attrs: []string{"axes", "keepdims"}, floatIn: true},
	"ReduceSumSquare":   {conv: convReduceSum, attrs: []string{"axes", "keepdims"}},
	"ReduceL1":          {conv: convReduceSum, attrs: []string{"axes", "keepdims"}},
	"ReduceL2":          {conv: convReduceSum, attrs: []string{"axes", "keepdims"}},
	"ReduceLogSum":      {conv: convReduceSum, attrs: []string{"axes", "keepdims"}},
	"CumSum":            {conv: convCumSum, attrs: []string{"exclusive", "reverse"}},
	"Softmax":           {conv: convSoftmax, attrs: []string{"axis"}, floatIn: true},
	"LogSoftmax":        {conv: convLogSoftmax, attrs: []string{"axis"}},
	"GlobalAveragePool": {conv: convGlobalAveragePool},
}

// convReduce converts ReduceSum and ReduceMean, slc ops of the same name.
func convReduce(c *ctx) error {
	b, op := c.b, c.n.opType
	var axes []int64
	var err error
	noop := false
	if op == "ReduceSum" {
		if c.in(1) != "" {
			if axes, err = c.ints(1); err != nil {
				return err
			}
		}
		noop = c.attrInt("noop_with_empty_axes", 0) != 0
	} else if p, ok := c.a["axes"]; ok {
		axes = p.ints
	}
	v, err := c.x(0)
	if err != nil {
		return err
	}
	if len(axes) == 0 {
		if noop {
			return c.set(v)
		}
		for k := range b.Type(v).Rank() {
			axes = append(axes, int64(k))
		}
	}
	r := b.Type(v).Rank()
	norm := make([]int, len(axes))
	for k, ax := range axes {
		q, err := c.axis(ax, r)
		if err != nil {
			return err
		}
		norm[k] = q
	}
	if r == 0 {
		return c.set(v)
	}
	return c.set(b.Reduce(op, v, c.attrInt("keepdims", 1) != 0, norm...))
}

// convReduceSum converts ReduceSumSquare, ReduceL1, ReduceL2 and
// ReduceLogSum: a ReduceSum of x², |x| or x, then √ or log. Their axes are
// an attribute until opset 18.
func convReduceSum(c *ctx) error {
	b, op := c.b, c.n.opType
	v, err := c.x(0)
	if err != nil {
		return err
	}
	if c.in(1) != "" {
		return c.unsupported("axes input (opset 18)", c.in(1))
	}
	r := b.Type(v).Rank()
	var axes []int
	if p, ok := c.a["axes"]; ok {
		for _, q := range p.ints {
			ax, err := c.axis(q, r)
			if err != nil {
				return err
			}
			axes = append(axes, ax)
		}
	} else {
		for k := range r {
			axes = append(axes, k)
		}
	}
	if err := c.needFloat(v); err != nil {
		return err
	}
	switch op {
	case "ReduceSumSquare", "ReduceL2":
		v = b.Mul(v, v)
	case "ReduceL1":
		v = b.Op("Max", nil, v, b.Unary("Neg", v))
	}
	y := v
	if r > 0 {
		y = b.Reduce("ReduceSum", v, c.attrInt("keepdims", 1) != 0, axes...)
	}
	switch op {
	case "ReduceL2":
		y = b.Unary("Sqrt", y)
	case "ReduceLogSum":
		y = b.Unary("Log", y)
	}
	return c.set(y)
}

// convCumSum is a running Add over the axis' slices, in the order NumPy
// sums them (so a graph of 2·d nodes for an axis of size d), joined by
// Concat.
func convCumSum(c *ctx) error {
	b := c.b
	v, axs, err := c.xInts()
	if err != nil {
		return err
	}
	if len(axs) != 1 {
		return c.errorf("axis has %d elements", len(axs))
	}
	ax, err := c.axis(axs[0], b.Type(v).Rank())
	if err != nil {
		return err
	}
	d := b.Type(v).Shape[ax]
	if d == 0 {
		return c.set(v)
	}
	excl, rev := c.attrInt("exclusive", 0) != 0, c.attrInt("reverse", 0) != 0
	ys := make([]string, d)
	var acc string
	for j := range d {
		k := j
		if rev {
			k = d - 1 - j
		}
		s := b.Slice(v, ax, k, k+1)
		switch {
		case excl && acc == "":
			ys[k] = b.Const(0, b.Type(s))
		case excl:
			ys[k] = acc
		}
		if acc == "" {
			acc = s
		} else {
			acc = b.Add(acc, s)
		}
		if !excl {
			ys[k] = acc
		}
	}
	if d == 1 {
		return c.set(b.Unary("Identity", ys[0]))
	}
	return c.set(b.Op("Concat", ir.Attrs{"axis": ir.Int(int64(ax))}, ys...))
}

// convSoftmax is slc's Softmax along the axis.
func convSoftmax(c *ctx) error {
	v, err := c.x(0)
	if err != nil {
		return err
	}
	ax, err := c.axis(c.attrInt("axis", -1), c.b.Type(v).Rank())
	if err != nil {
		return err
	}
	return c.set(c.b.Op("Softmax", ir.Attrs{"axis": ir.Int(int64(ax))}, v))
}

// convLogSoftmax is importer.logSoftmax along the axis.
func convLogSoftmax(c *ctx) error {
	v, err := c.x(0)
	if err != nil {
		return err
	}
	if err := c.needFloat(v); err != nil {
		return err
	}
	ax, err := c.axis(c.attrInt("axis", -1), c.b.Type(v).Rank())
	if err != nil {
		return err
	}
	return c.set(c.im.logSoftmax(v, ax))
}

// convGlobalAveragePool is the mean over the spatial axes (2 on), kept.
func convGlobalAveragePool(c *ctx) error {
	b := c.b
	v, err := c.x(0)
	if err != nil {
		return err
	}
	r := b.Type(v).Rank()
	if r < 3 || !b.Type(v).DType.IsFloat() {
		return c.errorf("input %v", b.Type(v))
	}
	var axes []int
	for k := 2; k < r; k++ {
		axes = append(axes, k)
	}
	return c.set(b.Reduce("ReduceMean", v, true, axes...))
}
