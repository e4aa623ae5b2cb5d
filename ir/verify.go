package ir

import (
	"errors"
	"fmt"
)

// Verify checks every graph of the module: see Graph.Verify.
func (m *Module) Verify() error {
	names := map[string]bool{}
	for i, g := range m.Graphs {
		if g.Name == "" {
			return fmt.Errorf("graph %d has no name", i)
		}
		if names[g.Name] {
			return fmt.Errorf("graph %q appears twice", g.Name)
		}
		names[g.Name] = true
		if err := g.Verify(); err != nil {
			return err
		}
	}
	return nil
}

// Verify checks that the graph is well formed: unique value names, nodes in
// topological order reading only defined values, known ops with valid attributes,
// recorded output types equal to the inferred ones, valid roles and initialisers,
// and outputs that name existing values (and state inputs of the same type when
// they update one). Errors name the graph, the node index, its op and its value.
func (g *Graph) Verify() error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("graph %q: %s", g.Name, fmt.Sprintf(format, args...))
	}
	types := map[string]Type{}
	define := func(v Value) error {
		if v.Name == "" {
			return errors.New("a value has no name")
		}
		if _, dup := types[v.Name]; dup {
			return fmt.Errorf("value %q is defined twice", v.Name)
		}
		if v.Type.DType == InvalidDType || v.Type.DType.Size() == 0 {
			return fmt.Errorf("value %q has no valid dtype", v.Name)
		}
		for _, d := range v.Type.Shape {
			if d < 0 {
				return fmt.Errorf("value %q has a negative dimension in %v", v.Name, v.Type)
			}
		}
		types[v.Name] = v.Type
		return nil
	}
	for i, in := range g.Inputs {
		if err := define(in.Value); err != nil {
			return fail("input %d: %v", i, err)
		}
		if in.Role == InvalidRole || in.Role > Scalar {
			return fail("input %q: invalid role", in.Name)
		}
		if in.Role == Scalar && in.Type.Rank() != 0 {
			return fail("input %q: a scalar input must have shape [], got %v", in.Name, in.Type)
		}
		if in.Init != nil {
			if !in.Role.IsState() {
				return fail("input %q: role %v takes no init", in.Name, in.Role)
			}
			if err := in.Init.Check(in.Type); err != nil {
				return fail("input %q: %v", in.Name, err)
			}
		}
		if in.Of != "" && g.Input(in.Of) == nil {
			return fail("input %q belongs to %q, which is not an input", in.Name, in.Of)
		}
	}
	for i, n := range g.Nodes {
		where := fmt.Sprintf("node %d (%s)", i, n)
		d := Lookup(n.Op)
		if d == nil {
			return fail("%s: unknown op %q", where, n.Op)
		}
		in := make([]Type, len(n.Inputs))
		for j, name := range n.Inputs {
			t, ok := types[name]
			if !ok {
				return fail("%s: input %d %q is not defined before use", where, j, name)
			}
			in[j] = t
		}
		out, err := InferTypes(n.Op, in, n.Attrs)
		if err != nil {
			return fail("%s: %v", where, err)
		}
		if len(n.Outputs) != len(out) {
			return fail("%s: has %d outputs, %s defines %d", where, len(n.Outputs), n.Op, len(out))
		}
		for j, o := range n.Outputs {
			if !o.Type.Equal(out[j]) {
				return fail("%s: output %q is recorded as %v but the inputs give %v", where, o.Name, o.Type, out[j])
			}
			if err := define(o); err != nil {
				return fail("%s: %v", where, err)
			}
		}
	}
	outNames := map[string]bool{}
	updated := map[string]bool{}
	for i, o := range g.Outputs {
		if o.Name == "" {
			return fail("output %d has no name", i)
		}
		if outNames[o.Name] {
			return fail("output %q appears twice", o.Name)
		}
		outNames[o.Name] = true
		t, ok := types[o.Value]
		if !ok {
			return fail("output %q: value %q is not defined", o.Name, o.Value)
		}
		if o.Updates != "" {
			in := g.Input(o.Updates)
			if in == nil || !in.Role.IsState() {
				return fail("output %q updates %q, which is not a state input", o.Name, o.Updates)
			}
			if !in.Type.Equal(t) {
				return fail("output %q is %v but updates %q of type %v", o.Name, t, o.Updates, in.Type)
			}
			if updated[o.Updates] {
				return fail("input %q is updated twice", o.Updates)
			}
			updated[o.Updates] = true
		}
	}
	return nil
}
