package passes

import (
	"gitee.com/gidean/conv-linn/ir"
)

// mixedPrecision makes every matrix product of an f32 model bf16-mixed
// (Options.BF16Mixed; otherwise it does nothing): MatMul and Linear take
// bf16-rounded operands and keep their f32 result (out_dtype f32), and
// LowRankSparseAdd takes a bf16 x with its f32 factors (the op's mixed form,
// which rounds B, A·scale and W itself). autodiff has already routed the
// activations the backward pass reads through bf16 copies (GradientsSaving);
// an operand that is the f32 widening of such a copy, possibly reshaped or
// transposed, reads the copy itself, so the saved bf16 tensor is what the
// backward GEMM packs; SoftmaxCrossEntropyGrad reads its saved bf16 logits
// the same way.
//
// The semantics are tools/torchref/precision.py's "--dtype bf16-mixed":
// C = GEMM(b(A), b(B)) in f32 for every product, forward and backward.
func mixedPrecision(s *State) error {
	if !s.Options.BF16Mixed {
		return nil
	}
	products := 0
	for _, g := range s.Module.Graphs {
		n, err := mixedGraph(g)
		if err != nil {
			return err
		}
		products += n
	}
	if s.Module.Meta == nil {
		s.Module.Meta = map[string]string{}
	}
	s.Module.Meta["precision"] = "bf16-mixed"
	s.Note("mixed-precision: %d matrix products take bf16 operands and return f32", products)
	return nil
}

// mixedGraph rewrites g's f32 matrix products and returns how many.
func mixedGraph(g *ir.Graph) (int, error) {
	b := ir.BuilderFor(g)
	prod := g.Producers()
	old := g.Nodes
	g.Nodes = make([]*ir.Node, 0, len(old))
	narrowed := map[string]string{}
	// narrow returns v rounded to bf16, built before the node being rewritten.
	var narrow func(v string) string
	narrow = func(v string) string {
		if d, ok := narrowed[v]; ok {
			return d
		}
		d := ""
		p := prod[v]
		switch {
		case p != nil && p.Op == "Cast" && b.Type(p.Inputs[0]).DType == ir.BF16:
			d = p.Inputs[0] // v = Cast(bf16 copy → f32): the copy is b(v)
		case p != nil && (p.Op == "Reshape" || p.Op == "Transpose") && isWidened(prod, b, p.Inputs[0]):
			b.Scope = p.Name
			d = b.Op(p.Op, p.Attrs, narrow(p.Inputs[0])) // rounding commutes with data movement
		default:
			if p != nil {
				b.Scope = p.Name
			}
			d = b.Op("Cast", ir.Attrs{"to": ir.String(ir.BF16.String())}, v)
		}
		narrowed[v] = d
		return d
	}
	count := 0
	for _, n := range old {
		if n.Op == "SoftmaxCrossEntropyGrad" {
			// Its logits are the saved bf16 copy's widening: read the copy
			// (the op takes bf16 logits with an f32 dloss), so that the f32
			// logits are never stored twice.
			if p := prod[n.Inputs[0]]; p != nil && p.Op == "Cast" && b.Type(p.Inputs[0]).DType == ir.BF16 && b.Type(n.Inputs[2]).DType == ir.F32 {
				n.Inputs[0] = p.Inputs[0]
			}
		}
		operands := mixedOperands(n, b)
		if len(operands) > 0 {
			for _, i := range operands {
				n.Inputs[i] = narrow(n.Inputs[i])
			}
			if n.Attrs == nil {
				n.Attrs = ir.Attrs{}
			}
			n.Attrs["out_dtype"] = ir.String(n.Outputs[0].Type.DType.String())
			count++
		}
		g.Nodes = append(g.Nodes, n)
	}
	return count, b.Err()
}

// isWidened reports whether v is, through reshapes and transposes, the f32
// widening of a bf16 value.
func isWidened(prod map[string]*ir.Node, b *ir.Builder, v string) bool {
	for {
		p := prod[v]
		switch {
		case p == nil:
			return false
		case p.Op == "Cast":
			return b.Type(p.Inputs[0]).DType == ir.BF16
		case p.Op == "Reshape" || p.Op == "Transpose":
			v = p.Inputs[0]
		default:
			return false
		}
	}
}

// mixedOperands lists the inputs of n that bf16-mixed rounds: both operands
// of an f32 MatMul or Linear, x of an f32 LowRankSparseAdd; none otherwise.
func mixedOperands(n *ir.Node, b *ir.Builder) []int {
	if len(n.Outputs) != 1 || n.Outputs[0].Type.DType != ir.F32 {
		return nil
	}
	switch n.Op {
	case "MatMul", "Linear":
		if b.Type(n.Inputs[0]).DType == ir.F32 && b.Type(n.Inputs[1]).DType == ir.F32 {
			return []int{0, 1}
		}
	case "LowRankSparseAdd":
		if b.Type(n.Inputs[0]).DType == ir.F32 && b.Type(n.Inputs[1]).DType == ir.F32 {
			return []int{0}
		}
	}
	return nil
}
