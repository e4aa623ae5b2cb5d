package passes

import (
	"errors"
	"math"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// recomputeCase is one model the recompute tests compile twice, with and
// without activation checkpointing.
type recomputeCase struct {
	name  string
	dtype ir.DType
	mixed bool
	peft  string
}

var recomputeCases = []recomputeCase{
	{"f32/full", ir.F32, false, "full"},
	{"f32/sltrain", ir.F32, false, "sltrain"},
	{"bf16/sltrain", ir.BF16, false, "sltrain"},
	{"bf16-mixed/sltrain", ir.F32, true, "sltrain"},
	{"f64/full", ir.F64, false, "full"},
}

// compileRecompute builds config at batch × seq in c's precision and runs the
// whole pipeline, recomputing or not.
func compileRecompute(t testing.TB, config string, c recomputeCase, batch, seq int, recompute bool) *State {
	t.Helper()
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/" + config + ".json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: batch, SeqLen: seq, Seed: 3, DType: c.dtype})
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.PEFT, o.Seed, o.BF16Mixed, o.ActivationCheckpointing = c.peft, 7, c.mixed, recompute
	if config == "llama_tiny" {
		o.Rank, o.SpRatio = 4, 0.1
	}
	s := &State{Module: m, Options: o}
	runPasses(t, s, "")
	return s
}

// TestRecomputeTinyLlama: with --activation-checkpointing, train_step's loss
// and gradients are bit-identical to the step without it, in every
// precision; the backward reads no value of a layer's forward except the
// layers' outputs (each layer's input is the one kept); the plan is sound
// (simulated) and needs less arena than without.
func TestRecomputeTinyLlama(t *testing.T) {
	for _, c := range recomputeCases {
		t.Run(c.name, func(t *testing.T) {
			ref := compileRecompute(t, "llama_tiny", c, 2, 32, false)
			s := compileRecompute(t, "llama_tiny", c, 2, 32, true)
			g, rg := s.Module.Graph("train_step"), ref.Module.Graph("train_step")
			if len(g.Nodes) <= len(rg.Nodes) {
				t.Fatalf("train_step has %d nodes, %d without recomputation: nothing was copied", len(g.Nodes), len(rg.Nodes))
			}
			st := tinyState(t, g, 5)
			st["grad_scale"] = interp.FromFloats(g.Input("grad_scale").Type, []float64{0.5})
			got, err := interp.Run(g, st)
			if err != nil {
				t.Fatal(err)
			}
			want, err := interp.Run(rg, st)
			if err != nil {
				t.Fatal(err)
			}
			for name, w := range want {
				gv := got[name]
				if gv == nil {
					t.Fatalf("output %s is gone", name)
				}
				for i := range w.F {
					if math.Float64bits(w.F[i]) != math.Float64bits(gv.F[i]) {
						t.Fatalf("output %s[%d] = %v, %v without recomputation", name, i, gv.F[i], w.F[i])
					}
				}
			}
			checkOnlyLayerInputsKept(t, g)
			checkGroupsApart(t, g, s.Groups["train_step"])
			checkPlan(t, g, s.Groups["train_step"], s.Plans["train_step"])
			simulatePlan(t, g, s.Groups["train_step"], s.Plans["train_step"], 9)
			if a, r := s.Memory.Activations, ref.Memory.Activations; a >= r {
				t.Errorf("planned activations %d bytes with recomputation, %d without", a, r)
			}
			// eval and infer are untouched.
			for _, name := range []string{"eval", "infer", "update"} {
				if h, rh := s.Module.Graph(name), ref.Module.Graph(name); h != nil && !h.Equal(rh) {
					t.Errorf("graph %s changed", name)
				}
			}
		})
	}
}

