package onnx

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// This file holds the shape ops (Shape, Slice, Flatten), LogSoftmax and the
// import-time constant folding that makes Shape useful: shapes are static, so
// Shape is a constant, and the arithmetic that usually follows it (Gather,
// Concat, Unsqueeze, Cast, Mul, Add, Sub, Div, Slice, …) is folded so that a
// Reshape, Expand or Slice fed by a Shape chain sees a constant operand.

// maxFold bounds the elements of a folded node's result: larger all-constant
// nodes stay in the graph.
const maxFold = 1 << 16

// foldable reports whether n has only import-time constant operands, so that
// fold can evaluate it.
func (im *importer) foldable(n *nodeProto) bool {
	if im.noFold || n.opType == "Constant" || n.opType == "Shape" || len(n.outputs) != 1 {
		return false
	}
	some := false
	for _, in := range n.inputs {
		if in == "" {
			continue
		}
		t, ok := im.consts[in]
		if !ok || t.len() > maxFold || im.params[in] {
			return false
		}
		some = true
	}
	return some
}

// fold converts n on its own into a scratch graph whose inputs are n's constant
// operands and evaluates it with the reference interpreter (the executable
// semantics of slc's ops), so a folded value is exactly what the graph would
// have computed. The result becomes an import-time constant.
func (im *importer) fold(n *nodeProto) error {
	sub := &importer{b: ir.NewBuilder("fold"), opset: im.opset, vals: map[string]string{}, consts: map[string]*Tensor{}, bools: map[string]bool{}, node: n, noFold: true}
	for _, in := range n.inputs {
		if in != "" {
			sub.consts[in] = im.consts[in]
			sub.bools[in] = im.bools[in]
		}
	}
	if err := sub.convert(n); err != nil {
		return err
	}
	out := n.outputs[0]
	im.bools[out] = sub.bools[out]
	if t, ok := sub.consts[out]; ok {
		im.consts[out] = t
		return nil
	}
	v, ok := sub.vals[out]
	if !ok {
		return fmt.Errorf("node %q (%s): folding gave no value", n.name, n.opType)
	}
	if sub.b.Type(v).NumElements() > maxFold {
		return im.keep(n)
	}
	sub.b.Output("y", v)
	if err := sub.b.Err(); err != nil {
		return fmt.Errorf("node %q (%s): %w", n.name, n.opType, err)
	}
	g := sub.b.G
	bind, err := interp.InitState(g)
	if err != nil {
		return fmt.Errorf("node %q (%s): folding: %w", n.name, n.opType, err)
	}
	res, err := interp.Run(g, bind)
	if err != nil {
		return fmt.Errorf("node %q (%s): folding: %w", n.name, n.opType, err)
	}
	y := res["y"]
	t := &Tensor{Name: out, DType: y.Type.DType, Shape: slices.Clone(y.Type.Shape)}
	if t.DType.IsFloat() {
		t.F = append([]float64{}, y.F...)
	} else {
		t.I = append([]int64{}, y.I...)
	}
	im.consts[out] = t
	return nil
}

// keep converts n into the graph without folding.
func (im *importer) keep(n *nodeProto) error {
	im.noFold = true
	defer func() { im.noFold = false }()
	return im.convert(n)
}

// sliceAxis takes x[start:end:step] along axis ax (bounds already clamped as
// ONNX Slice does): a Slice for step 1, else a Gather of the picked indices
// with the axis moved to the front.
func (im *importer) sliceAxis(v string, ax int, start, end, step int64) string {
	b := im.b
	if step == 1 {
		return b.Slice(v, ax, int(start), int(max(start, end)))
	}
	var idx []float64
	for i := start; (step > 0 && i < end) || (step < 0 && i > end); i += step {
		idx = append(idx, float64(i))
	}
	return im.gatherAxis(v, ax, idx, []int{len(idx)})
}

// gatherAxis is ONNX Gather along axis ax with constant, non-negative indices
// of the given shape.
func (im *importer) gatherAxis(v string, ax int, idx []float64, shape []int) string {
	b := im.b
	it := ir.Type{DType: ir.I64, Shape: shape}
	uniform := true
	for _, i := range idx {
		uniform = uniform && i == idx[0]
	}
	var iv string
	if len(idx) == 0 || uniform {
		iv = b.Const(append(idx, 0)[0], it)
	} else {
		iv = im.constInput("gather_indices", it, idx)
	}
	return im.gatherAt(v, ax, iv)
}

// gatherAt is ONNX Gather along axis ax with non-negative indices: the axis
// is moved to the front for slc's axis-0 Gather and the result's axes are
// moved back.
func (im *importer) gatherAt(v string, ax int, iv string) string {
	b := im.b
	r := b.Type(v).Rank()
	if ax != 0 {
		perm := []int{ax}
		for k := range r {
			if k != ax {
				perm = append(perm, k)
			}
		}
		v = b.Transpose(v, perm...)
	}
	y := b.Op("Gather", nil, v, iv)
	if ax == 0 || b.Err() != nil {
		return y
	}
	// y is the index dims, then x's dims before ax, then those after it.
	ri := b.Type(iv).Rank()
	var perm []int
	for k := range ax {
		perm = append(perm, ri+k)
	}
	for k := range ri {
		perm = append(perm, k)
	}
	for k := ri + ax; k < b.Type(y).Rank(); k++ {
		perm = append(perm, k)
	}
	return b.Transpose(y, perm...)
}

