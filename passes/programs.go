package passes

import (
	"fmt"

	"gitee.com/gidean/conv-linn/ir"
)

// programs is the "programs" pass: it derives the inference programs from
// "forward" and fixes the module's graph order. "eval" is the forward with the
// output "loss" only; "infer" is the forward with every other output (for a
// LLaMA, "logits") and so needs no labels computation. Nodes that the kept
// outputs do not need are removed from both.
//
// "forward" itself is dropped: eval and infer cover it and an artifact compiles
// every graph it holds, so keeping it would only make artifacts bigger. The
// resulting order is train_step, update, eval, infer (then any other graph), so
// the first graph holds every parameter and buffer.
func programs(s *State) error {
	m := s.Module
	fwd := m.Graph("forward")
	if fwd == nil {
		return fmt.Errorf("the module has no \"forward\" graph")
	}
	for _, name := range []string{"eval", "infer"} {
		if m.Graph(name) != nil {
			return fmt.Errorf("the module already has an %q graph", name)
		}
	}
	var evalOuts, inferOuts []*ir.Output
	for _, o := range fwd.Outputs {
		if o.Name == "loss" {
			evalOuts = append(evalOuts, o)
		} else if o.Updates == "" {
			inferOuts = append(inferOuts, o)
		}
	}
	derive := func(name string, outs []*ir.Output) *ir.Graph {
		if len(outs) == 0 {
			return nil
		}
		g := fwd.Clone()
		g.Name = name
		g.Outputs = nil
		for _, o := range outs {
			cp := *o
			g.Outputs = append(g.Outputs, &cp)
		}
		deadCodeElim(g)
		dropUnusedData(g)
		return g
	}
	derived := map[string]*ir.Graph{"eval": derive("eval", evalOuts), "infer": derive("infer", inferOuts)}

	order := []string{"train_step", "update", "eval", "infer"}
	var graphs []*ir.Graph
	for _, name := range order {
		if g := derived[name]; g != nil {
			graphs = append(graphs, g)
		} else if g := m.Graph(name); g != nil {
			graphs = append(graphs, g)
		}
	}
	for _, g := range m.Graphs {
		known := g.Name == "forward"
		for _, name := range order {
			known = known || g.Name == name
		}
		if !known {
			graphs = append(graphs, g)
		}
	}
	m.Graphs = graphs
	names := make([]string, len(graphs))
	for i, g := range graphs {
		names[i] = fmt.Sprintf("%s (%d nodes)", g.Name, len(g.Nodes))
	}
	s.Note("programs: %v; forward dropped (eval and infer cover it)", names)
	return nil
}

// dropUnusedData removes the Data inputs no node or output of g reads (the
// loss mask of infer, which has no loss), so that a caller need not bind
// them. State inputs stay: programs share the runtime's state by name.
func dropUnusedData(g *ir.Graph) {
	used := map[string]bool{}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			used[in] = true
		}
	}
	for _, o := range g.Outputs {
		used[o.Value] = true
	}
	var keep []*ir.Input
	for _, in := range g.Inputs {
		if in.Role != ir.Data || used[in.Name] {
			keep = append(keep, in)
		}
	}
	g.Inputs = keep
}
