package passes

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// checkPlan verifies a plan statically: every value read across groups has
// storage, arena offsets are aligned and inside the arena, live ranges cover
// every reader, no two arena buffers live at the same step overlap, and an
// in-place update's state is never read after it is overwritten.
func checkPlan(t testing.TB, g *ir.Graph, groups []*Group, p *MemoryPlan) {
	t.Helper()
	producedIn := map[string]int{}
	for _, gr := range groups {
		for _, n := range gr.Nodes {
			for _, o := range n.Outputs {
				producedIn[o.Name] = gr.ID
			}
		}
	}
	rootOf := func(v string) string {
		for p.Buffers[v].Kind == View {
			v = p.Buffers[v].Alias
		}
		return v
	}
	for _, gr := range groups {
		for _, v := range gr.Inputs {
			b, ok := p.Buffers[v]
			if !ok {
				t.Fatalf("g%d reads %q, which has no storage", gr.ID, v)
			}
			if b.Kind == Fill {
				t.Fatalf("g%d reads %q, a Fill", gr.ID, v)
			}
			if r := p.Buffers[rootOf(v)]; r.Last < gr.ID || b.Last < gr.ID {
				t.Fatalf("g%d reads %q after its storage's last step %d", gr.ID, v, r.Last)
			}
			if r := rootOf(v); p.Buffers[r].Kind == Persistent {
				for w, ib := range p.Buffers {
					if ib.Kind == InPlace && ib.Alias == r && ib.First < gr.ID {
						t.Fatalf("g%d reads %q after g%d overwrote it with %q", gr.ID, r, ib.First, w)
					}
				}
			}
		}
		for _, v := range gr.Outputs {
			b, ok := p.Buffers[v]
			if !ok {
				t.Fatalf("g%d's output %q has no storage", gr.ID, v)
			}
			if b.First != gr.ID {
				t.Fatalf("%q is written by g%d but lives from step %d", v, gr.ID, b.First)
			}
		}
	}
	for _, o := range g.Outputs {
		if b := p.Buffers[rootOf(o.Value)]; b.Kind == InArena && b.Last != len(groups) {
			t.Fatalf("output %q's storage dies at step %d", o.Name, b.Last)
		}
	}
	var arena []string
	for v, b := range p.Buffers {
		if b.Kind != InArena {
			continue
		}
		arena = append(arena, v)
		if b.Offset%Alignment != 0 || b.Offset < 0 || b.Offset+b.Size > p.ArenaBytes {
			t.Fatalf("%q at [%d, +%d) in an arena of %d", v, b.Offset, b.Size, p.ArenaBytes)
		}
		if b.First != producedIn[v] {
			t.Fatalf("%q lives from %d, produced in g%d", v, b.First, producedIn[v])
		}
	}
	for i, v := range arena {
		a := p.Buffers[v]
		for _, w := range arena[i+1:] {
			b := p.Buffers[w]
			if a.Size == 0 || b.Size == 0 || a.Last < b.First || b.Last < a.First {
				continue
			}
			if a.Offset < b.Offset+b.Size && b.Offset < a.Offset+a.Size {
				t.Fatalf("%q [%d, +%d) steps %d..%d overlaps %q [%d, +%d) steps %d..%d",
					v, a.Offset, a.Size, a.First, a.Last, w, b.Offset, b.Size, b.First, b.Last)
			}
		}
	}
	if p.Usage.ActivationsNoReuse < p.ArenaBytes || p.ArenaBytes < p.PeakLiveBytes {
		t.Fatalf("no reuse %d, arena %d, peak live %d: want no reuse >= arena >= peak live",
			p.Usage.ActivationsNoReuse, p.ArenaBytes, p.PeakLiveBytes)
	}
}

