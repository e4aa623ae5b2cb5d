package passes

import "gitee.com/gidean/conv-linn/ir"

// Block-wise groups: the 8-bit optimizer's update of one tensor, blocked
// as [R, C] (R blocks of C = 2,048 values), is element-wise work over the
// blocks, a max |x| per block (AbsMaxLast), per-block scalars made from
// those maxima, and element-wise work that reads them (the quantization).
// Partitioned the usual way it is a dozen kernels whose whole-tensor
// results — the widened gradient and parameter, both moments in f32, the
// new parameter — all pass through memory: for a 7B model's embedding,
// 0.5 GB per f32 copy. A GroupBlockwise is all of it as one kernel that
// runs block by block, a row of [R, C] per work item. On the CPU its
// parts (Group.Parts: the groups it was made of) run one after the other
// per row, each as the kernel it was, through a few rows of per-thread
// scratch, so the results are those of the separate kernels bit for bit;
// on the GPU a first sweep over the row computes what the maxima need and
// the maxima, a second recomputes the element-wise values and writes them
// (codegen/lower's blockwise.go). Nothing of the tensor's size but the
// inputs and the outputs is stored, and the outputs may overwrite the
// state they update (memory-plan's blockwiseInPlace).
//
// formBlockwise grows such a group from each AbsMaxLast whose operand is
// [R, C] with C > 1 over the neighbouring element-wise groups (by the
// values they read and write) whose every node computes R·C values (any
// shape: they are visited in row-major order) or a row's [R, 1], the
// views (Reshapes) of R·C values that lead in and out (an f32 parameter
// blocked, its update unblocked: inside, they let the group read and
// write the parameter itself), and the other AbsMaxLast over the same
// blocks. A neighbour is taken only if reading its inputs fits the
// row-by-row visit (each input of R·C values read element for element,
// one of [R, 1] by a node over [R, C] or of [R, 1], a scalar anywhere)
// and no cycle between groups would form; the group is formed only if no
// value the maxima need reads a row's scalar (two sweeps suffice). Any
// other graph is left as it was.
func (p *partitioner) formBlockwise() {
	succ := map[*pgroup]map[*pgroup]bool{}
	for _, q := range p.groups {
		for x := range q.preds {
			if succ[x] == nil {
				succ[x] = map[*pgroup]bool{}
			}
			succ[x][q] = true
		}
	}
	for _, n := range p.g.Nodes {
		if n.Op != "AbsMaxLast" || p.groupOf[n] == nil {
			continue
		}
		seed := find(p.groupOf[n])
		x := p.types[n.Inputs[0]]
		if seed.kind != GroupKernel || x.Rank() < 1 || !p.types[n.Outputs[0].Name].DType.IsFloat() || p.types[n.Outputs[0].Name].DType == ir.BF16 {
			continue
		}
		C := x.Shape[x.Rank()-1]
		if C < 2 {
			continue
		}
		space := x.Shape
		members := p.growBlockwise(seed, space, succ)
		if len(members) < 2 || !p.twoSweeps(members, space) {
			continue
		}
		var parts [][]*ir.Node
		for _, m := range members {
			parts = append(parts, append([]*ir.Node(nil), m.nodes...))
		}
		for _, r := range members[1:] {
			for s := range succ[r] {
				if succ[seed] == nil {
					succ[seed] = map[*pgroup]bool{}
				}
				succ[seed][s] = true
			}
			p.merge(seed, r)
		}
		seed.kind, seed.space, seed.open, seed.parts = GroupBlockwise, space, false, parts
		delete(seed.preds, seed)
		p.widenInside(seed)
	}
}

