package passes

import (
	"container/heap"
	"fmt"
	"strconv"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// GroupKind says how codegen emits a group.
type GroupKind uint8

// Group kinds.
const (
	// GroupElementwise is one loop over Space computing every node of the group
	// per element; values read with a smaller shape broadcast, and Consts are
	// immediates. A final Reshape, when the group holds one, only relabels the
	// shape of the result it writes.
	GroupElementwise GroupKind = iota + 1
	// GroupReduce is element-wise nodes over Space ending in one reduction,
	// the group's last node, which consumes them as it goes.
	GroupReduce
	// GroupView is one Reshape of a value stored by another group (or a graph
	// input): no kernel; its result shares the storage of its input.
	GroupView
	// GroupKernel is one node with a kernel of its own (MatMul, Softmax,
	// Gather, Transpose, …).
	GroupKernel
	// GroupLinearCrossEntropy is a causal LM's loss head — lm_head's product,
	// the cross-entropy and, when training, its gradient and lm_head's two
	// backward products — run in chunks of rows (fuse-linear-xent): its
	// logits and their gradient never leave it.
	GroupLinearCrossEntropy
	// GroupBlockwise is element-wise work over the rows (blocks) of a
	// [R, C] space with per-row maxima (AbsMaxLast), per-row scalars made
	// from them and element-wise work reading those, run a row at a time in
	// two sweeps (fuse_blocks.go): the 8-bit optimizer's update of a tensor.
	GroupBlockwise
)

var groupKindNames = [...]string{GroupElementwise: "elementwise", GroupReduce: "reduce", GroupView: "view", GroupKernel: "kernel", GroupLinearCrossEntropy: "linear-xent", GroupBlockwise: "blockwise"}

func (k GroupKind) String() string {
	if int(k) < len(groupKindNames) && k != 0 {
		return groupKindNames[k]
	}
	return fmt.Sprintf("groupkind(%d)", int(k))
}

// Group is a set of nodes that codegen emits as one kernel.
type Group struct {
	ID    int // position in the graph's schedule
	Kind  GroupKind
	Space []int // the iteration space of elementwise and reduce groups; nil otherwise
	// Nodes are in graph order (a topological order of the group).
	Nodes []*ir.Node
	// Inputs are the values the group reads that other groups define, or graph
	// inputs, in order of first use. A Const the group reads is always one of its
	// own nodes.
	Inputs []string
	// Outputs are the values the group defines that another group or a graph
	// output reads, in definition order; the group's other values never leave it.
	Outputs []string
	// Parts, of a block-wise group only, are the groups it was made of
	// (element-wise groups and AbsMaxLast kernels, each its nodes in graph
	// order) in a schedule order: the CPU runs them one after the other per
	// row, so each computes as it did as a kernel of its own (fuse_blocks.go).
	Parts [][]*ir.Node
}

// fuseGroups partitions every graph's nodes into groups (State.Groups) that
// codegen emits as one kernel each, and records them in schedule order (a
// topological order of the groups).
//
// The partition is greedy, in graph order. An element-wise node (ir.CatUnary,
// ir.CatBinary) joins the open element-wise groups of its producers that
// iterate over its output shape (merging them when it has several), unless that
// would make a cycle between groups (a producer group reachable from another
// group the node reads); otherwise it starts a new group. A Cast to a wider
// float always starts a new group, which its readers then join. A reduction closes the
// element-wise group that produced its input when that group iterates over the
// reduction's input shape (RMSNorm's x·x → ReduceMean), else it is a group of
// its own. A Reshape is a view: it closes its producer's open element-wise group
// when it is the only reader of the value (the group writes the reshaped value,
// which is the same bytes), else it is a view group of its own, with no kernel.
// Every other op is its own kernel group.
//
// Consts are immediates: a Const read by element-wise or reduce groups belongs to
// the first of them, and every other such group that reads it gets its own copy
// (a new Const node, inserted before its reader), so a shared constant such as
// RMSNorm's ε never ties groups together or needs a buffer. A Const read only by
// kernels (or only as a graph output) is a one-node element-wise group (a fill).
func fuseGroups(s *State) error {
	if s.Groups == nil {
		s.Groups = map[string][]*Group{}
	}
	nodes, groups := 0, 0
	for _, g := range s.Module.Graphs {
		gs, err := PartitionGraph(g)
		if err != nil {
			return err
		}
		s.Groups[g.Name] = gs
		nodes += len(g.Nodes)
		groups += len(gs)
	}
	s.Note("fuse-groups: %d nodes in %d groups (kernels)", nodes, groups)
	return nil
}

// PartitionGraph groups g's nodes (see fuseGroups) and returns the groups in
// schedule order. It adds a copy of a Const to g for every further fused group
// that reads it; g's results do not change.
func PartitionGraph(g *ir.Graph) ([]*Group, error) {
	p := &partitioner{
		g:        g,
		types:    g.Types(),
		producer: g.Producers(),
		uses:     g.Uses(),
		groupOf:  map[*ir.Node]*pgroup{},
		before:   map[*ir.Node][]*ir.Node{},
		builder:  ir.BuilderFor(g),
		isOutput: map[string]bool{},
	}
	for _, o := range g.Outputs {
		p.isOutput[o.Value] = true
	}
	for i, n := range g.Nodes {
		p.place(n, i)
	}
	for i, n := range g.Nodes {
		if n.Op == "Const" && p.groupOf[n] == nil {
			p.newGroup(GroupElementwise, n.Outputs[0].Type.Shape, false, n, i)
		}
	}
	p.formBlockwise()
	// Insert the Const copies before their first readers.
	if len(p.before) > 0 {
		var nodes []*ir.Node
		for _, n := range g.Nodes {
			nodes = append(nodes, p.before[n]...)
			nodes = append(nodes, n)
		}
		g.Nodes = nodes
	}
	return p.finish()
}

// pgroup is a group while the partition is being built; merged groups point
// to the group that absorbed them.
type pgroup struct {
	kind   GroupKind
	space  []int
	open   bool // element-wise nodes may still join
	nodes  []*ir.Node
	preds  map[*pgroup]bool // groups read by this one (possibly merged since)
	clones map[*ir.Node]*ir.Node
	into   *pgroup
	parts  [][]*ir.Node // GroupBlockwise: its members' nodes (formBlockwise)
}

type partitioner struct {
	g        *ir.Graph
	types    map[string]ir.Type
	producer map[string]*ir.Node
	uses     map[string]int
	isOutput map[string]bool
	groupOf  map[*ir.Node]*pgroup
	groups   []*pgroup
	before   map[*ir.Node][]*ir.Node // Const copies to insert before a node
	builder  *ir.Builder
	index    map[*ir.Node]int // node positions, for formBlockwise
}

// find returns the group that now holds q's nodes.
func find(q *pgroup) *pgroup {
	for q.into != nil {
		q = q.into
	}
	return q
}

// groupOfValue returns the group that defines v, or nil for a graph input.
func (p *partitioner) groupOfValue(v string) *pgroup {
	if n := p.producer[v]; n != nil && p.groupOf[n] != nil {
		return find(p.groupOf[n])
	}
	return nil
}

func (p *partitioner) newGroup(kind GroupKind, space []int, open bool, n *ir.Node, i int) *pgroup {
	q := &pgroup{kind: kind, space: space, open: open, preds: map[*pgroup]bool{}, clones: map[*ir.Node]*ir.Node{}}
	p.groups = append(p.groups, q)
	p.add(q, n)
	return q
}

// add puts n into q and records the groups n reads. Const inputs of fused
// (element-wise and reduce) groups are taken in, or copied when another group
// already holds them.
func (p *partitioner) add(q *pgroup, n *ir.Node) {
	q.nodes = append(q.nodes, n)
	p.groupOf[n] = q
	fused := q.kind == GroupElementwise || q.kind == GroupReduce
	for j, v := range n.Inputs {
		c := p.producer[v]
		if c == nil {
			continue
		}
		if c.Op == "Const" && fused {
			switch owner := p.groupOf[c]; {
			case owner == nil:
				q.nodes = append(q.nodes, c)
				p.groupOf[c] = q
			case find(owner) != q:
				cp := q.clones[c]
				if cp == nil {
					cp = c.Clone()
					cp.Outputs[0].Name = p.builder.Fresh()
					q.clones[c] = cp
					q.nodes = append(q.nodes, cp)
					p.groupOf[cp] = q
					p.before[n] = append(p.before[n], cp)
					p.producer[cp.Outputs[0].Name] = cp
				}
				n.Inputs[j] = cp.Outputs[0].Name
			}
			continue
		}
		if c.Op == "Const" && p.groupOf[c] == nil {
			p.newGroup(GroupElementwise, c.Outputs[0].Type.Shape, false, c, 0)
		}
		if r := find(p.groupOf[c]); r != q {
			q.preds[r] = true
		}
	}
}

// merge moves the nodes and edges of r into q.
func (p *partitioner) merge(q, r *pgroup) {
	for _, n := range r.nodes {
		p.groupOf[n] = q
	}
	q.nodes = append(q.nodes, r.nodes...)
	for x := range r.preds {
		q.preds[x] = true
	}
	for c, cp := range r.clones {
		if q.clones[c] == nil {
			q.clones[c] = cp
		}
	}
	r.nodes, r.preds, r.clones, r.into = nil, nil, nil, q
}

// place assigns node n (at index i) to a group.
func (p *partitioner) place(n *ir.Node, i int) {
	d := ir.Lookup(n.Op)
	switch {
	case n.Op == "Const":
		// Taken in by its first fused reader; see PartitionGraph for the rest.
	case d != nil && (d.Category == ir.CatUnary || d.Category == ir.CatBinary) && len(n.Outputs) == 1:
		space := n.Outputs[0].Type.Shape
		var members []*pgroup
		if p.widens(n) {
			// The narrow value is the one to keep (bf16-mixed's saved
			// activations); widening it belongs with its readers, not with
			// the group that made it, which would store the wide copy.
			p.newGroup(GroupElementwise, space, true, n, i)
			return
		}
		for _, v := range n.Inputs {
			q := p.groupOfValue(v)
			if q == nil || p.producer[v].Op == "Const" || !q.open || q.kind != GroupElementwise || !ir.ShapeEqual(q.space, space) || contains(members, q) {
				continue
			}
			if p.acyclic(append(members, q), n) {
				members = append(members, q)
			}
		}
		if len(members) == 0 {
			p.newGroup(GroupElementwise, space, true, n, i)
			return
		}
		for _, r := range members[1:] {
			p.merge(members[0], r)
		}
		p.add(members[0], n)
	case d != nil && d.Category == ir.CatReduce:
		x := n.Inputs[0]
		if q := p.groupOfValue(x); q != nil && p.producer[x].Op != "Const" && q.open && q.kind == GroupElementwise &&
			ir.ShapeEqual(q.space, p.types[x].Shape) {
			q.kind, q.open = GroupReduce, false
			p.add(q, n)
			return
		}
		p.newGroup(GroupReduce, p.types[x].Shape, false, n, i)
	case n.Op == "Reshape":
		x := n.Inputs[0]
		if q := p.groupOfValue(x); q != nil && p.producer[x].Op != "Const" && q.open && q.kind == GroupElementwise &&
			p.uses[x] == 1 && !p.isOutput[x] {
			q.open = false
			p.add(q, n)
			return
		}
		p.newGroup(GroupView, nil, false, n, i)
	default:
		p.newGroup(GroupKernel, nil, false, n, i)
	}
}

// widens reports whether n is a Cast from a float dtype to a wider one.
func (p *partitioner) widens(n *ir.Node) bool {
	if n.Op != "Cast" {
		return false
	}
	from, to := p.types[n.Inputs[0]].DType, n.Outputs[0].Type.DType
	return from.IsFloat() && to.IsFloat() && to.Size() > from.Size()
}

// acyclic reports whether the groups in members and node n can form one group
// without a cycle between groups: no group outside members that the merged
// group would read may itself depend on a member.
func (p *partitioner) acyclic(members []*pgroup, n *ir.Node) bool {
	var external []*pgroup
	for _, m := range members {
		for x := range m.preds {
			if r := find(x); !contains(members, r) {
				external = append(external, r)
			}
		}
	}
	for _, v := range n.Inputs {
		if r := p.groupOfValue(v); r != nil && !contains(members, r) && p.producer[v].Op != "Const" {
			external = append(external, r)
		}
	}
	if len(external) == 0 {
		return true
	}
	seen := map[*pgroup]bool{}
	stack := external
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[x] {
			continue
		}
		seen[x] = true
		for y := range x.preds {
			y = find(y)
			if contains(members, y) {
				return false
			}
			if !seen[y] {
				stack = append(stack, y)
			}
		}
	}
	return true
}

