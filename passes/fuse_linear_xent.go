package passes

import (
	"fmt"
	"slices"

	"gitee.com/gidean/conv-linn/ir"
)

// fuseLinearXent is the "fuse-linear-xent" pass: it merges a causal LM's loss
// head — the lm_head product, the cross-entropy and, in train_step, the
// cross-entropy's gradient and the two products of lm_head's backward — into
// one GroupLinearCrossEntropy kernel group, which codegen runs in chunks of
// rows (the "cut cross-entropy" idea): a chunk's logits live in a transient
// buffer, the loss and the gradient are computed there in place, and the
// chunk's share of dhidden and dW is added before the next chunk. The full
// [T, V] logits and their gradient never exist.
//
// The nodes and their results are unchanged (the interpreter and every other
// pass see the same graph); only the partition changes, so values inside the
// group get no memory. The pattern, found in each graph:
//
//	logits = Linear(h, W)            (optionally Reshape(logits) to [T, V])
//	ce     = SoftmaxCrossEntropy(logits, labels)
//	dl     = SoftmaxCrossEntropyGrad(logits | Cast(logits → bf16), labels, dloss)
//	dh     = MatMul(dl | Cast(dl → bf16), W)            (optional)
//	dW     = MatMul(same, h | Reshape(h), transpose_a)  (optional)
//
// with the logits (and dl) read by nothing else and returned by no output — a
// program that returns the logits (infer) keeps them. The dtype combinations
// are the three slc compiles: f32, pure bf16, and bf16-mixed (f32 logits from
// bf16 operands, the gradient of their bf16 rounding, bf16 product operands).
//
// The cuda device keeps the separate kernels (its GEMM generators are
// block-cooperative launches that the chunk loop would have to re-launch per
// chunk; not done yet): the pass then only notes why.
func fuseLinearXent(s *State) error {
	if s.Options.Device == "cuda" {
		s.Note("fuse-linear-xent: cuda target: lm_head and the cross-entropy stay separate kernels (the chunked fusion is CPU only)")
		return nil
	}
	if s.Groups == nil {
		return fmt.Errorf("fuse-linear-xent needs fuse-groups first")
	}
	for _, g := range s.Module.Graphs {
		gs, fused, err := FuseLinearCrossEntropy(g, s.Groups[g.Name])
		if err != nil {
			return err
		}
		s.Groups[g.Name] = gs
		for _, gr := range fused {
			s.Note("fuse-linear-xent: %s: %s → one chunked kernel (outputs %v; the logits %s never stored)",
				g.Name, gr.Nodes[0].Name, gr.Outputs, logitsOf(gr))
		}
	}
	return nil
}

// logitsOf describes the logits a fused group keeps inside.
func logitsOf(gr *Group) string {
	for _, n := range gr.Nodes {
		if n.Op == "Linear" {
			return n.Outputs[0].Type.String()
		}
	}
	return "?"
}

// xentMatch is one loss head found in a graph.
type xentMatch struct {
	nodes []*ir.Node // in graph order
	ce    *ir.Node
}

