package passes

import (
	"math"
	"slices"
	"testing"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// Helpers shared by the tests of the simplification, fusion and memory passes.

// built returns the builder's graph, failing the test on a construction error.
func built(t testing.TB, b *ir.Builder) *ir.Graph {
	t.Helper()
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.G.Verify(); err != nil {
		t.Fatal(err)
	}
	return b.G
}

// randomBindings binds every input of g: state initialised by its Init where
// that is an integer tensor (sparse supports), token ids below vocab for
// integer data, and floats drawn uniformly — in [0, 1) for optimizer state and
// scalars (AdamW's v and the step must not be negative), else in [-1, 1).
func randomBindings(t testing.TB, g *ir.Graph, seed uint64, vocab int64) map[string]*interp.Tensor {
	t.Helper()
	st, err := interp.InitState(g)
	if err != nil {
		t.Fatal(err)
	}
	rng := ir.NewRNG(seed)
	out := map[string]*interp.Tensor{}
	for _, in := range g.Inputs {
		n := in.Type.NumElements()
		switch {
		case in.Type.DType.IsInt() && in.Init != nil:
			out[in.Name] = st[in.Name]
		case in.Type.DType.IsInt():
			v := make([]int64, n)
			for i := range v {
				v[i] = int64(rng.Uint64n(uint64(vocab)))
			}
			out[in.Name] = interp.FromInts(in.Type, v)
		default:
			lo := -1.0
			if in.Role == ir.OptState || in.Role == ir.Scalar {
				lo = 0
			}
			v := make([]float64, n)
			for i := range v {
				v[i] = lo + (1-lo)*rng.Float64()
			}
			out[in.Name] = interp.FromFloats(in.Type, v)
		}
	}
	return out
}

// requireSameResults runs before and after on the same random inputs and
// fails unless every output is bit-identical.
func requireSameResults(t testing.TB, before, after *ir.Graph, seed uint64) {
	t.Helper()
	in := randomBindings(t, before, seed, 32)
	want, err := interp.Run(before, in)
	if err != nil {
		t.Fatalf("before: %v", err)
	}
	got, err := interp.Run(after, in)
	if err != nil {
		t.Fatalf("after: %v", err)
	}
	for _, o := range before.Outputs {
		w, g := want[o.Name], got[o.Name]
		if g == nil {
			t.Fatalf("graph %q: output %q is gone", before.Name, o.Name)
		}
		if !w.Type.Equal(g.Type) {
			t.Fatalf("graph %q: output %q is %v, was %v", before.Name, o.Name, g.Type, w.Type)
		}
		for i := range w.F {
			if math.Float64bits(w.F[i]) != math.Float64bits(g.F[i]) {
				t.Fatalf("graph %q: output %q[%d] = %v, was %v", before.Name, o.Name, i, g.F[i], w.F[i])
			}
		}
		if !slices.Equal(w.I, g.I) {
			t.Fatalf("graph %q: output %q changed: %v, was %v", before.Name, o.Name, g.I, w.I)
		}
	}
}

// runPasses runs the named passes (comma-separated) with verification.
func runPasses(t testing.TB, s *State, names string) {
	t.Helper()
	ps, err := Select(names)
	if err != nil {
		t.Fatal(err)
	}
	s.Verify = true
	if err := Run(s, ps); err != nil {
		t.Fatal(err)
	}
}

// llamaState builds a config from testdata/configs in f32 and returns a State
// for it (SLTrain r = 4, δ = 0.1 for llama_tiny, the seed's settings otherwise).
func llamaState(t testing.TB, config, peft string, batch, seq int) *State {
	t.Helper()
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/" + config + ".json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: batch, SeqLen: seq, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.PEFT, o.Seed = peft, 7
	if config == "llama_tiny" {
		o.Rank, o.SpRatio = 4, 0.1
	}
	return &State{Module: m, Options: o}
}

// simplifyOne applies one graph pass to a one-graph module.
func simplifyOne(t testing.TB, g *ir.Graph, pass string) *ir.Graph {
	t.Helper()
	m := &ir.Module{Graphs: []*ir.Graph{g.Clone()}}
	runPasses(t, &State{Module: m}, pass)
	return m.Graphs[0]
}

func opsOf(g *ir.Graph) []string {
	ops := make([]string, len(g.Nodes))
	for i, n := range g.Nodes {
		ops[i] = n.Op
	}
	return ops
}

func TestDCE(t *testing.T) {
	for _, c := range []struct {
		name  string
		build func(b *ir.Builder)
		want  []string // ops left, in order
	}{
		{"dead chain", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 3), ir.Data, nil)
			b.Unary("Exp", b.Unary("Neg", x)) // unread
			b.Output("y", b.Unary("Sqrt", x))
		}, []string{"Sqrt"}},
		{"shared value kept", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 3), ir.Data, nil)
			e := b.Unary("Exp", x)
			b.Unary("Log", e) // dead
			b.Output("y", b.Add(e, e))
		}, []string{"Exp", "Add"}},
		{"unused inputs stay", func(b *ir.Builder) {
			b.AddInput("unused", ir.T(ir.F32, 3), ir.Param, &ir.Init{Kind: ir.InitZeros})
			x := b.AddInput("x", ir.T(ir.F32, 3), ir.Data, nil)
			b.Output("y", x)
		}, []string{}},
		{"nothing dead", func(b *ir.Builder) {
			x := b.AddInput("x", ir.T(ir.F32, 3), ir.Data, nil)
			b.Output("y", b.Unary("Neg", x))
			b.Output("z", b.Reduce("ReduceSum", x, false, 0))
		}, []string{"Neg", "ReduceSum"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := ir.NewBuilder("g")
			c.build(b)
			g := built(t, b)
			after := simplifyOne(t, g, "dce")
			if got := opsOf(after); !slices.Equal(got, c.want) {
				t.Fatalf("ops %v, want %v", got, c.want)
			}
			if len(after.Inputs) != len(g.Inputs) {
				t.Fatalf("inputs changed")
			}
			requireSameResults(t, g, after, 1)
		})
	}
}
