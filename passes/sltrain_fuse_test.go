package passes

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/frontend"
	"gitee.com/gidean/conv-linn/ir"
)

func buildLlama(t testing.TB, name string, batch, seq int) *ir.Module {
	t.Helper()
	cfg, err := frontend.ReadLlamaConfig("../testdata/configs/" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := frontend.BuildLlama(cfg, frontend.Options{BatchSize: batch, SeqLen: seq})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func runFuse(t *testing.T, m *ir.Module, o Options) error {
	t.Helper()
	s := &State{Module: m, Options: o, Verify: true}
	return Run(s, []Pass{mustLookup(t, "sltrain-fuse")})
}

func mustLookup(t testing.TB, name string) Pass {
	p, ok := Lookup(name)
	if !ok {
		t.Fatalf("no pass %q", name)
	}
	return p
}

// The seed's reference size: llama_60m with r=128, δ=0.03 has 43,529,832 parameters.
func TestSLTrainFuse60m(t *testing.T) {
	m := buildLlama(t, "llama_60m", 1, 16)
	if err := runFuse(t, m, DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	g := m.Graph("forward")
	if got := g.NumElements(ir.Param); got != 43529832 {
		t.Fatalf("params = %d, want 43,529,832", got)
	}
	fused, linear := 0, 0
	for _, n := range g.Nodes {
		switch n.Op {
		case "LowRankSparseAdd":
			fused++
		case "Linear":
			linear++
			if IsTarget(n.Name, DefaultTargetModules) {
				t.Errorf("targeted Linear %s survived", n.Name)
			}
		}
	}
	// lm_head stays dense: once for the logits, once for the loss's L−1 positions.
	if fused != 56 || linear != 2 {
		t.Fatalf("%d LowRankSparseAdd and %d Linear, want 56 and 2 (lm_head)", fused, linear)
	}
	for _, in := range g.Inputs {
		if strings.HasSuffix(in.Name, "_proj.weight") {
			t.Errorf("dense weight %s is still an input", in.Name)
		}
	}
	q := "model.layers.3.self_attn.q_proj"
	for _, c := range []struct {
		name string
		typ  string
		role ir.Role
		kind ir.InitKind
	}{
		{q + ".lora_B", "f32[512,128]", ir.Param, ir.InitZeros},
		{q + ".lora_A", "f32[128,512]", ir.Param, ir.InitUniform},
		{q + ".sparse_value", "f32[7864]", ir.Param, ir.InitUniform},  // ⌊0.03·512·512⌋
		{q + ".sparse_index", "i32[7864]", ir.Buffer, ir.InitSupport}, // [0, 512·512) fits i32
	} {
		in := g.Input(c.name)
		if in == nil {
			t.Fatalf("no input %s", c.name)
		}
		if in.Type.String() != c.typ || in.Role != c.role || in.Init.Kind != c.kind {
			t.Errorf("%s: %v %v %v, want %s %v %v", c.name, in.Type, in.Role, in.Init.Kind, c.typ, c.role, c.kind)
		}
	}
	if a := g.Input(q + ".lora_A").Init; a.High != 1/22.627416997969522 || a.Low != -a.High {
		t.Errorf("lora_A bound %v, want 1/√512", a.High)
	}
}

func TestSLTrainFuseOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		o    func(*Options)
		want string // error substring, or "" for success
	}{
		{"full keeps dense", func(o *Options) { o.PEFT = "full" }, ""},
		{"low-rank only", func(o *Options) { o.SpRatio = 0 }, ""},
		{"rank too big", func(o *Options) { o.Rank = 17 }, "rank must be in [1, 16]"},
		{"rank zero", func(o *Options) { o.Rank = 0 }, "rank must be in [1, 16]"},
		{"sp_ratio 1", func(o *Options) { o.SpRatio = 1 }, "sp_ratio must be in [0, 1)"},
		{"negative sp_ratio", func(o *Options) { o.SpRatio = -0.1 }, "sp_ratio"},
		{"bad peft", func(o *Options) { o.PEFT = "lora" }, "unknown peft"},
		{"mlp only", func(o *Options) { o.TargetModules = []string{"mlp"} }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := buildLlama(t, "llama_tiny", 2, 8)
			o := DefaultOptions()
			o.Rank = 4
			c.o(&o)
			err := runFuse(t, m, o)
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("got %v, want error containing %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, node := range m.Graph("forward").Nodes {
				if node.Op == "LowRankSparseAdd" {
					n++
				}
			}
			want := map[string]int{"full keeps dense": 0, "low-rank only": 14, "mlp only": 6}[c.name]
			if n != want {
				t.Fatalf("%d fused layers, want %d", n, want)
			}
		})
	}
}

// A Linear is a target when its weight's module or its node's name contains
// a target: an imported weight named "w1" under the node "blk.attn.proj" is
// fused, one under "head" is not.
func TestSLTrainFuseMatchesNodeNames(t *testing.T) {
	b := ir.NewBuilder("forward")
	x := b.AddInput("x", ir.T(ir.F32, 2, 8), ir.Data, nil)
	w1 := b.AddInput("w1", ir.T(ir.F32, 8, 8), ir.Param, &ir.Init{Kind: ir.InitOnes})
	w2 := b.AddInput("w2", ir.T(ir.F32, 4, 8), ir.Param, &ir.Init{Kind: ir.InitOnes})
	b.Scope = "blk.attn.proj"
	h := b.Op("Linear", nil, x, w1)
	b.Scope = "head"
	y := b.Op("Linear", nil, h, w2)
	b.Output("y", y)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	m := &ir.Module{Graphs: []*ir.Graph{b.G}}
	o := DefaultOptions()
	o.Rank = 2
	if err := runFuse(t, m, o); err != nil {
		t.Fatal(err)
	}
	g := m.Graph("forward")
	if n := g.Nodes[0]; n.Op != "LowRankSparseAdd" || n.Inputs[1] != "w1.lora_B" {
		t.Errorf("blk.attn.proj: %s %v, want LowRankSparseAdd of w1.lora_B, …", n.Op, n.Inputs)
	}
	if n := g.Nodes[1]; n.Op != "Linear" {
		t.Errorf("head: %s, want it left a Linear", n.Op)
	}
}