// convertMore translates the ops of this file.
func (im *importer) convertMore(n *nodeProto, in func(int) string, x func(int) (string, error), set func(string) error) error {
	b := im.b
	out := n.outputs[0]
	switch op := n.opType; op {
	case "Shape":
		a, err := im.attrs(n, "start", "end")
		if err != nil {
			return err
		}
		if (a["start"] != nil || a["end"] != nil) && im.opset < 15 {
			return im.unsupported("attribute", "start/end before opset 15")
		}
		var s []int
		if t, ok := im.consts[in(0)]; ok {
			s = t.Shape
		} else {
			v, err := x(0)
			if err != nil {
				return err
			}
			s = b.Type(v).Shape
		}
		r := int64(len(s))
		clamp := func(i int64) int64 {
			if i < 0 {
				i += r
			}
			return min(max(i, 0), r)
		}
		st, en := clamp(getInt(a, "start", 0)), clamp(getInt(a, "end", r))
		t := &Tensor{Name: out, DType: ir.I64, Shape: []int{0}, I: []int64{}}
		for k := st; k < en; k++ {
			t.I = append(t.I, int64(s[k]))
		}
		t.Shape[0] = len(t.I)
		im.consts[out] = t
		return nil

	case "Flatten":
		a, err := im.attrs(n, "axis")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		xs := b.Type(v).Shape
		ax := getInt(a, "axis", 1)
		if ax < 0 {
			ax += int64(len(xs))
		}
		if ax < 0 || ax > int64(len(xs)) {
			return fmt.Errorf("node %q (Flatten): axis %d out of range for %v", n.name, getInt(a, "axis", 1), b.Type(v))
		}
		p, q := 1, 1
		for k, d := range xs {
			if int64(k) < ax {
				p *= d
			} else {
				q *= d
			}
		}
		return set(im.reshape(v, []int{p, q}))

	case "Slice":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		starts, err := im.ints(in(1))
		if err != nil {
			return err
		}
		ends, err := im.ints(in(2))
		if err != nil {
			return err
		}
		xs := b.Type(v).Shape
		r := len(xs)
		var axes, steps []int64
		if in(3) != "" {
			if axes, err = im.ints(in(3)); err != nil {
				return err
			}
		} else {
			for k := range starts {
				axes = append(axes, int64(k))
			}
		}
		if in(4) != "" {
			if steps, err = im.ints(in(4)); err != nil {
				return err
			}
		} else {
			for range starts {
				steps = append(steps, 1)
			}
		}
		if len(ends) != len(starts) || len(axes) != len(starts) || len(steps) != len(starts) {
			return fmt.Errorf("node %q (Slice): starts, ends, axes and steps differ in length", n.name)
		}
		seen := make([]bool, r)
		for k := range starts {
			ax, err := ir.NormAxis(axes[k], r)
			if err != nil || seen[ax] {
				return fmt.Errorf("node %q (Slice): bad axes %v for %v", n.name, axes, b.Type(v))
			}
			seen[ax] = true
			d, step := int64(xs[ax]), steps[k]
			if step == 0 {
				return fmt.Errorf("node %q (Slice): step 0", n.name)
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
			v = im.sliceAxis(v, ax, st, en, step)
		}
		return set(v)

	case "LogSoftmax":
		a, err := im.attrs(n, "axis")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		if !b.Type(v).DType.IsFloat() {
			return im.unsupported("dtype", b.Type(v).DType.String())
		}
		ax, err := ir.NormAxis(getInt(a, "axis", -1), b.Type(v).Rank())
		if err != nil {
			return fmt.Errorf("node %q (LogSoftmax): %w", n.name, err)
		}
		return set(im.logSoftmax(v, ax))

	case "NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss":
		a, err := im.attrs(n, "reduction", "ignore_index")
		if err != nil {
			return err
		}
		red := "mean"
		if r, ok := a["reduction"]; ok {
			red = string(r.s)
		}
		if red != "mean" && red != "sum" && red != "none" {
			return im.unsupported("attribute", "reduction="+red)
		}
		v, t, err := pair(x)
		if err != nil {
			return err
		}
		tv, tt := b.Type(v), b.Type(t)
		if !tv.DType.IsFloat() {
			return im.unsupported("dtype", tv.DType.String())
		}
		if !tt.DType.IsInt() {
			return im.unsupported("dtype", tt.DType.String())
		}
		if tv.Rank() < 2 || tt.Rank() != tv.Rank()-1 || tt.Shape[0] != tv.Shape[0] || !ir.ShapeEqual(tt.Shape[1:], tv.Shape[2:]) {
			return fmt.Errorf("node %q (%s): input %v and target %v do not match", n.name, op, tv, tt)
		}
		w := ""
		if in(2) != "" {
			if w, err = x(2); err != nil {
				return err
			}
			if wt := b.Type(w); wt.Rank() != 1 || wt.Shape[0] != tv.Shape[1] || wt.DType != tv.DType {
				return fmt.Errorf("node %q (%s): weight %v does not match input %v", n.name, op, wt, tv)
			}
		}
		var ii *int64
		if p, ok := a["ignore_index"]; ok {
			ii = &p.i
		}
		if op == "SoftmaxCrossEntropyLoss" {
			v = im.logSoftmax(v, 1)
			if len(n.outputs) > 1 && n.outputs[1] != "" {
				if err := b.Err(); err != nil {
					return fmt.Errorf("node %q (%s): %w", n.name, op, err)
				}
				im.vals[n.outputs[1]] = v
			}
		}
		return set(im.nllLoss(v, t, w, ii, red))

	case "Equal", "Less", "Greater":
		// ONNX's bool results are 0/1 I64 values here (slc has no bool dtype);
		// they may only feed Where, Cast or a graph output, which refuses them.
		if _, err := im.attrs(n); err != nil {
			return err
		}
		u, v, err := pair(x)
		if err != nil {
			return err
		}
		if im.bools[in(0)] || im.bools[in(1)] {
			return im.unsupported("dtype", "bool")
		}
		if b.Type(u).DType != b.Type(v).DType {
			return fmt.Errorf("node %q (%s): operands %v and %v differ in dtype", n.name, op, b.Type(u), b.Type(v))
		}
		var y string
		switch op {
		case "Greater":
			y = b.Op("Greater", nil, u, v)
		case "Less":
			y = b.Op("Greater", nil, v, u)
		default:
			y = im.equal(u, v)
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
		if err := set(y); err != nil {
			return err
		}
		im.bools[out] = true
		return nil

	case "Where":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		if !im.bools[in(0)] {
			return im.unsupported("non-bool condition", in(0))
		}
		c, u, err := pair(x)
		if err != nil {
			return err
		}
		v, err := x(2)
		if err != nil {
			return err
		}
		if im.bools[in(1)] || im.bools[in(2)] {
			return im.unsupported("dtype", "bool")
		}
		return set(im.where(c, u, v))

	case "ConstantOfShape":
		a, err := im.attrs(n, "value")
		if err != nil {
			return err
		}
		shape, err := im.ints(in(0))
		if err != nil {
			return err
		}
		t := &Tensor{Name: out, DType: ir.F32}
		val := 0.0
		if p, ok := a["value"]; ok && p.t != nil {
			c, err := tensorOf(p.t)
			if err != nil {
				return im.unsupported("dtype", dtName(p.t.dataType))
			}
			if c.len() != 1 {
				return fmt.Errorf("node %q (ConstantOfShape): value has %d elements", n.name, c.len())
			}
			t.DType, val = c.DType, c.at(0)
		}
		m := 1
		for _, d := range shape {
			if d < 0 || d > math.MaxInt32 {
				return fmt.Errorf("node %q (ConstantOfShape): bad shape %v", n.name, shape)
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
		im.consts[out] = t
		return nil

	case "Range":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		var ops [3]*Tensor
		for k := range ops {
			t, err := im.constant(in(k))
			if err != nil {
				return err
			}
			if t.len() != 1 || (k > 0 && t.DType != ops[0].DType) {
				return fmt.Errorf("node %q (Range): operands must be scalars of one dtype", n.name)
			}
			ops[k] = t
		}
		t := &Tensor{Name: out, DType: ops[0].DType}
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
				return fmt.Errorf("node %q (Range): delta 0", n.name)
			}
			t.I = []int64{}
			for v := st; (de > 0 && v < li) || (de < 0 && v > li); v += de {
				t.I = append(t.I, v)
			}
			t.Shape = []int{len(t.I)}
		}
		im.consts[out] = t
		return nil

	case "Trilu":
		a, err := im.attrs(n, "upper")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		var k int64
		if in(1) != "" {
			ks, err := im.ints(in(1))
			if err != nil {
				return err
			}
			if len(ks) != 1 {
				return fmt.Errorf("node %q (Trilu): k has %d elements", n.name, len(ks))
			}
			k = ks[0]
		}
		s := b.Type(v).Shape
		if len(s) < 2 {
			return fmt.Errorf("node %q (Trilu): input %v has rank < 2", n.name, b.Type(v))
		}
		r, c := s[len(s)-2], s[len(s)-1]
		upper := getInt(a, "upper", 1) != 0
		mask := make([]float64, r*c)
		for i := range r {
			for j := range c {
				d := int64(j - i)
				if (upper && d >= k) || (!upper && d <= k) {
					mask[i*c+j] = 1
				}
			}
		}
		mt := ir.Type{DType: ir.I64, Shape: []int{r, c}}
		var m string
		if r*c == 0 {
			return set(v)
		}
		m = im.constInput("trilu_mask", mt, mask)
		return set(im.where(m, v, b.Const(0, ir.Type{DType: b.Type(v).DType})))

	case "LayerNormalization":
		a, err := im.attrs(n, "axis", "epsilon", "stash_type")
		if err != nil {
			return err
		}
		if len(n.outputs) > 3 {
			return im.unsupported(fmt.Sprintf("number of outputs (%d)", len(n.outputs)), "")
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		dt := b.Type(v).DType
		if !dt.IsFloat() {
			return im.unsupported("dtype", dt.String())
		}
		if st := getInt(a, "stash_type", 1); st != 1 || dt != ir.F32 {
			return im.unsupported("attribute", fmt.Sprintf("stash_type=%d with %v input", st, dt))
		}
		r := b.Type(v).Rank()
		ax, err := ir.NormAxis(getInt(a, "axis", -1), r)
		if err != nil {
			return fmt.Errorf("node %q (LayerNormalization): %w", n.name, err)
		}
		var axes []int
		for k := ax; k < r; k++ {
			axes = append(axes, k)
		}
		mean := b.Reduce("ReduceMean", v, true, axes...)
		d := b.Sub(v, mean)
		inv := b.Unary("Rsqrt", b.Add(b.Reduce("ReduceMean", b.Mul(d, d), true, axes...), b.Scalar(getFloat(a, "epsilon", 1e-5), v)))
		y := b.Mul(d, inv)
		sc, err := x(1)
		if err != nil {
			return err
		}
		y = b.Mul(y, sc)
		if in(2) != "" {
			bias, err := x(2)
			if err != nil {
				return err
			}
			y = b.Add(y, bias)
		}
		if err := b.Err(); err != nil {
			return fmt.Errorf("node %q (LayerNormalization): %w", n.name, err)
		}
		for k, o := range n.outputs {
			if o != "" && k > 0 {
				im.vals[o] = []string{"", mean, inv}[k]
			}
		}
		return set(y)

	case "Split":
		a, err := im.attrs(n, "axis")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		xs := b.Type(v).Shape
		ax, err := ir.NormAxis(getInt(a, "axis", 0), len(xs))
		if err != nil {
			return fmt.Errorf("node %q (Split): %w", n.name, err)
		}
		var parts []int64
		if in(1) != "" {
			if parts, err = im.ints(in(1)); err != nil {
				return err
			}
		} else {
			k := len(n.outputs)
			if xs[ax]%k != 0 {
				return im.unsupported("uneven split (opset 18)", "")
			}
			for range k {
				parts = append(parts, int64(xs[ax]/k))
			}
		}
		if len(parts) != len(n.outputs) {
			return fmt.Errorf("node %q (Split): %d parts for %d outputs", n.name, len(parts), len(n.outputs))
		}
		var at int64
		for _, p := range parts {
			if p < 0 {
				return fmt.Errorf("node %q (Split): negative part %v", n.name, parts)
			}
			at += p
		}
		if at != int64(xs[ax]) {
			return fmt.Errorf("node %q (Split): parts %v do not sum to %d", n.name, parts, xs[ax])
		}
		at = 0
		for k, o := range n.outputs {
			y := b.Slice(v, ax, int(at), int(at+parts[k]))
			at += parts[k]
			if err := b.Err(); err != nil {
				return fmt.Errorf("node %q (Split): %w", n.name, err)
			}
			if o != "" {
				im.vals[o] = y
				im.bools[o] = im.bools[in(0)]
			}
		}
		return nil

	case "Max", "Min", "Sum", "Mean":
		// Element-wise over any number of operands, with broadcasting.
		if _, err := im.attrs(n); err != nil {
			return err
		}
		if len(n.inputs) == 0 {
			return fmt.Errorf("node %q (%s): no inputs", n.name, op)
		}
		bop := map[string]string{"Max": "Max", "Min": "Min", "Sum": "Add", "Mean": "Add"}[op]
		var y string
		for k := range n.inputs {
			v, err := x(k)
			if err != nil {
				return err
			}
			if k == 0 {
				y = v
			} else {
				y = b.Op(bop, nil, y, v)
			}
		}
		if op == "Mean" {
			if !b.Type(y).DType.IsFloat() {
				return im.unsupported("dtype", b.Type(y).DType.String())
			}
			if len(n.inputs) > 1 {
				y = b.Div(y, b.Scalar(float64(len(n.inputs)), y))
			}
		}
		if len(n.inputs) == 1 && b.Err() == nil {
			y = b.Unary("Identity", y)
		}
		return set(y)

	case "Clip":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		y, err := x(0)
		if err != nil {
			return err
		}
		for k, bop := range []string{"Max", "Min"} {
			if in(k+1) == "" {
				continue
			}
			v, err := x(k + 1)
			if err != nil {
				return err
			}
			if b.Type(v).Rank() != 0 {
				return fmt.Errorf("node %q (Clip): bound %v is not a scalar", n.name, b.Type(v))
			}
			y = b.Op(bop, nil, y, v)
		}
		return set(b.Unary("Identity", y))

	case "Abs":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		return set(b.Op("Max", nil, v, b.Unary("Neg", v)))

	case "LeakyRelu":
		// max(x, 0) + α·min(x, 0): one of the two terms is 0.
		a, err := im.attrs(n, "alpha")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		if !b.Type(v).DType.IsFloat() {
			return im.unsupported("dtype", b.Type(v).DType.String())
		}
		zero := b.Scalar(0, v)
		neg := b.Mul(b.Op("Min", nil, v, zero), b.Scalar(getFloat(a, "alpha", 0.01), v))
		return set(b.Add(b.Op("Max", nil, v, zero), neg))

	case "Size":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		var t ir.Type
		if c, ok := im.consts[in(0)]; ok {
			t = c.Type()
		} else {
			v, err := x(0)
			if err != nil {
				return err
			}
			t = b.Type(v)
		}
		im.consts[out] = &Tensor{Name: out, DType: ir.I64, I: []int64{t.NumElements()}}
		return nil

	case "Dropout":
		// Inference: the identity. A training_mode operand must be a constant
		// false; the mask output (bool) is refused.
		if _, err := im.attrs(n, "seed"); err != nil {
			return err
		}
		if len(n.outputs) > 1 && n.outputs[1] != "" {
			return im.unsupported("dtype", "bool (Dropout mask)")
		}
		if in(2) != "" {
			t, err := im.constant(in(2))
			if err != nil {
				return err
			}
			if t.len() != 1 || t.at(0) != 0 {
				return im.unsupported("attribute", "training_mode")
			}
		}
		if t, ok := im.consts[in(0)]; ok {
			im.consts[out] = t
			return nil
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		return set(v)

	case "GatherElements":
		// y[p] = x[p with its axis coordinate replaced by idx[p]]: a Gather from
		// x flattened at base[p] + idx[p]·stride, base being p's offset in x
		// without the axis coordinate.
		a, err := im.attrs(n, "axis")
		if err != nil {
			return err
		}
		v, idx, err := pair(x)
		if err != nil {
			return err
		}
		xs, is := b.Type(v).Shape, b.Type(idx).Shape
		r := len(xs)
		if !b.Type(idx).DType.IsInt() || len(is) != r || r == 0 {
			return fmt.Errorf("node %q (GatherElements): indices %v for data %v", n.name, b.Type(idx), b.Type(v))
		}
		ax, err := ir.NormAxis(getInt(a, "axis", 0), r)
		if err != nil {
			return fmt.Errorf("node %q (GatherElements): %w", n.name, err)
		}
		stride := make([]int, r)
		m, sz := 1, 1
		for k := r - 1; k >= 0; k-- {
			if k != ax && is[k] > xs[k] {
				return fmt.Errorf("node %q (GatherElements): indices %v exceed data %v", n.name, b.Type(idx), b.Type(v))
			}
			stride[k] = sz
			sz *= xs[k]
			m *= is[k]
		}
		if m == 0 {
			return set(b.Const(0, ir.Type{DType: b.Type(v).DType, Shape: is}))
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
		if idx, err = im.nonNegative(in(1), idx, xs[ax]); err != nil {
			return err
		}
		it := b.Type(idx)
		at := b.Mul(idx, b.Scalar(float64(stride[ax]), idx))
		if m > 1 || base[0] != 0 {
			at = b.Add(at, im.constInput("gather_base", ir.Type{DType: it.DType, Shape: is}, base))
		}
		return set(b.Op("Gather", nil, b.Reshape(v, sz), at))

	case "CastLike":
		if _, err := im.attrs(n, "saturate"); err != nil { // saturate only matters for float8
			return err
		}
		v, like, err := pair(x)
		if err != nil {
			return err
		}
		if im.bools[in(0)] || im.bools[in(1)] {
			return im.unsupported("dtype", "bool")
		}
		dt := b.Type(like).DType
		if b.Type(v).DType == dt {
			return set(v)
		}
		return set(b.Op("Cast", ir.Attrs{"to": ir.String(dt.String())}, v))

	case "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "ThresholdedRelu", "Softsign", "Softplus":
		a, err := im.attrs(n, "alpha", "beta", "gamma")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		if !b.Type(v).DType.IsFloat() {
			return im.unsupported("dtype", b.Type(v).DType.String())
		}
		for _, name := range []string{"alpha", "beta", "gamma"} {
			ok := map[string][]string{"Elu": {"alpha"}, "Selu": {"alpha", "gamma"}, "Celu": {"alpha"},
				"HardSigmoid": {"alpha", "beta"}, "ThresholdedRelu": {"alpha"}}[op]
			if a[name] != nil && !slices.Contains(ok, name) {
				return im.unsupported("attribute", name)
			}
		}
		c := func(f float64) string { return b.Scalar(f, v) }
		zero, one := c(0), c(1)
		pos, neg := b.Op("Max", nil, v, zero), b.Op("Min", nil, v, zero)
		hard := func(al, be float64) string { // max(0, min(1, αx + β))
			return b.Op("Max", nil, zero, b.Op("Min", nil, one, b.Add(b.Mul(v, c(al)), c(be))))
		}
		var y string
		switch op {
		case "Elu": // max(x, 0) + α(exp(min(x, 0)) − 1): the second term is 0 for x ≥ 0
			y = b.Add(pos, b.Mul(c(getFloat(a, "alpha", 1)), b.Sub(b.Unary("Exp", neg), one)))
		case "Selu":
			al, ga := getFloat(a, "alpha", 1.67326319217681884765625), getFloat(a, "gamma", 1.05070102214813232421875)
			y = b.Mul(c(ga), b.Add(pos, b.Mul(c(al), b.Sub(b.Unary("Exp", neg), one))))
		case "Celu": // max(0, x) + min(0, α(exp(x/α) − 1))
			al := getFloat(a, "alpha", 1)
			y = b.Add(pos, b.Op("Min", nil, zero, b.Mul(c(al), b.Sub(b.Unary("Exp", b.Div(v, c(al))), one))))
		case "HardSigmoid":
			y = hard(getFloat(a, "alpha", 0.2), getFloat(a, "beta", 0.5))
		case "HardSwish":
			y = b.Mul(v, hard(1.0/6, 0.5))
		case "ThresholdedRelu": // x where x > α, else 0
			g := b.Op("Greater", nil, v, c(getFloat(a, "alpha", 1)))
			y = im.where(b.Op("Cast", ir.Attrs{"to": ir.String("i64")}, g), v, zero)
		case "Softsign": // x / (1 + |x|)
			y = b.Div(v, b.Add(one, b.Op("Max", nil, v, b.Unary("Neg", v))))
		case "Softplus": // ln(exp(x) + 1)
			y = b.Unary("Log", b.Add(b.Unary("Exp", v), one))
		}
		return set(y)

	case "PRelu":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		v, sl, err := pair(x)
		if err != nil {
			return err
		}
		zero := b.Scalar(0, v)
		return set(b.Add(b.Op("Max", nil, v, zero), b.Mul(sl, b.Op("Min", nil, v, zero))))

	case "ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum":
		// axes is an attribute until opset 18.
		a, err := im.attrs(n, "axes", "keepdims")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		if in(1) != "" {
			return im.unsupported("axes input (opset 18)", in(1))
		}
		r := b.Type(v).Rank()
		var axes []int
		if p, ok := a["axes"]; ok {
			for _, q := range p.ints {
				ax, err := ir.NormAxis(q, r)
				if err != nil {
					return fmt.Errorf("node %q (%s): %w", n.name, op, err)
				}
				axes = append(axes, ax)
			}
		} else {
			for k := range r {
				axes = append(axes, k)
			}
		}
		if !b.Type(v).DType.IsFloat() {
			return im.unsupported("dtype", b.Type(v).DType.String())
		}
		switch op {
		case "ReduceSumSquare", "ReduceL2":
			v = b.Mul(v, v)
		case "ReduceL1":
			v = b.Op("Max", nil, v, b.Unary("Neg", v))
		}
		y := v
		if r > 0 {
			y = b.Reduce("ReduceSum", v, getInt(a, "keepdims", 1) != 0, axes...)
		}
		switch op {
		case "ReduceL2":
			y = b.Unary("Sqrt", y)
		case "ReduceLogSum":
			y = b.Unary("Log", y)
		}
		return set(y)

	case "Not", "And", "Or", "Xor":
		// On 0/1 values: not c = 1 − c, and = c·d, or = max(c, d), xor = [c > d] + [d > c].
		if _, err := im.attrs(n); err != nil {
			return err
		}
		var vs []string
		for k := range n.inputs {
			if !im.bools[in(k)] {
				return im.unsupported("dtype", "non-bool operand of "+op)
			}
			v, err := x(k)
			if err != nil {
				return err
			}
			vs = append(vs, v)
		}
		if len(vs) != map[string]int{"Not": 1}[op] && (op == "Not" || len(vs) != 2) {
			return fmt.Errorf("node %q (%s): %d operands", n.name, op, len(vs))
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
		if err := set(y); err != nil {
			return err
		}
		im.bools[out] = true
		return nil

	case "DepthToSpace", "SpaceToDepth":
		a, err := im.attrs(n, "blocksize", "mode")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		s := b.Type(v).Shape
		bs := int(getInt(a, "blocksize", 0))
		if len(s) != 4 || bs < 1 {
			return fmt.Errorf("node %q (%s): input %v, blocksize %d", n.name, op, b.Type(v), bs)
		}
		N, C, H, W := s[0], s[1], s[2], s[3]
		mode := "DCR"
		if m, ok := a["mode"]; ok {
			mode = string(m.s)
		}
		if op == "SpaceToDepth" {
			if a["mode"] != nil {
				return im.unsupported("attribute", "mode")
			}
			if H%bs != 0 || W%bs != 0 {
				return fmt.Errorf("node %q (SpaceToDepth): %v is not divisible by %d", n.name, b.Type(v), bs)
			}
			y := b.Reshape(v, N, C, H/bs, bs, W/bs, bs)
			y = b.Transpose(y, 0, 3, 5, 1, 2, 4)
			return set(b.Reshape(y, N, C*bs*bs, H/bs, W/bs))
		}
		if C%(bs*bs) != 0 {
			return fmt.Errorf("node %q (DepthToSpace): %v is not divisible by %d²", n.name, b.Type(v), bs)
		}
		var y string
		switch mode {
		case "DCR":
			y = b.Transpose(b.Reshape(v, N, bs, bs, C/(bs*bs), H, W), 0, 3, 4, 1, 5, 2)
		case "CRD":
			y = b.Transpose(b.Reshape(v, N, C/(bs*bs), bs, bs, H, W), 0, 1, 4, 2, 5, 3)
		default:
			return im.unsupported("attribute", "mode="+mode)
		}
		return set(b.Reshape(y, N, C/(bs*bs), H*bs, W*bs))

	case "EyeLike":
		a, err := im.attrs(n, "dtype", "k")
		if err != nil {
			return err
		}
		var t ir.Type
		if c, ok := im.consts[in(0)]; ok {
			t = c.Type()
		} else {
			v, err := x(0)
			if err != nil {
				return err
			}
			t = b.Type(v)
		}
		if t.Rank() != 2 {
			return fmt.Errorf("node %q (EyeLike): input %v is not 2-D", n.name, t)
		}
		dt := t.DType
		if p, ok := a["dtype"]; ok {
			if dt, err = irDType(p.i); err != nil {
				return im.unsupported("dtype", dtName(p.i))
			}
		}
		k := getInt(a, "k", 0)
		e := &Tensor{Name: out, DType: dt, Shape: slices.Clone(t.Shape)}
		r, c := t.Shape[0], t.Shape[1]
		if dt.IsFloat() {
			e.F = make([]float64, r*c)
		} else {
			e.I = make([]int64, r*c)
		}
		for i := range r {
			if j := int64(i) + k; j >= 0 && j < int64(c) {
				if dt.IsFloat() {
					e.F[i*c+int(j)] = 1
				} else {
					e.I[i*c+int(j)] = 1
				}
			}
		}
		im.consts[out] = e
		return nil

	case "GlobalAveragePool":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		r := b.Type(v).Rank()
		if r < 3 || !b.Type(v).DType.IsFloat() {
			return fmt.Errorf("node %q (GlobalAveragePool): input %v", n.name, b.Type(v))
		}
		var axes []int
		for k := 2; k < r; k++ {
			axes = append(axes, k)
		}
		return set(b.Reduce("ReduceMean", v, true, axes...))

	case "BatchNormalization", "InstanceNormalization":
		// Inference: y = (x − mean)·scale/√(var + ε) + bias per channel (axis 1);
		// InstanceNormalization takes mean and var of each (n, c) over the
		// spatial axes.
		allowed := []string{"epsilon"}
		if op == "BatchNormalization" {
			allowed = append(allowed, "momentum", "training_mode")
		}
		a, err := im.attrs(n, allowed...)
		if err != nil {
			return err
		}
		if getInt(a, "training_mode", 0) != 0 {
			return im.unsupported("attribute", "training_mode=1")
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		xt := b.Type(v)
		if xt.Rank() < 2 || !xt.DType.IsFloat() {
			return fmt.Errorf("node %q (%s): input %v", n.name, op, xt)
		}
		cs := make([]int, xt.Rank()) // a per-channel operand's shape
		for k := range cs {
			cs[k] = 1
		}
		cs[1] = xt.Shape[1]
		ch := func(k int) (string, error) {
			w, err := x(k)
			if err != nil {
				return "", err
			}
			if t := b.Type(w); t.Rank() != 1 || t.Shape[0] != xt.Shape[1] {
				return "", fmt.Errorf("node %q (%s): input %d is %v for %v", n.name, op, k, t, xt)
			}
			return b.Reshape(w, cs...), nil
		}
		var mean, vari string
		if op == "BatchNormalization" {
			if mean, err = ch(3); err != nil {
				return err
			}
			if vari, err = ch(4); err != nil {
				return err
			}
		} else {
			var axes []int
			for k := 2; k < xt.Rank(); k++ {
				axes = append(axes, k)
			}
			if len(axes) == 0 {
				return fmt.Errorf("node %q (InstanceNormalization): input %v has no spatial axes", n.name, xt)
			}
			mean = b.Reduce("ReduceMean", v, true, axes...)
			d := b.Sub(v, mean)
			vari = b.Reduce("ReduceMean", b.Mul(d, d), true, axes...)
		}
		sc, err := ch(1)
		if err != nil {
			return err
		}
		bias, err := ch(2)
		if err != nil {
			return err
		}
		inv := b.Unary("Rsqrt", b.Add(vari, b.Scalar(getFloat(a, "epsilon", 1e-5), v)))
		return set(b.Add(b.Mul(b.Mul(b.Sub(v, mean), inv), sc), bias))

	case "Tile":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		reps, err := im.ints(in(1))
		if err != nil {
			return err
		}
		if len(reps) != b.Type(v).Rank() {
			return fmt.Errorf("node %q (Tile): %d repeats for %v", n.name, len(reps), b.Type(v))
		}
		for ax, r := range reps {
			if r < 1 {
				return im.unsupported("attribute", fmt.Sprintf("repeats %v", reps))
			}
			if r > 1 {
				vs := make([]string, r)
				for k := range vs {
					vs[k] = v
				}
				v = b.Op("Concat", ir.Attrs{"axis": ir.Int(int64(ax))}, vs...)
			}
		}
		return set(b.Unary("Identity", v))

	case "Mod":
		// Integers: r = a − b·(a/b) with slc's truncating Div is C's fmod; for
		// fmod=0 (the divisor's sign) b is added where r and b differ in sign.
		// a − b·trunc(a/b) is not exact for floats: refused.
		a, err := im.attrs(n, "fmod")
		if err != nil {
			return err
		}
		u, v, err := pair(x)
		if err != nil {
			return err
		}
		if dt := b.Type(u).DType; !dt.IsInt() || b.Type(v).DType != dt {
			return im.unsupported("dtype", dt.String())
		}
		r := b.Sub(u, b.Mul(v, b.Div(u, v)))
		if getInt(a, "fmod", 0) == 0 {
			zero := b.Scalar(0, u)
			gt := func(p, q string) string { return b.Op("Greater", nil, p, q) }
			differ := b.Add(b.Mul(gt(zero, r), gt(v, zero)), b.Mul(gt(r, zero), gt(zero, v)))
			r = b.Add(r, b.Mul(differ, v))
		}
		return set(r)

	case "ScatterElements":
		// Of a 1-D tensor (SLTrain's sparse S, written factored by slc
		// export): y = data + Σ updates at indices (reduction add), or
		// data·(1 − hit) + Σ updates (none; ONNX leaves duplicates undefined).
		a, err := im.attrs(n, "axis", "reduction")
		if err != nil {
			return err
		}
		data, err := x(0)
		if err != nil {
			return err
		}
		idx, err := x(1)
		if err != nil {
			return err
		}
		upd, err := x(2)
		if err != nil {
			return err
		}
		red := "none"
		if a["reduction"] != nil {
			red = string(a["reduction"].s)
		}
		dt := b.Type(data)
		if dt.Rank() != 1 || b.Type(idx).Rank() != 1 || b.Type(upd).Rank() != 1 || !dt.DType.IsFloat() {
			return im.unsupported("input shapes", fmt.Sprintf("%v, %v, %v (slc takes 1-D float data)", dt, b.Type(idx), b.Type(upd)))
		}
		if ax := getInt(a, "axis", 0); ax != 0 && ax != -1 {
			return im.unsupported("attribute", fmt.Sprintf("axis=%d", ax))
		}
		if red != "none" && red != "add" {
			return im.unsupported("attribute", "reduction="+red)
		}
		if idx, err = im.nonNegative(in(1), idx, dt.Shape[0]); err != nil {
			return err
		}
		rows := ir.Attrs{"num_rows": ir.Int(int64(dt.Shape[0]))}
		sum := b.Op("ScatterAdd", rows, upd, idx)
		if red == "add" {
			return set(b.Add(data, sum))
		}
		hit := b.Op("ScatterAdd", rows, b.Op("Expand", ir.Attrs{"shape": ir.IntsOf(b.Type(upd).Shape)}, b.Scalar(1, upd)), idx)
		return set(b.Add(b.Mul(data, b.Sub(b.Scalar(1, hit), hit)), sum))

	case "Cos", "Sin":
		// slc has no trigonometric op: a constant operand (a rotary table of
		// an exported LLaMA) is evaluated here; any other is refused.
		if _, err := im.attrs(n); err != nil {
			return err
		}
		t, ok := im.consts[in(0)]
		if !ok || im.params[in(0)] {
			return im.unsupported("non-constant operand (slc evaluates Cos and Sin of constants only)", in(0))
		}
		if !t.DType.IsFloat() {
			return im.unsupported("dtype", t.DType.String())
		}
		f := math.Cos
		if op == "Sin" {
			f = math.Sin
		}
		y := &Tensor{Name: out, DType: t.DType, Shape: slices.Clone(t.Shape), F: make([]float64, len(t.F))}
		for k, v := range t.F {
			y.F[k] = interp.RoundTo(t.DType, f(v))
		}
		im.consts[out] = y
		return nil

	case "Einsum":
		a, err := im.attrs(n, "equation")
		if err != nil {
			return err
		}
		var ops []string
		for k := range n.inputs {
			v, err := x(k)
			if err != nil {
				return err
			}
			if !b.Type(v).DType.IsFloat() {
				return im.unsupported("dtype", b.Type(v).DType.String())
			}
			ops = append(ops, v)
		}
		eq := ""
		if a["equation"] != nil {
			eq = string(a["equation"].s)
		}
		y, err := im.einsum(eq, ops)
		if err != nil {
			return err
		}
		return set(y)

	case "Erf":
		if _, err := im.attrs(n); err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		if !b.Type(v).DType.IsFloat() {
			return im.unsupported("dtype", b.Type(v).DType.String())
		}
		return set(im.erf(v))

	case "OneHot":
		// y = Where(idx == iota along axis, on, off) with idx made
		// non-negative; an index outside [−depth, depth) matches nothing.
		a, err := im.attrs(n, "axis")
		if err != nil {
			return err
		}
		idx, err := x(0)
		if err != nil {
			return err
		}
		if !b.Type(idx).DType.IsInt() {
			return im.unsupported("dtype", b.Type(idx).DType.String()+" indices")
		}
		dt, err := im.constant(in(1))
		if err != nil {
			return err
		}
		if dt.len() != 1 || dt.at(0) < 1 || dt.at(0) > math.MaxInt32 || dt.at(0) != math.Trunc(dt.at(0)) {
			return fmt.Errorf("node %q (OneHot): bad depth", n.name)
		}
		depth := int(dt.at(0))
		vals, err := x(2)
		if err != nil {
			return err
		}
		if t := b.Type(vals); t.Rank() != 1 || t.Shape[0] != 2 {
			return fmt.Errorf("node %q (OneHot): values %v is not [off, on]", n.name, t)
		}
		is := b.Type(idx).Shape
		r := len(is) + 1
		ax, err := ir.NormAxis(getInt(a, "axis", -1), r)
		if err != nil {
			return fmt.Errorf("node %q (OneHot): %w", n.name, err)
		}
		if idx, err = im.nonNegative(in(0), idx, depth); err != nil {
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
		return set(im.where(eq, on, off))

	case "CumSum":
		// A running Add over the axis' slices, in the order NumPy sums them
		// (so a graph of 2·d nodes for an axis of size d), joined by Concat.
		a, err := im.attrs(n, "exclusive", "reverse")
		if err != nil {
			return err
		}
		v, err := x(0)
		if err != nil {
			return err
		}
		axs, err := im.ints(in(1))
		if err != nil {
			return err
		}
		if len(axs) != 1 {
			return fmt.Errorf("node %q (CumSum): axis has %d elements", n.name, len(axs))
		}
		ax, err := ir.NormAxis(axs[0], b.Type(v).Rank())
		if err != nil {
			return fmt.Errorf("node %q (CumSum): %w", n.name, err)
		}
		d := b.Type(v).Shape[ax]
		if d == 0 {
			return set(v)
		}
		excl, rev := getInt(a, "exclusive", 0) != 0, getInt(a, "reverse", 0) != 0
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
			return set(b.Unary("Identity", ys[0]))
		}
		return set(b.Op("Concat", ir.Attrs{"axis": ir.Int(int64(ax))}, ys...))
	}
	return im.unsupported("op", n.opType)
}

// logSoftmax is log softmax x along axis ax: x − logsumexp x. slc's
// SoftmaxCrossEntropy is logsumexp(row) − row[label]; with label 0 it gives
// lse − x₀, so y = (x − x₀) − SoftmaxCrossEntropy(x, 0), along the last axis
// (the axis is moved there and back).
func (im *importer) logSoftmax(v string, ax int) string {
	b := im.b
	r := b.Type(v).Rank()
	if b.Type(v).Shape[ax] == 0 {
		return v
	}
	var perm []int
	if ax != r-1 {
		for k := range r {
			if k != ax {
				perm = append(perm, k)
			}
		}
		perm = append(perm, ax)
		v = b.Transpose(v, perm...)
	}
	s := b.Type(v).Shape
	labels := b.Const(0, ir.Type{DType: ir.I64, Shape: s[:r-1]})
	lse := b.Op("SoftmaxCrossEntropy", nil, v, labels)
	keep := append(slices.Clone(s[:r-1]), 1)
	y := b.Sub(b.Sub(v, b.Slice(v, r-1, 0, 1)), b.Reshape(lse, keep...))
	if perm != nil {
		inv := make([]int, r)
		for k, p := range perm {
			inv[p] = k
		}
		y = b.Transpose(y, inv...)
	}
	return y
}

// equal is (1 − [u > v])·(1 − [v > u]) in their dtype: u = v for integers
// and for floats other than NaN.
func (im *importer) equal(u, v string) string {
	b := im.b
	one := b.Scalar(1, u)
	return b.Mul(b.Sub(one, b.Op("Greater", nil, u, v)), b.Sub(one, b.Op("Greater", nil, v, u)))
}

// nllLoss is ONNX NegativeLogLikelihoodLoss of x [N, C, d…] and target
// [N, d…]: loss[n, d…] = −x[n, t, d…]·w[t] with t = target[n, d…], w the
// weight (1 without one) and w[t] = 0 where t is ignore_index; "mean" divides
// the sum by Σ w[t]. x[n, t, d…] is a Gather from x with C moved last and
// flattened, at (row·C + t), so it is exact; an ignored t reads row·C + 0.
func (im *importer) nllLoss(x, t, w string, ii *int64, red string) string {
	b := im.b
	xs := b.Type(x).Shape
	r, c := len(xs), xs[1]
	perm := []int{0}
	for k := 2; k < r; k++ {
		perm = append(perm, k)
	}
	perm = append(perm, 1)
	if r > 2 {
		x = b.Transpose(x, perm...)
	}
	ts := b.Type(t).Shape
	m := 1
	for _, d := range ts {
		m *= d
	}
	flat := b.Reshape(x, m*c)
	var mask string // 1 where the target counts, as an integer
	if ii != nil {
		mask = b.Sub(b.Scalar(1, t), im.equal(t, b.Scalar(float64(*ii), t)))
		t = b.Mul(t, mask)
	}
	base := make([]float64, m)
	for k := range base {
		base[k] = float64(k * c)
	}
	bt := ir.Type{DType: b.Type(t).DType, Shape: ts}
	name := "nll_rows"
	for k := 1; b.Type(name).DType != ir.InvalidDType; k++ {
		name = fmt.Sprintf("nll_rows_%d", k)
	}
	var rows string
	if m == 1 {
		rows = b.Const(0, bt)
	} else {
		rows = b.AddInput(name, bt, ir.Buffer, &ir.Init{Kind: ir.InitExplicit, Data: base})
	}
	picked := b.Op("Gather", nil, flat, b.Add(rows, t))
	var wt string // the weight of each target
	if w != "" {
		wt = b.Op("Gather", nil, w, t)
	}
	if mask != "" {
		mf := b.Op("Cast", ir.Attrs{"to": ir.String(b.Type(x).DType.String())}, mask)
		if wt == "" {
			wt = mf
		} else {
			wt = b.Mul(wt, mf)
		}
	}
	loss := b.Unary("Neg", picked)
	if wt != "" {
		loss = b.Mul(loss, wt)
	}
	all := make([]int, len(ts))
	for k := range all {
		all[k] = k
	}
	switch {
	case red == "none":
		return loss
	case red == "sum":
		return b.Reduce("ReduceSum", loss, false, all...)
	case wt == "":
		return b.Reduce("ReduceMean", loss, false, all...)
	}
	return b.Div(b.Reduce("ReduceSum", loss, false, all...), b.Reduce("ReduceSum", wt, false, all...))
}

// constInput adds a constant integer tensor as a Buffer input named after name.
func (im *importer) constInput(name string, t ir.Type, data []float64) string {
	b := im.b
	in := name
	for k := 1; b.Type(in).DType != ir.InvalidDType; k++ {
		in = fmt.Sprintf("%s_%d", name, k)
	}
	im.derived = append(im.derived, in)
	return b.AddInput(in, t, ir.Buffer, &ir.Init{Kind: ir.InitExplicit, Data: data})
}

// where is ONNX Where with c a 0/1 integer: all three are broadcast to one
// shape of n elements and flattened, and y = Gather(Concat(v, u), c·n + i),
// which picks u's or v's element itself (no arithmetic on them, so inf and
// NaN pass through exactly).
func (im *importer) where(c, u, v string) string {
	b := im.b
	s, err := ir.Broadcast(b.Type(c).Shape, b.Type(u).Shape)
	if err == nil {
		s, err = ir.Broadcast(s, b.Type(v).Shape)
	}
	if err != nil {
		b.Fail(fmt.Errorf("Where: %w", err))
		return ""
	}
	m := 1
	for _, d := range s {
		m *= d
	}
	flat := func(w string) string {
		if !ir.ShapeEqual(b.Type(w).Shape, s) {
			w = b.Op("Expand", ir.Attrs{"shape": ir.IntsOf(s)}, w)
		}
		return b.Reshape(w, m)
	}
	if m == 0 {
		return b.Reshape(flat(u), s...)
	}
	iota := make([]float64, m)
	for k := range iota {
		iota[k] = float64(k)
	}
	ci := flat(c)
	if b.Type(ci).DType != ir.I64 {
		ci = b.Op("Cast", ir.Attrs{"to": ir.String("i64")}, ci)
	}
	var idx string
	if m == 1 {
		idx = b.Mul(ci, b.Scalar(1, ci))
	} else {
		idx = b.Add(b.Mul(ci, b.Scalar(float64(m), ci)), im.constInput("where_iota", ir.Type{DType: ir.I64, Shape: []int{m}}, iota))
	}
	y := b.Op("Gather", nil, b.Op("Concat", ir.Attrs{"axis": ir.Int(0)}, flat(v), flat(u)), idx)
	return im.reshape(y, s)
}

// nonNegative is an index operand with ONNX's negative indices (counted from
// the end of a dim of size d) made non-negative: folded for a constant, else
// idx + d·(0 > idx).
func (im *importer) nonNegative(name, idx string, d int) (string, error) {
	b := im.b
	if t, ok := im.consts[name]; ok {
		c := &Tensor{DType: t.DType, Shape: t.Shape, I: make([]int64, len(t.I))}
		for k, i := range t.I {
			if i < 0 {
				i += int64(d)
			}
			c.I[k] = i
		}
		im.consts[name+"#index"] = c
		return im.value(name + "#index")
	}
	neg := b.Op("Greater", nil, b.Scalar(0, idx), idx)
	return b.Add(idx, b.Mul(neg, b.Scalar(float64(d), idx))), nil
}

// erf is an approximation of the error function with existing ops, not an
// exact one: for |x| < 0.5 the Taylor series 2/√π·Σ (−1)ᵏ x²ᵏ⁺¹/(k!(2k+1)) to
// x¹¹ (relative error < 3·10⁻⁸), elsewhere Abramowitz & Stegun 7.1.26,
// sign(x)·(1 − (a₁t + … + a₅t⁵)·exp(−x²)) with t = 1/(1 + p|x|) (absolute
// error < 1.5·10⁻⁷ where erf is above 0.52), both then rounded to x's dtype.
// The branch is picked by Where (a Gather), so ±∞ and NaN come through as 1, −1
// and NaN.
func (im *importer) erf(v string) string {
	b := im.b
	c := func(f float64) string { return b.Scalar(f, v) }
	x2 := b.Mul(v, v)
	// Taylor: x·(c₀ + x²(c₁ + x²(c₂ + …))), Horner from the top.
	var coef []float64
	fact := 1.0
	for k := range 6 {
		if k > 0 {
			fact *= float64(k)
		}
		s := 2 / math.Sqrt(math.Pi) / (fact * float64(2*k+1))
		if k%2 == 1 {
			s = -s
		}
		coef = append(coef, s)
	}
	small := c(coef[5])
	for k := 4; k >= 0; k-- {
		small = b.Add(b.Mul(small, x2), c(coef[k]))
	}
	small = b.Mul(small, v)
	abs := b.Op("Max", nil, v, b.Unary("Neg", v))
	t := b.Unary("Recip", b.Add(c(1), b.Mul(c(0.3275911), abs)))
	a := []float64{0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429}
	poly := c(a[4])
	for k := 3; k >= 0; k-- {
		poly = b.Add(b.Mul(poly, t), c(a[k]))
	}
	poly = b.Mul(poly, t)
	big := b.Sub(c(1), b.Mul(poly, b.Unary("Exp", b.Unary("Neg", x2))))
	sign := b.Sub(b.Mul(c(2), b.Op("Greater", nil, v, c(0))), c(1))
	big = b.Mul(sign, big)
	isSmall := b.Op("Greater", nil, c(0.5), abs)
	return im.where(b.Op("Cast", ir.Attrs{"to": ir.String("i64")}, isSmall), small, big)
}

// einsum is ONNX Einsum of one or two operands without ellipses or repeated
// letters within an operand: each operand first sums the letters that neither
// the other operand nor the output has; a single operand is then transposed
// to the output's order; two are written as one batched MatMul
// [batch, left, contracted]·[batch, contracted, right] (the outer product
// contracts nothing), reshaped and transposed to the output's order.
func (im *importer) einsum(eq string, ops []string) (string, error) {
	b := im.b
	bad := func(why string) error { return im.unsupported("attribute", fmt.Sprintf("equation %q (%s)", eq, why)) }
	eq = strings.ReplaceAll(eq, " ", "")
	lhs, out, explicit := strings.Cut(eq, "->")
	terms := strings.Split(lhs, ",")
	if len(terms) != len(ops) || len(ops) < 1 || len(ops) > 2 {
		return "", bad(fmt.Sprintf("%d operands; slc takes one or two", len(ops)))
	}
	if strings.Contains(eq, ".") {
		return "", bad("an ellipsis")
	}
	size := map[rune]int{}
	count := map[rune]int{}
	for k, term := range terms {
		s := b.Type(ops[k]).Shape
		if len([]rune(term)) != len(s) {
			return "", bad(fmt.Sprintf("operand %d has rank %d", k, len(s)))
		}
		seen := map[rune]bool{}
		for j, c := range term {
			if !unicode.IsLetter(c) || seen[c] {
				return "", bad("a repeated or non-letter index")
			}
			seen[c] = true
			if d, ok := size[c]; ok && d != s[j] {
				return "", bad(fmt.Sprintf("index %c is %d and %d", c, d, s[j]))
			}
			size[c] = s[j]
			count[c]++
		}
	}
	if !explicit { // implicit output: the letters that appear once, in order
		var once []rune
		for c, k := range count {
			if k == 1 {
				once = append(once, c)
			}
		}
		slices.Sort(once)
		out = string(once)
	}
	inOut := map[rune]bool{}
	for _, c := range out {
		if _, ok := size[c]; !ok || inOut[c] {
			return "", bad("an output index that no operand has, or twice")
		}
		inOut[c] = true
	}
	// Sum away what only one operand has and the output does not.
	for k := range ops {
		other := ""
		if len(ops) == 2 {
			other = terms[1-k]
		}
		var axes []int
		var keep []rune
		for j, c := range terms[k] {
			if !inOut[c] && !strings.ContainsRune(other, c) {
				axes = append(axes, j)
			} else {
				keep = append(keep, c)
			}
		}
		if len(axes) > 0 {
			ops[k] = b.Reduce("ReduceSum", ops[k], false, axes...)
			terms[k] = string(keep)
		}
	}
	// permute is a Transpose of v (letters from) to the letters to.
	permute := func(v, from string, to []rune) string {
		fr := []rune(from)
		perm := make([]int, len(to))
		for k, c := range to {
			perm[k] = slices.Index(fr, c)
		}
		if slices.IsSorted(perm) {
			return v
		}
		return b.Transpose(v, perm...)
	}
	prod := func(cs []rune) int {
		p := 1
		for _, c := range cs {
			p *= size[c]
		}
		return p
	}
	if len(ops) == 1 {
		return permute(ops[0], terms[0], []rune(out)), b.Err()
	}
	var batch, left, contract, right []rune
	for _, c := range terms[0] {
		switch {
		case strings.ContainsRune(terms[1], c) && inOut[c]:
			batch = append(batch, c)
		case strings.ContainsRune(terms[1], c):
			contract = append(contract, c)
		default:
			left = append(left, c)
		}
	}
	for _, c := range terms[1] {
		if !strings.ContainsRune(terms[0], c) {
			right = append(right, c)
		}
	}
	u := permute(ops[0], terms[0], slices.Concat(batch, left, contract))
	u = im.reshape(u, []int{prod(batch), prod(left), prod(contract)})
	v := permute(ops[1], terms[1], slices.Concat(batch, contract, right))
	v = im.reshape(v, []int{prod(batch), prod(contract), prod(right)})
	y := b.MatMul(u, v, false, false)
	got := slices.Concat(batch, left, right)
	var shape []int
	for _, c := range got {
		shape = append(shape, size[c])
	}
	y = im.reshape(y, shape)
	return permute(y, string(got), []rune(out)), b.Err()
}
