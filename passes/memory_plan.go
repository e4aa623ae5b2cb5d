package passes

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"gitee.com/gidean/conv-linn/ir"
)

// Alignment is the byte alignment of every arena offset (a cache line, and
// enough for any vector load).
const Alignment = 64

// BufferKind says where a value is stored while a program runs.
type BufferKind uint8

// Buffer kinds.
const (
	// InArena: a transient value at Offset in the program's arena.
	InArena BufferKind = iota + 1
	// Persistent: a graph input, stored outside the arena: state (parameters,
	// buffers, optimizer state, gradient accumulators) owned by the runtime
	// across runs, or data and scalars bound for each run.
	Persistent
	// InPlace: an output that updates the state input Alias, written directly
	// into that input's storage (see PlanMemory for when that is safe).
	InPlace
	// View: a Reshape's result, sharing the storage of the value Alias (the
	// root of a chain of views), at that value's Offset when it is in the arena.
	View
	// Fill: a Const read only by graph outputs: it has no storage, the runtime
	// fills the outputs (or the state they update) with the value after the run.
	Fill
)

var bufferKindNames = [...]string{InArena: "arena", Persistent: "persistent", InPlace: "in-place", View: "view", Fill: "fill"}

func (k BufferKind) String() string {
	if int(k) < len(bufferKindNames) && k != 0 {
		return bufferKindNames[k]
	}
	return fmt.Sprintf("bufferkind(%d)", int(k))
}

// Buffer is the storage of one value.
type Buffer struct {
	Kind   BufferKind
	Offset int64  // InArena (and View of an arena value): byte offset in the arena, a multiple of Alignment
	Size   int64  // bytes of the value
	Alias  string // InPlace: the state input written; View: the value whose storage is shared
	// First and Last are the schedule steps (group IDs) during which the
	// storage must hold the value: from the group that writes it to the last
	// group that reads it (or any view of it); Last is the number of groups when
	// a graph output needs it after the run.
	First, Last int
}

// MemoryUsage is a memory budget in bytes, by category.
type MemoryUsage struct {
	Params    int64 // Param and Buffer inputs (SLTrain's sparse indices count here)
	Gradients int64 // GradAccum inputs: the persistent gradient accumulators
	OptState  int64 // OptState inputs (AdamW's m and v)
	Data      int64 // Data and Scalar inputs, bound for each run
	// Activations is the planned arena size: every transient value that leaves
	// its group, forward activations and backward values alike, with reuse.
	Activations int64
	// ActivationsNoReuse is the arena size when every transient value has its
	// own slot: the baseline the planner is measured against.
	ActivationsNoReuse int64
	// TransientGrads is the part of Activations live at the arena's peak that
	// is backward computation: values that no output but a gradient
	// accumulator update depends on (see PlanMemory).
	TransientGrads int64
}

// Total is the memory a run needs: persistent inputs plus the planned arena.
func (u MemoryUsage) Total() int64 {
	return u.Params + u.Gradients + u.OptState + u.Data + u.Activations
}

// MemoryPlan is the storage of every value of one graph that outlives its
// group, plus the resulting budget.
type MemoryPlan struct {
	Graph   string
	Steps   int               // number of groups in the schedule
	Buffers map[string]Buffer // graph inputs and every value read outside its group
	// ArenaBytes is the arena's size: the highest Offset+Size (aligned).
	ArenaBytes int64
	// PeakLiveBytes is the largest sum of aligned arena buffers live at one step:
	// a lower bound for any arena; ArenaBytes − PeakLiveBytes is fragmentation.
	PeakLiveBytes int64
	PeakStep      int
	Usage         MemoryUsage
}

