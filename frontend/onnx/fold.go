package onnx

import (
	"fmt"
	"slices"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// Import-time constant folding makes Shape useful: shapes are static, so
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
