package onnx

import (
	"fmt"
	"math"
	"slices"

	"gitee.com/gidean/conv-linn/ir"
)

// indexOps read or write elements at index operands. ONNX counts a negative
// index from the end of its axis; slc's Gather and ScatterAdd take
// non-negative ones (importer.nonNegative).
var indexOps = map[string]opDef{
	"Gather":          {conv: convGather, attrs: []string{"axis"}, keepsBool: true},
	"GatherElements":  {conv: convGatherElements, attrs: []string{"axis"}},
	"ScatterElements": {conv: convScatterElements, attrs: []string{"axis", "reduction"}},
	"OneHot":          {conv: convOneHot, attrs: []string{"axis"}},
}

// convGather is ONNX Gather along the axis (importer.gatherAt).
func convGather(c *ctx) error {
	b, im := c.b, c.im
	table, err := c.x(0)
	if err != nil {
		return err
	}
	if b.Type(table).Rank() == 0 {
		return c.errorf("a scalar table")
	}
	ax, err := c.axis(c.attrInt("axis", 0), b.Type(table).Rank())
	if err != nil {
		return err
	}
	rows := int64(b.Type(table).Shape[ax])
	if t, ok := im.consts[c.in(1)]; ok && !t.DType.IsFloat() {
		k := &Tensor{DType: t.DType, Shape: t.Shape, I: make([]int64, len(t.I))}
		for j, i := range t.I {
			if i < 0 {
				i += rows
			}
			k.I[j] = i
		}
		im.consts[c.in(1)+"#gather"] = k
		idx, err := im.value(c.in(1) + "#gather")
		if err != nil {
			return err
		}
		return c.set(im.gatherAt(table, ax, idx))
	}
	idx, err := c.x(1)
	if err != nil {
		return err
	}
	if b.Type(idx).DType.IsInt() {
		// ONNX counts negative indices from the end: idx + rows·(0 > idx).
		neg := b.Op("Greater", nil, b.Scalar(0, idx), idx)
		idx = b.Add(idx, b.Mul(neg, b.Scalar(float64(rows), idx)))
	}
	return c.set(im.gatherAt(table, ax, idx))
}

// convGatherElements: y[p] = x[p with its axis coordinate replaced by
// idx[p]], a Gather from x flattened at base[p] + idx[p]·stride, base being
// p's offset in x without the axis coordinate.
func convGatherElements(c *ctx) error {
	b := c.b
	v, idx, err := c.pair()
	if err != nil {
		return err
	}
	xs, is := b.Type(v).Shape, b.Type(idx).Shape
	r := len(xs)
	if !b.Type(idx).DType.IsInt() || len(is) != r || r == 0 {
		return c.errorf("indices %v for data %v", b.Type(idx), b.Type(v))
	}
	ax, err := c.axis(c.attrInt("axis", 0), r)
	if err != nil {
		return err
	}
	stride := make([]int, r)
	m, sz := 1, 1
	for k := r - 1; k >= 0; k-- {
		if k != ax && is[k] > xs[k] {
			return c.errorf("indices %v exceed data %v", b.Type(idx), b.Type(v))
		}
		stride[k] = sz
		sz *= xs[k]
		m *= is[k]
	}
	if m == 0 {
		return c.set(b.Const(0, ir.Type{DType: b.Type(v).DType, Shape: is}))
	}
	base := make([]float64, m)
	for p := range m {
		q, off := p, 0
		for k := r - 1; k >= 0; k-- {
			if k != ax {
				off += (q % is[k]) * stride[k]
			}
			q /= is[k]
		}
		base[p] = float64(off)
	}
	if idx, err = c.im.nonNegative(c.in(1), idx, xs[ax]); err != nil {
		return err
	}
	it := b.Type(idx)
	at := b.Mul(idx, b.Scalar(float64(stride[ax]), idx))
	if m > 1 || base[0] != 0 {
		at = b.Add(at, c.im.constInput("gather_base", ir.Type{DType: it.DType, Shape: is}, base))
	}
	return c.set(b.Op("Gather", nil, b.Reshape(v, sz), at))
}

