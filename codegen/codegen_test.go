package codegen

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/artifact"
	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
	"gitee.com/gidean/conv-linn/passes"
	"gitee.com/gidean/conv-linn/target"
)

// ulps is the distance between two float32s in units in the last place.
func ulps(a, b float32) int64 {
	ord := func(f float32) int64 {
		u := int64(math.Float32bits(f))
		if u&(1<<31) != 0 {
			return -(u &^ (1 << 31))
		}
		return u
	}
	d := ord(a) - ord(b)
	if d < 0 {
		d = -d
	}
	return d
}

// TestExpAccuracy sweeps the inline f32 exp (used by Exp, Sigmoid, Silu,
// Softmax and the cross-entropy) over its whole range, both through the
// vectorized element-wise loop and the scalar tail, against the correctly
// rounded value: at most 2 ulp, exact specials.
func TestExpAccuracy(t *testing.T) {
	var xs []float64
	for x := -110.0; x <= 95; x += 0.0137 {
		xs = append(xs, x)
	}
	xs = append(xs, 0, math.Copysign(0, -1), 1e-30, -1e-30, 88.72283, 88.7229, 89, -87.33654, -103.9, -104, -200, 200,
		math.Inf(1), math.Inf(-1), math.NaN(), 1, -1, 0.5, float64(math.SmallestNonzeroFloat32))
	n := len(xs)
	b := ir.NewBuilder("exp")
	b.Output("y", b.Unary("Exp", f32(b, "x", n)))
	mod := &ir.Module{Graphs: []*ir.Graph{b.G}}
	art, err := compilePlanned(mod, Options{})
	if err != nil {
		t.Fatal(err)
	}
	x := interp.FromFloats(ir.T(ir.F32, n), xs)
	got := load(t, art).run(t, "exp", map[string]*interp.Tensor{"x": x}, 2)["y"]
	worst := int64(0)
	for i, v := range x.F {
		want := float32(math.Exp(v))
		g := float32(got.F[i])
		switch {
		case math.IsNaN(v):
			if !math.IsNaN(float64(g)) {
				t.Errorf("exp(NaN) = %v", g)
			}
			continue
		case want == 0 || math.IsInf(float64(want), 0) || want < math.SmallestNonzeroFloat32*(1<<23):
			// Zero, infinite or subnormal results: allow one subnormal step.
			if ulps(g, want) > 1 {
				t.Errorf("exp(%v) = %v, want %v", v, g, want)
			}
			continue
		}
		if d := ulps(g, want); d > 2 {
			t.Errorf("exp(%v) = %v, want %v (%d ulp)", v, g, want, d)
		} else {
			worst = max(worst, d)
		}
	}
	t.Logf("%d points, worst %d ulp", n, worst)
}

// TestStateUpdates checks the slots of a state-updating program: an update
// the plan writes in place shares the state's slot, a constant reset is
// filled straight into the state after the other steps, and the values are
// right.
func TestStateUpdates(t *testing.T) {
	b := ir.NewBuilder("update")
	p := b.AddInput("p", ir.T(ir.F32, 37), ir.Param, &ir.Init{Kind: ir.InitOnes})
	g := b.AddInput("p.grad", ir.T(ir.F32, 37), ir.GradAccum, &ir.Init{Kind: ir.InitZeros})
	lr := b.AddInput("lr", ir.T(ir.F32), ir.Scalar, nil)
	b.Output("norm", b.Reduce("ReduceSum", b.Mul(g, g), false, 0))
	pNew := b.Sub(p, b.Mul(lr, g))
	zero := b.Const(0, ir.T(ir.F32, 37))
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	b.G.Outputs = append(b.G.Outputs, &ir.Output{Name: "p.new", Value: pNew, Updates: "p"}, &ir.Output{Name: "p.grad.new", Value: zero, Updates: "p.grad"})
	mod := &ir.Module{Graphs: []*ir.Graph{b.G}}
	art, err := compilePlanned(mod, Options{})
	if err != nil {
		t.Fatal(err)
	}
	prog := art.Programs[0]
	slot := func(name string) int32 {
		for i, s := range prog.Slots {
			if s.Name == name && s.Kind == artifact.SlotState {
				return int32(i)
			}
		}
		t.Fatalf("no state slot %q", name)
		return -1
	}
	for _, o := range prog.Outputs {
		if o.Updates != "" && o.Slot != slot(o.Updates) {
			t.Errorf("output %q is in slot %q, not in its state %q", o.Name, prog.Slots[o.Slot].Name, o.Updates)
		}
	}
	m := load(t, art)
	for _, nth := range []int{1, 2} {
		vals := inputsFor(b.G, nil)
		want, err := interp.Run(b.G, vals)
		if err != nil {
			t.Fatal(err)
		}
		got := m.run(t, "update", vals, nth)
		for name, w := range want {
			if err := compareTensors(got[name], w, 1e-5, true); err != nil {
				t.Errorf("%d threads: %s: %v", nth, name, err)
			}
		}
		for _, v := range vals["p.grad"].F {
			if v != 0 {
				t.Fatalf("p.grad not reset: %v", vals["p.grad"])
			}
		}
	}
}