// FuseLinearCrossEntropy returns groups with every loss head of g (see
// fuseLinearXent) merged into one GroupLinearCrossEntropy group, in a
// schedule order again, and the fused groups. Groups it does not touch are
// kept as they are (renumbered).
func FuseLinearCrossEntropy(g *ir.Graph, groups []*Group) ([]*Group, []*Group, error) {
	producer := g.Producers()
	readers := map[string][]*ir.Node{}
	for _, n := range g.Nodes {
		for _, v := range slices.Compact(slices.Clone(n.Inputs)) {
			readers[v] = append(readers[v], n)
		}
	}
	returned := map[string]bool{}
	for _, o := range g.Outputs {
		returned[o.Value] = true
	}
	groupOf := map[*ir.Node]*Group{}
	for _, gr := range groups {
		for _, n := range gr.Nodes {
			groupOf[n] = gr
		}
	}
	var matches []xentMatch
	for _, n := range g.Nodes {
		if n.Op == "SoftmaxCrossEntropy" {
			if m, ok := matchXent(n, producer, readers, returned, groupOf); ok {
				matches = append(matches, m)
			}
		}
	}
	if len(matches) == 0 {
		return groups, nil, nil
	}
	drop := map[*Group]bool{}
	var fused []*Group
	first := map[*Group]int{} // a fused group's place: its earliest member group
	order := map[*ir.Node]int{}
	for i, n := range g.Nodes {
		order[n] = i
	}
	for _, m := range matches {
		in := map[*ir.Node]bool{}
		for _, n := range m.nodes {
			in[n] = true
		}
		fg := &Group{Kind: GroupLinearCrossEntropy, Nodes: m.nodes}
		defined := map[string]bool{}
		pos := len(groups)
		for _, n := range m.nodes {
			gr := groupOf[n]
			drop[gr] = true
			pos = min(pos, gr.ID)
			for _, v := range n.Inputs {
				if !defined[v] && !slices.Contains(fg.Inputs, v) {
					fg.Inputs = append(fg.Inputs, v)
				}
			}
			defined[n.Outputs[0].Name] = true
		}
		for _, n := range m.nodes {
			v := n.Outputs[0].Name
			if returned[v] || slices.ContainsFunc(readers[v], func(r *ir.Node) bool { return !in[r] }) {
				fg.Outputs = append(fg.Outputs, v)
			}
		}
		first[fg] = pos
		fused = append(fused, fg)
	}
	// Rebuild the schedule: the untouched groups and the fused ones, in a
	// topological order that keeps the old order wherever it can (the
	// fused group may have to wait for its dloss, which the old schedule
	// computed after the cross-entropy).
	var all []*Group
	place := map[*Group]int{}
	for _, gr := range groups {
		if !drop[gr] {
			all = append(all, gr)
			place[gr] = gr.ID
		}
	}
	for _, fg := range fused {
		all = append(all, fg)
		place[fg] = first[fg]
	}
	sched, err := topoGroups(g, all, place)
	if err != nil {
		return nil, nil, err
	}
	return sched, fused, nil
}

// matchXent matches the loss head ending in the cross-entropy ce (see
// fuseLinearXent).
func matchXent(ce *ir.Node, producer map[string]*ir.Node, readers map[string][]*ir.Node, returned map[string]bool, groupOf map[*ir.Node]*Group) (xentMatch, bool) {
	var m xentMatch
	alone := func(n *ir.Node) bool { // n is its group's only node
		gr := groupOf[n]
		return gr != nil && len(gr.Nodes) == 1
	}
	only := func(v string, allowed ...*ir.Node) bool { // v is read by allowed nodes only, and not returned
		if returned[v] {
			return false
		}
		for _, r := range readers[v] {
			if !slices.Contains(allowed, r) {
				return false
			}
		}
		return true
	}
	logits := ce.Inputs[0]
	lin := producer[logits]
	var reshape *ir.Node
	if lin != nil && lin.Op == "Reshape" {
		reshape, lin = lin, producer[lin.Inputs[0]]
	}
	if lin == nil || lin.Op != "Linear" || !alone(lin) || !alone(ce) || (reshape != nil && !alone(reshape)) {
		return m, false
	}
	lt := lin.Outputs[0].Type
	if lt.DType != ir.F32 && lt.DType != ir.BF16 {
		return m, false
	}
	if reshape != nil && !only(lin.Outputs[0].Name, reshape) {
		return m, false
	}
	h, w := lin.Inputs[0], lin.Inputs[1]
	// The gradient, when there is one: read from the logits themselves or
	// from their bf16 rounding (bf16-mixed).
	var gradIn *ir.Node // Cast(logits → bf16), or nil
	var grad *ir.Node
	for _, r := range readers[logits] {
		switch {
		case r == ce:
		case r.Op == "SoftmaxCrossEntropyGrad" && grad == nil && gradIn == nil && r.Inputs[0] == logits:
			grad = r
		case r.Op == "Cast" && gradIn == nil && grad == nil && lt.DType == ir.F32 && r.Outputs[0].Type.DType == ir.BF16:
			gradIn = r
			rs := readers[r.Outputs[0].Name]
			if len(rs) != 1 || rs[0].Op != "SoftmaxCrossEntropyGrad" || rs[0].Inputs[0] != r.Outputs[0].Name || !alone(r) || returned[r.Outputs[0].Name] {
				return m, false
			}
			grad = rs[0]
		default:
			return m, false
		}
	}
	nodes := []*ir.Node{lin}
	if reshape != nil {
		nodes = append(nodes, reshape)
	}
	nodes = append(nodes, ce)
	if grad == nil {
		if returned[logits] {
			return m, false
		}
		m.nodes, m.ce = nodes, ce
		return m, true
	}
	if !alone(grad) || grad.Inputs[1] != ce.Inputs[1] || !only(logits, ce, grad, gradIn) {
		return m, false
	}
	gt := grad.Outputs[0].Type.DType
	// Supported dtype chains: f32 throughout; bf16 throughout; bf16-mixed.
	mixed := gradIn != nil
	if (mixed && gt != ir.F32) || (!mixed && gt != lt.DType) {
		return m, false
	}
	if gradIn != nil {
		nodes = append(nodes, gradIn)
	}
	nodes = append(nodes, grad)
	// The products of lm_head's backward, read from dl or its bf16 rounding.
	dl := grad.Outputs[0].Name
	var dlCast *ir.Node
	if mixed {
		rs := readers[dl]
		if len(rs) != 1 || rs[0].Op != "Cast" || rs[0].Outputs[0].Type.DType != ir.BF16 || !alone(rs[0]) || returned[dl] {
			return m, false
		}
		dlCast = rs[0]
		nodes = append(nodes, dlCast)
		dl = dlCast.Outputs[0].Name
	}
	if returned[dl] {
		return m, false
	}
	var dh, dW, hView *ir.Node
	for _, r := range readers[dl] {
		if r.Op != "MatMul" || !alone(r) || r.Inputs[0] != dl || len(r.Outputs[0].Type.Shape) != 2 {
			return m, false
		}
		ta, tb := r.Attrs.GetInt("transpose_a", 0) != 0, r.Attrs.GetInt("transpose_b", 0) != 0
		switch {
		case !ta && !tb && r.Inputs[1] == w && dh == nil:
			dh = r
		case ta && !tb && dW == nil && sameStorage(r.Inputs[1], h, producer):
			dW = r
			if v := producer[r.Inputs[1]]; v != nil && v.Op == "Reshape" && alone(v) && only(v.Outputs[0].Name, r) {
				hView = v
			}
		default:
			return m, false
		}
	}
	if dh == nil && dW == nil {
		return m, false
	}
	for _, n := range []*ir.Node{hView, dh, dW} {
		if n != nil {
			nodes = append(nodes, n)
		}
	}
	m.nodes, m.ce = sortNodes(nodes), ce
	return m, true
}

