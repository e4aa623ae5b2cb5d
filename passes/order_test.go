package passes

import (
	"slices"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
)

// TestPassOrder checks the pipeline against its ordering rules (init does
// too: a reordered Pipeline panics before any test runs) and that every
// rule can fail: a rule's two passes in the wrong order are refused, naming
// both, and so is the pipeline with the two swapped.
func TestPassOrder(t *testing.T) {
	if err := checkPipeline(Pipeline); err != nil {
		t.Fatal(err)
	}
	index := func(name string) int {
		return slices.IndexFunc(Pipeline, func(p Pass) bool { return p.Name == name })
	}
	for _, c := range passOrder {
		i, j := index(c.a), index(c.b)
		err := CheckOrder([]Pass{Pipeline[j], Pipeline[i]})
		if err == nil || !strings.Contains(err.Error(), "passes "+c.a+" and "+c.b+" out of order") {
			t.Errorf("%s after %s: error %v, want one naming both", c.a, c.b, err)
		}
		list := slices.Clone(Pipeline)
		list[i], list[j] = list[j], list[i]
		if checkPipeline(list) == nil {
			t.Errorf("%s and %s swapped: checkPipeline accepts it", c.a, c.b)
		}
	}
	// A subset is checked only on the rules about passes it holds.
	sub, err := Select("dce,fold")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckOrder(sub); err == nil || !strings.Contains(err.Error(), "fold and dce out of order") {
		t.Errorf("dce before fold: error %v", err)
	}
	if sub, _ = Select("cse,memory-plan"); CheckOrder(sub) != nil {
		t.Errorf("cse, memory-plan: refused: %v", CheckOrder(sub))
	}
	dup := append(slices.Clone(Pipeline), Pipeline[0])
	if err := checkPipeline(dup); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a pass listed twice: error %v", err)
	}
	missing := slices.DeleteFunc(slices.Clone(Pipeline), func(p Pass) bool { return p.Name == "cse" })
	if err := checkPipeline(missing); err == nil || !strings.Contains(err.Error(), "not in the pipeline") {
		t.Errorf("a rule's pass missing: error %v", err)
	}
}

// TestRequiredPasses checks which passes codegen cannot do without: the
// kernel groups and the memory plan, in that order.
func TestRequiredPasses(t *testing.T) {
	var names []string
	for _, p := range Required(Pipeline) {
		names = append(names, p.Name)
	}
	if !slices.Equal(names, []string{"fuse-groups", "memory-plan"}) {
		t.Errorf("required passes %v, want fuse-groups, memory-plan", names)
	}
}

// TestSchedule checks that Schedule plans a copy: the caller's module keeps
// its nodes, and the copy gets groups and a plan for every graph, the same
// as fuse-groups and memory-plan give when run on the module itself.
func TestSchedule(t *testing.T) {
	b := ir.NewBuilder("g")
	x := b.AddInput("x", ir.T(ir.F32, 4), ir.Data, nil)
	one := b.Const(1, ir.T(ir.F32, 4))
	b.Output("y", b.Add(b.Unary("Neg", b.Mul(x, one)), one))
	b.Output("s", b.Mul(b.Reduce("ReduceSum", x, false, 0), b.Const(2, ir.T(ir.F32))))
	m := &ir.Module{Graphs: []*ir.Graph{b.G, ir.NewBuilder("empty").G}}
	before := string(m.MarshalText())
	s, err := Schedule(m)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(m.MarshalText()); got != before {
		t.Errorf("Schedule changed the caller's module:\n%s\nwas\n%s", got, before)
	}
	if s.Module == m {
		t.Fatal("Schedule returned the caller's module, not a copy")
	}
	want := &State{Module: m.Clone()}
	if err := Run(want, []Pass{mustLookup(t, "fuse-groups"), mustLookup(t, "memory-plan")}); err != nil {
		t.Fatal(err)
	}
	for _, g := range m.Graphs {
		if s.Plans[g.Name] == nil {
			t.Errorf("graph %s: no plan", g.Name)
			continue
		}
		if len(s.Groups[g.Name]) != len(want.Groups[g.Name]) || s.Plans[g.Name].ArenaBytes != want.Plans[g.Name].ArenaBytes {
			t.Errorf("graph %s: %d groups, arena %d; the passes give %d, %d", g.Name,
				len(s.Groups[g.Name]), s.Plans[g.Name].ArenaBytes, len(want.Groups[g.Name]), want.Plans[g.Name].ArenaBytes)
		}
	}
	if string(s.Module.MarshalText()) != string(want.Module.MarshalText()) {
		t.Error("Schedule's copy differs from the module the passes leave")
	}
	if _, err := Schedule(nil); err == nil {
		t.Error("Schedule(nil): no error")
	}
}

// TestForDevice checks which State is compiled for a device: the CPU
// pipeline's own for the CPU, a fresh schedule without the chunked loss
// head for cuda, the cuda pipeline's own for cuda.
func TestForDevice(t *testing.T) {
	for _, device := range []string{"", "cuda"} {
		o := DefaultOptions()
		o.Rank, o.Device = 4, device
		s := &State{Module: buildLlama(t, "llama_tiny", 2, 8), Options: o}
		if err := Run(s, Pipeline); err != nil {
			t.Fatal(err)
		}
		if got, err := s.ForDevice(device); err != nil || got != s {
			t.Errorf("pipeline for %q, compiled for it: got another State (%v)", device, err)
		}
		if device != "" {
			continue
		}
		if !hasChunkedLossHead(s.Groups) {
			t.Fatal("the CPU pipeline formed no chunked loss head")
		}
		c, err := s.ForDevice("cuda")
		if err != nil {
			t.Fatal(err)
		}
		if c == s || c.Module == s.Module || hasChunkedLossHead(c.Groups) || len(c.Plans) != len(s.Module.Graphs) {
			t.Errorf("CPU pipeline compiled for cuda: not a fresh schedule of a copy without the chunked loss head")
		}
	}
	if c, err := (&State{Module: buildLlama(t, "llama_tiny", 2, 8)}).ForDevice(""); err != nil || c.Groups == nil || c.Plans == nil {
		t.Errorf("a State without groups: not scheduled (%v)", err)
	}
}