func contains(list []*pgroup, q *pgroup) bool {
	for _, x := range list {
		if x == q {
			return true
		}
	}
	return false
}

// finish orders the groups topologically (ties by their first node) and
// fills in their inputs and outputs.
func (p *partitioner) finish() ([]*Group, error) {
	pos := make(map[*ir.Node]int, len(p.g.Nodes))
	for i, n := range p.g.Nodes {
		pos[n] = i
	}
	var live []*pgroup
	for _, q := range p.groups {
		if q.into == nil && len(q.nodes) > 0 {
			live = append(live, q)
		}
	}
	index := make(map[*pgroup]int, len(live))
	out := make([]*Group, len(live))
	for k, q := range live {
		index[q] = k
		nodes := append([]*ir.Node(nil), q.nodes...)
		sortByPos(nodes, pos)
		out[k] = &Group{Kind: q.kind, Space: q.space, Nodes: nodes}
		if q.kind == GroupBlockwise {
			out[k].Parts = orderParts(q.parts, pos)
		}
	}
	// Edges from the definitive membership, not from the incremental bookkeeping.
	owner := map[string]int{}
	for k, gr := range out {
		for _, n := range gr.Nodes {
			for _, o := range n.Outputs {
				owner[o.Name] = k
			}
		}
	}
	succ := make([][]int, len(out))
	indeg := make([]int, len(out))
	readOutside := map[string]bool{}
	for k, gr := range out {
		seenIn := map[string]bool{}
		seenPred := map[int]bool{}
		for _, n := range gr.Nodes {
			for _, v := range n.Inputs {
				j, defined := owner[v]
				if defined && j == k {
					continue
				}
				if !seenIn[v] {
					seenIn[v] = true
					gr.Inputs = append(gr.Inputs, v)
				}
				if defined {
					readOutside[v] = true
					if !seenPred[j] {
						seenPred[j] = true
						succ[j] = append(succ[j], k)
						indeg[k]++
					}
				}
			}
		}
	}
	for _, gr := range out {
		for _, n := range gr.Nodes {
			for _, o := range n.Outputs {
				if readOutside[o.Name] || p.isOutput[o.Name] {
					gr.Outputs = append(gr.Outputs, o.Name)
				}
			}
		}
	}
	// Kahn's algorithm, always taking the ready group whose first node comes first.
	first := func(k int) int { return pos[out[k].Nodes[0]] }
	ready := &intHeap{less: func(a, b int) bool { return first(a) < first(b) }}
	for k := range out {
		if indeg[k] == 0 {
			heap.Push(ready, k)
		}
	}
	var order []*Group
	for ready.Len() > 0 {
		k := heap.Pop(ready).(int)
		out[k].ID = len(order)
		order = append(order, out[k])
		for _, j := range succ[k] {
			if indeg[j]--; indeg[j] == 0 {
				heap.Push(ready, j)
			}
		}
	}
	if len(order) != len(out) {
		return nil, fmt.Errorf("graph %q: fuse-groups made a cycle between groups (a bug)", p.g.Name)
	}
	return order, nil
}

