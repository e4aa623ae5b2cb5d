package passes

import (
	"slices"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

func graphNames(m *ir.Module) []string {
	var names []string
	for _, g := range m.Graphs {
		names = append(names, g.Name)
	}
	return names
}

func TestTrainingPassesFollowTheFusion(t *testing.T) {
	names := Names()
	i := slices.Index(names, "sltrain-fuse")
	want := []string{"sltrain-fuse", "autodiff", "mixed-precision", "optimizer", "per-layer", "programs"}
	if i < 0 || len(names) < i+len(want) || !slices.Equal(names[i:i+len(want)], want) {
		t.Fatalf("pipeline %v: want %s in a row", names, strings.Join(want, ", "))
	}
}

// TestPrograms checks the graphs the training passes leave: their order, their
// interfaces, no dead nodes, no dense weight of a fused layer anywhere, and
// that eval, infer and train_step agree with each other in the interpreter.
func TestPrograms(t *testing.T) {
	m, _ := compileTiny(t, true)
	if got := graphNames(m); !slices.Equal(got, []string{"train_step", "update", "eval", "infer"}) {
		t.Fatalf("graphs %v", got)
	}
	ts, ev, inf := m.Graph("train_step"), m.Graph("eval"), m.Graph("infer")
	for _, g := range m.Graphs {
		if n := deadCodeElim(g.Clone()); n != 0 {
			t.Errorf("%s has %d dead nodes", g.Name, n)
		}
		for _, in := range g.Inputs {
			if strings.Contains(in.Name, "proj.weight") {
				t.Errorf("%s: fused layer's dense weight %s is an input", g.Name, in.Name)
			}
			if strings.Contains(in.Name, "sparse_index.") {
				t.Errorf("%s: the sparse index has state %s", g.Name, in.Name)
			}
		}
	}
	if in := ts.Input("grad_scale"); in == nil || in.Role != ir.Scalar || !in.Type.Equal(ir.T(ir.F64)) {
		t.Errorf("grad_scale: %+v", in)
	}
	if ts.Outputs[0].Name != "loss" || ts.Outputs[0].Updates != "" {
		t.Errorf("train_step's first output is %+v, want loss", ts.Outputs[0])
	}
	params := trainable(ts)
	if len(ts.Outputs) != 1+len(params) {
		t.Errorf("train_step has %d outputs for %d params", len(ts.Outputs), len(params))
	}
	for _, p := range params {
		acc := ts.Input(p.Name + ".grad")
		if acc == nil || acc.Role != ir.GradAccum || acc.Of != p.Name || acc.Init == nil || acc.Init.Kind != ir.InitZeros {
			t.Errorf("accumulator of %s: %+v", p.Name, acc)
		}
		if o := ts.Output(p.Name + ".grad"); o == nil || o.Updates != p.Name+".grad" {
			t.Errorf("no output updates %s.grad", p.Name)
		}
	}
	if len(ev.Outputs) != 1 || ev.Outputs[0].Name != "loss" {
		t.Errorf("eval outputs %+v", ev.Outputs)
	}
	if len(inf.Outputs) != 1 || inf.Outputs[0].Name != "logits" {
		t.Errorf("infer outputs %+v", inf.Outputs)
	}
	for _, n := range inf.Nodes {
		if n.Op == "SoftmaxCrossEntropy" {
			t.Error("infer computes the loss")
		}
	}

	st := tinyState(t, ts, 4)
	st["grad_scale"] = scalarT(ir.F64, 1)
	tr, err := interp.Run(ts, st)
	if err != nil {
		t.Fatal(err)
	}
	e, err := interp.Run(ev, st)
	if err != nil {
		t.Fatal(err)
	}
	if tr["loss"].F[0] != e["loss"].F[0] {
		t.Errorf("train_step loss %v, eval loss %v", tr["loss"].F[0], e["loss"].F[0])
	}
	lg, err := interp.Run(inf, st)
	if err != nil {
		t.Fatal(err)
	}
	if !lg["logits"].Type.Equal(ir.T(ir.F64, 2, 8, 32)) {
		t.Errorf("logits %v", lg["logits"].Type)
	}

	back, err := ir.ParseText(m.MarshalText())
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(m) {
		t.Error("the compiled module does not survive a text round trip")
	}
}

// TestWholePipelineVerifies runs every pass, with verification after each, on
// the full-rank and the SLTrain tiny LLaMA.
func TestWholePipelineVerifies(t *testing.T) {
	for _, peft := range []string{"full", "sltrain"} {
		t.Run(peft, func(t *testing.T) {
			m := tinyLlamaDType(t, ir.F32)
			o := DefaultOptions()
			o.PEFT, o.Rank, o.SpRatio = peft, 4, 0.1
			s := &State{Module: m, Options: o, Verify: true}
			if err := Run(s, Pipeline); err != nil {
				t.Fatal(err)
			}
			if got := graphNames(m); !slices.Equal(got, []string{"train_step", "update", "eval", "infer"}) {
				t.Fatalf("graphs %v", got)
			}
		})
	}
}

// TestInferenceOnlyModule: a forward without a loss gets no train_step or
// update, only infer.
func TestInferenceOnlyModule(t *testing.T) {
	m := smallModule(t, ir.F64)
	g := m.Graphs[0]
	g.Outputs = slices.DeleteFunc(g.Outputs, func(o *ir.Output) bool { return o.Name == "loss" })
	s := &State{Module: m, Options: DefaultOptions(), Verify: true}
	if err := Run(s, trainingPasses(t)); err != nil {
		t.Fatal(err)
	}
	if got := graphNames(m); !slices.Equal(got, []string{"infer"}) {
		t.Fatalf("graphs %v", got)
	}
	if n := len(m.Graph("infer").Nodes); n != 2 {
		t.Errorf("infer has %d nodes, want 2 (Linear, Mul)", n)
	}
}

func TestTrainingPassErrors(t *testing.T) {
	noForward := func() *ir.Module {
		m := smallModule(t, ir.F64)
		m.Graphs[0].Name = "main"
		return m
	}
	twice := func() *ir.Module {
		m := smallModule(t, ir.F64)
		m.Graphs = append(m.Graphs, &ir.Graph{Name: "train_step"})
		return m
	}
	for _, c := range []struct {
		name   string
		module func() *ir.Module
		passes string
		want   string
	}{
		{"autodiff without forward", noForward, "autodiff", `pass autodiff: the module has no "forward" graph`},
		{"programs without forward", noForward, "programs", `pass programs: the module has no "forward" graph`},
		{"autodiff twice", twice, "autodiff", `already has a "train_step" graph`},
		{"programs twice", func() *ir.Module { return smallModule(t, ir.F64) }, "programs,programs", `pass programs: the module has no "forward"`},
	} {
		ps, err := Select(c.passes)
		if err != nil {
			t.Fatal(err)
		}
		err = Run(&State{Module: c.module(), Options: DefaultOptions()}, ps)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}