// memoryPlan plans every graph's memory (State.Plans) over the schedule of
// fuse-groups (one group per node when that pass did not run), and sums the
// module's budget in State.Memory: state and inputs by name across graphs, and
// the largest arena of any graph (the runtime reuses one arena for all programs).
func memoryPlan(s *State) error {
	if s.Plans == nil {
		s.Plans = map[string]*MemoryPlan{}
	}
	var plans []*MemoryPlan
	for _, g := range s.Module.Graphs {
		groups := s.Groups[g.Name]
		if groups == nil {
			groups = singletonGroups(g)
		} else if !coversNodes(g, groups) {
			return fmt.Errorf("graph %q changed after fuse-groups: run fuse-groups again right before memory-plan", g.Name)
		}
		p, err := PlanMemory(g, groups)
		if err != nil {
			return err
		}
		s.Plans[g.Name] = p
		plans = append(plans, p)
		s.Note("memory-plan: %s: arena %s (no reuse %s), %d buffers", g.Name, mib(p.ArenaBytes), mib(p.Usage.ActivationsNoReuse), len(p.Buffers))
	}
	s.Memory = ModuleUsage(s.Module, plans)
	return nil
}

// ModuleUsage is the budget of a module whose graphs have the given plans:
// each persistent input counted once by name, and the largest arena.
func ModuleUsage(m *ir.Module, plans []*MemoryPlan) MemoryUsage {
	var u MemoryUsage
	seen := map[string]bool{}
	for _, g := range m.Graphs {
		for _, in := range g.Inputs {
			if seen[in.Name] {
				continue
			}
			seen[in.Name] = true
			addInput(&u, in)
		}
	}
	for _, p := range plans {
		if p.Usage.Activations > u.Activations {
			u.Activations, u.TransientGrads = p.Usage.Activations, p.Usage.TransientGrads
		}
		u.ActivationsNoReuse = max(u.ActivationsNoReuse, p.Usage.ActivationsNoReuse)
	}
	return u
}

func addInput(u *MemoryUsage, in *ir.Input) {
	b := in.Type.Bytes()
	switch in.Role {
	case ir.Param, ir.Buffer:
		u.Params += b
	case ir.GradAccum:
		u.Gradients += b
	case ir.OptState:
		u.OptState += b
	default:
		u.Data += b
	}
}

// coversNodes reports whether groups hold exactly g's nodes.
func coversNodes(g *ir.Graph, groups []*Group) bool {
	in := make(map[*ir.Node]bool, len(g.Nodes))
	for _, n := range g.Nodes {
		in[n] = true
	}
	count := 0
	for _, gr := range groups {
		for _, n := range gr.Nodes {
			if !in[n] {
				return false
			}
			count++
		}
	}
	return count == len(g.Nodes)
}

// singletonGroups is the unfused schedule: one group per node, in graph order.
func singletonGroups(g *ir.Graph) []*Group {
	outputs := map[string]bool{}
	for _, o := range g.Outputs {
		outputs[o.Value] = true
	}
	read := map[string]bool{}
	groups := make([]*Group, len(g.Nodes))
	for i, n := range g.Nodes {
		kind := GroupKernel
		if n.Op == "Reshape" {
			kind = GroupView
		}
		groups[i] = &Group{ID: i, Kind: kind, Nodes: []*ir.Node{n}, Inputs: slices.Compact(slices.Clone(n.Inputs))}
		for _, v := range n.Inputs {
			read[v] = true
		}
	}
	for _, gr := range groups {
		for _, o := range gr.Nodes[0].Outputs {
			if read[o.Name] || outputs[o.Name] {
				gr.Outputs = append(gr.Outputs, o.Name)
			}
		}
	}
	return groups
}

