//go:build !slc_runtime

package codegen

import (
	"fmt"
	"sort"

	"gitee.com/gidean/conv-linn/codegen/lower"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
)

// Batching for the cuda device: groups that can share a multi-tensor
// kernel (lower.MultiTensorKey: the optimizer's per-parameter chains and
// sums of squares) are independent of each other but scheduled one
// parameter after another. batchGroups finds a new schedule — a
// topological order of the groups — in which independent groups of one key
// sit side by side, and marks each such run a batch by giving its groups
// one shared ID (the memory plan then treats the batch as one step: what
// the batch reads stays live to its end, what it writes is born at its
// start, so no group of a batch overwrites another's operands); the
// program builder emits each batch as one kernel.
//
// The order: Kahn's algorithm over the groups' data dependences, plus one
// anti-dependence per in-place candidate: every group that reads a state
// tensor's storage (and does not depend on its update) runs before the
// group computing the update, in an earlier batch, so the memory plan may
// still write the update in place. Among ready groups, those without a key
// go first, one at a time (each may release more of a batch); else the
// ready groups of one key form a batch — the key of the earliest ready
// instance of a kernel (lower.InstanceKey), else of the earliest ready
// group — at most maxBatchGroups of them and maxBatchElems elements
// (bounding the temporaries a batch keeps live at once).
const (
	maxBatchGroups = 256
	maxBatchElems  = 1 << 26
)

// batchGroups returns groups in the batched order with batch IDs, and the
// number of kernel launches the order saves (0: nothing to batch; then the
// result is groups itself).
func batchGroups(g *ir.Graph, groups []*passes.Group, opt lower.Options) ([]*passes.Group, int) {
	n := len(groups)
	types := g.Types()
	keys := make([]string, n)
	elems := make([]int64, n)
	batchable := 0
	for i, gr := range groups {
		keys[i] = groupKey(gr, types, opt)
		if keys[i] != "" {
			batchable++
		}
		elems[i] = 1
		for _, d := range gr.Space {
			elems[i] *= int64(d)
		}
	}
	if batchable < 2 {
		return groups, 0
	}
	producer := map[string]int{}
	for i, gr := range groups {
		for _, v := range gr.Outputs {
			producer[v] = i
		}
		for _, nd := range gr.Nodes {
			for _, o := range nd.Outputs {
				producer[o.Name] = i
			}
		}
	}
	succ := make([][]int, n)
	indeg := make([]int, n)
	edge := map[[2]int]bool{}
	addEdge := func(a, b int) {
		if a == b || edge[[2]int{a, b}] {
			return
		}
		edge[[2]int{a, b}] = true
		succ[a] = append(succ[a], b)
		indeg[b]++
	}
	for i, gr := range groups {
		for _, v := range gr.Inputs {
			if p, ok := producer[v]; ok {
				addEdge(p, i)
			}
		}
	}
	// Storage roots through views (Reshape groups without a kernel).
	root := func(v string) string {
		for {
			p, ok := producer[v]
			if !ok || groups[p].Kind != passes.GroupView {
				return v
			}
			nd := groups[p].Nodes[0]
			if nd.Op != "Reshape" {
				return v
			}
			v = nd.Inputs[0]
		}
	}
	readers := map[string][]int{} // storage root → groups reading it
	for i, gr := range groups {
		for _, v := range gr.Inputs {
			r := root(v)
			readers[r] = append(readers[r], i)
		}
	}
	for _, o := range g.Outputs {
		w, ok := producer[o.Value]
		if o.Updates == "" || !ok {
			continue
		}
		desc := descendants(succ, w)
		for _, r := range readers[o.Updates] {
			if r != w && !desc[r] {
				addEdge(r, w)
			}
		}
	}
	// Kahn, with the batching priorities.
	ready := []int{}
	for i := range groups {
		if indeg[i] == 0 {
			ready = append(ready, i)
		}
	}
	out := make([]*passes.Group, 0, n)
	id := 0
	launches := 0
	emit := func(batch []int) {
		for _, i := range batch {
			c := *groups[i]
			c.ID = id
			out = append(out, &c)
			for _, s := range succ[i] {
				if indeg[s]--; indeg[s] == 0 {
					ready = append(ready, s)
				}
			}
		}
		id++
		launches++
	}
	for len(ready) > 0 {
		sort.Ints(ready)
		pick := -1
		for j, i := range ready {
			if keys[i] == "" {
				pick = j
				break
			}
		}
		if pick >= 0 {
			i := ready[pick]
			ready = append(ready[:pick], ready[pick+1:]...)
			emit([]int{i})
			continue
		}
		// Instances before multi-tensor batches: like the
		// kernels without a key, they release the element-wise groups after
		// them, so that those batch together.
		key := keys[ready[0]]
		for _, i := range ready {
			if keys[i] == "inst" {
				key = keys[i]
				break
			}
		}
		var batch, rest []int
		var total int64
		for _, i := range ready {
			if keys[i] == key && len(batch) < maxBatchGroups && (len(batch) == 0 || total+elems[i] <= maxBatchElems) {
				batch = append(batch, i)
				total += elems[i]
			} else {
				rest = append(rest, i)
			}
		}
		ready = rest
		emit(batch)
	}
	if len(out) != n { // a cycle: cannot happen for a valid schedule; keep it
		return groups, 0
	}
	return out, n - launches
}

