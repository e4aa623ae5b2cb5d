package lower

import (
	"fmt"

	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// chain evaluates a group's element-wise nodes at one point of the
// iteration space: group inputs are loaded where first needed (all before
// any store, so an output written in place of an input reads the old value),
// Consts are immediates, and a Reshape passes its value through.
type chain struct {
	k    *kfn
	g    *Group
	vals map[string]llvm.Value
	dt   map[string]ir.DType
	// bits holds the bf16 bits of each bf16 node result, already rounded,
	// so that storing it is a plain 16-bit store (see store).
	bits map[string]llvm.Value
	// lanes is 0 for scalar evaluation, or the width of the vectors every
	// value is (then every value must be f32).
	lanes int
}

// newChain starts the evaluation of g's nodes at one point (scalar) or at
// lanes consecutive points (lanes > 0).
func newChain(k *kfn, g *Group, lanes int) *chain {
	return &chain{k: k, g: g, vals: map[string]llvm.Value{}, dt: map[string]ir.DType{}, bits: map[string]llvm.Value{}, lanes: lanes}
}

// at returns a loader reading input i at offset offs[i], for eval.
func (c *chain) at(offs []llvm.Value) func(i int, t llvm.Type) llvm.Value {
	return func(i int, t llvm.Type) llvm.Value { return c.k.LoadAt(t, c.k.P[i], offs[i]) }
}

// checkChain verifies that the element-wise part of g (every node but the
// first `skipLast` from the end) computes over space, and returns an error
// for any op the CPU kernels do not handle.
func checkChain(g *Group, space []int, upTo int) error {
	for _, n := range g.Nodes[:upTo] {
		out := n.Outputs[0].Type
		switch d := ir.Lookup(n.Op); {
		case n.Op == "Const":
		case n.Op == "Reshape":
			if numel(out.Shape) != numel(space) {
				return fmt.Errorf("%s: a Reshape inside a fused group must keep the %d elements of the space", n, numel(space))
			}
		case d != nil && (d.Category == ir.CatUnary || d.Category == ir.CatBinary):
			if !ir.ShapeEqual(out.Shape, space) {
				return fmt.Errorf("%s computes %v, not over the group's space %v", n, out, space)
			}
		default:
			return fmt.Errorf("%s is not element-wise", n)
		}
	}
	return nil
}

// inputStream returns how an input of type t is read over space: broadcast
// when its shape broadcasts to space, else (a Reshape's operand) in order.
func inputStream(t ir.Type, space []int) (stream, error) {
	if b, err := ir.Broadcast(t.Shape, space); err == nil && ir.ShapeEqual(b, space) {
		return stream{strides: broadcastStrides(t.Shape, space)}, nil
	}
	if numel(t.Shape) == numel(space) {
		return stream{strides: contiguous(space)}, nil
	}
	return stream{}, fmt.Errorf("input %v does not broadcast to the space %v", t, space)
}

// eval computes nodes at the current point, reading input i (of scalar
// type t) with load(i, t).
func (c *chain) eval(nodes []*ir.Node, load func(i int, t llvm.Type) llvm.Value) error {
	k := c.k
	get := func(v string) (llvm.Value, error) {
		if x, ok := c.vals[v]; ok {
			return x, nil
		}
		return llvm.Value{}, fmt.Errorf("internal error: value %q not computed", v)
	}
	// Loads first.
	for i, in := range c.g.Inputs {
		if !reads(nodes, in.Name) {
			continue
		}
		t, err := k.e.storageType(in.Type.DType)
		if err != nil {
			return err
		}
		c.vals[in.Name] = load(i, t)
		c.dt[in.Name] = in.Type.DType
	}
	for _, n := range nodes {
		out := n.Outputs[0]
		var y llvm.Value
		var err error
		switch n.Op {
		case "Const":
			y, err = k.constValue(n.Attrs.GetFloat("value", 0), out.Type.DType)
			if err == nil && c.lanes > 0 {
				y = llvm.ConstSplat(c.lanes, y)
			}
		case "Reshape", "Identity":
			y, err = get(n.Inputs[0])
		case "Cast":
			var x llvm.Value
			if x, err = get(n.Inputs[0]); err == nil {
				y, err = k.castOp(c.dt[n.Inputs[0]], out.Type.DType, x)
			}
		default:
			switch ir.Lookup(n.Op).Category {
			case ir.CatUnary:
				var x llvm.Value
				if x, err = get(n.Inputs[0]); err == nil {
					y, err = k.unaryOp(n.Op, out.Type.DType, x)
				}
			case ir.CatBinary:
				var x, z llvm.Value
				if x, err = get(n.Inputs[0]); err == nil {
					if z, err = get(n.Inputs[1]); err == nil {
						y, err = k.binaryOp(n.Op, out.Type.DType, x, z)
					}
				}
			default:
				err = fmt.Errorf("%s is not element-wise", n)
			}
		}
		if err != nil {
			return err
		}
		if out.Type.DType == ir.BF16 && n.Op != "Reshape" && n.Op != "Identity" {
			// As if stored: PyTorch rounds every bf16 op's result.
			c.bits[out.Name] = k.BF16Bits(y)
			y = k.WidenBF16(c.bits[out.Name])
		}
		c.vals[out.Name], c.dt[out.Name] = y, out.Type.DType
	}
	return nil
}

// store writes value v of the chain, of storage type t, to p: a bf16 result
// the chain rounded goes as its bits, not rounded a second time.
func (c *chain) store(v string, t llvm.Type, p llvm.Value) {
	if bits, ok := c.bits[v]; ok && c.k.e.IsBF16(t) {
		c.k.B.Store(bits, p).SetAlignment(2)
		return
	}
	c.k.Store(c.vals[v], t, p)
}

// reads reports whether any of nodes reads v.
func reads(nodes []*ir.Node, v string) bool {
	for _, n := range nodes {
		for _, x := range n.Inputs {
			if x == v {
				return true
			}
		}
	}
	return false
}

// elementwise emits one loop over g.Space computing every node per element.
// Outputs are written in the space's row-major order. A Const output of
// another shape (a constant also read elsewhere) is filled by its own loop.
func (e *Emitter) elementwise(name string, g *Group) (*Lowering, error) {
	space := g.Space
	if err := checkChain(g, space, len(g.Nodes)); err != nil {
		return nil, err
	}
	var streams []stream
	for _, in := range g.Inputs {
		s, err := inputStream(in.Type, space)
		if err != nil {
			return nil, err
		}
		streams = append(streams, s)
	}
	producer := map[string]*ir.Node{}
	for _, n := range g.Nodes {
		producer[n.Outputs[0].Name] = n
	}
	var fills []int // outputs filled separately
	var mainOuts []int
	for j, o := range g.Outputs {
		streams = append(streams, stream{strides: contiguous(space)})
		if numel(o.Type.Shape) == numel(space) {
			mainOuts = append(mainOuts, j)
			continue
		}
		if producer[o.Name].Op != "Const" {
			return nil, fmt.Errorf("output %q is %v, not over the space %v", o.Name, o.Type, space)
		}
		fills = append(fills, j)
	}
	err := e.kernel(name, groupParams(g), func(k *kfn) error {
		k.Work.Flops += chainFlops(g)
		for _, j := range fills {
			o := g.Outputs[j]
			v, err := k.constValue(producer[o.Name].Attrs.GetFloat("value", 0), o.Type.DType)
			if err != nil {
				return err
			}
			t, _ := e.storageType(o.Type.DType)
			p := k.P[len(g.Inputs)+j]
			k.forEach(o.Type.Shape, []stream{{strides: contiguous(o.Type.Shape)}}, func(offs []llvm.Value) {
				k.StoreAt(v, t, p, offs[0])
			})
		}
		if len(mainOuts) == 0 {
			return nil
		}
		if w := pairLanes(e, g, space, streams, mainOuts); w > 0 {
			return k.bf16Pairs(g, space, streams, w)
		}
		var err error
		k.forEach(space, streams, func(offs []llvm.Value) {
			if err != nil {
				return
			}
			c := newChain(k, g, 0)
			if err = c.eval(g.Nodes, c.at(offs)); err != nil {
				return
			}
			for _, j := range mainOuts {
				o := g.Outputs[j]
				t, _ := e.storageType(o.Type.DType)
				c.store(o.Name, t, k.At(t, k.P[len(g.Inputs)+j], offs[len(g.Inputs)+j]))
			}
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Lowering{Calls: []Call{{Kernel: name, Args: inputsAndOutputs(g)}}}, nil
}
