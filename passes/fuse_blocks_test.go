package passes

import (
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// TestBlockwiseAdam8bit: the adam8bit update of a 64×64 matrix (two
// 8-bit blocks) is one block-wise group over [2, 2048], in f32 and in
// bf16, whole-model (with clipping) and per-layer: it holds both maxima
// and the parts it was made of, writes the parameter, its codes and its
// absmax in place, and the memory plan keeps no value of the matrix's
// size in the arena (before: the widened gradient and parameter, both
// moments in f32 and the new parameter).
func TestBlockwiseAdam8bit(t *testing.T) {
	for _, dt := range []ir.DType{ir.F32, ir.BF16} {
		for _, opt := range []string{"adam8bit", "adam8bit_per_layer"} {
			t.Run(dt.String()+"-"+opt, func(t *testing.T) {
				bld := ir.NewBuilder("forward")
				x := bld.AddInput("x", ir.T(dt, 2, 64), ir.Data, nil)
				w := bld.AddInput("w", ir.T(dt, 64, 64), ir.Param, &ir.Init{Kind: ir.InitNormal, Std: 0.5, Seed: 1})
				n := bld.AddInput("n", ir.T(dt, 64), ir.Param, &ir.Init{Kind: ir.InitOnes})
				y := bld.Mul(bld.Op("Linear", nil, x, w), n)
				bld.Output("loss", bld.Reduce("ReduceMean", bld.Mul(y, y), false, 0, 1))
				if err := bld.Err(); err != nil {
					t.Fatal(err)
				}
				o := DefaultOptions()
				o.Optimizer = opt
				s := &State{Module: &ir.Module{Graphs: []*ir.Graph{bld.G}}, Options: o, Verify: true}
				if err := Run(s, Pipeline); err != nil {
					t.Fatal(err)
				}
				graph := "update"
				if opt == "adam8bit_per_layer" {
					graph = "train_step"
				}
				var blocks []*Group
				for _, gr := range s.Groups[graph] {
					if gr.Kind == GroupBlockwise {
						blocks = append(blocks, gr)
					}
				}
				if len(blocks) != 1 {
					t.Fatalf("%s: %d block-wise groups, want 1 (w's update)", graph, len(blocks))
				}
				gr := blocks[0]
				if !ir.ShapeEqual(gr.Space, []int{2, 2048}) {
					t.Errorf("space %v, want [2 2048]", gr.Space)
				}
				maxima, inParts := 0, 0
				for _, nd := range gr.Nodes {
					if nd.Op == "AbsMaxLast" {
						maxima++
					}
				}
				for _, part := range gr.Parts {
					inParts += len(part)
				}
				if maxima != 2 || len(gr.Parts) < 4 || inParts != len(gr.Nodes) {
					t.Errorf("%d maxima, %d parts holding %d of %d nodes", maxima, len(gr.Parts), inParts, len(gr.Nodes))
				}
				plan := s.Plans[graph]
				g := s.Module.Graph(graph)
				written := map[string]bool{}
				for _, out := range g.Outputs {
					if b := plan.Buffers[out.Value]; b.Kind == InPlace {
						written[b.Alias] = true
					}
				}
				for _, st := range []string{"w", "w.state1", "w.absmax1", "w.state2", "w.absmax2"} {
					if !written[st] {
						t.Errorf("%s is not updated in place", st)
					}
				}
				// Per-layer, w's gradient is made by the backward and
				// read by the update: it is the one such value.
				types := g.Types()
				var big []string
				for v, b := range plan.Buffers {
					if b.Kind == InArena && types[v].NumElements() >= 64*64 {
						big = append(big, v+" "+types[v].String())
					}
				}
				if want := map[string]int{"adam8bit": 0, "adam8bit_per_layer": 1}[opt]; len(big) != want {
					t.Errorf("the arena holds %v, want %d values of w's size", big, want)
				}
			})
		}
	}
}