// descendants marks every group reachable from w.
func descendants(succ [][]int, w int) map[int]bool {
	seen := map[int]bool{}
	stack := []int{w}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, s := range succ[x] {
			if !seen[s] {
				seen[s] = true
				stack = append(stack, s)
			}
		}
	}
	return seen
}

// groupKey is lower.MultiTensorKey of a scheduled element-wise or reduce
// group (else its lower.InstanceKey), lower.InstanceKey of a kernel group
// ("" for views, other kernels, groups that compute only a constant and
// groups whose result nothing uses).
func groupKey(gr *passes.Group, types map[string]ir.Type, opt lower.Options) string {
	lg := &lower.Group{Space: gr.Space, Nodes: gr.Nodes}
	switch gr.Kind {
	case passes.GroupElementwise:
		lg.Kind = lower.Elementwise
	case passes.GroupReduce:
		lg.Kind = lower.Reduce
	case passes.GroupKernel:
		// Instances of one kernel (lower.InstanceKey), its operands one per
		// node input as the program builder lowers it.
		if len(gr.Nodes) != 1 || len(gr.Inputs) == 0 || len(gr.Outputs) == 0 {
			return ""
		}
		lg.Kind = lower.Single
		for _, v := range gr.Nodes[0].Inputs {
			lg.Inputs = append(lg.Inputs, lower.Operand{Name: v, Type: types[v]})
		}
		for _, v := range gr.Outputs {
			lg.Outputs = append(lg.Outputs, lower.Operand{Name: v, Type: types[v]})
		}
		return lower.InstanceKey(lg, opt)
	default:
		return ""
	}
	if len(gr.Inputs) == 0 || len(gr.Outputs) == 0 {
		return ""
	}
	for _, v := range gr.Inputs {
		lg.Inputs = append(lg.Inputs, lower.Operand{Name: v, Type: types[v]})
	}
	for _, v := range gr.Outputs {
		lg.Outputs = append(lg.Outputs, lower.Operand{Name: v, Type: types[v]})
	}
	if k := lower.MultiTensorKey(lg, opt); k != "" {
		return k
	}
	return lower.InstanceKey(lg, opt) // a kernel of its own: instances
}

// batchGraph replaces g's groups and plan by the batched schedule when it
// saves launches and its arena stays within twice the unbatched one (plus
// 64 MiB): batches keep more temporaries live at once.
func batchGraph(g *ir.Graph, groups map[string][]*passes.Group, plans map[string]*passes.MemoryPlan, opt Options) error {
	device, kernels := opt.lowerTarget()
	gs, saved := batchGroups(g, groups[g.Name], lower.Options{Device: device, GPUKernels: kernels, SLTrainLowering: opt.SLTrainLowering})
	if saved == 0 {
		return nil
	}
	p, err := passes.PlanMemory(g, gs)
	if err != nil {
		return fmt.Errorf("codegen: graph %q, batched: %w", g.Name, err)
	}
	if old := plans[g.Name].ArenaBytes; p.ArenaBytes > 2*old+64<<20 {
		return nil
	}
	groups[g.Name], plans[g.Name] = gs, p
	return nil
}
