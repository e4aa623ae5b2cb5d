package ir

import (
	"fmt"
	"strconv"
)

// Builder appends typed nodes to a graph. The first error sticks: later calls do
// nothing and return "", and Err reports it, so construction code stays linear.
type Builder struct {
	G     *Graph
	Scope string // source name recorded on new nodes (e.g. "model.layers.0.mlp")
	next  int
	types map[string]Type
	err   error
}

// NewBuilder starts an empty graph.
func NewBuilder(name string) *Builder {
	return &Builder{G: &Graph{Name: name}, types: map[string]Type{}}
}

// BuilderFor continues building an existing graph; new values are named so they
// do not collide with the existing ones.
func BuilderFor(g *Graph) *Builder {
	b := &Builder{G: g, types: g.Types()}
	for name := range b.types {
		if len(name) > 1 && name[0] == 'v' {
			if k, err := strconv.Atoi(name[1:]); err == nil && k >= b.next {
				b.next = k + 1
			}
		}
	}
	return b
}

// Err returns the first error met while building.
func (b *Builder) Err() error { return b.err }

// Fail records an error unless one is already recorded.
func (b *Builder) Fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// Type returns the type of a value built so far.
func (b *Builder) Type(v string) Type { return b.types[v] }

// Fresh returns an unused value name.
func (b *Builder) Fresh() string {
	for {
		name := "v" + strconv.Itoa(b.next)
		b.next++
		if _, used := b.types[name]; !used {
			return name
		}
	}
}

// AddInput declares a graph input and returns its name.
func (b *Builder) AddInput(name string, t Type, role Role, init *Init) string {
	if b.err != nil {
		return ""
	}
	if _, dup := b.types[name]; dup {
		b.Fail(fmt.Errorf("graph %q: value %q defined twice", b.G.Name, name))
		return ""
	}
	b.G.Inputs = append(b.G.Inputs, &Input{Value: Value{name, t}, Role: role, Init: init})
	b.types[name] = t
	return name
}

// Output adds a named graph output.
func (b *Builder) Output(name, value string) {
	if b.err == nil {
		b.G.Outputs = append(b.G.Outputs, &Output{Name: name, Value: value})
	}
}

// Op appends a single-output node and returns its output value name.
func (b *Builder) Op(op string, attrs Attrs, inputs ...string) string {
	outs := b.OpN(op, attrs, inputs...)
	if len(outs) != 1 {
		if b.err == nil {
			b.Fail(fmt.Errorf("%s has %d outputs, not 1", op, len(outs)))
		}
		return ""
	}
	return outs[0]
}

// OpN appends a node and returns all its output value names.
func (b *Builder) OpN(op string, attrs Attrs, inputs ...string) []string {
	if b.err != nil {
		return nil
	}
	in := make([]Type, len(inputs))
	for i, v := range inputs {
		t, ok := b.types[v]
		if !ok {
			b.Fail(fmt.Errorf("graph %q: %s input %d %q is not defined", b.G.Name, op, i, v))
			return nil
		}
		in[i] = t
	}
	if len(attrs) == 0 {
		attrs = nil
	}
	out, err := InferTypes(op, in, attrs)
	if err != nil {
		where := ""
		if b.Scope != "" {
			where = " in " + b.Scope
		}
		b.Fail(fmt.Errorf("graph %q%s: %v", b.G.Name, where, err))
		return nil
	}
	n := &Node{Op: op, Name: b.Scope, Inputs: append([]string(nil), inputs...), Attrs: attrs}
	names := make([]string, len(out))
	for i, t := range out {
		names[i] = b.Fresh()
		n.Outputs = append(n.Outputs, Value{names[i], t})
		b.types[names[i]] = t
	}
	b.G.Nodes = append(b.G.Nodes, n)
	return names
}

// Convenience wrappers for the common ops.

func (b *Builder) Add(x, y string) string { return b.Op("Add", nil, x, y) }
func (b *Builder) Sub(x, y string) string { return b.Op("Sub", nil, x, y) }
func (b *Builder) Mul(x, y string) string { return b.Op("Mul", nil, x, y) }
func (b *Builder) Div(x, y string) string { return b.Op("Div", nil, x, y) }

// Unary applies an element-wise unary op.
func (b *Builder) Unary(op, x string) string { return b.Op(op, nil, x) }

// Const makes a tensor filled with v.
func (b *Builder) Const(v float64, t Type) string {
	a := Attrs{"value": Float(v), "dtype": String(t.DType.String())}
	if len(t.Shape) > 0 {
		a["shape"] = IntsOf(t.Shape)
	}
	return b.Op("Const", a)
}

// Scalar makes a rank-0 constant of x's dtype, for broadcasting against x.
func (b *Builder) Scalar(v float64, like string) string {
	return b.Const(v, Type{DType: b.types[like].DType})
}

// MatMul multiplies the last two axes, optionally transposed.
func (b *Builder) MatMul(x, y string, ta, tb bool) string {
	var a Attrs
	if ta || tb {
		a = Attrs{}
		if ta {
			a["transpose_a"] = Int(1)
		}
		if tb {
			a["transpose_b"] = Int(1)
		}
	}
	return b.Op("MatMul", a, x, y)
}

// Reshape changes the shape (one -1 allowed).
func (b *Builder) Reshape(x string, shape ...int) string {
	return b.Op("Reshape", Attrs{"shape": IntsOf(shape)}, x)
}

// Transpose permutes the axes.
func (b *Builder) Transpose(x string, perm ...int) string {
	return b.Op("Transpose", Attrs{"perm": IntsOf(perm)}, x)
}

// Reduce applies ReduceSum or ReduceMean over axes.
func (b *Builder) Reduce(op, x string, keepdims bool, axes ...int) string {
	a := Attrs{"axes": IntsOf(axes)}
	if keepdims {
		a["keepdims"] = Int(1)
	}
	return b.Op(op, a, x)
}

// Slice takes x[start:end] along axis.
func (b *Builder) Slice(x string, axis, start, end int) string {
	return b.Op("Slice", Attrs{"axis": Int(int64(axis)), "start": Int(int64(start)), "end": Int(int64(end))}, x)
}
