package lower

import (
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/codegen/llvm"
	"gitee.com/gidean/conv-linn/ir"
)

// newTestEmitter returns an emitter over a fresh module for the host.
func newTestEmitter(t *testing.T, opt Options) *Emitter {
	t.Helper()
	tm, err := llvm.NewHostTargetMachine(llvm.CodeGenAggressive)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tm.Dispose)
	ctx := llvm.NewContext()
	t.Cleanup(ctx.Dispose)
	m := ctx.NewModule("test")
	m.ConfigureFor(tm)
	e, err := NewEmitter(m, tm, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Dispose)
	return e
}

// addGroup builds a one-op group from a builder function.
func addGroup(t *testing.T, kind Kind, build func(b *ir.Builder) string) *Group {
	t.Helper()
	b := ir.NewBuilder("g")
	y := build(b)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	g := &Group{Kind: kind, Nodes: b.G.Nodes}
	for _, in := range b.G.Inputs {
		g.Inputs = append(g.Inputs, Operand{in.Name, in.Type})
	}
	g.Outputs = []Operand{{y, b.Type(y)}}
	if kind == Elementwise {
		g.Space = b.Type(y).Shape
	}
	return g
}

func TestDedupe(t *testing.T) {
	e := newTestEmitter(t, Options{})
	mk := func(in string, n int) *Group {
		return addGroup(t, Elementwise, func(b *ir.Builder) string {
			return b.Unary("Silu", b.AddInput(in, ir.T(ir.F32, n), ir.Data, nil))
		})
	}
	a, err := e.Lower(mk("x", 8))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Lower(mk("other_name", 8))
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.Lower(mk("x", 9))
	if err != nil {
		t.Fatal(err)
	}
	if a.Calls[0].Kernel != b.Calls[0].Kernel {
		t.Errorf("identical groups got kernels %s and %s", a.Calls[0].Kernel, b.Calls[0].Kernel)
	}
	if a.Calls[0].Kernel == c.Calls[0].Kernel {
		t.Errorf("groups of different shapes share kernel %s", a.Calls[0].Kernel)
	}
	if e.Kernels() != 2 {
		t.Errorf("%d kernels, want 2", e.Kernels())
	}
	if err := e.Mod.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestChooseSLTrain(t *testing.T) {
	for _, c := range []struct {
		mode                  string
		rows, in, out, r, nnz int64
		want                  string
	}{
		{"merged", 16, 16, 16, 4, 7, "merged"},
		{"factored", 1 << 16, 512, 512, 128, 7864, "factored"},
		// Many tokens through a square layer at r = d/2: build W once.
		{"auto", 1024, 256, 256, 128, 1966, "merged"},
		// Few tokens (inference of one short prompt): go through the rank.
		{"auto", 16, 512, 512, 128, 7864, "factored"},
		{"", 16, 512, 512, 128, 7864, "factored"},
	} {
		if got := ChooseSLTrain(c.mode, c.rows, c.in, c.out, c.r, c.nnz); got != c.want {
			m, f := SLTrainCosts(c.rows, c.in, c.out, c.r, c.nnz)
			t.Errorf("ChooseSLTrain(%q, %d, %d, %d, %d, %d) = %s, want %s (costs %g, %g)", c.mode, c.rows, c.in, c.out, c.r, c.nnz, got, c.want, m, f)
		}
	}
}

func TestLowerErrors(t *testing.T) {
	if _, err := NewEmitter(llvm.Module{}, llvm.TargetMachine{}, Options{SLTrainLowering: "both"}); err == nil {
		t.Error("bad SLTrain lowering accepted")
	}
	e := newTestEmitter(t, Options{})
	neg := addGroup(t, Elementwise, func(b *ir.Builder) string {
		return b.Unary("Neg", b.AddInput("x", ir.T(ir.F32, 4), ir.Data, nil))
	})
	for _, c := range []struct {
		name string
		edit func(g *Group)
		want string
	}{
		{"empty", func(g *Group) { g.Nodes = nil }, "empty group"},
		{"unknown input", func(g *Group) { g.Inputs = nil }, "neither a group input"},
		{"missing output", func(g *Group) { g.Outputs = []Operand{{"nope", ir.T(ir.F32, 4)}} }, "not computed"},
		{"wrong output type", func(g *Group) { g.Outputs[0].Type = ir.T(ir.F32, 5) }, "the group computes"},
		{"in-place range", func(g *Group) { g.InPlace = map[int]int{0: 3} }, "out of range"},
		{"int exp", func(g *Group) {
			g.Inputs[0].Type = ir.T(ir.I64, 4)
			n := g.Nodes[0].Clone()
			n.Op = "Exp"
			n.Outputs[0].Type = ir.T(ir.I64, 4)
			g.Nodes = []*ir.Node{n}
			g.Outputs[0].Type = ir.T(ir.I64, 4)
		}, "integer tensor"},
		{"not elementwise", func(g *Group) {
			n := g.Nodes[0].Clone()
			n.Op = "Softmax"
			g.Nodes = []*ir.Node{n}
		}, "not element-wise"},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := *neg
			g.Nodes = append([]*ir.Node(nil), neg.Nodes...)
			g.Inputs = append([]Operand(nil), neg.Inputs...)
			g.Outputs = append([]Operand(nil), neg.Outputs...)
			c.edit(&g)
			if _, err := e.Lower(&g); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestCSource(t *testing.T) {
	e := newTestEmitter(t, Options{})
	if e.CSource() != nil {
		t.Error("C source without tables")
	}
	g := addGroup(t, Single, func(b *ir.Builder) string {
		return b.Op("RoPE", nil, b.AddInput("x", ir.T(ir.F32, 3, 4), ir.Data, nil))
	})
	if _, err := e.Lower(g); err != nil {
		t.Fatal(err)
	}
	src := string(e.CSource())
	// Position 1, i = 1 of D = 4: θ = 10000^(-1/2) = 0.01, cos θ = 0.9999500004166653.
	for _, want := range []string{"const double *slc_tab_rope_3_4_", "0x1.fff9724ad97aap-01", "0x1p+00"} {
		if !strings.Contains(src, want) {
			t.Errorf("C source lacks %q:\n%s", want, src)
		}
	}
}