// widenInside gives each part of the block-wise group q its own copy of
// a widening Cast made by another group (the gradient's f32 copy, which
// the gradient norm's reduction also reads): the part widens the narrow
// value as it reads it, exactly, and the wide copy of the whole tensor
// need not be stored for it.
func (p *partitioner) widenInside(q *pgroup) {
	for k, part := range q.parts {
		copies := map[string]*ir.Node{}
		for _, n := range part {
			for j, v := range n.Inputs {
				c := p.producer[v]
				if c == nil || !p.widens(c) || p.groupOf[c] == nil || find(p.groupOf[c]) == q {
					continue
				}
				cp := copies[v]
				if cp == nil {
					cp = c.Clone()
					cp.Outputs[0].Name = p.builder.Fresh()
					copies[v] = cp
					p.groupOf[cp] = q
					p.producer[cp.Outputs[0].Name] = cp
					p.types[cp.Outputs[0].Name] = cp.Outputs[0].Type
					q.nodes = append(q.nodes, cp)
					q.parts[k] = append(q.parts[k], cp)
					first := n
					for _, m := range part {
						if slicesContains(m.Inputs, v) && p.nodeIndex()[m] < p.nodeIndex()[first] {
							first = m
						}
					}
					p.before[first] = append(p.before[first], cp)
					if r := p.groupOfValue(c.Inputs[0]); r != nil && r != q {
						q.preds[r] = true
					}
				}
				n.Inputs[j] = cp.Outputs[0].Name
			}
		}
	}
}

// slicesContains reports whether list holds v.
func slicesContains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// growBlockwise returns seed and the groups joined to it (see
// formBlockwise), in the order they were taken.
func (p *partitioner) growBlockwise(seed *pgroup, space []int, succ map[*pgroup]map[*pgroup]bool) []*pgroup {
	members := []*pgroup{seed}
	for i := 0; i < len(members); i++ {
		var next []*pgroup
		for x := range members[i].preds {
			next = append(next, find(x))
		}
		for x := range succ[members[i]] {
			next = append(next, find(x))
		}
		// Deterministic order: by the position of the first node.
		sortGroups(next, p)
		for _, c := range next {
			if c.into != nil || contains(members, c) || !p.blockMember(c, space) {
				continue
			}
			if p.noDetour(append(members, c), succ) {
				members = append(members, c)
			}
		}
	}
	return members
}

// noDetour reports whether no path leaves the members and comes back
// through another group: whether they can be one group without a cycle
// (acyclic's question, asked downstream: a member's readers are few, its
// producers' producers are the whole backward).
func (p *partitioner) noDetour(members []*pgroup, succ map[*pgroup]map[*pgroup]bool) bool {
	seen := map[*pgroup]bool{}
	var stack []*pgroup
	for _, m := range members {
		for s := range succ[m] {
			if s = find(s); !contains(members, s) && !seen[s] {
				seen[s] = true
				stack = append(stack, s)
			}
		}
	}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for s := range succ[x] {
			s = find(s)
			if contains(members, s) {
				return false
			}
			if !seen[s] {
				seen[s] = true
				stack = append(stack, s)
			}
		}
	}
	return true
}

// sortGroups orders groups by their first node's position in the graph.
func sortGroups(gs []*pgroup, p *partitioner) {
	first := func(q *pgroup) int {
		best := -1
		for _, n := range q.nodes {
			if i, ok := p.nodeIndex()[n]; ok && (best < 0 || i < best) {
				best = i
			}
		}
		return best
	}
	for i := 1; i < len(gs); i++ {
		for j := i; j > 0 && first(gs[j]) < first(gs[j-1]); j-- {
			gs[j], gs[j-1] = gs[j-1], gs[j]
		}
	}
}

// nodeIndex is each node's position in the graph (computed once).
func (p *partitioner) nodeIndex() map[*ir.Node]int {
	if p.index == nil {
		p.index = make(map[*ir.Node]int, len(p.g.Nodes))
		for i, n := range p.g.Nodes {
			p.index[n] = i
		}
	}
	return p.index
}