// checkOnlyLayerInputsKept fails when a node of g's backward part (from the
// first node that depends on grad_scale on, recomputed copies included) reads a value
// that a decoder layer's node computed in the forward part (before the
// first backward node) unless another layer or the model outside the
// layers reads it in the forward too: the one value per layer HF's
// checkpointing keeps, its output.
func checkOnlyLayerInputsKept(t testing.TB, g *ir.Graph) {
	t.Helper()
	producer := g.Producers()
	pos := map[*ir.Node]int{}
	for i, n := range g.Nodes {
		pos[n] = i
	}
	fromSeed := map[string]bool{"grad_scale": true}
	backward := map[*ir.Node]bool{}
	first := len(g.Nodes)
	for i, n := range g.Nodes {
		for _, in := range n.Inputs {
			if fromSeed[in] {
				backward[n] = true
			}
		}
		if backward[n] {
			first = min(first, i)
			for _, o := range n.Outputs {
				fromSeed[o.Name] = true
			}
		}
	}
	readOutside := map[string]bool{}
	for _, n := range g.Nodes {
		if backward[n] {
			continue
		}
		for _, in := range n.Inputs {
			if p := producer[in]; p != nil && layerOf(p) != "" && layerOf(p) != layerOf(n) {
				readOutside[in] = true
			}
		}
	}
	kept := 0
	for _, n := range g.Nodes[first:] { // the backward and the recomputed copies
		for _, in := range n.Inputs {
			p := producer[in]
			if p == nil || p.Op == "Const" || layerOf(p) == "" || pos[p] >= first {
				continue
			}
			if !readOutside[in] {
				t.Fatalf("node %s of the backward reads %s, which layer %s computed in the forward and does not hand on", n, in, layerOf(p))
			}
			kept++
		}
	}
	if kept == 0 {
		t.Errorf("no backward node reads a layer's output: the test sees nothing")
	}
}

// checkGroupsApart fails when a kernel group of g joins decoder-layer nodes
// before the first backward node with layer nodes after it: a recomputed copy fused into a
// forward group would run in the forward, and its value be kept after all.
func checkGroupsApart(t testing.TB, g *ir.Graph, groups []*Group) {
	t.Helper()
	pos := map[*ir.Node]int{}
	for i, n := range g.Nodes {
		pos[n] = i
	}
	fromSeed := map[string]bool{"grad_scale": true}
	first := -1
	for i, n := range g.Nodes {
		for _, in := range n.Inputs {
			if fromSeed[in] && first < 0 {
				first = i
			}
		}
		if first >= 0 {
			break
		}
	}
	for _, gr := range groups {
		before, after := 0, 0
		for _, n := range gr.Nodes {
			if n.Op == "Const" || layerOf(n) == "" {
				continue // (the model's final norm and loss head are kept as they are)
			}
			if pos[n] < first {
				before++
			} else {
				after++
			}
		}
		if before > 0 && after > 0 {
			t.Errorf("group %d (%v) holds %d nodes of the forward and %d of the backward: %v", gr.ID, gr.Kind, before, after, gr.Nodes)
		}
	}
}

// TestRecomputeOff: without the option the pass leaves the module as it is.
func TestRecomputeOff(t *testing.T) {
	s := llamaState(t, "llama_tiny", "sltrain", 2, 8)
	runPasses(t, s, "sltrain-fuse,autodiff,programs,cse,dce")
	before := s.Module.Clone()
	runPasses(t, s, "recompute")
	if !s.Module.Equal(before) {
		t.Error("recompute changed the module without ActivationCheckpointing")
	}
}

// TestRecomputeNeedsTrainStep: an inference module has nothing to
// recompute; a train_step without the seed input is refused.
func TestRecomputeNeedsTrainStep(t *testing.T) {
	b := ir.NewBuilder("train_step")
	x := b.AddInput("x", ir.T(ir.F32, 4), ir.Data, nil)
	b.Scope = "model.layers.0"
	b.Output("y", b.Unary("Exp", x))
	if _, err := recomputeLayers(b.G, map[string]bool{"model.layers.0": true}); err == nil {
		t.Error("a train_step without grad_scale was accepted")
	}
	s := &State{Module: &ir.Module{}, Options: Options{ActivationCheckpointing: true}}
	if err := recompute(s); err != nil || len(s.Notes) != 1 {
		t.Errorf("no train_step: %v, notes %q", err, s.Notes)
	}
	// A train_step without decoder layers: the flag is refused, not ignored.
	fb := ir.NewBuilder("forward")
	w := fb.AddInput("w", ir.T(ir.F32, 4), ir.Param, &ir.Init{Kind: ir.InitZeros})
	fb.Scope = "model.head"
	fb.Output("loss", fb.Reduce("ReduceSum", fb.Unary("Exp", w), false, 0))
	if fb.Err() != nil {
		t.Fatal(fb.Err())
	}
	m := &ir.Module{Graphs: []*ir.Graph{fb.G}}
	s = &State{Module: m, Options: Options{ActivationCheckpointing: true}}
	var oe *OptionError
	if err := Run(s, []Pass{{Name: "autodiff", Run: autodiff}, {Name: "recompute", Run: recompute}}); !errors.As(err, &oe) || oe.Option != "activation-checkpointing" {
		t.Errorf("a model without decoder layers: %v", err)
	}
}

