package passes

import (
	"math"
	"testing"

	"gitee.com/gidean/conv-linn/ir"
	"gitee.com/gidean/conv-linn/ir/interp"
)

// compileTinyF32 runs sltrain-fuse and the passes in list on the f32 tiny
// LLaMA, bf16-mixed or not.
func compileTinyF32(t *testing.T, sltrain, mixed bool, list string) *ir.Module {
	t.Helper()
	m := tinyLlamaDType(t, ir.F32)
	o := DefaultOptions()
	o.Rank, o.SpRatio, o.Seed, o.BF16Mixed = 4, 0.1, 11, mixed
	if !sltrain {
		o.PEFT = "full"
	}
	ps, err := Select("sltrain-fuse," + list)
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(&State{Module: m, Options: o, Verify: true}, ps); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMixedPrecisionGraph checks the shape of bf16-mixed's train_step: every
// matrix product reads bf16 operands (LowRankSparseAdd a bf16 x) and returns
// f32, and the backward part reads no f32 activation — every forward value
// that depends on a parameter and that a backward node reads is bf16.
func TestMixedPrecisionGraph(t *testing.T) {
	for _, sltrain := range []bool{false, true} {
		// Without programs and cse, train_step is a clone of forward (names
		// kept) plus the backward nodes.
		m := compileTinyF32(t, sltrain, true, "autodiff,mixed-precision")
		ref := compileTinyF32(t, sltrain, false, "autodiff,mixed-precision")
		g := m.Graph("train_step")
		types := g.Types()
		products := 0
		for _, n := range g.Nodes {
			switch n.Op {
			case "MatMul", "Linear":
				products++
				if types[n.Inputs[0]].DType != ir.BF16 || types[n.Inputs[1]].DType != ir.BF16 || n.Outputs[0].Type.DType != ir.F32 {
					t.Errorf("sltrain=%v: %s: want bf16 operands and an f32 result", sltrain, n)
				}
			case "LowRankSparseAdd":
				products++
				if types[n.Inputs[0]].DType != ir.BF16 || types[n.Inputs[1]].DType != ir.F32 || n.Outputs[0].Type.DType != ir.F32 {
					t.Errorf("sltrain=%v: %s: want the mixed form", sltrain, n)
				}
			}
		}
		refProducts := 0
		for _, n := range ref.Graph("train_step").Nodes {
			if n.Op == "MatMul" || n.Op == "Linear" || n.Op == "LowRankSparseAdd" {
				refProducts++
			}
		}
		if products != refProducts || products == 0 {
			t.Errorf("sltrain=%v: %d products, the f32 step has %d", sltrain, products, refProducts)
		}

		// (m's forward has the mixed pass's new nodes, whose fresh names may
		// be backward names in train_step: take the values from ref's.)
		fwdValues := map[string]bool{}
		for _, n := range ref.Graph("forward").Nodes {
			for _, o := range n.Outputs {
				fwdValues[o.Name] = true
			}
		}
		fromParam := map[string]bool{}
		for _, in := range g.Inputs {
			fromParam[in.Name] = in.Role == ir.Param
		}
		backward := 0
		for _, n := range g.Nodes {
			dep := false
			for _, in := range n.Inputs {
				dep = dep || fromParam[in]
			}
			isFwd := false
			for _, o := range n.Outputs {
				fromParam[o.Name] = dep
				isFwd = isFwd || fwdValues[o.Name]
			}
			if isFwd {
				continue
			}
			backward++
			for _, in := range n.Inputs {
				if fwdValues[in] && fromParam[in] && types[in].DType == ir.F32 && !(n.Op == "Cast" && n.Attrs.GetString("to", "") == "bf16") {
					t.Errorf("sltrain=%v: backward node %s reads the f32 activation %s", sltrain, n, in)
				}
			}
		}
		if backward < 20 {
			t.Fatalf("sltrain=%v: only %d backward nodes found", sltrain, backward)
		}
	}
}

// TestMixedPrecisionStep runs bf16-mixed's train_step and the f32 one from
// the same state in the interpreter: the loss and every gradient agree to
// bf16's precision, and they are not the same numbers (the pass changed
// something). The tiny model's gradients are sums of few terms that partly
// cancel, so bf16's 2⁻⁹ relative rounding of each GEMM operand grows to a few
// per cent there (the seed's pure bf16 differs as much); the exact semantics
// are checked against PyTorch by make xcheck.
func TestMixedPrecisionStep(t *testing.T) {
	const all = "autodiff,mixed-precision,optimizer,programs,fold,algebra,cse,dce"
	m := compileTinyF32(t, true, true, all)
	ref := compileTinyF32(t, true, false, all)
	g, rg := m.Graph("train_step"), ref.Graph("train_step")
	st := tinyState(t, g, 7)
	st["grad_scale"] = interp.FromFloats(ir.Type{DType: ir.F32}, []float64{1})
	got, err := interp.Run(g, st)
	if err != nil {
		t.Fatal(err)
	}
	want, err := interp.Run(rg, st)
	if err != nil {
		t.Fatal(err)
	}
	if l, w := got["loss"].F[0], want["loss"].F[0]; math.Abs(l-w) > 1e-2*math.Abs(w) || l == w {
		t.Errorf("loss %v, f32 %v: want within 1%% and not equal", l, w)
	}
	same := 0
	for name, w := range want {
		if name == "loss" {
			continue
		}
		gv := got[name].F
		var num, den float64
		for i, x := range w.F {
			num += (gv[i] - x) * (gv[i] - x)
			den += x * x
		}
		if den == 0 {
			continue
		}
		if e := math.Sqrt(num / den); e > 0.1 {
			t.Errorf("%s: norm-wise relative difference %.3g from the f32 gradient", name, e)
		} else if e == 0 {
			same++
		}
	}
	if same == len(want)-1 {
		t.Error("every gradient is the f32 one: nothing was rounded")
	}
}