// simulatePlan executes the plan's data movement: groups run in schedule
// order, each reading its inputs from the storage the plan gives them (the
// arena's bytes, the persistent inputs' bytes, overwritten by in-place
// updates) and writing the interpreter's results there. Every value read, and
// every graph output at the end, must equal the interpreter's: a buffer
// clobbered while live shows up as a wrong value.
func simulatePlan(t testing.TB, g *ir.Graph, groups []*Group, p *MemoryPlan, seed uint64) {
	t.Helper()
	in := randomBindings(t, g, seed, 32)
	_, values, err := interp.RunAll(g, in)
	if err != nil {
		t.Fatal(err)
	}
	types := g.Types()
	arena := make([]byte, p.ArenaBytes)
	persistent := map[string][]byte{}
	for _, x := range g.Inputs {
		persistent[x.Name] = encode(t, values[x.Name])
	}
	storage := func(v string) []byte {
		for p.Buffers[v].Kind == View {
			v = p.Buffers[v].Alias
		}
		b := p.Buffers[v]
		switch b.Kind {
		case InArena:
			return arena[b.Offset : b.Offset+b.Size]
		case Persistent:
			return persistent[v]
		case InPlace:
			return persistent[b.Alias]
		}
		t.Fatalf("%q (%v) has no storage to read", v, b.Kind)
		return nil
	}
	check := func(where, v string) {
		want := encode(t, values[v])
		got := storage(v)
		if string(got[:len(want)]) != string(want) {
			t.Fatalf("%s: %q (%v, %v) was clobbered", where, v, types[v], p.Buffers[v])
		}
	}
	for _, gr := range groups {
		for _, v := range gr.Inputs {
			check("g"+strconv.Itoa(gr.ID), v)
		}
		overwritten := map[string]bool{} // states this group updates in place
		for _, v := range gr.Outputs {
			b := p.Buffers[v]
			if b.Kind == View || b.Kind == Fill {
				continue
			}
			if b.Kind == InPlace {
				overwritten[b.Alias] = true
			}
			copy(storage(v), encode(t, values[v]))
		}
		// A kernel may still read its inputs while it writes its outputs.
		for _, v := range gr.Inputs {
			if !overwritten[v] {
				check("g"+strconv.Itoa(gr.ID)+" after its writes", v)
			}
		}
	}
	for _, o := range g.Outputs {
		if p.Buffers[o.Value].Kind != Fill {
			check("output "+o.Name, o.Value)
		}
	}
}

// encode stores a tensor's elements as the bytes of its dtype (little-endian).
func encode(t testing.TB, x *interp.Tensor) []byte {
	dt := x.Type.DType
	out := make([]byte, 0, x.Type.Bytes())
	for i := range x.Type.NumElements() {
		switch dt {
		case ir.F32:
			out = binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(x.F[i])))
		case ir.F64:
			out = binary.LittleEndian.AppendUint64(out, math.Float64bits(x.F[i]))
		case ir.BF16:
			out = binary.LittleEndian.AppendUint16(out, uint16(math.Float32bits(float32(x.F[i]))>>16))
		case ir.I32:
			out = binary.LittleEndian.AppendUint32(out, uint32(int32(x.I[i])))
		case ir.I64:
			out = binary.LittleEndian.AppendUint64(out, uint64(x.I[i]))
		default:
			t.Fatalf("the simulator cannot store %v", dt)
		}
	}
	return out
}

// planOf groups g and plans its memory.
func planOf(t testing.TB, g *ir.Graph) ([]*Group, *MemoryPlan) {
	t.Helper()
	groups, err := PartitionGraph(g)
	if err != nil {
		t.Fatal(err)
	}
	p, err := PlanMemory(g, groups)
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, g, groups, p)
	return groups, p
}

