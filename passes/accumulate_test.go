package passes

import (
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// TestAccumulationsFollowTheirGradients: after the whole pipeline, every
// gradient is added into its accumulator (in place) and dies there, a
// matrix's within two steps of the GEMM that makes it, so the arena never
// holds the whole model's gradients (hoistAccumulations).
func TestAccumulationsFollowTheirGradients(t *testing.T) {
	for _, sltrain := range []bool{false, true} {
		m := tinyLlama(t, sltrain)
		o := DefaultOptions()
		o.Rank, o.SpRatio = 4, 0.1
		s := &State{Module: m, Options: o, Verify: true}
		ps, err := Select("autodiff,optimizer,programs,fold,algebra,cse,dce,fuse-groups,memory-plan")
		if err != nil {
			t.Fatal(err)
		}
		if err := Run(s, ps); err != nil {
			t.Fatal(err)
		}
		g, plan := m.Graph("train_step"), s.Plans["train_step"]
		step := map[string]int{}
		for i, gr := range s.Groups["train_step"] {
			for _, n := range gr.Nodes {
				step[n.Outputs[0].Name] = i
			}
		}
		accs := 0
		for _, out := range g.Outputs {
			if in := g.Input(out.Updates); in == nil || in.Role != ir.GradAccum {
				continue
			}
			accs++
			if b := plan.Buffers[out.Value]; b.Kind != InPlace {
				t.Errorf("%s is not accumulated in place (%v)", out.Name, b.Kind)
			}
			for _, gr := range s.Groups["train_step"] {
				if step[out.Value] != gr.ID {
					continue
				}
				for _, v := range gr.Inputs {
					if b := plan.Buffers[v]; b.Kind == InArena && b.Last > gr.ID {
						t.Errorf("sltrain %v: %s: gradient %s lives to step %d, after its accumulation at %d", sltrain, out.Name, v, b.Last, gr.ID)
					}
					// A matrix's gradient (a GEMM's) is added at once; a
					// vector's (a norm weight's sum of contributions) may wait
					// for the group that closes it.
					if b := plan.Buffers[v]; b.Kind == InArena && gr.ID-b.First > 2 && g.Input(out.Updates).Type.Rank() >= 2 {
						t.Errorf("sltrain %v: %s: gradient %s made at step %d, accumulated only at %d", sltrain, out.Name, v, b.First, gr.ID)
					}
				}
			}
		}
		if accs == 0 {
			t.Fatal("no accumulators")
		}
	}
}