// PlanMemory assigns storage to the values of g that outlive their group,
// given g's groups in schedule order (as from PartitionGraph).
//
// Graph inputs are Persistent. A value written by one group and read by
// another, or by a graph output, is transient and gets arena storage, live from
// its group's step to its last reader's (to the end for a graph output). Three
// exceptions need no arena space: a Reshape that is a group of its own is a
// View of its input; a state update written by an element-wise group that
// iterates over the updated input's shape is InPlace when no later group reads
// that input (each element is read before it is overwritten, by the same loop
// iteration: an AdamW step or a gradient accumulation), and so is one by a
// block-wise group (see blockwiseInPlace: adam8bit's parameter, codes and
// absmax); and a Const read only by graph outputs is a Fill.
//
// Offsets come from best-fit placement over live ranges (offline tensor
// placement, as in TFLite's arena planner): storage roots are placed one by
// one, each into the smallest gap, among the roots already placed whose live
// ranges overlap its own, that fits it, else above all of them; so a value
// reuses the space of values dead before it is born. Two orders are tried and
// the smaller arena kept: greedy by size (largest first: big buffers claim the
// bottom, small ones fill holes) and schedule order (each root takes the best
// hole free at its birth; on llama_60m's training step this comes within 1%
// of the peak of live bytes). Every offset and size is aligned to Alignment.
// The no-reuse baseline gives each root its own aligned slot.
//
// Backward values (Usage.TransientGrads) are told apart structurally: a value
// is forward when some graph output that updates no state (the loss, logits)
// depends on it, and backward when only gradient-accumulator updates do.
func PlanMemory(g *ir.Graph, groups []*Group) (*MemoryPlan, error) {
	p := &MemoryPlan{Graph: g.Name, Steps: len(groups), Buffers: map[string]Buffer{}}
	end := len(groups)
	groupOf := map[string]*Group{}
	producer := map[string]*ir.Node{}
	for _, gr := range groups {
		for _, n := range gr.Nodes {
			for _, o := range n.Outputs {
				if _, dup := groupOf[o.Name]; dup {
					return nil, fmt.Errorf("graph %q: value %q is defined by two groups", g.Name, o.Name)
				}
				groupOf[o.Name] = gr
				producer[o.Name] = n
			}
		}
	}
	types := g.Types()
	for _, in := range g.Inputs {
		p.Buffers[in.Name] = Buffer{Kind: Persistent, Size: in.Type.Bytes(), First: 0, Last: end}
		addInput(&p.Usage, in)
	}
	// Storage roots: views share their input's storage.
	root := func(v string) string {
		for {
			n := producer[v]
			if n == nil || n.Op != "Reshape" || groupOf[v].Kind != GroupView {
				return v
			}
			v = n.Inputs[0]
		}
	}
	// Last reader of every value, and of every storage root through its views,
	// by step (end: a graph output needs it after the run).
	lastRead := map[string]int{}
	storageLast := map[string]int{}
	readByGroup := map[string]bool{}
	for _, gr := range groups {
		for _, v := range gr.Inputs {
			lastRead[v] = max(lastRead[v], gr.ID)
			storageLast[root(v)] = max(storageLast[root(v)], gr.ID)
			readByGroup[v] = true
		}
	}
	isOutput := map[string]bool{}
	for _, o := range g.Outputs {
		isOutput[o.Value] = true
		storageLast[root(o.Value)] = end
	}
	// State updates written in place: by an element-wise loop over the state's
	// shape that reads the state (if at all) only directly, at the element it
	// writes, and with no reader of the state's storage after it.
	inPlace := map[string]string{} // value → state input
	taken := map[string]bool{}
	for _, o := range g.Outputs {
		in := g.Input(o.Updates)
		gr := groupOf[o.Value]
		if in == nil || gr == nil || taken[in.Name] || inPlace[o.Value] != "" {
			continue
		}
		n := producer[o.Value]
		switch {
		case gr.Kind == GroupBlockwise:
			if n.Op == "Const" || !blockwiseInPlace(gr, in.Type, types[o.Value]) {
				continue
			}
		case gr.Kind != GroupElementwise || n.Op == "Const" || n.Op == "Reshape" || !ir.ShapeEqual(gr.Space, in.Type.Shape):
			continue
		}
		if r, ok := storageLast[in.Name]; ok && r > gr.ID {
			continue
		}
		viaView := false
		for _, u := range gr.Inputs {
			viaView = viaView || u != in.Name && root(u) == in.Name
		}
		if viaView {
			continue
		}
		inPlace[o.Value], taken[in.Name] = in.Name, true
	}
	type interval struct{ first, last int }
	live := map[string]*interval{} // arena roots
	var roots []string
	for _, gr := range groups {
		for _, v := range gr.Outputs {
			n := producer[v]
			last := gr.ID
			if r, ok := lastRead[v]; ok {
				last = max(last, r)
			}
			if isOutput[v] {
				last = end
			}
			switch r := root(v); {
			case gr.Kind == GroupView:
				p.Buffers[v] = Buffer{Kind: View, Alias: r, Size: types[v].Bytes(), First: gr.ID, Last: last}
				if iv := live[r]; iv != nil {
					iv.last = max(iv.last, last)
				}
			case inPlace[v] != "":
				p.Buffers[v] = Buffer{Kind: InPlace, Alias: inPlace[v], Size: types[v].Bytes(), First: gr.ID, Last: last}
			case n.Op == "Const" && !readByGroup[v]:
				p.Buffers[v] = Buffer{Kind: Fill, Size: types[v].Bytes(), First: gr.ID, Last: last}
			default:
				live[v] = &interval{gr.ID, last}
				roots = append(roots, v)
			}
		}
	}
	for _, v := range roots {
		b := p.Buffers[v]
		b.Kind, b.Size, b.First, b.Last = InArena, types[v].Bytes(), live[v].first, live[v].last
		p.Buffers[v] = b
	}
	// Views of arena values take their root's range for the overlap checks.
	items := make([]arenaItem, len(roots))
	for i, v := range roots {
		items[i] = arenaItem{value: v, size: alignUp(types[v].Bytes()), first: live[v].first, last: live[v].last}
	}
	arena := placeArena(items)
	for i, v := range roots {
		b := p.Buffers[v]
		b.Offset = items[i].offset
		p.Buffers[v] = b
		p.Usage.ActivationsNoReuse += items[i].size
	}
	for v, b := range p.Buffers {
		if b.Kind == View {
			if rb := p.Buffers[b.Alias]; rb.Kind == InArena {
				b.Offset = rb.Offset
				p.Buffers[v] = b
			}
		}
	}
	p.ArenaBytes, p.Usage.Activations = arena, arena
	// Peak of live bytes, and the backward part of it.
	livePerStep := make([]int64, end+1)
	for _, it := range items {
		for t := it.first; t <= it.last; t++ {
			livePerStep[t] += it.size
		}
	}
	for t, b := range livePerStep {
		if b > p.PeakLiveBytes {
			p.PeakLiveBytes, p.PeakStep = b, t
		}
	}
	backward := backwardValues(g)
	for _, it := range items {
		if backward[it.value] && it.first <= p.PeakStep && p.PeakStep <= it.last {
			p.Usage.TransientGrads += it.size
		}
	}
	return p, nil
}

