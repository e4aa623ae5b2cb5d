package passes

import (
	"math"
	"strings"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// tinyScaled is the F64 tiny LLaMA fused with the seed's trainable scaling
// (r 4, δ 0.1) or, with scale c > 0, the fixed scale c (α = c·r).
func tinyScaled(t *testing.T, trainable bool, c float64) *ir.Module {
	t.Helper()
	m := tinyLlamaDType(t, ir.F64)
	o := DefaultOptions()
	o.PEFT, o.Rank, o.SpRatio, o.Seed, o.TrainScaling = "sltrain", 4, 0.1, 11, trainable
	if c > 0 {
		o.LoraAlpha = c * 4
	}
	s := &State{Module: m, Options: o, Verify: true}
	if err := Run(s, []Pass{{Name: "sltrain-fuse", Run: sltrainFuse}}); err != nil {
		t.Fatal(err)
	}
	return m
}

// Every fused layer gets a [1] parameter <module>.scaling initialised to 1,
// the module says so, and a scaling of atanh(c) gives the loss of the
// fixed scale c: the layer computes B·(A·tanh(scaling)) + S.
func TestTrainScalingIsTanhOfAParameter(t *testing.T) {
	m := tinyScaled(t, true, 0)
	if m.Meta["trainable_scaling"] != "true" {
		t.Errorf("meta trainable_scaling = %q", m.Meta["trainable_scaling"])
	}
	g := m.Graph("forward")
	layers := 0
	for _, n := range g.Nodes {
		if n.Op != "LowRankSparseAdd" {
			continue
		}
		layers++
		if n.Attrs.GetFloat("scale", 0) != 1 {
			t.Errorf("%s: scale %v, want 1 (the trained tanh multiplies A)", n.Name, n.Attrs.GetFloat("scale", 0))
		}
	}
	scalings := 0
	for _, in := range g.Inputs {
		if strings.HasSuffix(in.Name, ScalingSuffix) {
			scalings++
			if in.Role != ir.Param || !in.Type.Equal(ir.T(ir.F64, 1)) || in.Init.Kind != ir.InitOnes {
				t.Errorf("%s: %v %v %v, want a [1] f64 param of ones", in.Name, in.Role, in.Type, in.Init.Kind)
			}
		}
	}
	if layers == 0 || scalings != layers {
		t.Fatalf("%d layers, %d scalings", layers, scalings)
	}
	const c = 0.37
	fixed := tinyScaled(t, false, c).Graph("forward")
	stT, stF := tinyState(t, g, 7), tinyState(t, fixed, 7)
	for name, v := range stT {
		if strings.HasSuffix(name, ScalingSuffix) {
			v.F[0] = math.Atanh(c)
		}
	}
	lt, err := interp.Run(g, stT)
	if err != nil {
		t.Fatal(err)
	}
	lf, err := interp.Run(fixed, stF)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := lt["loss"].F[0], lf["loss"].F[0]; math.Abs(a-b) > 1e-12*math.Abs(b) {
		t.Errorf("loss with scaling atanh(%v): %v; with the fixed scale: %v", c, a, b)
	}
}

// The gradient autodiff gives each scaling (and every other parameter
// through A·tanh) against fourth-order central differences, with the
// scalings moved off 1 so that tanh′ differs per layer.
func TestTrainScalingGradients(t *testing.T) {
	m := tinyScaled(t, true, 0)
	fwd := m.Graph("forward")
	g := fwd.Clone()
	b := ir.BuilderFor(g)
	loss := fwd.Output("loss").Value
	var wrt []string
	for _, p := range trainable(g) {
		wrt = append(wrt, p.Name)
	}
	grads, err := Gradients(b, loss, wrt, "")
	if err != nil {
		t.Fatal(err)
	}
	g.Outputs = nil
	for _, w := range wrt {
		b.Output(w, grads[w])
	}
	st := tinyState(t, g, 7)
	for name, v := range st {
		if strings.HasSuffix(name, ScalingSuffix) {
			v.F[0] = 0.3 + 0.1*float64(len(name)%13) // per layer, the same every run
		}
	}
	rng := ir.NewRNG(5)
	got, err := interp.Run(g, st)
	if err != nil {
		t.Fatal(err)
	}
	lossOnly := fwd.Clone()
	lossOnly.Outputs = []*ir.Output{{Name: "loss", Value: loss}}
	deadCodeElim(lossOnly)
	f := func() float64 {
		o, err := interp.Run(lossOnly, st)
		if err != nil {
			t.Fatal(err)
		}
		return o["loss"].F[0]
	}
	const h = 1e-5
	checked := 0
	for _, w := range wrt {
		x, d := st[w].F, got[w].F
		entries := sampleEntries(rng, d, 2, 1)
		if strings.HasSuffix(w, ScalingSuffix) {
			checked++
			if d[0] == 0 {
				t.Errorf("d loss/d %s = 0", w)
			}
		}
		for _, i := range entries {
			orig := x[i]
			at := func(k float64) float64 { x[i] = orig + k*h; return f() }
			fd := (-at(2) + 8*at(1) - 8*at(-1) + at(-2)) / (12 * h)
			x[i] = orig
			if e := math.Abs(fd - d[i]); e > 1e-6*math.Abs(fd) && e > 1e-10 {
				t.Errorf("d loss/d %s[%d]: analytic %.12g, numeric %.12g", w, i, d[i], fd)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no scaling parameter among the trainable ones")
	}
}
