package passes

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// checkGroups verifies the invariants of a partition: every node in exactly
// one group, groups in a topological order (every input a graph input or an
// output of an earlier group), inputs and outputs consistent with the readers,
// and each kind's shape rules.
func checkGroups(t testing.TB, g *ir.Graph, groups []*Group) {
	t.Helper()
	if err := g.Verify(); err != nil {
		t.Fatal(err)
	}
	owner := map[*ir.Node]int{}
	defined := map[string]int{} // value → group
	for k, gr := range groups {
		if gr.ID != k {
			t.Fatalf("group %d has ID %d", k, gr.ID)
		}
		for _, n := range gr.Nodes {
			if _, dup := owner[n]; dup {
				t.Fatalf("node %s is in two groups", n)
			}
			owner[n] = k
			for _, o := range n.Outputs {
				defined[o.Name] = k
			}
		}
	}
	for _, n := range g.Nodes {
		if _, ok := owner[n]; !ok {
			t.Fatalf("node %s is in no group", n)
		}
	}
	if len(owner) != len(g.Nodes) {
		t.Fatalf("groups hold %d nodes, the graph %d", len(owner), len(g.Nodes))
	}
	producer := g.Producers()
	readOutside := map[string]bool{}
	for k, gr := range groups {
		inputs := map[string]bool{}
		for _, v := range gr.Inputs {
			inputs[v] = true
			j, ok := defined[v]
			switch {
			case !ok && g.Input(v) == nil:
				t.Fatalf("g%d reads %q, defined nowhere", k, v)
			case ok && j >= k:
				t.Fatalf("g%d reads %q from g%d: not a topological order", k, v, j)
			case ok && (gr.Kind == GroupElementwise || gr.Kind == GroupReduce) && producer[v].Op == "Const":
				t.Fatalf("fused g%d reads Const %q from g%d", k, v, j)
			}
			readOutside[v] = true
		}
		for _, n := range gr.Nodes {
			for _, v := range n.Inputs {
				if j, ok := defined[v]; (!ok || j != k) && !inputs[v] {
					t.Fatalf("g%d reads %q without listing it as an input", k, v)
				}
			}
		}
		switch gr.Kind {
		case GroupKernel, GroupView:
			if len(gr.Nodes) != 1 {
				t.Fatalf("g%d (%v) has %d nodes", k, gr.Kind, len(gr.Nodes))
			}
		case GroupElementwise, GroupReduce:
			for i, n := range gr.Nodes {
				d := ir.Lookup(n.Op)
				last := i == len(gr.Nodes)-1
				switch {
				case n.Op == "Const":
				case gr.Kind == GroupReduce && last && d.Category == ir.CatReduce:
				case gr.Kind == GroupElementwise && last && n.Op == "Reshape":
				case d.Category == ir.CatUnary || d.Category == ir.CatBinary:
					if !ir.ShapeEqual(n.Outputs[0].Type.Shape, gr.Space) {
						t.Fatalf("g%d iterates over %v but %s has shape %v", k, gr.Space, n, n.Outputs[0].Type)
					}
				default:
					t.Fatalf("g%d (%v) holds %s", k, gr.Kind, n)
				}
			}
			if gr.Kind == GroupReduce && ir.Lookup(gr.Nodes[len(gr.Nodes)-1].Op).Category != ir.CatReduce {
				t.Fatalf("reduce g%d does not end with a reduction", k)
			}
		}
	}
	isOutput := map[string]bool{}
	for _, o := range g.Outputs {
		isOutput[o.Value] = true
	}
	for k, gr := range groups {
		outs := map[string]bool{}
		for _, v := range gr.Outputs {
			outs[v] = true
			if !readOutside[v] && !isOutput[v] {
				t.Fatalf("g%d outputs %q, which nothing outside reads", k, v)
			}
		}
		for _, n := range gr.Nodes {
			for _, o := range n.Outputs {
				if (readOutside[o.Name] || isOutput[o.Name]) && !outs[o.Name] {
					t.Fatalf("g%d does not list %q as an output", k, o.Name)
				}
			}
		}
	}
}

