package codegen

import (
	"errors"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/target"
)

// compilePlanned is Compile for a module built by hand (not by the pass
// pipeline): when opt brings no Groups and no Plans, the required passes
// run on a copy of m (passes.Schedule) and the copy is compiled. A nil or
// invalid module, or one with groups or plans of its own, goes to Compile
// as it is, so that Compile's own refusals are what the caller sees.
func compilePlanned(m *ir.Module, opt Options) (*artifact.Artifact, error) {
	if m == nil || opt.Groups != nil || opt.Plans != nil || m.Verify() != nil {
		return Compile(m, opt)
	}
	s, err := passes.Schedule(m)
	if err != nil {
		return nil, err
	}
	opt.Groups, opt.Plans = s.Groups, s.Plans
	return Compile(s.Module, opt)
}

// scheduled runs the required passes on a copy of m: the groups and plan
// for a device other than the one m's pipeline ran for (the cuda device
// does not take the CPU's chunked loss head).
func scheduled(t testing.TB, m *ir.Module) *passes.State {
	t.Helper()
	s, err := passes.Schedule(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCompileRefusesUnplanned checks that Compile does not plan a module
// itself: without the groups or the plan of a graph, or with groups formed
// for the CPU on the cuda device, it refuses with an *UnplannedError that
// names what is missing; with passes.Schedule's results it compiles.
func TestCompileRefusesUnplanned(t *testing.T) {
	b := ir.NewBuilder("g")
	b.Output("y", b.Unary("Neg", f32(b, "x", 3)))
	m := &ir.Module{Graphs: []*ir.Graph{b.G}}
	s := scheduled(t, m)
	for _, c := range []struct {
		name string
		opt  Options
		want string
	}{
		{"nothing", Options{}, "no Options.Groups and Options.Plans"},
		{"groups only", Options{Groups: s.Groups}, "without their memory Plans"},
		{"no plan for the graph", Options{Groups: s.Groups, Plans: map[string]*passes.MemoryPlan{}}, `graph "g" is unplanned: no memory plan`},
		{"no groups for the graph", Options{Groups: map[string][]*passes.Group{}, Plans: s.Plans}, `graph "g" is unplanned: no kernel groups`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Compile(s.Module, c.opt)
			var ue *UnplannedError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want an *UnplannedError mentioning %q", err, c.want)
			}
		})
	}
	if _, err := Compile(s.Module, Options{Groups: s.Groups, Plans: s.Plans}); err != nil {
		t.Errorf("the scheduled module: %v", err)
	}
	if len(m.Graphs[0].Nodes) != 1 {
		t.Errorf("passes.Schedule changed the caller's module: %d nodes", len(m.Graphs[0].Nodes))
	}
}

// TestCompileRefusesCPUGroupsOnCUDA checks that groups holding the CPU's
// chunked loss head are refused for the cuda device rather than planned
// afresh behind the caller's back.
func TestCompileRefusesCPUGroupsOnCUDA(t *testing.T) {
	s := pipeline(t, "llama_tiny.json", 2, 8, 4)
	fused := false
	for _, gs := range s.Groups {
		for _, g := range gs {
			fused = fused || g.Kind == passes.GroupLinearCrossEntropy
		}
	}
	if !fused {
		t.Fatal("the tiny LLaMA's CPU pipeline formed no chunked loss head")
	}
	_, err := Compile(s.Module, Options{Groups: s.Groups, Plans: s.Plans, Target: target.NewCUDA("", "")})
	var ue *UnplannedError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "formed for the CPU") {
		t.Errorf("error %v, want an *UnplannedError about CPU groups", err)
	}
}
