package codegen

import (
	"testing"

	"gitee.com/gidean/conv-linn/codegen/lower"
	"gitee.com/gidean/conv-linn/passes"
)

// TestBatchGroups checks the batched schedule of the tiny LLaMA's
// programs against its rules, independently of how it was found: every
// group once; a group's inputs computed in an earlier batch; the groups of
// a batch all of one multi-tensor key; every reader of a state's storage
// (that does not depend on the state's update) in a batch before the
// update's; and the update program down to a few launches.
func TestBatchGroups(t *testing.T) {
	s := pipeline(t, "llama_tiny.json", 2, 8, 4)
	opt := lower.Options{Device: "cuda"}
	for _, g := range s.Module.Graphs {
		groups := s.Groups[g.Name]
		out, saved := batchGroups(g, groups, opt)
		if len(out) != len(groups) {
			t.Fatalf("%s: %d groups out of %d", g.Name, len(out), len(groups))
		}
		types := g.Types()
		batchOf := map[string]int{} // value → batch that computes it
		seen := map[int]bool{}
		for _, gr := range out {
			for _, v := range gr.Outputs {
				batchOf[v] = gr.ID
			}
			for _, n := range gr.Nodes {
				batchOf[n.Outputs[0].Name] = gr.ID
			}
		}
		keyOf := map[int]string{}
		launches := 0
		for i, gr := range out {
			if i == 0 || gr.ID != out[i-1].ID {
				launches++
				if seen[gr.ID] {
					t.Errorf("%s: batch %d is not contiguous", g.Name, gr.ID)
				}
				seen[gr.ID] = true
				keyOf[gr.ID] = groupKey(gr, types, opt)
			} else if k := groupKey(gr, types, opt); k == "" || k != keyOf[gr.ID] {
				t.Errorf("%s: batch %d mixes keys %q and %q", g.Name, gr.ID, keyOf[gr.ID], k)
			}
			for _, v := range gr.Inputs {
				if b, ok := batchOf[v]; ok && b >= gr.ID {
					t.Errorf("%s: group %v reads %q from batch %d, not before its own %d", g.Name, gr.Nodes[0], v, b, gr.ID)
				}
			}
		}
		if saved != len(groups)-launches {
			t.Errorf("%s: %d launches saved, the schedule has %d of %d", g.Name, saved, launches, len(groups))
		}
		// Anti-dependences: readers of an updated state's own buffer run
		// before the update (the tiny model's readers are direct).
		for _, o := range g.Outputs {
			wb, ok := batchOf[o.Value]
			if o.Updates == "" || !ok {
				continue
			}
			for _, gr := range out {
				if gr.ID == wb {
					continue
				}
				for _, v := range gr.Inputs {
					if v == o.Updates && gr.ID > wb && !dependsOn(out, gr, o.Value) {
						t.Errorf("%s: %v reads state %q in batch %d, after its update's batch %d", g.Name, gr.Nodes[0], v, gr.ID, wb)
					}
				}
			}
		}
		if g.Name == "update" && (saved == 0 || launches > 20) {
			t.Errorf("update: %d launches for %d groups", launches, len(groups))
		}
		t.Logf("%s: %d groups in %d launches", g.Name, len(groups), launches)
	}
}

// dependsOn reports whether gr reads, directly or through other groups,
// value v.
func dependsOn(groups []*passes.Group, gr *passes.Group, v string) bool {
	producer := map[string]*passes.Group{}
	for _, g := range groups {
		for _, o := range g.Outputs {
			producer[o] = g
		}
	}
	seen := map[*passes.Group]bool{}
	stack := []*passes.Group{gr}
	for len(stack) > 0 {
		g := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, in := range g.Inputs {
			if in == v {
				return true
			}
			if p := producer[in]; p != nil && !seen[p] {
				seen[p] = true
				stack = append(stack, p)
			}
		}
	}
	return false
}