// TestDeterministicCode checks that compiling twice gives the same bytes.
func TestDeterministicCode(t *testing.T) {
	cases := opCases()[:40]
	a, err := compilePlanned(buildCases(t, cases), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := compilePlanned(buildCases(t, cases), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Code, b.Code) || !bytes.Equal(a.Module, b.Module) {
		t.Errorf("two compilations differ: code %d vs %d bytes, module %d vs %d bytes", len(a.Code), len(b.Code), len(a.Module), len(b.Module))
	}
}

// TestOtherTargets compiles the op cases for AVX2 (x86-64-v3: 8-float
// vectors) and baseline x86-64 (SSE2: 4-float vectors) and checks them on
// this host.
func TestOtherTargets(t *testing.T) {
	cases := opCases()
	mod := buildCases(t, cases)
	for _, cpu := range []string{"x86-64-v3", "x86-64"} {
		t.Run(cpu, func(t *testing.T) {
			art, err := compilePlanned(mod, Options{Target: target.NewCPU(cpu, "")})
			if err != nil {
				t.Fatal(err)
			}
			if art.Target.CPU != cpu {
				t.Errorf("target CPU %q, want %q", art.Target.CPU, cpu)
			}
			m := load(t, art)
			for i, c := range cases {
				t.Run(c.name, func(t *testing.T) { checkCase(t, m, mod.Graphs[i], c) })
			}
		})
	}
}

// TestCompileErrors checks that bad requests end in errors, not panics.
func TestCompileErrors(t *testing.T) {
	ok := func() *ir.Module {
		b := ir.NewBuilder("g")
		b.Output("y", b.Unary("Neg", f32(b, "x", 3)))
		return &ir.Module{Graphs: []*ir.Graph{b.G}}
	}
	f16 := func() *ir.Module {
		b := ir.NewBuilder("g")
		b.Output("y", b.Unary("Exp", b.AddInput("x", ir.T(ir.F16, 3), ir.Data, nil)))
		return &ir.Module{Graphs: []*ir.Graph{b.G}}
	}
	f64mm := func() *ir.Module {
		b := ir.NewBuilder("g")
		x := b.AddInput("x", ir.T(ir.F64, 3, 3), ir.Data, nil)
		b.Output("y", b.MatMul(x, x, false, false))
		return &ir.Module{Graphs: []*ir.Graph{b.G}}
	}
	for _, c := range []struct {
		name string
		m    *ir.Module
		opt  Options
		want string
	}{
		{"nil module", nil, Options{}, "no module"},
		{"no cc", ok(), Options{CC: "slc-no-such-cc"}, "C compiler"},
		{"plans without groups", ok(), Options{Plans: map[string]*passes.MemoryPlan{}}, "without the Groups"},
		{"bad lowering", ok(), Options{SLTrainLowering: "sideways"}, "sideways"},
		{"bad cpu", ok(), Options{Target: target.NewCPU("no-such-cpu-xyz", "")}, "unknown x86-64 CPU"},
		{"32-bit cpu", ok(), Options{Target: target.NewCPU("i686", "")}, "unknown x86-64 CPU"},
		{"bad features", ok(), Options{Target: target.NewCPU("x86-64", "avx2")}, "bad CPU feature"},
		{"no sse2", ok(), Options{Target: target.NewCPU("", "+avx,-sse2")}, "cannot be disabled"},
		{"f16", f16(), Options{}, "f16 is not supported"},
		{"f64 matmul", f64mm(), Options{}, "f32 and bf16 only"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := compilePlanned(c.m, c.opt)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

// TestEmitLLVM checks the IR and assembly dumps.
func TestEmitLLVM(t *testing.T) {
	b := ir.NewBuilder("g")
	b.Output("y", b.Unary("Silu", f32(b, "x", 64)))
	var ll, asm bytes.Buffer
	if _, err := compilePlanned(&ir.Module{Graphs: []*ir.Graph{b.G}}, Options{EmitLLVM: &ll, EmitAsm: &asm}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ll.String(), "define void @slc_ew_") || !strings.Contains(asm.String(), "slc_ew_") {
		t.Errorf("dumps lack the kernel:\n%.500s\n%.500s", ll.String(), asm.String())
	}
}