// sameStorage reports whether v is h or a Reshape of h.
func sameStorage(v, h string, producer map[string]*ir.Node) bool {
	if v == h {
		return true
	}
	n := producer[v]
	return n != nil && n.Op == "Reshape" && n.Inputs[0] == h
}

// sortNodes orders a loss head's nodes topologically (the match collects
// them in pattern order; every node follows the ones it reads).
func sortNodes(nodes []*ir.Node) []*ir.Node {
	defined := map[string]bool{}
	var out []*ir.Node
	left := slices.Clone(nodes)
	for len(left) > 0 {
		for i, n := range left {
			ready := true
			for _, v := range n.Inputs {
				for _, o := range left {
					if o != n && o.Outputs[0].Name == v && !defined[v] {
						ready = false
					}
				}
			}
			if ready {
				out = append(out, n)
				defined[n.Outputs[0].Name] = true
				left = slices.Delete(left, i, i+1)
				break
			}
		}
	}
	return out
}

// topoGroups orders groups so that every group follows the groups whose
// values it reads, preferring the smaller place when several are ready, and
// renumbers their IDs.
func topoGroups(g *ir.Graph, groups []*Group, place map[*Group]int) ([]*Group, error) {
	defBy := map[string]*Group{}
	for _, gr := range groups {
		for _, n := range gr.Nodes {
			for _, o := range n.Outputs {
				defBy[o.Name] = gr
			}
		}
	}
	waits := map[*Group]int{}
	next := map[*Group][]*Group{}
	for _, gr := range groups {
		seen := map[*Group]bool{}
		for _, n := range gr.Nodes {
			for _, v := range n.Inputs {
				if d := defBy[v]; d != nil && d != gr && !seen[d] {
					seen[d] = true
					waits[gr]++
					next[d] = append(next[d], gr)
				}
			}
		}
	}
	var ready, out []*Group
	for _, gr := range groups {
		if waits[gr] == 0 {
			ready = append(ready, gr)
		}
	}
	for len(ready) > 0 {
		best := 0
		for i, gr := range ready {
			if place[gr] < place[ready[best]] {
				best = i
			}
		}
		gr := ready[best]
		ready = slices.Delete(ready, best, best+1)
		gr.ID = len(out)
		out = append(out, gr)
		for _, s := range next[gr] {
			if waits[s]--; waits[s] == 0 {
				ready = append(ready, s)
			}
		}
	}
	if len(out) != len(groups) {
		return nil, fmt.Errorf("graph %q: fuse-linear-xent: the groups form a cycle", g.Name)
	}
	return out, nil
}
