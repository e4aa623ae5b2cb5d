package onnx

import (
	"fmt"
	"slices"

	"gitee.com/gidean/conv-linn/ir"
)

// shapeOps move elements without computing new values: reshapes,
// transposes, slices, joins and splits, tiles, Trilu's mask.
var shapeOps = map[string]opDef{
	"Identity":     {conv: convIdentity, keepsBool: true},
	"Reshape":      {conv: convReshape, attrs: []string{"allowzero"}, keepsBool: true},
	"Transpose":    {conv: convTranspose, attrs: []string{"perm"}, keepsBool: true},
	"Unsqueeze":    {conv: convUnsqueeze, keepsBool: true},
	"Squeeze":      {conv: convSqueeze, keepsBool: true},
	"Expand":       {conv: convExpand, keepsBool: true},
	"Flatten":      {conv: convFlatten, attrs: []string{"axis"}, keepsBool: true},
	"Concat":       {conv: convConcat, attrs: []string{"axis"}, keepsBool: true},
	"Split":        {conv: convSplit, attrs: []string{"axis"}, outs: -1, keepsBool: true},
	"Slice":        {conv: convSlice, keepsBool: true},
	"Tile":         {conv: convTile},
	"DepthToSpace": {conv: convDepthToSpace, attrs: []string{"blocksize", "mode"}},
	"SpaceToDepth": {conv: convDepthToSpace, attrs: []string{"blocksize", "mode"}},
	"Trilu":        {conv: convTrilu, attrs: []string{"upper"}, keepsBool: true},
}

// convIdentity passes its operand on: a constant stays a constant, and a
// copy of a weight is a weight of its own. torch.onnx.export merges
// initializers of equal values (LLaMA's all-ones norm weights) into one and
// keeps each name as an Identity of it, as it was in the exported model.
func convIdentity(c *ctx) error {
	im, in := c.im, c.in(0)
	im.bools[c.out] = im.bools[in]
	if im.params[in] && !Frozen(c.out, im.freeze) {
		im.params[c.out] = true
	}
	if t, ok := im.consts[in]; ok {
		return c.setConst(t)
	}
	v, err := c.x(0)
	if err != nil {
		return err
	}
	return c.set(v)
}

// convReshape reshapes to the constant shape operand; a 0 copies the
// input's dim (allowzero=1 with a zero dim is refused).
func convReshape(c *ctx) error {
	b := c.b
	v, shape, err := c.xInts()
	if err != nil {
		return err
	}
	xs := b.Type(v).Shape
	s := make([]int, len(shape))
	for k, d := range shape {
		switch {
		case d == 0 && c.attrInt("allowzero", 0) == 0:
			if k >= len(xs) {
				return c.errorf("shape[%d] = 0 copies a dim that %v does not have", k, b.Type(v))
			}
			s[k] = xs[k]
		case d == 0:
			return c.unsupported("attribute", "allowzero=1 with a zero dim")
		default:
			s[k] = int(d)
		}
	}
	return c.set(c.im.reshape(v, s))
}

// convTranspose permutes the axes (reversed without perm). The 2-D
// transpose of a weight used once is left for the MatMul that reads it
// (importer.transposed), so that it becomes a Linear of the weight itself.
func convTranspose(c *ctx) error {
	im, in := c.im, c.in(0)
	v, err := c.x(0)
	if err != nil {
		return err
	}
	r := c.b.Type(v).Rank()
	if t, ok := im.consts[in]; ok && im.params[in] && len(t.Shape) == 2 && im.uses[in] == 1 {
		if p, ok := c.a["perm"]; !ok || slices.Equal(p.ints, []int64{1, 0}) {
			im.transposed[c.out] = in // emitted when used other than by a MatMul (value)
			return nil
		}
	}
	var perm []int
	if p, ok := c.a["perm"]; ok {
		for _, q := range p.ints {
			perm = append(perm, int(q))
		}
	} else {
		for k := r - 1; k >= 0; k-- {
			perm = append(perm, k)
		}
	}
	return c.set(c.b.Transpose(v, perm...))
}

// squeezeAxes reads Unsqueeze's and Squeeze's optional axes operand.
func squeezeAxes(c *ctx) (string, []int64, error) {
	v, err := c.x(0)
	if err != nil {
		return "", nil, err
	}
	var axes []int64
	if c.in(1) != "" {
		if axes, err = c.ints(1); err != nil {
			return "", nil, err
		}
	}
	return v, axes, nil
}

// convUnsqueeze inserts dims of 1 at the axes (of the result).
func convUnsqueeze(c *ctx) error {
	v, axes, err := squeezeAxes(c)
	if err != nil {
		return err
	}
	xs := c.b.Type(v).Shape
	r := len(xs) + len(axes)
	ones := make([]bool, r)
	for _, ax := range axes {
		q, err := ir.NormAxis(ax, r)
		if err != nil || ones[q] {
			return c.errorf("bad axes %v for %v", axes, c.b.Type(v))
		}
		ones[q] = true
	}
	var s []int
	k := 0
	for q := range r {
		if ones[q] {
			s = append(s, 1)
		} else {
			s = append(s, xs[k])
			k++
		}
	}
	return c.set(c.im.reshape(v, s))
}

