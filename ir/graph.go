package ir

import (
	"fmt"
	"sort"
	"strconv"
)

// Role says what a graph input is to the program that runs the graph.
type Role uint8

// Input roles. Params, Buffers, OptState and GradAccum are persistent state that
// the runtime owns across calls; Data and Scalar are bound for every call.
const (
	InvalidRole Role = iota
	Param            // trainable parameter
	Buffer           // non-trainable persistent tensor (e.g. an SLTrain sparse_index)
	OptState         // optimizer state (AdamW m, v), named after its parameter
	GradAccum        // gradient accumulator of a parameter
	Data             // a batch input (token ids, labels)
	Scalar           // a runtime scalar such as the learning rate or the step
)

var roleNames = [...]string{InvalidRole: "invalid", Param: "param", Buffer: "buffer", OptState: "opt_state", GradAccum: "grad_accum", Data: "data", Scalar: "scalar"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "role(" + strconv.Itoa(int(r)) + ")"
}

// IsState reports whether values of this role persist between program runs.
func (r Role) IsState() bool { return r == Param || r == Buffer || r == OptState || r == GradAccum }

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	for r, n := range roleNames {
		if n == s && r != 0 {
			return Role(r), nil
		}
	}
	return InvalidRole, fmt.Errorf("unknown role %q (want param, buffer, opt_state, grad_accum, data or scalar)", s)
}

// Value is a named, typed SSA value.
type Value struct {
	Name string
	Type Type
}

// Input is a graph input: a value plus its role, its initialiser (for state) and,
// for optimizer state and gradient accumulators, the parameter it belongs to.
type Input struct {
	Value
	Role Role
	Init *Init  // how state is initialised; nil for Data and Scalar
	Of   string // the parameter this state belongs to ("" when none)
}

// Node applies an op to input values and defines its output values.
type Node struct {
	Op      string
	Name    string // optional source name, e.g. "model.layers.0.self_attn.q_proj"
	Inputs  []string
	Outputs []Value
	Attrs   Attrs
}

// Output names a value the graph returns. Updates, when set, names the state input
// this output replaces after the run (a parameter update, new optimizer state).
type Output struct {
	Name    string
	Value   string
	Updates string
}

// Graph is one program: inputs, nodes in topological order, outputs.
type Graph struct {
	Name    string
	Inputs  []*Input
	Nodes   []*Node
	Outputs []*Output
}

// Module is what slc compiles: a set of graphs sharing state by name, plus
// free-form metadata (the model config, the SLTrain settings, …).
type Module struct {
	Meta   map[string]string
	Graphs []*Graph
}

// Graph returns the graph of that name, or nil.
func (m *Module) Graph(name string) *Graph {
	for _, g := range m.Graphs {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// MetaKeys returns the metadata keys in sorted order.
func (m *Module) MetaKeys() []string {
	keys := make([]string, 0, len(m.Meta))
	for k := range m.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Input returns the input of that name, or nil.
func (g *Graph) Input(name string) *Input {
	for _, in := range g.Inputs {
		if in.Name == name {
			return in
		}
	}
	return nil
}

// Output returns the output of that name, or nil.
func (g *Graph) Output(name string) *Output {
	for _, o := range g.Outputs {
		if o.Name == name {
			return o
		}
	}
	return nil
}

// InputsWithRole returns the inputs of the given role, in order.
func (g *Graph) InputsWithRole(r Role) []*Input {
	var out []*Input
	for _, in := range g.Inputs {
		if in.Role == r {
			out = append(out, in)
		}
	}
	return out
}

// Types returns a map from every value name (inputs and node outputs) to its type.
func (g *Graph) Types() map[string]Type {
	m := make(map[string]Type, len(g.Inputs)+2*len(g.Nodes))
	for _, in := range g.Inputs {
		m[in.Name] = in.Type
	}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			m[o.Name] = o.Type
		}
	}
	return m
}

// Producers maps every node output name to the node that defines it.
func (g *Graph) Producers() map[string]*Node {
	m := make(map[string]*Node, 2*len(g.Nodes))
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			m[o.Name] = n
		}
	}
	return m
}

