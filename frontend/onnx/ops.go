package onnx

import (
	"fmt"
	"slices"

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
		if !ok || t.len() > maxFold {
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
	sub := &importer{b: ir.NewBuilder("fold"), opset: im.opset, vals: map[string]string{}, consts: map[string]*Tensor{}, node: n, noFold: true}
	for _, in := range n.inputs {
		if in != "" {
			sub.consts[in] = im.consts[in]
		}
	}
	if err := sub.convert(n); err != nil {
		return err
	}
	out := n.outputs[0]
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
// of the given shape: the axis is moved to the front for slc's axis-0 Gather
// and the result's axes are moved back.
func (im *importer) gatherAxis(v string, ax int, idx []float64, shape []int) string {
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
	it := ir.Type{DType: ir.I64, Shape: shape}
	var iv string
	switch {
	case len(idx) == 0:
		iv = b.Const(0, it)
	default:
		uniform := true
		for _, i := range idx {
			uniform = uniform && i == idx[0]
		}
		if uniform {
			iv = b.Const(idx[0], it)
		} else {
			name := "gather_indices"
			for k := 1; b.Type(name).DType != ir.InvalidDType; k++ {
				name = fmt.Sprintf("gather_indices_%d", k)
			}
			iv = b.AddInput(name, it, ir.Buffer, &ir.Init{Kind: ir.InitExplicit, Data: idx})
		}
	}
	y := b.Op("Gather", nil, v, iv)
	if ax == 0 || b.Err() != nil {
		return y
	}
	// y is idx dims, then x's dims before ax, then those after it.
	ri := len(shape)
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
		// log softmax x = x − logsumexp x. slc's SoftmaxCrossEntropy is
		// logsumexp(row) − row[label]; with label 0 it gives lse − x₀, so
		// y = (x − x₀) − SoftmaxCrossEntropy(x, 0), along the last axis (the
		// axis is moved there and back).
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
		r := b.Type(v).Rank()
		ax, err := ir.NormAxis(getInt(a, "axis", -1), r)
		if err != nil {
			return fmt.Errorf("node %q (LogSoftmax): %w", n.name, err)
		}
		if b.Type(v).Shape[ax] == 0 {
			return set(v)
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
		return set(y)
	}
	return im.unsupported("op", n.opType)
}