func TestMemoryPlanHandBuilt(t *testing.T) {
	f88 := ir.T(ir.F32, 8, 8) // 256 bytes
	for _, c := range []struct {
		name           string
		build          func(b *ir.Builder)
		arena, noReuse int64
		kinds          map[string]BufferKind // expected kinds (and, for arena values, offsets below)
		offsets        map[string]int64
	}{
		{"chain reuses freed slots", func(b *ir.Builder) {
			x := b.AddInput("x", f88, ir.Data, nil)
			m := x
			for range 4 {
				m = b.MatMul(m, x, false, false)
			}
			b.Output("y", m)
		}, 512, 1024,
			map[string]BufferKind{"x": Persistent, "v0": InArena, "v1": InArena, "v2": InArena, "v3": InArena},
			map[string]int64{"v0": 0, "v1": 256, "v2": 0, "v3": 256}},
		{"sizes align to 64 bytes", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 3, 1), ir.Data, nil)
			b.Output("y", b.MatMul(b.MatMul(x, x, false, true), x, false, false)) // [3,3] then [3,1]
		}, 128, 128, map[string]BufferKind{"v0": InArena, "v1": InArena}, map[string]int64{"v0": 0, "v1": 64}},
		{"adamw updates in place", func(b *ir.Builder) {
			p := b.AddInput("p", f88, ir.Param, &ir.Init{Kind: ir.InitZeros})
			m := b.AddInput("m", f88, ir.OptState, &ir.Init{Kind: ir.InitZeros})
			g := b.AddInput("g", f88, ir.GradAccum, &ir.Init{Kind: ir.InitZeros})
			m1 := b.Add(b.Mul(m, b.Scalar(0.9, m)), b.Mul(g, b.Scalar(0.1, m)))
			p1 := b.Sub(p, b.Mul(m1, b.Scalar(0.01, m)))
			b.G.Outputs = []*ir.Output{{Name: "p", Value: p1, Updates: p}, {Name: "m", Value: m1, Updates: m},
				{Name: "g", Value: b.Const(0, f88), Updates: g}}
		}, 0, 0, map[string]BufferKind{"v4": InPlace, "v7": InPlace, "v8": Fill}, nil},
		{"no in-place update of a state read later", func(b *ir.Builder) {
			p := b.AddInput("p", f88, ir.Param, &ir.Init{Kind: ir.InitZeros})
			x := b.AddInput("x", f88, ir.Data, nil)
			p1 := b.Mul(p, b.Scalar(2, p))
			b.G.Outputs = []*ir.Output{{Name: "p", Value: p1, Updates: p}, {Name: "y", Value: b.MatMul(p, x, false, false)}}
		}, 512, 512, map[string]BufferKind{"v1": InArena, "v2": InArena}, nil},
		{"views share storage", func(b *ir.Builder) {
			x := b.AddInput("x", f88, ir.Data, nil)
			m := b.MatMul(x, x, false, false)
			r := b.Reshape(m, 64)
			n := b.MatMul(m, x, false, false)
			b.Output("y", b.Add(r, b.Reshape(n, 64)))
		}, 768, 768, map[string]BufferKind{"v0": InArena, "v1": View, "v2": InArena, "v3": View, "v4": InArena}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := ir.NewBuilder("g")
			c.build(b)
			g := built(t, b)
			groups, p := planOf(t, g)
			if p.ArenaBytes != c.arena || p.Usage.ActivationsNoReuse != c.noReuse {
				t.Errorf("arena %d, no reuse %d; want %d, %d\n%s", p.ArenaBytes, p.Usage.ActivationsNoReuse, c.arena, c.noReuse, FormatPlan(p))
			}
			for v, k := range c.kinds {
				if got := p.Buffers[v].Kind; got != k {
					t.Errorf("%s is %v, want %v\n%s", v, got, k, FormatPlan(p))
				}
			}
			for v, off := range c.offsets {
				if got := p.Buffers[v].Offset; got != off {
					t.Errorf("%s at %d, want %d\n%s", v, got, off, FormatPlan(p))
				}
			}
			simulatePlan(t, g, groups, p, 6)
		})
	}
}