// convScatterElements of a 1-D tensor (SLTrain's sparse S, written factored
// by slc export): y = data + Σ updates at indices (reduction add), or
// data·(1 − hit) + Σ updates (none; ONNX leaves duplicates undefined).
func convScatterElements(c *ctx) error {
	b := c.b
	data, err := c.x(0)
	if err != nil {
		return err
	}
	idx, err := c.x(1)
	if err != nil {
		return err
	}
	upd, err := c.x(2)
	if err != nil {
		return err
	}
	red := c.attrString("reduction", "none")
	dt := b.Type(data)
	if dt.Rank() != 1 || b.Type(idx).Rank() != 1 || b.Type(upd).Rank() != 1 || !dt.DType.IsFloat() {
		return c.unsupported("input shapes", fmt.Sprintf("%v, %v, %v (slc takes 1-D float data)", dt, b.Type(idx), b.Type(upd)))
	}
	if ax := c.attrInt("axis", 0); ax != 0 && ax != -1 {
		return c.badAttr("axis", ax)
	}
	if red != "none" && red != "add" {
		return c.badAttr("reduction", red)
	}
	if idx, err = c.im.nonNegative(c.in(1), idx, dt.Shape[0]); err != nil {
		return err
	}
	rows := ir.Attrs{"num_rows": ir.Int(int64(dt.Shape[0]))}
	sum := b.Op("ScatterAdd", rows, upd, idx)
	if red == "add" {
		return c.set(b.Add(data, sum))
	}
	hit := b.Op("ScatterAdd", rows, b.Op("Expand", ir.Attrs{"shape": ir.IntsOf(b.Type(upd).Shape)}, b.Scalar(1, upd)), idx)
	return c.set(b.Add(b.Mul(data, b.Sub(b.Scalar(1, hit), hit)), sum))
}

// convOneHot: y = Where(idx == iota along axis, on, off) with idx made
// non-negative; an index outside [−depth, depth) matches nothing.
func convOneHot(c *ctx) error {
	b, im := c.b, c.im
	idx, err := c.x(0)
	if err != nil {
		return err
	}
	if !b.Type(idx).DType.IsInt() {
		return c.unsupported("dtype", b.Type(idx).DType.String()+" indices")
	}
	dt, err := c.constant(1)
	if err != nil {
		return err
	}
	if dt.len() != 1 || dt.at(0) < 1 || dt.at(0) > math.MaxInt32 || dt.at(0) != math.Trunc(dt.at(0)) {
		return c.errorf("bad depth")
	}
	depth := int(dt.at(0))
	vals, err := c.x(2)
	if err != nil {
		return err
	}
	if t := b.Type(vals); t.Rank() != 1 || t.Shape[0] != 2 {
		return c.errorf("values %v is not [off, on]", t)
	}
	is := b.Type(idx).Shape
	r := len(is) + 1
	ax, err := c.axis(c.attrInt("axis", -1), r)
	if err != nil {
		return err
	}
	if idx, err = im.nonNegative(c.in(0), idx, depth); err != nil {
		return err
	}
	us := slices.Insert(slices.Clone(is), ax, 1)
	ios := make([]int, r)
	iota := make([]float64, depth)
	for k := range ios {
		ios[k] = 1
	}
	ios[ax] = depth
	for k := range iota {
		iota[k] = float64(k)
	}
	it := im.constInput("onehot_iota", ir.Type{DType: b.Type(idx).DType, Shape: ios}, iota)
	eq := im.equal(im.reshape(idx, us), it)
	off := b.Reshape(b.Slice(vals, 0, 0, 1))
	on := b.Reshape(b.Slice(vals, 0, 1, 2))
	return c.set(im.where(eq, on, off))
}
