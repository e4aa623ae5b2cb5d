package passes

import (
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// fold is constant folding: a node all of whose inputs are Consts (tensors
// holding one value everywhere) becomes a Const itself when its result is
// uniform too. That covers element-wise ops and Cast (the result is f(a, b)
// everywhere) and the data-movement ops Reshape, Expand, Transpose, Slice and
// Concat of equal Consts (the same value in a new shape). Reductions are not
// folded: a sum of n equal terms is not n·c in floating point, and the result
// must stay bit-identical.
//
// Element-wise results are computed by the reference interpreter on a
// one-element copy of the node, so a folded Const holds exactly what the node
// would have produced, rounding to its dtype included. A node whose evaluation
// fails (an integer division by zero, a NaN cast to an integer) is left for the
// runtime to report.
func fold(s *State) error {
	folded := 0
	for _, g := range s.Module.Graphs {
		folded += constantFold(g)
	}
	if folded > 0 {
		s.Note("fold: %d nodes folded into constants", folded)
	}
	return nil
}

// foldMoves lists the data-movement ops whose result, for uniform inputs, is
// the same uniform value in the output's shape.
var foldMoves = map[string]bool{"Reshape": true, "Expand": true, "Transpose": true, "Slice": true, "Concat": true}

// constantFold folds g's constant nodes in place and returns how many it folded.
func constantFold(g *ir.Graph) int {
	consts := map[string]*ir.Node{} // value name → its Const node
	folded := 0
	for _, n := range g.Nodes {
		if n.Op == "Const" {
			consts[n.Outputs[0].Name] = n
			continue
		}
		if len(n.Inputs) == 0 || len(n.Outputs) != 1 {
			continue
		}
		in := make([]*ir.Node, len(n.Inputs))
		all := true
		for i, v := range n.Inputs {
			in[i], all = consts[v], all && consts[v] != nil
		}
		if !all {
			continue
		}
		value, ok := foldValue(n, in)
		if !ok {
			continue
		}
		t := n.Outputs[0].Type
		n.Op, n.Inputs, n.Attrs = "Const", nil, constAttrs(value, t)
		consts[n.Outputs[0].Name] = n
		folded++
	}
	return folded
}

// foldValue returns the uniform value of n applied to the Consts in, and
// whether n folds.
func foldValue(n *ir.Node, in []*ir.Node) (float64, bool) {
	d := ir.Lookup(n.Op)
	switch {
	case d == nil:
		return 0, false
	case foldMoves[n.Op]:
		v := in[0].Attrs["value"]
		for _, c := range in[1:] {
			if !c.Attrs["value"].Equal(v) { // Concat: one dtype by its shape rule
				return 0, false
			}
		}
		return v.Float, true
	case d.Category == ir.CatUnary || d.Category == ir.CatBinary:
		return evalScalar(n, in)
	}
	return 0, false
}

// evalScalar runs n on rank-0 copies of its Const inputs with the interpreter.
func evalScalar(n *ir.Node, in []*ir.Node) (float64, bool) {
	b := ir.NewBuilder("fold")
	args := make([]string, len(in))
	for i, c := range in {
		t := c.Outputs[0].Type
		args[i] = b.Const(c.Attrs.GetFloat("value", 0), ir.T(t.DType))
	}
	y := b.Op(n.Op, n.Attrs, args...)
	b.Output("y", y)
	if b.Err() != nil {
		return 0, false
	}
	out, err := interp.Run(b.G, nil)
	if err != nil {
		return 0, false
	}
	r := out["y"]
	if r.Type.DType.IsFloat() {
		return r.F[0], true
	}
	v := float64(r.I[0])
	if v >= 1<<63 || int64(v) != r.I[0] {
		return 0, false // not representable in a Const's float64 value
	}
	return v, true
}

// constAttrs are the attributes of a Const of type t holding v.
func constAttrs(v float64, t ir.Type) ir.Attrs {
	a := ir.Attrs{"value": ir.Float(v), "dtype": ir.String(t.DType.String())}
	if len(t.Shape) > 0 {
		a["shape"] = ir.IntsOf(t.Shape)
	}
	return a
}