func sortByPos(nodes []*ir.Node, pos map[*ir.Node]int) {
	for i := 1; i < len(nodes); i++ {
		for j := i; j > 0 && pos[nodes[j]] < pos[nodes[j-1]]; j-- {
			nodes[j], nodes[j-1] = nodes[j-1], nodes[j]
		}
	}
}

// intHeap is a min-heap of ints under less.
type intHeap struct {
	items []int
	less  func(a, b int) bool
}

func (h *intHeap) Len() int           { return len(h.items) }
func (h *intHeap) Less(i, j int) bool { return h.less(h.items[i], h.items[j]) }
func (h *intHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *intHeap) Push(x any)         { h.items = append(h.items, x.(int)) }
func (h *intHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

// FormatGroups prints a graph's groups, one per line with its nodes, inputs
// and outputs, for golden files and slc compile --explain.
func FormatGroups(groups []*Group) string {
	var b strings.Builder
	for _, gr := range groups {
		fmt.Fprintf(&b, "g%d %s", gr.ID, gr.Kind)
		if gr.Kind == GroupElementwise || gr.Kind == GroupReduce || gr.Kind == GroupBlockwise {
			fmt.Fprintf(&b, " %s", shapeText(gr.Space))
		}
		ops := make([]string, len(gr.Nodes))
		for i, n := range gr.Nodes {
			ops[i] = n.Op + ":" + n.Outputs[0].Name
		}
		fmt.Fprintf(&b, " {%s} in(%s) out(%s)\n", strings.Join(ops, " "), strings.Join(gr.Inputs, " "), strings.Join(gr.Outputs, " "))
	}
	return b.String()
}

// shapeText prints a shape as "[2,3]" ("[]" for a scalar).
func shapeText(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.Itoa(d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}