// TestRecomputeMemory60m logs the planned activations of llama_60m at batch
// 8 × 256 with and without recomputation, and requires recomputation to
// plan less than half of train_step's arena.
func TestRecomputeMemory60m(t *testing.T) {
	if testing.Short() {
		t.Skip("builds llama_60m")
	}
	c := recomputeCase{"f32/sltrain", ir.F32, false, "sltrain"}
	ref := compileRecompute(t, "llama_60m", c, 8, 256, false)
	s := compileRecompute(t, "llama_60m", c, 8, 256, true)
	a, r := s.Plans["train_step"].ArenaBytes, ref.Plans["train_step"].ArenaBytes
	t.Logf("llama_60m sltrain f32, batch 8 × 256: train_step arena %s with recomputation, %s without; module activations %s, %s",
		mib(a), mib(r), mib(s.Memory.Activations), mib(ref.Memory.Activations))
	if 2*a >= r || s.Memory.Activations >= ref.Memory.Activations {
		t.Errorf("recomputation plans a train_step arena of %d bytes, %d without: not under half", a, r)
	}
	g := s.Module.Graph("train_step")
	checkPlan(t, g, s.Groups["train_step"], s.Plans["train_step"])
	checkOnlyLayerInputsKept(t, g)
	checkGroupsApart(t, g, s.Groups["train_step"])
}

// TestRecomputeMemoryBudget: --memory-budget recomputes nothing when the
// plan fits, the fewest layers that bring the planned total within the
// budget otherwise (the step's results unchanged), and refuses a budget
// that recomputing every layer misses.
func TestRecomputeMemoryBudget(t *testing.T) {
	c := recomputeCases[1]
	const batch, seq = 4, 64
	none := compileRecompute(t, "llama_tiny", c, batch, seq, false)
	all := compileRecompute(t, "llama_tiny", c, batch, seq, true)
	t0, t2 := none.Memory.Total(), all.Memory.Total()
	if t2 >= t0 {
		t.Fatalf("recomputing every layer plans %d bytes, %d without", t2, t0)
	}
	budgeted := func(budget int64) (*State, error) {
		cfg, err := frontend.ReadLlamaConfig("../testdata/configs/llama_tiny.json")
		if err != nil {
			t.Fatal(err)
		}
		m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: batch, SeqLen: seq, Seed: 3, DType: c.dtype})
		if err != nil {
			t.Fatal(err)
		}
		o := DefaultOptions()
		o.PEFT, o.Seed, o.Rank, o.SpRatio, o.MemoryBudget = c.peft, 7, 4, 0.1, budget
		s := &State{Module: m, Options: o, Verify: true}
		return s, Run(s, Pipeline)
	}
	s, err := budgeted(t0)
	if err != nil || !s.Module.Equal(none.Module) {
		t.Errorf("a budget the plan fits: %v, or the module changed", err)
	}
	for _, budget := range []int64{t2, (t0 + t2) / 2} {
		s, err := budgeted(budget)
		if err != nil {
			t.Fatal(err)
		}
		meta := s.Module.Meta["activation_checkpointing"]
		if s.Memory.Total() > budget || meta == "" || meta == "0 of 2 decoder layers" {
			t.Errorf("budget %d: plan %d bytes, recomputed %q", budget, s.Memory.Total(), meta)
		}
		requireSameResults(t, none.Module.Graph("train_step"), s.Module.Graph("train_step"), 4)
		t.Logf("budget %d (none %d, all %d): %s recomputed, plan %d", budget, t0, t2, meta, s.Memory.Total())
	}
	var oe *OptionError
	if _, err := budgeted(t2 - 1); !errors.As(err, &oe) || oe.Option != "memory-budget" || !strings.Contains(err.Error(), "every one of the 2 decoder layers") {
		t.Errorf("a budget below the least plan: %v", err)
	}
}
