package passes

import "gitee.com/gidean/conv-linn/ir"

// dce removes, in every graph, the nodes none of whose outputs reaches a graph
// output. Every op is pure, so such a node cannot change a result; graph inputs
// are the program's interface and are kept even when unused.
func dce(s *State) error {
	removed := 0
	for _, g := range s.Module.Graphs {
		removed += deadCodeElim(g)
	}
	if removed > 0 {
		s.Note("dce: removed %d dead nodes", removed)
	}
	return nil
}

// deadCodeElim removes g's dead nodes and returns how many it removed.
func deadCodeElim(g *ir.Graph) int {
	live := make(map[string]bool, len(g.Nodes))
	for _, o := range g.Outputs {
		live[o.Value] = true
	}
	keep := make([]bool, len(g.Nodes))
	kept := 0
	for i := len(g.Nodes) - 1; i >= 0; i-- {
		n := g.Nodes[i]
		for _, o := range n.Outputs {
			if live[o.Name] {
				keep[i] = true
				break
			}
		}
		if keep[i] {
			kept++
			for _, in := range n.Inputs {
				live[in] = true
			}
		}
	}
	if kept == len(g.Nodes) {
		return 0
	}
	nodes := make([]*ir.Node, 0, kept)
	for i, n := range g.Nodes {
		if keep[i] {
			nodes = append(nodes, n)
		}
	}
	removed := len(g.Nodes) - kept
	g.Nodes = nodes
	return removed
}