// backwardValues returns the node outputs that only gradient-accumulator
// updates depend on.
func backwardValues(g *ir.Graph) map[string]bool {
	fwd, grad := map[string]bool{}, map[string]bool{}
	for _, o := range g.Outputs {
		if o.Updates == "" {
			fwd[o.Value] = true
		} else if in := g.Input(o.Updates); in != nil && in.Role == ir.GradAccum {
			grad[o.Value] = true
		}
	}
	for i := len(g.Nodes) - 1; i >= 0; i-- {
		n := g.Nodes[i]
		for _, o := range n.Outputs {
			for _, in := range n.Inputs {
				if fwd[o.Name] {
					fwd[in] = true
				}
				if grad[o.Name] {
					grad[in] = true
				}
			}
		}
	}
	out := map[string]bool{}
	for v := range grad {
		if !fwd[v] {
			out[v] = true
		}
	}
	return out
}

// arenaItem is one storage root to place: its aligned size and live steps.
type arenaItem struct {
	value       string
	size        int64
	first, last int
	offset      int64
}

// placementOrders are the orders in which the planner places storage roots;
// it keeps the order that gives the smaller arena (the first on a tie).
var placementOrders = []struct {
	name string
	less func(x, y arenaItem) bool
}{
	// Greedy by size: big buffers claim the bottom, small ones fill holes.
	{"greedy by size", func(x, y arenaItem) bool {
		if x.size != y.size {
			return x.size > y.size
		}
		return x.first < y.first
	}},
	// Schedule order: each buffer takes the best hole freed when it is born.
	{"schedule order", func(x, y arenaItem) bool {
		if x.first != y.first {
			return x.first < y.first
		}
		return x.size > y.size
	}},
}