// convSqueeze drops the dims of 1 at the axes (all of them without axes).
func convSqueeze(c *ctx) error {
	v, axes, err := squeezeAxes(c)
	if err != nil {
		return err
	}
	xs := c.b.Type(v).Shape
	drop := make([]bool, len(xs))
	for _, ax := range axes {
		q, err := ir.NormAxis(ax, len(xs))
		if err != nil || xs[q] != 1 {
			return c.errorf("bad axes %v for %v", axes, c.b.Type(v))
		}
		drop[q] = true
	}
	var s []int
	for q, d := range xs {
		if !(drop[q] || (len(axes) == 0 && d == 1)) {
			s = append(s, d)
		}
	}
	return c.set(c.im.reshape(v, s))
}

// convExpand broadcasts to the constant shape operand.
func convExpand(c *ctx) error {
	b := c.b
	v, shape, err := c.xInts()
	if err != nil {
		return err
	}
	s := make([]int, len(shape))
	for k, d := range shape {
		s[k] = int(d)
	}
	to, err := ir.Broadcast(b.Type(v).Shape, s)
	if err != nil {
		return c.errorf("%w", err)
	}
	if ir.ShapeEqual(to, b.Type(v).Shape) {
		return c.set(v)
	}
	return c.set(b.Op("Expand", ir.Attrs{"shape": ir.IntsOf(to)}, v))
}

// convFlatten reshapes to 2-D, the dims before the axis and those from it.
func convFlatten(c *ctx) error {
	v, err := c.x(0)
	if err != nil {
		return err
	}
	xs := c.b.Type(v).Shape
	ax := c.attrInt("axis", 1)
	if ax < 0 {
		ax += int64(len(xs))
	}
	if ax < 0 || ax > int64(len(xs)) {
		return c.errorf("axis %d out of range for %v", c.attrInt("axis", 1), c.b.Type(v))
	}
	p, q := 1, 1
	for k, d := range xs {
		if int64(k) < ax {
			p *= d
		} else {
			q *= d
		}
	}
	return c.set(c.im.reshape(v, []int{p, q}))
}