func TestFuseGroupsHandBuilt(t *testing.T) {
	for _, c := range []struct {
		name  string
		build func(b *ir.Builder)
		want  string // FormatGroups
	}{
		{"rmsnorm", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 2, 3, 4), ir.Data, nil)
			w := b.AddInput("w", ir.T(ir.F32, 4), ir.Param, &ir.Init{Kind: ir.InitOnes})
			v := b.Reduce("ReduceMean", b.Mul(x, x), true, -1)
			inv := b.Unary("Rsqrt", b.Add(v, b.Scalar(1e-6, x)))
			b.Output("y", b.Mul(w, b.Mul(x, inv)))
		}, `
g0 reduce [2,3,4] {Mul:v0 ReduceMean:v1} in(x) out(v1)
g1 elementwise [2,3,1] {Const:v2 Add:v3 Rsqrt:v4} in(v1) out(v4)
g2 elementwise [2,3,4] {Mul:v5 Mul:v6} in(x v4 w) out(v6)`},
		{"no cycle through a kernel", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 2, 2), ir.Data, nil)
			a := b.Unary("Exp", x)
			m := b.MatMul(a, x, false, false)
			b.Output("y", b.Add(a, m)) // joining Exp's group would need MatMul both before and after it
		}, `
g0 elementwise [2,2] {Exp:v0} in(x) out(v0)
g1 kernel {MatMul:v1} in(v0 x) out(v1)
g2 elementwise [2,2] {Add:v2} in(v0 v1) out(v2)`},
		{"diamond merges", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 5), ir.Data, nil)
			b.Output("y", b.Add(b.Unary("Exp", x), b.Unary("Neg", x)))
		}, `
g0 elementwise [5] {Exp:v0 Neg:v1 Add:v2} in(x) out(v2)`},
		{"kernel between elementwise chains", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 2, 2), ir.Data, nil)
			m := b.MatMul(b.Unary("Exp", x), x, false, false)
			b.Output("y", b.Unary("Sigmoid", b.Unary("Neg", m)))
		}, `
g0 elementwise [2,2] {Exp:v0} in(x) out(v0)
g1 kernel {MatMul:v1} in(v0 x) out(v1)
g2 elementwise [2,2] {Neg:v2 Sigmoid:v3} in(v1) out(v3)`},
		{"reshape closes its only producer", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 2, 3), ir.Data, nil)
			r := b.Reshape(b.Unary("Exp", x), 6)
			b.Output("y", b.Unary("Neg", r))
		}, `
g0 elementwise [2,3] {Exp:v0 Reshape:v1} in(x) out(v1)
g1 elementwise [6] {Neg:v2} in(v1) out(v2)`},
		{"shared reshape is a view", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 2, 3), ir.Data, nil)
			e := b.Unary("Exp", x)
			b.Output("y", b.Reshape(e, 6))
			b.Output("z", b.Unary("Neg", e))
		}, `
g0 elementwise [2,3] {Exp:v0 Neg:v2} in(x) out(v0 v2)
g1 view {Reshape:v1} in(v0) out(v1)`},
		{"shared const is copied", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 2, 3), ir.Data, nil)
			c := b.Scalar(2, x)
			s := b.Reduce("ReduceSum", b.Mul(x, c), false, 1)
			b.Output("y", b.Mul(s, c))
		}, `
g0 reduce [2,3] {Const:v0 Mul:v1 ReduceSum:v2} in(x) out(v2)
g1 elementwise [2] {Const:v4 Mul:v3} in(v2) out(v3)`},
		{"reduction of an input", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 2, 3), ir.Data, nil)
			b.Output("y", b.Unary("Sqrt", b.Reduce("ReduceSum", x, false, 0, 1)))
		}, `
g0 reduce [2,3] {ReduceSum:v0} in(x) out(v0)
g1 elementwise [] {Sqrt:v1} in(v0) out(v1)`},
		{"const read by a kernel", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 2, 2), ir.Data, nil)
			b.Output("y", b.MatMul(x, b.Const(0.5, ir.T(ir.F32, 2, 2)), false, false))
		}, `
g0 elementwise [2,2] {Const:v0} in() out(v0)
g1 kernel {MatMul:v1} in(x v0) out(v1)`},
		{"adamw step is one group", func(b *ir.Builder) {
			f := ir.T(ir.F32, 3, 4)
			p := b.AddInput("p", f, ir.Param, &ir.Init{Kind: ir.InitZeros})
			m := b.AddInput("m", f, ir.OptState, &ir.Init{Kind: ir.InitZeros})
			v := b.AddInput("v", f, ir.OptState, &ir.Init{Kind: ir.InitZeros})
			g := b.AddInput("g", f, ir.GradAccum, &ir.Init{Kind: ir.InitZeros})
			lr := b.AddInput("lr", ir.T(ir.F32), ir.Scalar, nil)
			m1 := b.Add(b.Mul(m, b.Scalar(0.9, m)), b.Mul(g, b.Scalar(0.1, m)))
			v1 := b.Add(b.Mul(v, b.Scalar(0.999, m)), b.Mul(b.Mul(g, g), b.Scalar(0.001, m)))
			p1 := b.Sub(p, b.Div(b.Mul(m1, lr), b.Add(b.Unary("Sqrt", v1), b.Scalar(1e-8, m))))
			b.G.Outputs = []*ir.Output{{Name: "p", Value: p1, Updates: p}, {Name: "m", Value: m1, Updates: m}, {Name: "v", Value: v1, Updates: v}}
		}, `
g0 elementwise [3,4] {Const:v0 Mul:v1 Const:v2 Mul:v3 Add:v4 Const:v5 Mul:v6 Mul:v7 Const:v8 Mul:v9 Add:v10 Mul:v11 Sqrt:v12 Const:v13 Add:v14 Div:v15 Sub:v16} in(m g v lr p) out(v4 v10 v16)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := ir.NewBuilder("g")
			c.build(b)
			g := built(t, b)
			before := g.Clone()
			groups, err := PartitionGraph(g)
			if err != nil {
				t.Fatal(err)
			}
			checkGroups(t, g, groups)
			if got := strings.TrimSpace(FormatGroups(groups)); got != strings.TrimSpace(c.want) {
				t.Fatalf("groups:\n%s\nwant:\n%s", got, strings.TrimSpace(c.want))
			}
			requireSameResults(t, before, g, 5)
		})
	}
}

// TestFuseGroupsLlama9m partitions llama_9m's forward (batch 2, sequence 16)
// after simplification. Per layer the kernels are the 7 projections, 3 head
// transposes, 2 RoPEs, 2 attention MatMuls, CausalMask, Softmax and the output
// transpose (17); the element-wise work is 5 groups (the score scaling, each
// RMSNorm's ε-add-rsqrt and its scaling, SiLU·up) plus 2 reductions that also
// take the residual Add (x + h; x·x; mean): 4·(17 + 5 + 2) plus the embedding
// Gather, the final norm (3), lm_head, the loss slices and reshapes, the
// cross-entropy and its mean.
func TestFuseGroupsLlama9m(t *testing.T) {
	for _, c := range []struct {
		peft                                      string
		nodes, simplified, withConsts             int
		groups, elementwise, reduce, view, kernel int
	}{
		{"full", 180, 169, 180, 128, 26, 10, 18, 74},
		{"sltrain", 180, 169, 180, 128, 26, 10, 18, 74},
	} {
		t.Run(c.peft, func(t *testing.T) {
			s := llamaState(t, "llama_9m", c.peft, 2, 16)
			runPasses(t, s, "sltrain-fuse")
			g := s.Module.Graph("forward")
			nodes := len(g.Nodes)
			runPasses(t, s, "fold,algebra,cse,dce")
			simplified := len(g.Nodes)
			groups, err := PartitionGraph(g)
			if err != nil {
				t.Fatal(err)
			}
			checkGroups(t, g, groups)
			kinds := map[GroupKind]int{}
			for _, gr := range groups {
				kinds[gr.Kind]++
			}
			t.Logf("forward: %d nodes, %d simplified, %d with Const copies, %d groups %v", nodes, simplified, len(g.Nodes), len(groups), kinds)
			if nodes != c.nodes || simplified != c.simplified || len(g.Nodes) != c.withConsts || len(groups) != c.groups ||
				kinds[GroupElementwise] != c.elementwise || kinds[GroupReduce] != c.reduce || kinds[GroupView] != c.view || kinds[GroupKernel] != c.kernel {
				t.Errorf("want %d nodes, %d simplified, %d with Const copies, %d groups (%d elementwise, %d reduce, %d view, %d kernel)",
					c.nodes, c.simplified, c.withConsts, c.groups, c.elementwise, c.reduce, c.view, c.kernel)
			}
		})
	}
}

// TestFuseGroupsTrainStep partitions every program of llama_9m (full and
// SLTrain) and checks the partition's invariants. Fusion must launch at most
// three kernels (groups other than views) for every four nodes of any
// program, and the update's element-wise AdamW chains must leave no kernel
// of their own at all.
func TestFuseGroupsTrainStep(t *testing.T) {
	for _, peft := range []string{"full", "sltrain"} {
		t.Run(peft, func(t *testing.T) {
			s := llamaState(t, "llama_9m", peft, 2, 16)
			runPasses(t, s, "sltrain-fuse,autodiff,optimizer,programs,fold,algebra,cse,dce")
			nodes := map[string]int{}
			for _, g := range s.Module.Graphs {
				nodes[g.Name] = len(g.Nodes)
			}
			runPasses(t, s, "fuse-groups")
			for _, g := range s.Module.Graphs {
				groups := s.Groups[g.Name]
				checkGroups(t, g, groups)
				kinds := map[GroupKind]int{}
				for _, gr := range groups {
					kinds[gr.Kind]++
				}
				t.Logf("%s: %d nodes (%d with Const copies) in %d groups %v", g.Name, nodes[g.Name], len(g.Nodes), len(groups), kinds)
				if launched := len(groups) - kinds[GroupView]; 4*launched > 3*nodes[g.Name] {
					t.Errorf("%s: %d kernels for %d nodes", g.Name, launched, nodes[g.Name])
				}
				if g.Name == "update" && kinds[GroupKernel]+kinds[GroupView] != 0 {
					t.Errorf("update has kernels: %v", kinds)
				}
			}
		})
	}
}