// placeArena sets every item's offset with the best of placementOrders and
// returns the arena size.
func placeArena(items []arenaItem) int64 {
	best := int64(-1)
	var offsets []int64
	for _, o := range placementOrders {
		order := make([]int, len(items))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return o.less(items[order[a]], items[order[b]]) })
		if arena := placeBestFit(items, order); best < 0 || arena < best {
			best = arena
			offsets = offsets[:0]
			for _, it := range items {
				offsets = append(offsets, it.offset)
			}
		}
	}
	for i := range items {
		items[i].offset = offsets[i]
	}
	return max(best, 0)
}

// placeBestFit places the items in the given order: each goes to the
// smallest gap, among the already placed items whose live ranges overlap its
// own, that fits it, else above all of them. Items live at the same step never
// overlap in memory.
func placeBestFit(items []arenaItem, order []int) int64 {
	var placed []int // indices of placed items, kept sorted by offset
	var arena int64
	for _, i := range order {
		it := &items[i]
		it.offset = 0
		if it.size == 0 {
			continue
		}
		best, bestGap := int64(-1), int64(-1)
		var top int64
		for _, j := range placed {
			o := items[j]
			if o.last < it.first || it.last < o.first {
				continue
			}
			if gap := o.offset - top; gap >= it.size && (bestGap < 0 || gap < bestGap) {
				best, bestGap = top, gap
			}
			top = max(top, o.offset+o.size)
		}
		if best < 0 {
			best = top
		}
		it.offset = best
		arena = max(arena, best+it.size)
		k := sort.Search(len(placed), func(k int) bool { return items[placed[k]].offset > best })
		placed = slices.Insert(placed, k, i)
	}
	return arena
}

func alignUp(n int64) int64 { return (n + Alignment - 1) / Alignment * Alignment }

// mib formats bytes as MiB with two decimals.
func mib(b int64) string { return fmt.Sprintf("%.2f MiB", float64(b)/(1<<20)) }

// FormatPlan prints a plan for golden files and slc compile --explain: a
// header with the totals, then every value stored outside the persistent
// inputs, one per line in schedule order.
func FormatPlan(p *MemoryPlan) string {
	var b strings.Builder
	var names []string
	persistent, bytes := 0, int64(0)
	for v, bf := range p.Buffers {
		if bf.Kind == Persistent {
			persistent++
			bytes += bf.Size
			continue
		}
		names = append(names, v)
	}
	fmt.Fprintf(&b, "graph %s: %d steps, arena %d bytes (peak live %d at step %d), no reuse %d bytes; %d persistent inputs, %d bytes\n",
		p.Graph, p.Steps, p.ArenaBytes, p.PeakLiveBytes, p.PeakStep, p.Usage.ActivationsNoReuse, persistent, bytes)
	sort.Slice(names, func(i, j int) bool {
		x, y := p.Buffers[names[i]], p.Buffers[names[j]]
		if x.First != y.First {
			return x.First < y.First
		}
		return names[i] < names[j]
	})
	for _, v := range names {
		bf := p.Buffers[v]
		fmt.Fprintf(&b, "%s %s size=%d steps=%d..%d", v, bf.Kind, bf.Size, bf.First, bf.Last)
		if bf.Kind == InArena || bf.Kind == View && p.Buffers[bf.Alias].Kind == InArena {
			fmt.Fprintf(&b, " offset=%d", bf.Offset)
		}
		if bf.Alias != "" {
			fmt.Fprintf(&b, " alias=%s", bf.Alias)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// blockwiseInPlace reports whether a block-wise group over [R, C] may write
// an output of type out in place of a state input of type in: both hold
// R·C values (read and written element for element, the read of a row
// before its second sweep writes it) or both are one value per row (read
// by the row's sweeps, written after them).
func blockwiseInPlace(gr *Group, in, out ir.Type) bool {
	total := numelInt(gr.Space)
	rows := total / gr.Space[len(gr.Space)-1]
	k := int(in.NumElements())
	return in.Bytes() == out.Bytes() && int(out.NumElements()) == k && (k == total || k == rows)
}
