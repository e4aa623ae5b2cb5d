package passes

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// TestFuseLinearXentTinyLlama runs the pipeline on llama_tiny in f32, bf16
// and bf16-mixed: train_step's loss head is one linear-xent group writing
// the loss, dhidden and dW; eval's writes the loss; infer (which returns the
// logits) keeps its Linear. The partition stays valid, the memory plan
// holds no buffer for the logits or their gradient, and the plan still
// simulates correctly (every value read is the interpreter's).
func TestFuseLinearXentTinyLlama(t *testing.T) {
	for _, c := range []struct {
		name  string
		dt    ir.DType
		mixed bool
	}{{"f32", ir.F32, false}, {"bf16", ir.BF16, false}, {"bf16-mixed", ir.F32, true}} {
		t.Run(c.name, func(t *testing.T) {
			o := DefaultOptions()
			o.Rank, o.SpRatio, o.BF16Mixed = 4, 0.1, c.mixed
			s := &State{Module: tinyLlamaDType(t, c.dt), Options: o}
			runPasses(t, s, "")
			want := map[string]int{"train_step": 3, "eval": 1, "infer": 0, "update": 0}
			for _, g := range s.Module.Graphs {
				groups := s.Groups[g.Name]
				checkGroups(t, g, groups)
				var fused []*Group
				for _, gr := range groups {
					if gr.Kind == GroupLinearCrossEntropy {
						fused = append(fused, gr)
					}
				}
				switch n := want[g.Name]; {
				case n == 0 && len(fused) != 0:
					t.Errorf("%s: %d linear-xent groups, want none", g.Name, len(fused))
				case n > 0 && (len(fused) != 1 || len(fused[0].Outputs) != n):
					t.Errorf("%s: linear-xent groups %v, want one with %d outputs", g.Name, fused, n)
				}
				if want[g.Name] > 0 {
					for _, n := range fused[0].Nodes {
						v := n.Outputs[0].Name
						if _, planned := s.Plans[g.Name].Buffers[v]; planned && (n.Op == "Linear" || strings.HasPrefix(n.Op, "SoftmaxCrossEntropyGrad")) {
							t.Errorf("%s: %s's %q is planned: the logits or their gradient survived", g.Name, n, v)
						}
					}
					simulatePlan(t, g, groups, s.Plans[g.Name], 3)
				}
			}
			if !strings.Contains(strings.Join(s.Notes, "\n"), "fuse-linear-xent: train_step: lm_head") {
				t.Errorf("no fuse-linear-xent note in %q", s.Notes)
			}
		})
	}
}

// TestFuseLinearXentCUDA: for the cuda device the pass leaves the groups
// alone and says why.
func TestFuseLinearXentCUDA(t *testing.T) {
	o := DefaultOptions()
	o.Rank, o.SpRatio, o.Device = 4, 0.1, "cuda"
	s := &State{Module: tinyLlamaDType(t, ir.F32), Options: o}
	runPasses(t, s, "")
	for name, gs := range s.Groups {
		for _, gr := range gs {
			if gr.Kind == GroupLinearCrossEntropy {
				t.Fatalf("%s: a linear-xent group for cuda", name)
			}
		}
	}
	if !strings.Contains(strings.Join(s.Notes, "\n"), "fuse-linear-xent: cuda target") {
		t.Errorf("no note for cuda in %q", s.Notes)
	}
}

// TestFuseLinearXentKeeps: a loss head whose logits another node or a graph
// output reads stays unfused.
func TestFuseLinearXentKeeps(t *testing.T) {
	for _, c := range []struct {
		name  string
		build func(b *ir.Builder, logits string)
	}{
		{"returned", func(b *ir.Builder, logits string) { b.Output("logits", logits) }},
		{"read", func(b *ir.Builder, logits string) { b.Output("e", b.Unary("Exp", logits)) }},
	} {
		b := ir.NewBuilder("g")
		h := b.AddInput("h", ir.T(ir.F32, 5, 4), ir.Data, nil)
		w := b.AddInput("w", ir.T(ir.F32, 9, 4), ir.Param, nil)
		labels := b.AddInput("labels", ir.T(ir.I64, 5), ir.Data, nil)
		logits := b.Op("Linear", nil, h, w)
		b.Output("ce", b.Op("SoftmaxCrossEntropy", nil, logits, labels))
		c.build(b, logits)
		g := built(t, b)
		groups, err := PartitionGraph(g)
		if err != nil {
			t.Fatal(err)
		}
		_, fused, err := FuseLinearCrossEntropy(g, groups)
		if err != nil || len(fused) != 0 {
			t.Errorf("%s: fused %v, err %v; want the head unfused", c.name, fused, err)
		}
	}
}