// TestMemoryPlanTinyLlama plans every program of the tiny LLaMA (full and
// SLTrain) and replays each plan against the interpreter.
func TestMemoryPlanTinyLlama(t *testing.T) {
	for _, peft := range []string{"full", "sltrain"} {
		t.Run(peft, func(t *testing.T) {
			s := llamaState(t, "llama_tiny", peft, 2, 8)
			runPasses(t, s, "")
			for _, g := range s.Module.Graphs {
				groups, p := s.Groups[g.Name], s.Plans[g.Name]
				checkPlan(t, g, groups, p)
				simulatePlan(t, g, groups, p, 8)
				for v, b := range p.Buffers {
					if g.Name == "update" && b.Kind == InArena && b.Size > 8 {
						t.Errorf("update stores %q (%d bytes) in the arena; only scalars should be there, AdamW runs in place", v, b.Size)
					}
				}
			}
			if s.Memory.Params == 0 || s.Memory.Gradients == 0 || s.Memory.OptState != 2*s.Memory.Gradients {
				t.Errorf("budget %+v", s.Memory)
			}
			if tr := s.Plans["train_step"]; s.Memory.Activations != tr.ArenaBytes {
				t.Errorf("module activations %d, train_step arena %d", s.Memory.Activations, tr.ArenaBytes)
			}
		})
	}
}

// TestMemoryPlanGoal60m: for llama_60m at batch 8, sequence 256 the planned
// activation arena is at most half of the no-reuse total.
func TestMemoryPlanGoal60m(t *testing.T) {
	if testing.Short() {
		t.Skip("builds llama_60m")
	}
	for _, peft := range []string{"full", "sltrain"} {
		s := llamaState(t, "llama_60m", peft, 8, 256)
		runPasses(t, s, "")
		u := s.Memory
		t.Logf("llama_60m %s, batch 8 × 256: activations %s planned, %s without reuse (%.1f%%); train_step peak live %s",
			peft, mib(u.Activations), mib(u.ActivationsNoReuse), 100*float64(u.Activations)/float64(u.ActivationsNoReuse),
			mib(s.Plans["train_step"].PeakLiveBytes))
		if 2*u.Activations > u.ActivationsNoReuse {
			t.Errorf("%s: planned %d bytes > half of no reuse %d", peft, u.Activations, u.ActivationsNoReuse)
		}
		tr := s.Module.Graph("train_step")
		checkPlan(t, tr, s.Groups["train_step"], s.Plans["train_step"])
	}
}

// TestMemoryPlanPass: without fuse-groups every node is its own group; after
// fuse-groups, a graph changed since is an error, not a wrong plan.
func TestMemoryPlanPass(t *testing.T) {
	build := func() *ir.Module {
		b := ir.NewBuilder("g")
		x := b.AddInput("x", ir.T(ir.F32, 4, 4), ir.Data, nil)
		b.Output("y", b.Unary("Exp", b.MatMul(b.Unary("Neg", x), x, false, false)))
		return &ir.Module{Graphs: []*ir.Graph{built(t, b)}}
	}
	m := build()
	s := &State{Module: m}
	runPasses(t, s, "memory-plan")
	g := m.Graphs[0]
	p := s.Plans["g"]
	checkPlan(t, g, singletonGroups(g), p)
	if p.Steps != 3 || p.ArenaBytes != 128 || s.Memory.Activations != 128 || s.Memory.Data != 64 {
		t.Fatalf("plan %+v, budget %+v\n%s", p, s.Memory, FormatPlan(p))
	}

	m = build()
	s = &State{Module: m}
	runPasses(t, s, "fuse-groups")
	b := ir.BuilderFor(m.Graphs[0])
	m.Graphs[0].Outputs[0].Value = b.Unary("Neg", m.Graphs[0].Outputs[0].Value)
	ps, _ := Select("memory-plan")
	if err := Run(s, ps); err == nil || !strings.Contains(err.Error(), "run fuse-groups again") {
		t.Fatalf("got %v", err)
	}
}