// Uses counts how many times each value is read by nodes and outputs.
func (g *Graph) Uses() map[string]int {
	m := make(map[string]int)
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			m[in]++
		}
	}
	for _, o := range g.Outputs {
		m[o.Value]++
	}
	return m
}

// NumElements counts the elements of all inputs of role r.
func (g *Graph) NumElements(r Role) int64 {
	var n int64
	for _, in := range g.Inputs {
		if in.Role == r {
			n += in.Type.NumElements()
		}
	}
	return n
}

// Clone returns a deep copy of the graph.
func (g *Graph) Clone() *Graph {
	c := &Graph{Name: g.Name}
	for _, in := range g.Inputs {
		cp := *in
		cp.Type = in.Type.clone()
		cp.Init = in.Init.Clone()
		c.Inputs = append(c.Inputs, &cp)
	}
	for _, n := range g.Nodes {
		c.Nodes = append(c.Nodes, n.Clone())
	}
	for _, o := range g.Outputs {
		cp := *o
		c.Outputs = append(c.Outputs, &cp)
	}
	return c
}

// Clone returns a deep copy of the node.
func (n *Node) Clone() *Node {
	c := &Node{Op: n.Op, Name: n.Name, Attrs: n.Attrs.Clone()}
	c.Inputs = append([]string(nil), n.Inputs...)
	for _, o := range n.Outputs {
		c.Outputs = append(c.Outputs, Value{Name: o.Name, Type: o.Type.clone()})
	}
	return c
}

// Clone returns a deep copy of the module.
func (m *Module) Clone() *Module {
	c := &Module{}
	if m.Meta != nil {
		c.Meta = make(map[string]string, len(m.Meta))
		for k, v := range m.Meta {
			c.Meta[k] = v
		}
	}
	for _, g := range m.Graphs {
		c.Graphs = append(c.Graphs, g.Clone())
	}
	return c
}

func (t Type) clone() Type {
	if t.Shape == nil {
		return t
	}
	return Type{DType: t.DType, Shape: append([]int(nil), t.Shape...)}
}

// Equal reports whether two graphs are structurally identical.
func (g *Graph) Equal(h *Graph) bool {
	if g.Name != h.Name || len(g.Inputs) != len(h.Inputs) || len(g.Nodes) != len(h.Nodes) || len(g.Outputs) != len(h.Outputs) {
		return false
	}
	for i, a := range g.Inputs {
		b := h.Inputs[i]
		if a.Name != b.Name || !a.Type.Equal(b.Type) || a.Role != b.Role || a.Of != b.Of || !a.Init.Equal(b.Init) {
			return false
		}
	}
	for i, a := range g.Nodes {
		b := h.Nodes[i]
		if a.Op != b.Op || a.Name != b.Name || len(a.Inputs) != len(b.Inputs) || len(a.Outputs) != len(b.Outputs) || !a.Attrs.Equal(b.Attrs) {
			return false
		}
		for j := range a.Inputs {
			if a.Inputs[j] != b.Inputs[j] {
				return false
			}
		}
		for j := range a.Outputs {
			if a.Outputs[j].Name != b.Outputs[j].Name || !a.Outputs[j].Type.Equal(b.Outputs[j].Type) {
				return false
			}
		}
	}
	for i, a := range g.Outputs {
		if *a != *h.Outputs[i] {
			return false
		}
	}
	return true
}

// Equal reports whether two modules are structurally identical.
func (m *Module) Equal(o *Module) bool {
	if len(m.Meta) != len(o.Meta) || len(m.Graphs) != len(o.Graphs) {
		return false
	}
	for k, v := range m.Meta {
		if w, ok := o.Meta[k]; !ok || v != w {
			return false
		}
	}
	for i := range m.Graphs {
		if !m.Graphs[i].Equal(o.Graphs[i]) {
			return false
		}
	}
	return true
}

// String describes a node for error messages: its index is not known here, so
// the op and the first output name identify it.
func (n *Node) String() string {
	s := n.Op
	if len(n.Outputs) > 0 {
		s += " -> " + n.Outputs[0].Name
	}
	if n.Name != "" {
		s += " (" + n.Name + ")"
	}
	return s
}
