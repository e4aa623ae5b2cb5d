package passes

import (
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// cse merges, in every graph, nodes that apply the same op with the same
// attributes to the same inputs (Const nodes, which have no inputs, included):
// the later node's outputs are renamed to the earlier node's everywhere they are
// read. Every op is pure and deterministic, so the merged values are
// bit-identical. The merged node stays in place, now unread; dce removes it.
// Renaming happens while walking the nodes in order, so chains of duplicates
// (two identical Consts feeding two identical Muls) collapse in one pass.
func cse(s *State) error {
	merged := 0
	for _, g := range s.Module.Graphs {
		merged += commonSubexprElim(g)
	}
	if merged > 0 {
		s.Note("cse: merged %d duplicate nodes", merged)
	}
	return nil
}

// commonSubexprElim merges g's duplicate nodes and returns how many it merged.
func commonSubexprElim(g *ir.Graph) int {
	first := map[string]*ir.Node{}
	rename := map[string]string{}
	merged := 0
	for _, n := range g.Nodes {
		for i, in := range n.Inputs {
			if r, ok := rename[in]; ok {
				n.Inputs[i] = r
			}
		}
		key := nodeKey(n)
		m, dup := first[key]
		if !dup {
			first[key] = n
			continue
		}
		for i, o := range n.Outputs {
			rename[o.Name] = m.Outputs[i].Name
		}
		merged++
	}
	renameOutputs(g, rename)
	return merged
}

// nodeKey identifies what a node computes: its op, inputs, attributes and
// output types (not its source name or output names).
func nodeKey(n *ir.Node) string {
	var b strings.Builder
	b.WriteString(n.Op)
	b.WriteByte('(')
	for i, in := range n.Inputs {
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(in)
	}
	b.WriteByte(')')
	for _, k := range n.Attrs.Keys() {
		a := n.Attrs[k]
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(a.Kind.String())
		b.WriteByte(':')
		b.WriteString(a.String())
	}
	for _, o := range n.Outputs {
		b.WriteString("->")
		b.WriteString(o.Type.String())
	}
	return b.String()
}

// renameOutputs applies rename to the graph outputs' values.
func renameOutputs(g *ir.Graph, rename map[string]string) {
	for _, o := range g.Outputs {
		o.Value = resolve(rename, o.Value)
	}
}

// resolve follows a chain of renames to its end.
func resolve(rename map[string]string, v string) string {
	for i := 0; i <= len(rename); i++ {
		r, ok := rename[v]
		if !ok {
			return v
		}
		v = r
	}
	return v // a cycle, which the passes never create; stop rather than loop
}