// convConcat joins its operands along the axis.
func convConcat(c *ctx) error {
	var vs []string
	for k := range c.n.inputs {
		v, err := c.x(k)
		if err != nil {
			return err
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return c.errorf("no inputs")
	}
	ax, err := c.axis(c.attrInt("axis", 0), c.b.Type(vs[0]).Rank())
	if err != nil {
		return err
	}
	return c.set(c.b.Op("Concat", ir.Attrs{"axis": ir.Int(int64(ax))}, vs...))
}

// convSplit slices the axis into the parts of the split operand (equal
// parts without one), one per output.
func convSplit(c *ctx) error {
	b, n := c.b, c.n
	v, err := c.x(0)
	if err != nil {
		return err
	}
	xs := b.Type(v).Shape
	ax, err := c.axis(c.attrInt("axis", 0), len(xs))
	if err != nil {
		return err
	}
	var parts []int64
	if c.in(1) != "" {
		if parts, err = c.ints(1); err != nil {
			return err
		}
	} else {
		k := len(n.outputs)
		if xs[ax]%k != 0 {
			return c.unsupported("uneven split (opset 18)", "")
		}
		for range k {
			parts = append(parts, int64(xs[ax]/k))
		}
	}
	if len(parts) != len(n.outputs) {
		return c.errorf("%d parts for %d outputs", len(parts), len(n.outputs))
	}
	var at int64
	for _, p := range parts {
		if p < 0 {
			return c.errorf("negative part %v", parts)
		}
		at += p
	}
	if at != int64(xs[ax]) {
		return c.errorf("parts %v do not sum to %d", parts, xs[ax])
	}
	at = 0
	for k, o := range n.outputs {
		y := b.Slice(v, ax, int(at), int(at+parts[k]))
		at += parts[k]
		if err := b.Err(); err != nil {
			return c.errorf("%w", err)
		}
		if o != "" {
			c.im.vals[o] = y
			c.im.bools[o] = c.im.bools[c.in(0)]
		}
	}
	return nil
}

// convSlice takes x[start:end:step] along each axis of the constant
// operands, with ONNX's clamping of the bounds.
func convSlice(c *ctx) error {
	b := c.b
	v, starts, err := c.xInts()
	if err != nil {
		return err
	}
	ends, err := c.ints(2)
	if err != nil {
		return err
	}
	xs := b.Type(v).Shape
	r := len(xs)
	var axes, steps []int64
	if c.in(3) != "" {
		if axes, err = c.ints(3); err != nil {
			return err
		}
	} else {
		for k := range starts {
			axes = append(axes, int64(k))
		}
	}
	if c.in(4) != "" {
		if steps, err = c.ints(4); err != nil {
			return err
		}
	} else {
		for range starts {
			steps = append(steps, 1)
		}
	}
	if len(ends) != len(starts) || len(axes) != len(starts) || len(steps) != len(starts) {
		return c.errorf("starts, ends, axes and steps differ in length")
	}
	seen := make([]bool, r)
	for k := range starts {
		ax, err := ir.NormAxis(axes[k], r)
		if err != nil || seen[ax] {
			return c.errorf("bad axes %v for %v", axes, b.Type(v))
		}
		seen[ax] = true
		d, step := int64(xs[ax]), steps[k]
		if step == 0 {
			return c.errorf("step 0")
		}
		st, en := starts[k], ends[k]
		if st < 0 {
			st += d
		}
		if en < 0 {
			en += d
		}
		if step > 0 {
			st, en = min(max(st, 0), d), min(max(en, 0), d)
		} else {
			st, en = min(max(st, 0), d-1), min(max(en, -1), d-1)
		}
		v = c.im.sliceAxis(v, ax, st, en, step)
	}
	return c.set(v)
}

// convTile repeats x along each axis: a Concat of copies.
func convTile(c *ctx) error {
	b := c.b
	v, reps, err := c.xInts()
	if err != nil {
		return err
	}
	if len(reps) != b.Type(v).Rank() {
		return c.errorf("%d repeats for %v", len(reps), b.Type(v))
	}
	for ax, r := range reps {
		if r < 1 {
			return c.unsupported("attribute", fmt.Sprintf("repeats %v", reps))
		}
		if r > 1 {
			vs := make([]string, r)
			for k := range vs {
				vs[k] = v
			}
			v = b.Op("Concat", ir.Attrs{"axis": ir.Int(int64(ax))}, vs...)
		}
	}
	return c.set(b.Unary("Identity", v))
}

// convDepthToSpace converts DepthToSpace (modes DCR and CRD) and
// SpaceToDepth: a reshape, a transpose and a reshape.
func convDepthToSpace(c *ctx) error {
	b, op := c.b, c.n.opType
	v, err := c.x(0)
	if err != nil {
		return err
	}
	s := b.Type(v).Shape
	bs := int(c.attrInt("blocksize", 0))
	if len(s) != 4 || bs < 1 {
		return c.errorf("input %v, blocksize %d", b.Type(v), bs)
	}
	N, C, H, W := s[0], s[1], s[2], s[3]
	mode := c.attrString("mode", "DCR")
	if op == "SpaceToDepth" {
		if c.has("mode") {
			return c.unsupported("attribute", "mode")
		}
		if H%bs != 0 || W%bs != 0 {
			return c.errorf("%v is not divisible by %d", b.Type(v), bs)
		}
		y := b.Reshape(v, N, C, H/bs, bs, W/bs, bs)
		y = b.Transpose(y, 0, 3, 5, 1, 2, 4)
		return c.set(b.Reshape(y, N, C*bs*bs, H/bs, W/bs))
	}
	if C%(bs*bs) != 0 {
		return c.errorf("%v is not divisible by %d²", b.Type(v), bs)
	}
	var y string
	switch mode {
	case "DCR":
		y = b.Transpose(b.Reshape(v, N, bs, bs, C/(bs*bs), H, W), 0, 3, 4, 1, 5, 2)
	case "CRD":
		y = b.Transpose(b.Reshape(v, N, C/(bs*bs), bs, bs, H, W), 0, 1, 4, 2, 5, 3)
	default:
		return c.badAttr("mode", mode)
	}
	return c.set(b.Reshape(y, N, C/(bs*bs), H*bs, W*bs))
}

// convTrilu keeps the upper (or lower) triangle of the last two axes from
// the k-th diagonal: a Where with a constant mask.
func convTrilu(c *ctx) error {
	b := c.b
	v, err := c.x(0)
	if err != nil {
		return err
	}
	var k int64
	if c.in(1) != "" {
		ks, err := c.ints(1)
		if err != nil {
			return err
		}
		if len(ks) != 1 {
			return c.errorf("k has %d elements", len(ks))
		}
		k = ks[0]
	}
	s := b.Type(v).Shape
	if len(s) < 2 {
		return c.errorf("input %v has rank < 2", b.Type(v))
	}
	r, cols := s[len(s)-2], s[len(s)-1]
	upper := c.attrInt("upper", 1) != 0
	mask := make([]float64, r*cols)
	for i := range r {
		for j := range cols {
			d := int64(j - i)
			if (upper && d >= k) || (!upper && d <= k) {
				mask[i*cols+j] = 1
			}
		}
	}
	if r*cols == 0 {
		return c.set(v)
	}
	m := c.im.constInput("trilu_mask", ir.Type{DType: ir.I64, Shape: []int{r, cols}}, mask)
	return c.set(c.im.where(m, v, b.Const(0, ir.Type{DType: b.Type(v).DType})))
}
