package passes

import (
	"fmt"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// ScalingSuffix names an SLTrain layer's trainable scale parameter
// (<module>.scaling, the seed's SpLoRaLinear.scaling with trainable_scaling).
const ScalingSuffix = ".scaling"

// scalingInput is the seed's trainable scale of module: a [1] parameter in
// the layer's dtype, initialised to 1 (torch.tensor([1.])). Like every
// trainable parameter of the seed it is in the optimizer's one group, so
// weight decay applies to it.
func scalingInput(g *ir.Graph, module string, dt ir.DType) (*ir.Input, error) {
	name := module + ScalingSuffix
	if g.Input(name) != nil {
		return nil, fmt.Errorf("%s: input %q already exists", module, name)
	}
	return &ir.Input{Value: ir.Value{Name: name, Type: ir.T(dt, 1)}, Role: ir.Param, Init: &ir.Init{Kind: ir.InitOnes}}, nil
}

// trainScaling gives each node of layers (a LowRankSparseAdd of g whose
// <module>.scaling is an input of g) the seed's trainable scale: its A
// operand becomes A·tanh(scaling), computed just before it, and its scale
// attribute 1 — the seed's lora_A * scaling.tanh(), so autodiff gives the
// scaling its gradient Σ(∂L/∂A′ ⊙ A)·(1 − tanh²). tanh is 2·σ(2s) − 1,
// evaluated in f32 and rounded once to the layer's dtype (as torch's bf16
// tanh computes in f32).
func trainScaling(g *ir.Graph, layers []*ir.Node) error {
	b := ir.BuilderFor(g)
	prelude := map[*ir.Node][]*ir.Node{}
	for _, n := range layers {
		module := strings.TrimSuffix(n.Inputs[2], ".lora_A")
		sc := module + ScalingSuffix
		dt := b.Type(sc).DType
		work := dt // f32 for the half types, else the layer's own
		if dt.Size() < 4 {
			work = ir.F32
		}
		start := len(g.Nodes)
		b.Scope = n.Name
		s := sc
		if work != dt {
			s = b.Op("Cast", ir.Attrs{"to": ir.String(work.String())}, s)
		}
		two := b.Const(2, ir.Type{DType: work})
		t := b.Sub(b.Mul(two, b.Unary("Sigmoid", b.Mul(s, two))), b.Const(1, ir.Type{DType: work}))
		if work != dt {
			t = b.Op("Cast", ir.Attrs{"to": ir.String(dt.String())}, t)
		}
		a := b.Mul(n.Inputs[2], t)
		if err := b.Err(); err != nil {
			return fmt.Errorf("%s: trainable scaling: %w", module, err)
		}
		prelude[n] = append([]*ir.Node(nil), g.Nodes[start:]...)
		g.Nodes = g.Nodes[:start]
		n.Inputs[2] = a
		n.Attrs["scale"] = ir.Float(1)
	}
	nodes := make([]*ir.Node, 0, len(g.Nodes)+8*len(layers))
	for _, n := range g.Nodes {
		nodes = append(nodes, prelude[n]...)
		nodes = append(nodes, n)
	}
	g.Nodes = nodes
	return nil
}