// blockMember reports whether every node of q fits a block-wise group over
// space, as far as q alone tells: element-wise nodes (and Reshapes) of
// R·C values, element-wise nodes over the rows [R, 1], AbsMaxLast over
// space, and inputs each node can read row by row.
func (p *partitioner) blockMember(q *pgroup, space []int) bool {
	if q.kind != GroupElementwise && q.kind != GroupKernel && q.kind != GroupView {
		return false
	}
	total, rows := numelInt(space), numelInt(space)/space[len(space)-1]
	rowShape := append(append([]int(nil), space[:len(space)-1]...), 1)
	for _, n := range q.nodes {
		if len(n.Outputs) != 1 {
			return false
		}
		out := n.Outputs[0].Type
		d := ir.Lookup(n.Op)
		switch {
		case n.Op == "AbsMaxLast":
			if q.kind != GroupKernel || !ir.ShapeEqual(p.types[n.Inputs[0]].Shape, space) || out.DType == ir.BF16 {
				return false
			}
			continue
		case n.Op == "Reshape":
			if numelInt(out.Shape) != total || q.kind == GroupKernel {
				return false
			}
			continue
		case q.kind != GroupElementwise:
			return false
		case n.Op == "Const":
			if k := numelInt(out.Shape); k != 1 {
				return false
			}
			continue
		case d == nil || d.Category != ir.CatUnary && d.Category != ir.CatBinary:
			return false
		}
		overRows := ir.ShapeEqual(out.Shape, rowShape)
		if !overRows && numelInt(out.Shape) != total {
			return false
		}
		for _, v := range n.Inputs {
			k := numelInt(p.types[v].Shape)
			switch {
			case k == 1:
			case overRows:
				if !ir.ShapeEqual(p.types[v].Shape, rowShape) {
					return false
				}
			case k == total && ir.ShapeEqual(p.types[v].Shape, out.Shape):
			case k == rows && ir.ShapeEqual(out.Shape, space) && ir.ShapeEqual(p.types[v].Shape, rowShape):
			default:
				return false
			}
		}
	}
	return true
}

// twoSweeps reports whether the members, as one group over space, need
// only two sweeps per row: no value a maximum depends on reads a row's
// scalar computed in the group (a maximum or a node over the rows).
func (p *partitioner) twoSweeps(members []*pgroup, space []int) bool {
	in := map[string]*ir.Node{}
	for _, m := range members {
		for _, n := range m.nodes {
			in[n.Outputs[0].Name] = n
		}
	}
	rowShape := append(append([]int(nil), space[:len(space)-1]...), 1)
	isRow := func(n *ir.Node) bool {
		return n.Op == "AbsMaxLast" || n.Op != "Const" && ir.ShapeEqual(n.Outputs[0].Type.Shape, rowShape) && numelInt(rowShape) != numelInt(space)
	}
	// Walk back from each maximum's operand over element-wise nodes.
	seen := map[string]bool{}
	var stack []string
	for _, n := range in {
		if n.Op == "AbsMaxLast" {
			stack = append(stack, n.Inputs[0])
		}
	}
	for len(stack) > 0 {
		v := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n := in[v]
		if n == nil || seen[v] {
			continue
		}
		seen[v] = true
		if isRow(n) {
			return false
		}
		stack = append(stack, n.Inputs...)
	}
	return true
}

// numelInt is the number of elements of shape.
func numelInt(shape []int) int {
	k := 1
	for _, d := range shape {
		k *= d
	}
	return k
}

// orderParts sorts each part's nodes into graph order and the parts into
// a topological order, the one finish gives groups (Kahn's algorithm, the
// part whose first node comes first among the ready ones).
func orderParts(parts [][]*ir.Node, pos map[*ir.Node]int) [][]*ir.Node {
	owner := map[string]int{}
	for k, nodes := range parts {
		sortByPos(nodes, pos)
		for _, n := range nodes {
			owner[n.Outputs[0].Name] = k
		}
	}
	indeg := make([]int, len(parts))
	succ := make([][]int, len(parts))
	for k, nodes := range parts {
		seen := map[int]bool{}
		for _, n := range nodes {
			for _, v := range n.Inputs {
				if j, ok := owner[v]; ok && j != k && !seen[j] {
					seen[j] = true
					succ[j] = append(succ[j], k)
					indeg[k]++
				}
			}
		}
	}
	var order [][]*ir.Node
	done := make([]bool, len(parts))
	for len(order) < len(parts) {
		best := -1
		for k := range parts {
			if !done[k] && indeg[k] == 0 && (best < 0 || pos[parts[k][0]] < pos[parts[best][0]]) {
				best = k
			}
		}
		if best < 0 {
			return parts // a cycle: cannot happen for groups formBlockwise merged
		}
		done[best] = true
		order = append(order, parts[best])
		for _, j := range succ[best] {
			indeg[j]--
		}
	}
	return order
}
